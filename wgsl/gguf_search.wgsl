// gguf_search.wgsl — AutoRound's per-group GGUF parameter searches (src/qmath/gguf/search.ts,
// search_sym.ts and quantize.ts searchParams), one thread per group.
//
// Layout: w is the weight [N, K] row-major, cut into groups of GS consecutive weights (K a multiple of
// the block size); the chunk's group g starts at element w_base + g·GS, column (col0 + g·GS) mod K.
// imatrix is f32 [K]; grid holds the search's candidate factors, computed on the host in float64 as
// Python does (src/backend/gguf_plan.ts); par gets 3 floats per group: the scale, the min (K-quants,
// AutoRound's wmin = −min), the zero point (Q4_1/Q5_1) or the export min, and the sum of the
// importance weights (input of the imatrix double quantization).
// Tiling: none — a group's search is sequential (torch's sum order within the group) and holds the
// group in registers (loops over the group are written out, `@unroll`); groups are independent.
// Error bound: float32 operations in the host's order (gguf_math.wgsl), so the parameters equal the
// host's bit for bit; measured on llvmpipe: 0 differing blocks (tests/webgpu_gguf_test.ts).

@group(0) @binding(1) var<storage, read> ew: array<w_t>;
@group(0) @binding(2) var<storage, read> eim: array<f32>;
@group(0) @binding(3) var<storage, read> egrid: array<f32>;
@group(0) @binding(4) var<storage, read_write> epar: array<f32>;

const NMAX: f32 = f32(1u << (BITS - 1u));
const MAXQ: f32 = f32((1u << BITS) - 1u);

fn load_group(g: u32, x: ptr<function, array<f32, GS>>) {
  // @unroll
  for (var i = 0u; i < GS; i++) {
    (*x)[i] = f32(ew[P.w_base + g * GS + i]);
  }
}

fn load_importance(g: u32, qw: ptr<function, array<f32, GS>>) {
  let col = (P.col0 + g * GS) % P.k;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    (*qw)[i] = eim[P.im_base + col + i];
  }
}

// AutoRound's importance without an imatrix for 4 and 5 bits: |x| + sqrt(Σx²/32) (search.ts absPlusRms).
fn abs_plus_rms(x: ptr<function, array<f32, GS>>, out: ptr<function, array<f32, GS>>) {
  var t: array<f32, GS>;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    t[i] = fmul((*x)[i], (*x)[i]);
  }
  let av = sqrt_rn(div_rn(lane_sum_g(&t), 32.0));
  // @unroll
  for (var i = 0u; i < GS; i++) {
    (*out)[i] = fadd(abs((*x)[i]), av);
  }
}

// _imatrix_handle_zero on one group (search.ts handleZeroImportance).
fn handle_zero(qw: ptr<function, array<f32, GS>>, x: ptr<function, array<f32, GS>>, half: u32) {
  var zeros = 0u;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    zeros += select(0u, 1u, (*qw)[i] < r30());
  }
  if (zeros == 0u) { return; }
  if (zeros > half) {
    if (BITS <= 3u) {
      // @unroll
      for (var i = 0u; i < GS; i++) {
        (*qw)[i] = abs((*x)[i]);
      }
    } else {
      abs_plus_rms(x, qw);
    }
    return;
  }
  let mean = select(div_rn(lane_sum_g(qw), f32(GS - zeros)), 0.0, zeros == GS);
  // @unroll
  for (var i = 0u; i < GS; i++) {
    (*qw)[i] = select((*qw)[i], mean, (*qw)[i] == 0.0);
  }
}

// ---- Q4_0, Q5_0, Q8_0, Q4_1, Q5_1 -------------------------------------------------------------------

// Σ qw·(s·l − x)² of search_scales at inverse scale `is` (search_sym.ts searchScaleSym).
fn sym_loss(x: ptr<function, array<f32, GS>>, qw: ptr<function, array<f32, GS>>, is: f32) -> f32 {
  let s = recip(is);
  var t: array<f32, GS>;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    let l = clamp(round(fmul(is, (*x)[i])), -NMAX, NMAX - 1.0);
    let d = fsub(fmul(s, l), (*x)[i]);
    t[i] = select(fmul(d, d), fmul(fmul(d, d), (*qw)[i]), IMATRIX);
  }
  return lane_sum_g(&t);
}

fn search_scale_sym(x: ptr<function, array<f32, GS>>, qw: ptr<function, array<f32, GS>>) -> f32 {
  let ig = recip(signed_abs_max_g(x));
  var best_is = fmul(-NMAX, ig);
  var best = sym_loss(x, qw, best_is);
  for (var j = 0u; j < P.ncand; j++) {
    let is = fmul(egrid[j], ig);
    let e = sym_loss(x, qw, is);
    if (e < best) {
      best = e;
      best_is = is;
    }
  }
  return recip(best_is);
}

