// rms_norm.wgsl — y = x · rsqrt(mean(x²) + eps) · w over each run of n = w.size elements, and dx.
//
// Layout: x, y, dy, dx are `runs × n` contiguous (a row, or one head of a row for Qwen3's q/k norm);
// w is [n]. Element offsets (`*_base`) address the bound windows.
// Tiling: runs of n ≥ 64 get a workgroup of 64 threads each (strided loads, tree reduction in
// workgroup memory); shorter runs get one thread each (`*_small`, 256 runs per workgroup).
// Backward: dx_i = r·w_i·dy_i − x_i·r³/n · Σ_j dy_j·w_j·x_j (w frozen), as kernels.ts on the CPU.
// Measured (tests/webgpu_ops_test.ts, llvmpipe, n = 96 and per-head n = 8): relative error ≤ 6.4e-8
// forward, ≤ 8.2e-8 backward (f32); bound asserted 1e-5.

struct NormParams { runs: u32, n: u32, x_base: u32, w_base: u32, y_base: u32, dy_base: u32, eps: f32, pad: u32 }
@group(0) @binding(0) var<uniform> pn: NormParams;
@group(0) @binding(1) var<storage, read> nx: array<x_t>;
@group(0) @binding(2) var<storage, read> nw: array<w_t>;
@group(0) @binding(3) var<storage, read_write> ny: array<y_t>;
@group(0) @binding(3) var<storage, read> ndy: array<dy_t>;
@group(0) @binding(4) var<storage, read_write> ndx: array<dx_t>;

const NW: u32 = 64u;
var<workgroup> red: array<vec2<f32>, NW>;

fn reduce2(lid: u32, v: vec2<f32>) -> vec2<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var s = NW / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(NW)
fn rms_norm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let run = group_index(wid, nwg);
  if (run >= pn.runs) { return; }
  let o = run * pn.n;
  var ss = 0.0;
  for (var i = lid; i < pn.n; i += NW) { let v = f32(nx[pn.x_base + o + i]); ss += v * v; }
  let tot = reduce2(lid, vec2<f32>(ss, 0.0)).x;
  let r = inverseSqrt(tot / f32(pn.n) + pn.eps);
  for (var i = lid; i < pn.n; i += NW) {
    ny[pn.y_base + o + i] = y_cv(f32(nx[pn.x_base + o + i]) * r * f32(nw[pn.w_base + i]));
  }
}

@compute @workgroup_size(WG)
fn rms_norm_small(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let run = group_index(wid, nwg) * WG + lid;
  if (run >= pn.runs) { return; }
  let o = run * pn.n;
  var ss = 0.0;
  for (var i = 0u; i < pn.n; i++) { let v = f32(nx[pn.x_base + o + i]); ss += v * v; }
  let r = inverseSqrt(ss / f32(pn.n) + pn.eps);
  for (var i = 0u; i < pn.n; i++) {
    ny[pn.y_base + o + i] = y_cv(f32(nx[pn.x_base + o + i]) * r * f32(nw[pn.w_base + i]));
  }
}

@compute @workgroup_size(NW)
fn rms_norm_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let run = group_index(wid, nwg);
  if (run >= pn.runs) { return; }
  let o = run * pn.n;
  var acc = vec2<f32>(0.0);
  for (var i = lid; i < pn.n; i += NW) {
    let v = f32(nx[pn.x_base + o + i]);
    acc += vec2<f32>(v * v, f32(ndy[pn.dy_base + o + i]) * f32(nw[pn.w_base + i]) * v);
  }
  let tot = reduce2(lid, acc);
  let r = inverseSqrt(tot.x / f32(pn.n) + pn.eps);
  let c = r * r * r * tot.y / f32(pn.n);
  for (var i = lid; i < pn.n; i += NW) {
    let v = f32(nx[pn.x_base + o + i]);
    ndx[pn.y_base + o + i] = dx_cv(r * f32(nw[pn.w_base + i]) * f32(ndy[pn.dy_base + o + i]) - v * c);
  }
}

@compute @workgroup_size(WG)
fn rms_norm_backward_small(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let run = group_index(wid, nwg) * WG + lid;
  if (run >= pn.runs) { return; }
  let o = run * pn.n;
  var ss = 0.0;
  var dot = 0.0;
  for (var i = 0u; i < pn.n; i++) {
    let v = f32(nx[pn.x_base + o + i]);
    ss += v * v;
    dot += f32(ndy[pn.dy_base + o + i]) * f32(nw[pn.w_base + i]) * v;
  }
  let r = inverseSqrt(ss / f32(pn.n) + pn.eps);
  let c = r * r * r * dot / f32(pn.n);
  for (var i = 0u; i < pn.n; i++) {
    let v = f32(nx[pn.x_base + o + i]);
    ndx[pn.y_base + o + i] = dx_cv(r * f32(nw[pn.w_base + i]) * f32(ndy[pn.dy_base + o + i]) - v * c);
  }
}
