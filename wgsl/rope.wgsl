// rope.wgsl — rotary embedding in place, Hugging Face rotate_half convention, and its inverse.
//
// Layout: x is [rows, heads·hd] with rows = batch·seqLen (position of row r = r mod seqLen +
// posOffset); cos/sin are [positions, hd/2], bound from row posOffset on. One thread per rotated pair
// (row, head, i < hd/2): (x_i, x_{i+h}) ← (x_i·c − x_{i+h}·s, x_{i+h}·c + x_i·s), s negated for the
// inverse (backward). Partial rotary (Phi-3): `half` is rotaryDim/2 ≤ hd/2, the tables are
// [positions, half] and the elements from 2·half on are not touched. 256 threads per workgroup.
// Measured (tests/webgpu_ops_test.ts, llvmpipe, posOffset 3): relative error ≤ 5.8e-8 (f32, forward
// and inverse); bound asserted 1e-6. Partial rotary (tests/webgpu_family_ops_test.ts, rotaryDim 8 of
// 16): ≤ 2.5e-8, the other elements bit-identical.

struct RopeParams {
  pairs: u32, heads: u32, half: u32, seq: u32,
  row0: u32, x_base: u32, cos_base: u32, sin_base: u32,
  sgn: f32, hd: u32, pad1: u32, pad2: u32,
}
@group(0) @binding(0) var<uniform> pr: RopeParams;
@group(0) @binding(1) var<storage, read_write> rx: array<x_t>;
@group(0) @binding(2) var<storage, read> rcos: array<cs_t>;
@group(0) @binding(3) var<storage, read> rsin: array<sn_t>;

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let idx = group_index(wid, nwg) * WG + lid;
  if (idx >= pr.pairs) { return; }
  let i = idx % pr.half;
  let h = (idx / pr.half) % pr.heads;
  let r = idx / (pr.half * pr.heads);
  let t = (pr.row0 + r) % pr.seq;
  let c = f32(rcos[pr.cos_base + t * pr.half + i]);
  let s = pr.sgn * f32(rsin[pr.sin_base + t * pr.half + i]);
  let o = pr.x_base + (r * pr.heads + h) * pr.hd + i;
  let x1 = f32(rx[o]);
  let x2 = f32(rx[o + pr.half]);
  rx[o] = x_cv(x1 * c - x2 * s);
  rx[o + pr.half] = x_cv(x2 * c + x1 * s);
}
