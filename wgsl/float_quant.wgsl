// float_quant.wgsl — float weight fake quant (MXFP4/6/8, MXINT4, NVFP4, FP8 E4M3) with SignRound's
// v and β and the straight-through backward (spec/SCHEMES.md § 4–6, § 9.4; host reference
// src/qmath/float_tune.ts). float_math.wgsl (scale context, element math) is prepended.
//
// Layout: w, v, Ŵ, dŴ, dV, the element values and the per-element scale-gradient shares (`share`)
// are [rows, K] row-major; β (maxScale), wMin, wMax and the stored scales are [rows·per_row] with
// per_row = K/g groups (MX g = 32, NV 16, FP8 per row g = K), or one value for FP8 per tensor
// (per_row = 0). Tiling: flw_apply / flw_elems / flw_bwd one thread per element (the group's scale
// is recomputed from β, wMin, wMax: three loads); flw_scales one thread per group; flw_sum one
// 64-thread workgroup per segment of seg_len shares (a group, or a row for FP8 per tensor, whose
// row partials a second flw_sum over [rows] finishes), strided loads and a shared-memory tree.
// Bounds (tests/webgpu_float_quant_test.ts: random weights in f32 / bf16 / f16 storage, plus inputs
// on the float32 edges — maxima a few ulps below powers of two, exact grid ties): Ŵ, element values,
// scales and dV equal the CPU bit for bit. dβ differs by summation order only (f32 tree here, f64 in
// element order on the host): measured ‖Δ‖/‖ref‖ ≤ 1.9e-7 per group of 16 / 32, 2.9e-7 per row
// (K 520), 8.4e-7 per tensor (300·48 terms, two passes); asserted 1e-4.

struct FlParams {
  rows: u32, k: u32, g: u32, per_row: u32,
  kind: u32, ebits: u32, mbits: u32, emax: u32,
  max_norm: f32, gs: f32, rgs: f32, min_scale: f32,
  w_base: u32, v_base: u32, ms_base: u32, wmin_base: u32,
  wmax_base: u32, out_base: u32, aux_base: u32, d_base: u32,
  zero: u32, rceil: u32, fixed: f32, seg_len: u32,
  finish: u32, pad0: u32, pad1: u32, pad2: u32,
}
@group(0) @binding(0) var<uniform> P: FlParams;
@group(0) @binding(1) var<storage, read> fms: array<ms_t>;
@group(0) @binding(2) var<storage, read> fwmin: array<wmn_t>;
@group(0) @binding(3) var<storage, read> fwmax: array<wmx_t>;
@group(0) @binding(4) var<storage, read> fw: array<w_t>;
@group(0) @binding(5) var<storage, read> fv: array<v_t>;
@group(0) @binding(6) var<storage, read_write> fout: array<out_t>;
@group(0) @binding(6) var<storage, read_write> felem: array<f32>;
@group(0) @binding(6) var<storage, read> fdwq: array<dwq_t>;
@group(0) @binding(7) var<storage, read_write> fdv: array<f32>;
@group(0) @binding(8) var<storage, read_write> fshare: array<f32>;
// flw_scales: stored scales out; flw_sum: shares (or row partials) in, sums (or dβ) out.
@group(0) @binding(4) var<storage, read_write> gscale: array<f32>;
@group(0) @binding(4) var<storage, read> ssrc: array<f32>;
@group(0) @binding(5) var<storage, read_write> sdst: array<f32>;

// NVFP4's global scale and its reciprocal (from the host).
fn global_scale() -> vec2<f32> {
  return vec2<f32>(P.gs, P.rgs);
}

// Group index (within the bound window) of element i of the chunk.
fn group_of(i: u32) -> u32 {
  if (P.per_row == 0u) { return 0u; }
  return (i / P.k) * P.per_row + (i % P.k) / P.g;
}

// |max| of group gi and its scale context: vec = fl32(max(wMax, −wMin)·clamp(β, 0, 1)).
fn group_max(gi: u32) -> f32 {
  return max(f32(fwmax[P.wmax_base + gi]), -f32(fwmin[P.wmin_base + gi]));
}
fn group_ctx(gi: u32) -> Ctx {
  let beta = clamp(f32(fms[P.ms_base + gi]), 0.0, 1.0);
  return ctx_of(opq(group_max(gi) * beta));
}

@compute @workgroup_size(256)
fn flw_apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
             @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * 256u + lid;
  if (i >= P.rows * P.k) { return; }
  let r = elem(group_ctx(group_of(i)), f32(fw[P.w_base + i]), f32(fv[P.v_base + i]));
  fout[P.out_base + i] = out_cv(r.y);
}

@compute @workgroup_size(256)
fn flw_elems(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
             @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * 256u + lid;
  if (i >= P.rows * P.k) { return; }
  felem[P.aux_base + i] = elem(group_ctx(group_of(i)), f32(fw[P.w_base + i]), f32(fv[P.v_base + i])).x;
}

// Stored scale per group (MX shared exponent, NV E4M3 s8, FP8 scale).
@compute @workgroup_size(256)
fn flw_scales(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let gi = group_index(wid, nwg) * 256u + lid;
  if (gi >= max(P.rows * P.per_row, 1u)) { return; }
  gscale[P.d_base + gi] = group_ctx(gi).stored;
}

@compute @workgroup_size(256)
fn flw_bwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * 256u + lid;
  if (i >= P.rows * P.k) { return; }
  let x = f32(fw[P.w_base + i]);
  let r = elem_bwd(group_ctx(group_of(i)), x, f32(fv[P.v_base + i]), f32(fdwq[P.out_base + i]));
  fdv[P.d_base + i] = r.x;
  fshare[P.aux_base + i] = r.y;
}

var<workgroup> red: array<f32, 64>;

// Sum segment s of seg_len values; finish: dβ of group s = vec_grad(Σ)·max, else the raw sum.
@compute @workgroup_size(64)
fn flw_sum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let s = group_index(wid, nwg);
  var acc = 0.0;
  for (var i = lid; i < P.seg_len; i += 64u) { acc += ssrc[P.aux_base + s * P.seg_len + i]; }
  red[lid] = acc;
  workgroupBarrier();
  for (var h = 32u; h > 0u; h = h >> 1u) {
    if (lid < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  if (lid != 0u) { return; }
  if (P.finish == 0u) {
    sdst[P.d_base + s] = red[0];
    return;
  }
  let gi = select(s, 0u, P.per_row == 0u);
  sdst[P.d_base + s] = vec_grad(group_ctx(gi), red[0]) * group_max(gi);
}
