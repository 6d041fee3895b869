// gguf_super.wgsl — the double quantization of the K-quants' sub-block scales and mins per
// super-block (src/qmath/gguf/search.ts makeQpQuants, doubleQuant, doubleQuantSym; quantize.ts
// searchKAsym / searchKSym after the group searches), one thread per super-block.
//
// Layout: par is gguf_search.wgsl's output, 3 floats per group (scale, wmin, Σ importance), SGS
// consecutive groups per super-block; each group's scale and wmin are replaced in place by their
// double-quantized values d·L. sup gets 2 floats per super-block: d (of the scales) and dmin (of the
// mins; 0 for Q3_K/Q6_K). grid holds make_qp_quants' candidate divisors nmax + 0.1·is (is = −4..4,
// is ≠ 0), from the host.
// Tiling: none (16 or 8 values per thread, sums in torch's order).
// Error bound: float32 in the host's order (gguf_math.wgsl): equal to the host bit for bit; measured
// on llvmpipe: 0 differing blocks (tests/webgpu_gguf_test.ts).

@group(0) @binding(1) var<storage, read_write> epar: array<f32>;
@group(0) @binding(2) var<storage, read_write> esup: array<f32>;
@group(0) @binding(3) var<storage, read> egrid: array<f32>;

// Levels of the super-block codes: 2^SUPER_BITS − 1 (unsigned) or 2^(SUPER_BITS−1) (signed).
const SMAXQ: f32 = f32((1u << SUPER_BITS) - 1u);
const SNMAX: f32 = f32(1u << (SUPER_BITS - 1u));

fn lane_sum_s(t: ptr<function, array<f32, SGS>>) -> f32 {
  var s = 0.0;
  // @unroll
  for (var l = 0u; l < 8u; l++) {
    var lane = (*t)[l];
    // @unroll
    for (var j = 1u; j < SGS / 8u; j++) {
      lane = fadd(lane, (*t)[l + 8u * j]);
    }
    s = fadd(s, lane);
  }
  return s;
}

// Σ qw·(data − s·l)² with l = round(is·data), clamped above at SMAXQ when `clip`.
fn qp_mse(data: ptr<function, array<f32, SGS>>, qw: ptr<function, array<f32, SGS>>, s: f32, is: f32, clip: bool) -> f32 {
  var t: array<f32, SGS>;
  // @unroll
  for (var i = 0u; i < SGS; i++) {
    var l = round(fmul(is, (*data)[i]));
    if (clip) { l = min(l, SMAXQ); }
    let d = fsub((*data)[i], fmul(s, l));
    t[i] = fmul(fmul((*qw)[i], d), d);
  }
  return lane_sum_s(&t);
}

// make_qp_quants: d returned, the levels L (Int16Array values) written to `L`.
fn make_qp(data: ptr<function, array<f32, SGS>>, qw: ptr<function, array<f32, SGS>>, L: ptr<function, array<f32, SGS>>) -> f32 {
  var gmax = -f32_inf();
  // @unroll
  for (var i = 0u; i < SGS; i++) {
    gmax = select(gmax, (*data)[i], (*data)[i] > gmax);
  }
  let scale0 = div_rn(gmax, SMAXQ);
  var iscale = recip(scale0);
  var best = qp_mse(data, qw, scale0, iscale, false);
  for (var j = 0u; j < 8u; j++) {
    let s = div_rn(gmax, egrid[j]);
    let iss = recip(s);
    let e = qp_mse(data, qw, s, iss, true);
    if (e < best) {
      best = e;
      iscale = iss;
    }
  }
  var t: array<f32, SGS>;
  var u: array<f32, SGS>;
  // @unroll
  for (var i = 0u; i < SGS; i++) {
    (*L)[i] = f32(to_i16(min(round(fmul(iscale, (*data)[i])), SMAXQ)));
    t[i] = fmul(fmul((*qw)[i], (*data)[i]), (*L)[i]);
    u[i] = fmul(fmul((*qw)[i], (*L)[i]), (*L)[i]);
  }
  let sumlx = lane_sum_s(&t);
  let suml2 = lane_sum_s(&u);
  return select(div_rn(gmax, SMAXQ), div_rn(sumlx, suml2), suml2 > 0.0);
}

// double_quant_tensor: d = max/maxq, L = min(round(x·maxq/max), maxq).
fn double_quant(data: ptr<function, array<f32, SGS>>, L: ptr<function, array<f32, SGS>>) -> f32 {
  var wmax = 0.0;
  // @unroll
  for (var i = 0u; i < SGS; i++) {
    wmax = select(wmax, (*data)[i], (*data)[i] > wmax);
  }
  let inv = max(fmul(SMAXQ, recip(wmax)), 0.0);
  // @unroll
  for (var i = 0u; i < SGS; i++) {
    (*L)[i] = f32(to_i16(min(round(fmul((*data)[i], inv)), SMAXQ)));
  }
  return div_rn(wmax, SMAXQ);
}

// Q2_K, Q4_K, Q5_K: scales and mins double-quantized on SUPER_BITS bits (make_qp_quants with an
// imatrix, plain double_quant_tensor without).
@compute @workgroup_size(WG)
fn gg_super_asym(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = group_index(wid, nwg) * WG + lid;
  if (s >= P.count) { return; }
  var sc: array<f32, SGS>;
  var mn: array<f32, SGS>;
  var qw: array<f32, SGS>;
  // @unroll
  for (var j = 0u; j < SGS; j++) {
    let at = P.par_base + 3u * (s * SGS + j);
    sc[j] = epar[at];
    let m = epar[at + 1u];
    // The mins are flushed to 0 below 1e-30 on the no-imatrix branch only (as AutoRound has it).
    mn[j] = select(m, 0.0, !IMATRIX && abs(m) < r30());
    qw[j] = epar[at + 2u];
  }
  var ls: array<f32, SGS>;
  var lm: array<f32, SGS>;
  var d = 0.0;
  var dm = 0.0;
  if (IMATRIX) {
    d = make_qp(&sc, &qw, &ls);
    dm = make_qp(&mn, &qw, &lm);
  } else {
    d = double_quant(&sc, &ls);
    dm = double_quant(&mn, &lm);
  }
  // @unroll
  for (var j = 0u; j < SGS; j++) {
    let at = P.par_base + 3u * (s * SGS + j);
    epar[at] = fmul(d, ls[j]);
    epar[at + 1u] = fmul(dm, lm[j]);
  }
  esup[P.sup_base + 2u * s] = d;
  esup[P.sup_base + 2u * s + 1u] = dm;
}

// Q3_K, Q6_K: double_quant_tensor_sym_rtn of the 16 scales on SUPER_BITS signed bits.
@compute @workgroup_size(WG)
fn gg_super_sym(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = group_index(wid, nwg) * WG + lid;
  if (s >= P.count) { return; }
  var m = 0.0;
  var a = -1.0;
  // @unroll
  for (var j = 0u; j < SGS; j++) {
    let v = epar[P.par_base + 3u * (s * SGS + j)];
    if (abs(v) > a) {
      a = abs(v);
      m = v;
    }
  }
  let d = fmul(m, -1.0 / SNMAX);
  let inv = recip(d);
  // @unroll
  for (var j = 0u; j < SGS; j++) {
    let at = P.par_base + 3u * (s * SGS + j);
    let l = clamp(round(fmul(epar[at], inv)), -SNMAX, SNMAX - 1.0);
    epar[at] = fmul(d, l);
  }
  esup[P.sup_base + 2u * s] = d;
  esup[P.sup_base + 2u * s + 1u] = 0.0;
}
