// float_quant.wgsl — float weight fake quant (MXFP4/6/8, MXINT4, NVFP4, FP8 E4M3) and INT8_W8A8's
// quant_tensor_sym (f16 scales; the flw_i8_* kernels at the end) with SignRound's v and β and the
// straight-through backward (spec/SCHEMES.md § 4–7, § 9.4; host reference src/qmath/float_tune.ts).
// float_math.wgsl (scale context, element math) and two_prod.wgsl are appended by kernels.ts.
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
// scales and dV equal the CPU bit for bit. dβ differs by summation order only: each element's share
// is a near-exact pair (its two pieces cancel), rounded to f32 and summed compensated (flw_sum),
// where the host sums f64 in element order — measured ‖Δ‖/‖ref‖ ≤ 1.3e-7 per group of 16 / 32 or
// per row, 7.2e-7 per tensor (300·48 terms, two passes); asserted 1e-4. INT8: dV exact; dα, dβ
// measured equal (the two scale pieces are near-exact pair sums rounded to f16, as the host's f64).

struct FlParams {
  rows: u32, k: u32, g: u32, per_row: u32,
  kind: u32, ebits: u32, mbits: u32, emax: u32,
  max_norm: f32, gs: f32, rgs: f32, min_scale: f32,
  w_base: u32, v_base: u32, ms_base: u32, wmin_base: u32,
  wmax_base: u32, out_base: u32, aux_base: u32, d_base: u32,
  zero: u32, rceil: u32, fixed: f32, seg_len: u32,
  finish: u32, mn_base: u32, dmin_base: u32, use_alpha: u32,
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
  fshare[P.aux_base + i] = r.y + r.z;
}

var<workgroup> red: array<vec2<f32>, 64>;

// Sum segment s of seg_len values; finish: dβ of group s = vec_grad(Σ)·max, else the raw sum.
@compute @workgroup_size(64)
fn flw_sum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let s = group_index(wid, nwg);
  var acc = vec2<f32>(0.0);
  for (var i = lid; i < P.seg_len; i += 64u) { acc = acc_add(acc, ssrc[P.aux_base + s * P.seg_len + i]); }
  red[lid] = acc;
  workgroupBarrier();
  for (var h = 32u; h > 0u; h = h >> 1u) {
    if (lid < h) { red[lid] = acc_merge(red[lid], red[lid + h]); }
    workgroupBarrier();
  }
  if (lid != 0u) { return; }
  if (P.finish == 0u) {
    sdst[P.d_base + s] = (red[0].x + red[0].y);
    return;
  }
  let gi = select(s, 0u, P.per_row == 0u);
  sdst[P.d_base + s] = vec_grad(group_ctx(gi), (red[0].x + red[0].y)) * group_max(gi);
}

// ---- INT8_W8A8 weights: quant_tensor_sym per row / group with float16 scales (kind 3) -----------
// (float_tune.ts int8Math → int_quant.ts groupScale / fakeQuantize / fakeQuantizeBackward, sym.)
// flw_i8_info (a thread per group) writes 4 words per group — scale, sign, max-side share, live —
// which the element kernels read instead of the four state arrays; flw_i8_bwd (a 64-thread
// workgroup per group) writes dV and the group's two scale-gradient pieces; flw_i8_finish (a thread
// per group) rounds them to f16 as torch's fp16 scale does and maps them to dα, dβ.

@group(0) @binding(4) var<storage, read> imn: array<mn_t>; // α
@group(0) @binding(5) var<storage, read_write> iinfo: array<f32>;
@group(0) @binding(1) var<storage, read> ii: array<f32>;
@group(0) @binding(2) var<storage, read> iw: array<w_t>;
@group(0) @binding(3) var<storage, read> iv: array<v_t>;
@group(0) @binding(4) var<storage, read_write> iout: array<out_t>;
@group(0) @binding(4) var<storage, read_write> ielem: array<f32>;
@group(0) @binding(4) var<storage, read> idwq: array<dwq_t>;
@group(0) @binding(5) var<storage, read_write> idv: array<f32>;
@group(0) @binding(6) var<storage, read_write> isum: array<f32>;
@group(0) @binding(5) var<storage, read> iinfo_r: array<f32>;
@group(0) @binding(6) var<storage, read> isum_r: array<f32>;
@group(0) @binding(7) var<storage, read_write> idmax: array<f32>;
@group(0) @binding(8) var<storage, read_write> idmin: array<f32>;

const I8_THR: f32 = 1.0013580322265625e-5; // Math.f16round(1e-5), q_scale_thresh in the scale dtype

// groupScale (sym): scale = f16(sign·max(wMax·β, −wMin·α)/2^(b−1)), the products exact (the host
// forms them in f64), then the ±threshold clamp. Returns (scale, sign, share of the max side, live).
fn i8_scale(gi: u32) -> vec4<f32> {
  // α = 1 unless use_alpha: the CPU reference (cpu/float_ops.ts) does not pass α to the INT8 path.
  let alpha = select(1.0, clamp(f32(imn[P.mn_base + gi]), 0.0, 1.0), P.use_alpha != 0u);
  let beta = clamp(f32(fms[P.ms_base + gi]), 0.0, 1.0);
  let mx = two_prod(f32(fwmax[P.wmax_base + gi]), beta);
  let mn = -two_prod(f32(fwmin[P.wmin_base + gi]), alpha);
  let less = mx.x < mn.x || (mx.x == mn.x && mx.y < mn.y);
  let more = mx.x > mn.x || (mx.x == mn.x && mx.y > mn.y);
  let big = select(mx, mn, less);
  let sh = 1 - i32(P.mbits); // ÷ 2^(b−1), exact
  let sgn = select(-1.0, 1.0, less);
  let share = select(select(0.5, 0.0, less), 1.0, more);
  let raw = sgn * round_f16_pair(ldexp(big.x, sh), ldexp(big.y, sh));
  if (select((raw < I8_THR), (raw > -I8_THR), raw < 0.0)) {
    return vec4<f32>(select(I8_THR, -I8_THR, raw < 0.0), sgn, share, 0.0);
  }
  return vec4<f32>(raw, sgn, share, 1.0);
}

