// elementwise.wgsl — add (also accumulate: out = a + alpha·b), addRowVector, signSgdStep, siluMul
// and its backward, Gemma's geluTanhMul and its backward, tanhSoftcap.
//
// Layout: flat element ranges with element offsets (`*_base`) into the bound windows; addRowVector
// chunks start on row boundaries so the column is i % cols. Every binding is read_write so that
// `out` may alias an input (WebGPU forbids one buffer as read-only and writable in one dispatch).
// Tiling: one thread per element, 256 per workgroup, 2-D grid (group_index).
// Measured (tests/webgpu_ops_test.ts, webgpu_loss_test.ts, llvmpipe): add, addRowVector, signSgdStep
// (number or tensor lr) bit-identical to the CPU in f32; accumulate with alpha ≈ 1e-8 (alpha·x in
// f32, not f64); siluMul(+backward) ≤ 1e-7 (f32 exp vs the CPU's f64 exp), bound asserted 1e-5.
// geluTanhMul(+backward), tanhSoftcap (tests/webgpu_family_ops_test.ts): ≤ 1e-6, bound 1e-5.

struct BinParams { n: u32, a_base: u32, b_base: u32, out_base: u32, cols: u32, alpha: f32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> pb: BinParams;
@group(0) @binding(1) var<storage, read_write> bin_a: array<a_t>;
@group(0) @binding(2) var<storage, read_write> bin_b: array<b_t>;
@group(0) @binding(3) var<storage, read_write> bin_out: array<out_t>;

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pb.n) { bin_out[pb.out_base + i] = out_cv(f32(bin_a[pb.a_base + i]) + pb.alpha * f32(bin_b[pb.b_base + i])); }
}

// x[r, c] += bias[c]: a = x (in place), b = bias.
@compute @workgroup_size(WG)
fn add_row_vector(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pb.n) {
    bin_a[pb.a_base + i] = a_cv(f32(bin_a[pb.a_base + i]) + f32(bin_b[pb.b_base + i % pb.cols]));
  }
}

// h = silu(g)·u: a = g, b = u.
@compute @workgroup_size(WG)
fn silu_mul(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pb.n) {
    let g = f32(bin_a[pb.a_base + i]);
    bin_out[pb.out_base + i] = out_cv(g / (1.0 + exp(-g)) * f32(bin_b[pb.b_base + i]));
  }
}

// tanh with its argument clamped: tanh(15) is 1 in f32, and some drivers' tanh overflows to NaN.
fn tanh_c(x: f32) -> f32 {
  return tanh(clamp(x, -15.0, 15.0));
}
// The inner tanh of gelu_tanh(x) = x/2·(1 + tanh(√(2/π)(x + 0.044715x³))).
fn gelu_th(x: f32) -> f32 {
  return tanh_c(0.7978845608028654 * (x + 0.044715 * x * x * x));
}

// h = gelu_tanh(g)·u: a = g, b = u.
@compute @workgroup_size(WG)
fn gelu_tanh_mul(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pb.n) {
    let g = f32(bin_a[pb.a_base + i]);
    bin_out[pb.out_base + i] = out_cv(0.5 * g * (1.0 + gelu_th(g)) * f32(bin_b[pb.b_base + i]));
  }
}

// x ← cap·tanh(x/cap) in place: a = x, alpha = cap.
@compute @workgroup_size(WG)
fn tanh_softcap(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pb.n) { bin_a[pb.a_base + i] = a_cv(pb.alpha * tanh_c(f32(bin_a[pb.a_base + i]) / pb.alpha)); }
}

struct TriParams { n: u32, g_base: u32, u_base: u32, dh_base: u32, dg_base: u32, du_base: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> pt: TriParams;
@group(0) @binding(1) var<storage, read_write> sb_g: array<g_t>;
@group(0) @binding(2) var<storage, read_write> sb_u: array<u_t>;
@group(0) @binding(3) var<storage, read_write> sb_dh: array<dh_t>;
@group(0) @binding(4) var<storage, read_write> sb_dg: array<dg_t>;
@group(0) @binding(5) var<storage, read_write> sb_du: array<du_t>;

@compute @workgroup_size(WG)
fn silu_mul_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i >= pt.n) { return; }
  let g = f32(sb_g[pt.g_base + i]);
  let u = f32(sb_u[pt.u_base + i]);
  let d = f32(sb_dh[pt.dh_base + i]);
  let s = 1.0 / (1.0 + exp(-g));
  sb_du[pt.du_base + i] = du_cv(d * g * s);
  sb_dg[pt.dg_base + i] = dg_cv(d * u * s * (1.0 + g * (1.0 - s)));
}

// du = dh·gelu_tanh(g), dg = dh·u·(½(1 + th) + ½g·(1 − th²)·√(2/π)(1 + 3·0.044715g²)).
@compute @workgroup_size(WG)
fn gelu_tanh_mul_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i >= pt.n) { return; }
  let g = f32(sb_g[pt.g_base + i]);
  let u = f32(sb_u[pt.u_base + i]);
  let d = f32(sb_dh[pt.dh_base + i]);
  let th = gelu_th(g);
  let grad = 0.5 * (1.0 + th) + 0.5 * g * (1.0 - th * th) * 0.7978845608028654 * (1.0 + 0.134145 * g * g);
  sb_du[pt.du_base + i] = du_cv(d * 0.5 * g * (1.0 + th));
  sb_dg[pt.dg_base + i] = dg_cv(d * u * grad);
}

struct SgdParams {
  n: u32, p_base: u32, g_base: u32, clamp: u32,
  lr_hi: f32, lr_lo: f32, lo: f32, hi: f32,
  zero: u32, lr_tensor: u32, lr_base: u32, pad0: u32,
}
@group(0) @binding(0) var<uniform> ps: SgdParams;
@group(0) @binding(1) var<storage, read_write> sgd_p: array<p_t>;
@group(0) @binding(2) var<storage, read_write> sgd_g: array<gr_t>;
@group(0) @binding(3) var<storage, read_write> sgd_lr: array<lr_t>;

// p ← p − lr·sign(g), clamped. lr arrives as an f32 pair (hi + lo = the f64 learning rate) and
// p − s·lr_hi is formed exactly (two-sum), so the result is the f64 difference rounded once, as
// the CPU computes it. `opaque` keeps the compiler from folding the two-sum (fake_quant.wgsl).
// With lr_tensor set, lr is read from sgd_lr (a captured iteration's decaying rate).
fn opaque(x: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) ^ ps.zero);
}
@compute @workgroup_size(WG)
fn sign_sgd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i >= ps.n) { return; }
  let p = f32(sgd_p[ps.p_base + i]);
  let s = sign(f32(sgd_g[ps.g_base + i]));
  var lr_hi = ps.lr_hi;
  var lr_lo = ps.lr_lo;
  if (ps.lr_tensor != 0u) {
    lr_hi = f32(sgd_lr[ps.lr_base]);
    lr_lo = 0.0;
  }
  let a = -s * lr_hi;
  let sum = opaque(p + a);
  let bb = opaque(sum - p);
  let err = (p - opaque(sum - bb)) + (a - bb);
  var x = sum + (err - s * lr_lo);
  if (ps.clamp != 0u) { x = min(max(x, ps.lo), ps.hi); }
  sgd_p[ps.p_base + i] = p_cv(x);
}
