// act_quant.wgsl — activation fake quant (spec/SCHEMES.md § 8; host reference src/qmath/act_quant.ts)
// and its straight-through backward: MX dynamic per 32 (floor / RCEIL; mx_fp, mx_int), NVFP4 with a
// global scale, FP8 E4M3 static per tensor (actMax·actMaxScale or a stored input scale) and dynamic
// per row / group, INT8 per token (int.py quant_tensor_sym with float16 scales). float_math.wgsl
// (scale context, element math) and two_prod.wgsl are appended by kernels.ts.
//
// Layout: x, x̂, dOut, dx are [rows, K] row-major; groups of g along each row (the last may be
// shorter), per_row = ceil(K/g) of them; `dstat` is [rows·per_row·2] (static FP8: each group's
// ∂L/∂actMaxScale share as an f32 pair hi, lo; 0 for dynamic groups), summed by act_sum. Tiling: act_fwd / act_bwd one thread per group (max
// |x| with its first index as torch.max(dim) returns it, then the elements); act_prep and act_sum
// one 64-thread workgroup each (strided loads, shared-memory tree).
// Bounds (tests/webgpu_float_quant_test.ts, random inputs in f32 / bf16 / f16, MX maxima on the
// float32 log2 edges): x̂ equals the CPU bit for bit, and so does dx for static FP8. For dynamic
// groups dx differs only at each group's argmax (and INT8's argmin), which adds the group's scale
// gradient (a compensated f32 sum of near-exact pair shares here, f64 on the host): measured
// ‖Δ‖/‖ref‖ ≤ 9.4e-7 (NVFP4; its scale chain is f32), ≤ 3e-8 MX / FP8, 0 INT8 (pieces rounded to
// f16 as the host does). dActMaxScale (pair shares, compensated sum) measured ≤ 1.2e-7 relative.
// Asserted 1e-4 everywhere.
// Static actMax and a stored input_scale enter as f32 uniforms (they are f32 values in the pipeline).

struct ActParams {
  rows: u32, k: u32, g: u32, per_row: u32,
  kind: u32, ebits: u32, mbits: u32, emax: u32,
  max_norm: f32, gs: f32, rgs: f32, min_scale: f32,
  x_base: u32, v_base: u32, ms_base: u32, wmin_base: u32,
  wmax_base: u32, out_base: u32, aux_base: u32, d_base: u32,
  zero: u32, rceil: u32, fixed: f32, seg_len: u32,
  has_beta: u32, stat: u32, flags: u32, act_max: f32,
}
@group(0) @binding(0) var<uniform> P: ActParams;
@group(0) @binding(1) var<storage, read> ax: array<x_t>;
// [clamped actMaxScale, actMax] written by act_prep.
@group(0) @binding(2) var<storage, read> apar: array<f32>;
// act_prep: actMaxScale [1] (any tensor when has_beta = 0) in, the pair out.
@group(0) @binding(2) var<storage, read> abeta: array<beta_t>;
@group(0) @binding(3) var<storage, read_write> aprep: array<f32>;
@group(0) @binding(3) var<storage, read_write> aout: array<out_t>;
@group(0) @binding(3) var<storage, read> adout: array<dout_t>;
@group(0) @binding(4) var<storage, read_write> adx: array<dx_t>;
@group(0) @binding(5) var<storage, read_write> adstat: array<f32>;
// act_sum
@group(0) @binding(1) var<storage, read> ssrc: array<f32>;
@group(0) @binding(2) var<storage, read_write> sdst: array<f32>;

struct Grp {
  at: u32,
  len: u32,
  j: u32,  // first index of max |x| (dynamic groups)
  m: f32,  // max |x|, or actMax for a static quantizer
}

fn group_at(t: u32) -> Grp {
  let r = t / P.per_row;
  let c0 = (t % P.per_row) * P.g;
  let at = P.x_base + r * P.k + c0;
  var gr = Grp(at, min(P.g, P.k - c0), at, act_max());
  if (P.stat != 0u) { return gr; }
  gr.m = abs(f32(ax[at]));
  for (var i = at + 1u; i < at + gr.len; i++) {
    let a = abs(f32(ax[i]));
    if (a > gr.m) { gr.m = a; gr.j = i; }
  }
  return gr;
}

const FLAG_RANGE: u32 = 1u;      // actMax = max|x| of this input (rangeFromInput)
const FLAG_ACCUMULATE: u32 = 2u; // act_prep: a later chunk of the input
const FLAG_RANGE_GS: u32 = 4u;   // NVFP4's global scale from that range (no stored one)

fn beta() -> f32 {
  return apar[P.v_base];
}

fn act_max() -> f32 {
  return apar[P.v_base + 1u];
}

// NVFP4's global scale fl32(2688·fl32(1/actMax)) (nvfp.py:119), from the input's range when asked.
fn global_scale() -> vec2<f32> {
  if ((P.flags & FLAG_RANGE_GS) == 0u) { return vec2<f32>(P.gs, P.rgs); }
  let m = act_max();
  if (m == 0.0) { return vec2<f32>(0.0); }
  let gs = opq(2688.0 * div_rn(1.0, m));
  return vec2<f32>(gs, select(div_rn(1.0, gs), 0.0, gs == 0.0));
}

