// reduce.wgsl — column sums of squares for the importance matrix: acc[c] += Σ_r x[r, c]².
//
// Layout: x [rows, cols] row-major, acc f32 [cols], partial f32 [slices, cols].
// colsq_partial: a 2-D grid of (256-column strip) × (slice of RS rows); each thread sums its
// column over its slice (coalesced across threads) into partial; colsq_finish adds the slices in a
// fixed order into acc (deterministic).
// Measured (tests/webgpu_loss_test.ts, llvmpipe): relative error ≤ 2.4e-7, bound asserted 1e-5.

struct ColParams { rows: u32, cols: u32, x_base: u32, acc_base: u32, slices: u32, rs: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> pq: ColParams;
@group(0) @binding(1) var<storage, read> cx: array<x_t>;
@group(0) @binding(2) var<storage, read_write> cpart: array<f32>;
@group(0) @binding(1) var<storage, read> fpart: array<f32>;
@group(0) @binding(2) var<storage, read_write> facc: array<f32>;

@compute @workgroup_size(WG)
fn colsq_partial(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x * WG + lid;
  if (c >= pq.cols) { return; }
  let r0 = wid.y * pq.rs;
  let r1 = min(r0 + pq.rs, pq.rows);
  var s = 0.0;
  for (var r = r0; r < r1; r++) { let v = f32(cx[pq.x_base + r * pq.cols + c]); s += v * v; }
  cpart[wid.y * pq.cols + c] = s;
}

@compute @workgroup_size(WG)
fn colsq_finish(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = group_index(wid, nwg) * WG + lid;
  if (c >= pq.cols) { return; }
  var s = 0.0;
  for (var k = 0u; k < pq.slices; k++) { s += fpart[k * pq.cols + c]; }
  facc[pq.acc_base + c] += s;
}