// searchParams for the 32-wide types (and the export rules of pack.ts packWithoutScales with EXPORT).
@compute @workgroup_size(WG)
fn gg_legacy(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  var x: array<f32, GS>;
  load_group(g, &x);
  var lo = 0.0;
  var hi = 0.0;
  if (EXPORT) {
    lo = f32_inf();
    hi = -f32_inf();
  }
  var amax = 0.0;
  var smax = 0.0;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    let v = x[i];
    lo = select(lo, v, v < lo);
    hi = select(hi, v, v > hi);
    if (abs(v) > amax) {
      amax = abs(v);
      smax = v;
    }
  }
  var s = 0.0;
  var z = 0.0;
  if (EXPORT) {
    if (TYPE == 0u || TYPE == 2u) {
      s = fmul(smax, -1.0 / NMAX);
    } else if (TYPE == 4u) {
      s = div_rn(amax, 127.0);
    } else {
      s = div_rn(fsub(hi, lo), MAXQ);
      z = lo;
    }
  } else if (TYPE == 1u || TYPE == 3u) {
    // int_asym_float_zp: scale = (max − min)/maxq ≥ 1e-8, zp = −min/scale (not rounded).
    let r = div_rn(fsub(hi, lo), MAXQ);
    s = select(thr8(), r, r > thr8());
    z = div_rn(-lo, s);
  } else {
    if (OPT_RTN) {
      var qw: array<f32, GS>;
      if (IMATRIX) {
        load_importance(g, &qw);
        if (HAS_ZERO) { handle_zero(&qw, &x, GS / 2u); }
      }
      s = search_scale_sym(&x, &qw);
    } else {
      let a = -lo;
      s = fmul(select(-1.0, 1.0, hi < a) * max(a, hi), 1.0 / NMAX);
    }
    s = select(select(s, thr8(), s < thr8()), select(s, -thr8(), s > -thr8()), s < 0.0);
  }
  epar[P.par_base + 3u * g] = s;
  epar[P.par_base + 3u * g + 1u] = z;
}

// ---- Q2_K, Q4_K, Q5_K ---------------------------------------------------------------------------

// Σ W·|s·q + m − x| (MAD) or Σ W·(s·q + m − x)² (search.ts wlsError).
fn wls_error(x: ptr<function, array<f32, GS>>, w: ptr<function, array<f32, GS>>, s: f32, m: f32) -> f32 {
  let is = recip(s);
  var t: array<f32, GS>;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    let q = clamp(round(fmul(fsub((*x)[i], m), is)), 0.0, MAXQ);
    let d = fsub(fadd(fmul(q, s), m), (*x)[i]);
    t[i] = select(fmul((*w)[i], fmul(d, d)), fmul((*w)[i], abs(d)), MAD);
  }
  return lane_sum_g(&t);
}

// iterative_wls_quant_search_chunk (search.ts iterativeWlsSearch): returns (scale, −min).
fn wls_search(x: ptr<function, array<f32, GS>>, w: ptr<function, array<f32, GS>>) -> vec2<f32> {
  var rmin = f32_inf();
  var rmax = -f32_inf();
  var t: array<f32, GS>;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    let v = (*x)[i];
    rmin = select(rmin, v, v < rmin);
    rmax = select(rmax, v, v > rmax);
    t[i] = fmul((*w)[i], v);
  }
  let sum_w = lane_sum_g(w);
  let sum_x = lane_sum_g(&t);
  var scale = div_rn(fsub(rmax, rmin), MAXQ);
  var best = wls_error(x, w, scale, rmin);
  var u: array<f32, GS>;
  var z: array<f32, GS>;
  for (var step = 0u; step < P.ncand; step++) {
    let is = recip(div_rn(fsub(rmax, rmin), egrid[step]));
    // @unroll
    for (var i = 0u; i < GS; i++) {
      let q = clamp(round(fmul(fsub((*x)[i], rmin), is)), 0.0, MAXQ);
      let tw = fmul(q, (*w)[i]);
      t[i] = tw;
      u[i] = fmul(tw, q);
      z[i] = fmul(tw, (*x)[i]);
    }
    let sl = lane_sum_g(&t);
    let sl2 = lane_sum_g(&u);
    let sxl = lane_sum_g(&z);
    let D = fsub(fmul(sum_w, sl2), fmul(sl, sl));
    // The host keeps a candidate only when D > 0; skipping the rest otherwise is the same.
    if (D > 0.0) {
      var this_scale = div_rn(fsub(fmul(sum_w, sxl), fmul(sum_x, sl)), D);
      var this_min = div_rn(fsub(fmul(sl2, sum_x), fmul(sl, sxl)), D);
      if (this_min > 0.0) {
        this_min = 0.0;
        this_scale = div_rn(sxl, sl2);
      }
      let e = wls_error(x, w, this_scale, this_min);
      if (e < best) {
        best = e;
        scale = this_scale;
        rmin = this_min;
      }
    }
  }
  return vec2<f32>(scale, -rmin);
}