var<workgroup> amax: array<f32, 64>;

// [clamp(actMaxScale, 0, 1) (wrapper.py:306-307) or 1, actMax: max|x| over the chunk of seg_len
// elements (max of the earlier chunks' too when accumulating) or the host's value]. One workgroup.
@compute @workgroup_size(64)
fn act_prep(@builtin(local_invocation_index) lid: u32) {
  var m = 0.0;
  if ((P.flags & FLAG_RANGE) != 0u) {
    for (var i = lid; i < P.seg_len; i += 64u) { m = max(m, abs(f32(ax[P.x_base + i]))); }
  }
  amax[lid] = m;
  workgroupBarrier();
  for (var h = 32u; h > 0u; h = h >> 1u) {
    if (lid < h) { amax[lid] = max(amax[lid], amax[lid + h]); }
    workgroupBarrier();
  }
  if (lid != 0u) { return; }
  aprep[P.d_base] = select(1.0, clamp(f32(abeta[P.v_base]), 0.0, 1.0), P.has_beta != 0u);
  var r = P.act_max;
  if ((P.flags & FLAG_RANGE) != 0u) {
    r = amax[0];
    if ((P.flags & FLAG_ACCUMULATE) != 0u) { r = max(r, aprep[P.d_base + 1u]); }
  }
  aprep[P.d_base + 1u] = r;
}

// NVFP4 takes the group maximum as is (scale_coeff 1); the others multiply it by actMaxScale.
fn act_ctx(m: f32) -> Ctx {
  if (P.kind == 1u) { return ctx_of(m); }
  return ctx_of(opq(m * beta()));
}

// ---- INT8 per token (act_quant.ts int8Row / int8RowBackward; kind 3, bits in mbits) ------------

const F16_THR: f32 = 1.0013580322265625e-5; // Math.f16round(1e-5), quant_tensor_sym's threshold

struct I8 {
  scale: f32,
  live: bool,  // the scale passed the threshold clamp
  sgn: f32,    // −1 when the positive side dominates (its largest value maps onto −2^(b−1))
  share: f32,  // gradient share of the max side: 1, 0.5 at a tie, 0
  jn: u32,
  jx: u32,
  lo: f32,
  hi: f32,
}

// int8Scale: min(min x, 0), max(max x, 0) at their first indices, scale = f16(sign·max(hi·β, −lo)/2^(b−1)).
fn int8_scale(at: u32, len: u32) -> I8 {
  var jn = at;
  var jx = at;
  for (var i = at + 1u; i < at + len; i++) {
    let x = f32(ax[i]);
    if (x < f32(ax[jn])) { jn = i; }
    if (x > f32(ax[jx])) { jx = i; }
  }
  let lo = min(f32(ax[jn]), 0.0);
  let hi = max(f32(ax[jx]), 0.0);
  let mx = two_prod(hi, beta()); // hi·β exactly, as the host's f64 product
  let mn = -lo;
  let less = mx.x < mn || (mx.x == mn && mx.y < 0.0);
  let more = mx.x > mn || (mx.x == mn && mx.y > 0.0);
  var big = mx;
  if (less) { big = vec2<f32>(mn, 0.0); }
  let maxq = f32(1u << (P.mbits - 1u));
  let sgn = select(-1.0, 1.0, less);
  let raw = sgn * round_f16_pair(big.x / maxq, big.y / maxq);
  var r = I8(raw, true, sgn, select(select(0.5, 0.0, less), 1.0, more), jn, jx, lo, hi);
  if (select((raw < F16_THR), (raw > -F16_THR), raw < 0.0)) {
    r.scale = select(F16_THR, -F16_THR, raw < 0.0);
    r.live = false;
  }
  return r;
}

fn int8_fwd(gr: Grp) {
  let c = int8_scale(gr.at, gr.len);
  let maxq = f32(1u << (P.mbits - 1u));
  let o = P.out_base - P.x_base;
  for (var i = gr.at; i < gr.at + gr.len; i++) {
    let q = clamp(round(div_rn(f32(ax[i]), c.scale)), -maxq, maxq - 1.0);
    aout[o + i] = out_cv(opq(c.scale * q));
  }
}