@compute @workgroup_size(256)
fn flw_i8_info(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  let gi = group_index(wid, nwg) * 256u + lid;
  if (gi >= P.rows * P.per_row) { return; }
  let s = i8_scale(gi);
  for (var j = 0u; j < 4u; j++) { iinfo[P.aux_base + 4u * gi + j] = s[j]; }
}

// Code of element i (row-major in the chunk) and its scale: q = clamp(round(fl32(fl32(w/s) + v))).
fn i8_code(i: u32) -> vec3<f32> {
  let gi = (i / P.k) * P.per_row + (i % P.k) / P.g;
  let s = ii[P.aux_base + 4u * gi];
  let maxq = ldexp(1.0, i32(P.mbits) - 1);
  let rz = round(opq(div_rn(f32(iw[P.w_base + i]), s)) + f32(iv[P.v_base + i]));
  return vec3<f32>(clamp(rz, -maxq, maxq - 1.0), s, select(0.0, 1.0, rz >= -maxq && rz <= maxq - 1.0));
}

@compute @workgroup_size(256)
fn flw_i8_apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * 256u + lid;
  if (i >= P.rows * P.k) { return; }
  let c = i8_code(i);
  iout[P.out_base + i] = out_cv(opq(c.y * c.x));
}

@compute @workgroup_size(256)
fn flw_i8_elems(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * 256u + lid;
  if (i >= P.rows * P.k) { return; }
  // + 0: the host's codes are unsigned bytes minus the zero point, so a code 0 is never −0.
  ielem[P.out_base + i] = i8_code(i).x + bitcast<f32>(P.zero);
}

var<workgroup> red2: array<vec4<f32>, 64>;

// dV = dŴ·s·[code in range]; the group's Σ dŴ·q (through s·q) and −Σ dŴ·[in range]·w/s (through
// w/s) as near-exact pairs (two_prod, compensated sums), rounded to f16 and summed as torch does.
@compute @workgroup_size(64)
fn flw_i8_bwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let gi = group_index(wid, nwg);
  let r = gi / P.per_row;
  let c0 = (gi % P.per_row) * P.g;
  var gp = vec2<f32>(0.0);
  var gq = vec2<f32>(0.0);
  for (var c = c0 + lid; c < min(c0 + P.g, P.k); c += 64u) {
    let i = r * P.k + c;
    let q = i8_code(i);
    let d = f32(idwq[P.out_base + i]);
    idv[P.d_base + i] = select(0.0, opq(d * q.y), q.z != 0.0);
    gp = acc_pair(gp, two_prod(d, q.x));
    if (q.z != 0.0) { gq = acc_pair(gq, -prod_div(d, f32(iw[P.w_base + i]), q.y)); }
  }
  red2[lid] = vec4<f32>(gp, gq);
  workgroupBarrier();
  for (var h = 32u; h > 0u; h = h >> 1u) {
    if (lid < h) {
      let a = red2[lid];
      let b = red2[lid + h];
      red2[lid] = vec4<f32>(acc_pair(a.xy, b.xy), acc_pair(a.zw, b.zw));
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    isum[P.seg_len + 2u * gi] = f16_pieces(red2[0].xy, red2[0].zw);
    isum[P.seg_len + 2u * gi + 1u] = 0.0;
  }
}

// dα, dβ of group gi from g = f16(f16(Σ product) + f16(Σ quotient)) through max(wMax·β, −wMin·α),
// 0 where the threshold clamp holds (dα also where α lies outside [0, 1]).
@compute @workgroup_size(256)
fn flw_i8_finish(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                 @builtin(local_invocation_index) lid: u32) {
  let gi = group_index(wid, nwg) * 256u + lid;
  if (gi >= P.rows * P.per_row) { return; }
  let info = vec4<f32>(iinfo_r[P.aux_base + 4u * gi], iinfo_r[P.aux_base + 4u * gi + 1u],
                       iinfo_r[P.aux_base + 4u * gi + 2u], iinfo_r[P.aux_base + 4u * gi + 3u]);
  let g = isum_r[P.seg_len + 2u * gi]; // already the f16 scale gradient (flw_i8_bwd)
  var a = 0.0;
  var b = 0.0;
  if (info.w != 0.0) {
    let gmax = info.y * g / ldexp(1.0, i32(P.mbits) - 1);
    b = gmax * info.z * f32(fwmax[P.wmax_base + gi]);
    a = gmax * (1.0 - info.z) * -f32(fwmin[P.wmin_base + gi]);
  }
  let alpha = f32(imn[P.mn_base + gi]);
  idmin[P.dmin_base + gi] = select(0.0, a, alpha >= 0.0 && alpha <= 1.0 && P.use_alpha != 0u);
  // dβ is w.r.t. the clamped β (as float_tune.ts states for every float scheme): no gate.
  idmax[P.d_base + gi] = b;
}