@compute @workgroup_size(WG)
fn gg_kasym(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  var x: array<f32, GS>;
  load_group(g, &x);
  var qw: array<f32, GS>;
  if (IMATRIX) {
    load_importance(g, &qw);
    // _imatrix_handle_zero's default group size: 16 for 2 bits, 32 otherwise.
    if (HAS_ZERO) { handle_zero(&qw, &x, select(16u, 8u, BITS == 2u)); }
  } else if (BITS == 2u) {
    // @unroll
    for (var i = 0u; i < GS; i++) {
      qw[i] = abs(x[i]);
    }
  } else {
    abs_plus_rms(&x, &qw);
  }
  let r = wls_search(&x, &qw);
  epar[P.par_base + 3u * g] = select(r.x, 0.0, abs(r.x) < r30());
  epar[P.par_base + 3u * g + 1u] = r.y;
  epar[P.par_base + 3u * g + 2u] = lane_sum_g(&qw);
}

// ---- Q3_K, Q6_K ------------------------------------------------------------------------------------

// (Σ W·x·l, Σ W·l²) with l = clamp(round(x·is)) (search_sym.ts makeQxQuants `sums`).
fn qx_sums(x: ptr<function, array<f32, GS>>, w: ptr<function, array<f32, GS>>, is: f32) -> vec2<f32> {
  var t: array<f32, GS>;
  var u: array<f32, GS>;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    let l = clamp(round(fmul((*x)[i], is)), -NMAX, NMAX - 1.0);
    t[i] = fmul(fmul((*w)[i], (*x)[i]), l);
    u[i] = fmul(fmul((*w)[i], l), l);
  }
  return vec2<f32>(lane_sum_g(&t), lane_sum_g(&u));
}

// make_qx_quants_chunk, rmse_type 1 (search_sym.ts makeQxQuants).
fn make_qx(x: ptr<function, array<f32, GS>>, w: ptr<function, array<f32, GS>>) -> f32 {
  let gmax = signed_abs_max_g(x);
  let s0 = qx_sums(x, w, fmul(-NMAX, recip(gmax)));
  var scale = fmul(s0.x, recip(s0.y));
  var best = fmul(scale, s0.x);
  // gmax = 0 makes every candidate NaN on the host, which never wins.
  if (gmax == 0.0) { return scale; }
  let ig = div_rn(1.0, gmax);
  for (var j = 0u; j < P.ncand; j++) {
    let s = qx_sums(x, w, fmul(ig, egrid[j]));
    if (s.y > 0.0 && fmul(s.x, s.x) > fmul(best, s.y)) {
      scale = div_rn(s.x, s.y);
      best = fmul(scale, s.x);
    }
  }
  return scale;
}

// make_q3_quants(do_rmse=True) as AutoRound has it (search_sym.ts makeQ3Quants).
fn make_q3(x: ptr<function, array<f32, GS>>) -> f32 {
  let iscale = fmul(-NMAX, recip(signed_abs_max_g(x)));
  var L: array<f32, GS>;
  var w: array<f32, GS>;
  var t: array<f32, GS>;
  var u: array<f32, GS>;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    L[i] = clamp(round(fmul(iscale, (*x)[i])), -NMAX, NMAX - 1.0);
    w[i] = fmul((*x)[i], (*x)[i]);
    t[i] = fmul(fmul(w[i], (*x)[i]), L[i]);
    u[i] = fmul(fmul(w[i], L[i]), L[i]);
  }
  var sumlx = lane_sum_g(&t);
  var suml2 = lane_sum_g(&u);
  for (var round_ = 0u; round_ < 5u; round_++) {
    // @unroll
    for (var i = 0u; i < GS; i++) {
      let wx = fmul(w[i], (*x)[i]);
      var slx = fsub(sumlx, fmul(wx, L[i]));
      var sl2 = fsub(suml2, fmul(fmul(w[i], L[i]), L[i]));
      if (slx > 0.0) {
        let nl = clamp(round(div_rn(fmul((*x)[i], sl2), slx)), -NMAX, NMAX - 1.0);
        if (nl != L[i]) {
          slx = fadd(slx, fmul(wx, nl));
          sl2 = fadd(sl2, fmul(fmul(w[i], nl), nl));
        }
        if (sl2 > 0.0 && fmul(fmul(slx, slx), suml2) > fmul(fmul(sumlx, sumlx), sl2)) { L[i] = nl; }
      }
      sumlx = slx;
      suml2 = sl2;
    }
  }
  return fmul(sumlx, recip(suml2));
}

@compute @workgroup_size(WG)
fn gg_ksym(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  var x: array<f32, GS>;
  load_group(g, &x);
  var s = 0.0;
  if (IMATRIX) {
    var qw: array<f32, GS>;
    load_importance(g, &qw);
    // _imatrix_handle_zero with its default group size 32 on groups of 16.
    if (HAS_ZERO) { handle_zero(&qw, &x, 16u); }
    s = make_qx(&x, &qw);
  } else if (BITS == 3u) {
    s = make_q3(&x);
  } else {
    var w: array<f32, GS>;
    // @unroll
    for (var i = 0u; i < GS; i++) {
      w[i] = fmul(x[i], x[i]);
    }
    s = make_qx(&x, &w);
  }
  epar[P.par_base + 3u * g] = select(s, 0.0, abs(s) < r30());
}