// dx = dOut·[code in range], plus the scale's gradient (its two pieces rounded to f16 as torch's
// fp16 scale does) through max(hi·β, −lo) to the first argmax / argmin.
fn int8_bwd(gr: Grp) {
  let c = int8_scale(gr.at, gr.len);
  let maxq = f32(1u << (P.mbits - 1u));
  let od = P.out_base - P.x_base;
  let ox = P.d_base - P.x_base;
  var gp = vec2<f32>(0.0);
  var gq = vec2<f32>(0.0);
  var dxn = 0.0;
  var dxx = 0.0;
  for (var i = gr.at; i < gr.at + gr.len; i++) {
    let x = f32(ax[i]);
    let d = f32(adout[od + i]);
    let z = round(div_rn(x, c.scale));
    let inr = select(0.0, 1.0, z >= -maxq && z <= maxq - 1.0);
    adx[ox + i] = dx_cv(d * inr);
    if (i == c.jn) { dxn = d * inr; }
    if (i == c.jx) { dxx = d * inr; }
    gp = acc_pair(gp, two_prod(d, clamp(z, -maxq, maxq - 1.0)));
    if (inr != 0.0) { gq = acc_pair(gq, -prod_div(d, x, c.scale)); }
  }
  if (!c.live) { return; }
  let gmax = c.sgn * f16_pieces(gp, gq) / maxq;
  if (c.hi == f32(ax[c.jx])) {
    dxx += gmax * c.share * beta();
    if (c.jn == c.jx) { dxn = dxx; }
    adx[ox + c.jx] = dx_cv(dxx);
  }
  if (c.lo == f32(ax[c.jn])) { adx[ox + c.jn] = dx_cv(dxn - gmax * (1.0 - c.share)); }
}

@compute @workgroup_size(64)
fn act_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let t = group_index(wid, nwg) * 64u + lid;
  if (t >= P.rows * P.per_row) { return; }
  let gr = group_at(t);
  if (P.kind == 3u) {
    int8_fwd(gr);
    return;
  }
  let c = act_ctx(gr.m);
  // + 0 as the host adds v = 0 (turns −0 into +0 before the rounding); opaque so it stays.
  let zero = bitcast<f32>(P.zero);
  let o = P.out_base - P.x_base;
  for (var i = gr.at; i < gr.at + gr.len; i++) { aout[o + i] = out_cv(elem(c, f32(ax[i]), zero).y); }
}

@compute @workgroup_size(64)
fn act_bwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let t = group_index(wid, nwg) * 64u + lid;
  if (t >= P.rows * P.per_row) { return; }
  let gr = group_at(t);
  // Only a static scale has a gradient share; every other group adds 0 (as the host returns).
  adstat[P.aux_base + 2u * t] = 0.0;
  adstat[P.aux_base + 2u * t + 1u] = 0.0;
  if (P.kind == 3u) {
    int8_bwd(gr);
    return;
  }
  let c = act_ctx(gr.m);
  let zero = bitcast<f32>(P.zero);
  let od = P.out_base - P.x_base;
  let ox = P.d_base - P.x_base;
  var ds = vec2<f32>(0.0);
  var gj = 0.0;
  for (var i = gr.at; i < gr.at + gr.len; i++) {
    let x = f32(ax[i]);
    let r = elem_bwd(c, x, zero, f32(adout[od + i]));
    ds = acc_pair(ds, r.yz);
    // Direct path: t = x/scale (x·os for NV); the host stores ∂L/∂t as f32 and then scales it.
    var g = r.x;
    if (P.kind == 0u) { g = ldexp(g, -c.e); } else if (P.kind == 1u) { g = opq(g * c.os); } else { g = div_rn(g, c.scale); }
    adx[ox + i] = dx_cv(g);
    if (i == gr.j) { gj = g; }
  }
  let d = vec_grad(c, ds.x + ds.y);
  if (P.stat != 0u) {
    // Static FP8: share = Σ·(1/448 in the clip)·actMax. The factor k is common to every group, so it
    // is applied as an exact product to the pair: the shares cancel across the tensor without the
    // per-group rounding growing into the total.
    let k = select(0.0, div_rn(act_max(), 448.0), c.live);
    let pr = acc_pair(two_prod(ds.x, k), two_prod(ds.y, k));
    adstat[P.aux_base + 2u * t] = pr.x;
    adstat[P.aux_base + 2u * t + 1u] = pr.y;
  } else if (gr.m > 0.0) {
    // vec = max|x|·β: ∂vec/∂x_j = β·sign(x_j) at the first maximal index.
    let b = select(beta(), 1.0, P.kind == 1u);
    // gj unrounded: the host adds in f32 and rounds to dx's dtype once.
    adx[ox + gr.j] = dx_cv(gj + d * b * sign(f32(ax[gr.j])));
  }
}

var<workgroup> red: array<vec2<f32>, 64>;

// sdst[d_base] = Σ of the seg_len pairs at ssrc[aux_base ..] (one workgroup, compensated).
@compute @workgroup_size(64)
fn act_sum(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2<f32>(0.0);
  for (var i = lid; i < P.seg_len; i += 64u) {
    acc = acc_pair(acc, vec2<f32>(ssrc[P.aux_base + 2u * i], ssrc[P.aux_base + 2u * i + 1u]));
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var h = 32u; h > 0u; h = h >> 1u) {
    if (lid < h) { red[lid] = acc_pair(red[lid], red[lid + h]); }
    workgroupBarrier();
  }
  if (lid == 0u) { sdst[P.d_base] = (red[0].x + red[0].y); }
}
