// int_search.wgsl — the pipeline's per-group statistics of an integer-quantized Linear: AutoRound's
// weight_min/weight_max (src/qmath/int_quant.ts groupMinMax) and the optimized-RTN scale search for
// symmetric int (searchScalesSym with float32 candidates, importance from importanceForWeight).
// Prepended: gguf_math.wgsl (its uniform P and exact float32 helpers).
//
// Layout: w [N, K] row-major, groups of g = P.col0 consecutive columns (the last one of a row may be
// short), P.blk0 groups per row, P.count groups in the chunk (whole rows, starting at w_base);
// imatrix f32 [K]; grid holds each candidate factor −(nmax − step·i) as its float64 bits (4 words:
// the 53-bit mantissa's top 21 and low 32 bits, the biased exponent, the sign); outputs f32 [groups] at par_base (opt_rtn_search, group_minmax's min) and
// im_base (group_minmax's max).
// Tiling: group_minmax one thread per group; opt_rtn_search one workgroup of 64 per group, each
// thread a strided share of the group's columns, partial losses tree-reduced per candidate.
// Error bound: min/max exact. The search's losses are float64 sums on the host; here they are
// float32 pairs (~48 bits, hi + lo) summed in another order, so a candidate can win differently only
// when two losses agree to ~1e-14 relative. Codes and reciprocals are float32 as on the host; each
// candidate float32(float64(factor · 1/max)) is rounded twice exactly as the host does, from the exact
// 77-bit integer product (bf16 weights put such products on float32 midpoints). Measured on llvmpipe: 0 differing scales (tests/webgpu_int_search_test.ts).

@group(0) @binding(1) var<storage, read> sw: array<w_t>;
@group(0) @binding(2) var<storage, read> sim: array<f32>;
@group(0) @binding(3) var<storage, read> sgrid: array<u32>;
@group(0) @binding(4) var<storage, read_write> sout: array<f32>;
@group(0) @binding(2) var<storage, read_write> smin: array<f32>;
@group(0) @binding(3) var<storage, read_write> smax: array<f32>;

const SWG: u32 = 64u;
const SNMAX: f32 = f32(1u << (BITS - 1u));

var<workgroup> red: array<vec2<f32>, SWG>;
var<workgroup> redi: array<u32, SWG>;
var<workgroup> redf: array<f32, SWG>;

@compute @workgroup_size(WG)
fn group_minmax(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let grp = group_index(wid, nwg) * WG + lid;
  if (grp >= P.count) { return; }
  let r = grp / P.blk0;
  let c0 = (grp % P.blk0) * P.col0;
  let c1 = min(c0 + P.col0, P.k);
  var lo = 0.0;
  var hi = 0.0;
  for (var c = c0; c < c1; c++) {
    let x = f32(sw[P.w_base + r * P.k + c]);
    lo = select(lo, x, x < lo);
    hi = select(hi, x, x > hi);
  }
  smin[P.par_base + grp] = lo;
  smax[P.im_base + grp] = hi;
}

// float32(float64(c · x)) for the float64 c of candidate j (grid words 4j..4j+3) and a normal float32
// x: the exact product of the mantissas (53 × 24 bits, in 16-bit columns), rounded to 53 bits and
// then to 24, both to nearest even.
fn mul_f64_f32(j: u32, x: f32) -> f32 {
  if (!is_normal(x)) { return 0.0; }
  let mh = sgrid[4u * j];
  let ml = sgrid[4u * j + 1u];
  let ux = bitcast<u32>(x);
  let mx = (ux & 0x7fffffu) | 0x800000u;
  let a = array<u32, 4>(ml & 0xffffu, ml >> 16u, mh & 0xffffu, mh >> 16u);
  let b0 = mx & 0xffffu;
  let b1 = mx >> 16u;
  var col = array<u32, 6>(0u, 0u, 0u, 0u, 0u, 0u);
  for (var i = 0u; i < 4u; i++) {
    let p = a[i] * b0;
    let q = a[i] * b1;
    col[i] += p & 0xffffu;
    col[i + 1u] += (p >> 16u) + (q & 0xffffu);
    col[i + 2u] += q >> 16u;
  }
  for (var i = 0u; i < 5u; i++) {
    col[i + 1u] += col[i] >> 16u;
    col[i] &= 0xffffu;
  }
  let w0 = col[0] | (col[1] << 16u);
  let w1 = col[2] | (col[3] << 16u);
  let w2 = col[4];
  // The product lies in [2^75, 2^77): keep its top 53 bits (drop d = 23 or 24).
  var top = 75;
  if ((w2 >> 12u) != 0u) { top = 76; }
  let d = u32(top - 52);
  var lo = (w0 >> d) | (w1 << (32u - d));
  var mid = (w1 >> d) | (w2 << (32u - d));
  let guard = (w0 >> (d - 1u)) & 1u;
  let sticky = (w0 & ((1u << (d - 1u)) - 1u)) != 0u;
  if (guard == 1u && (sticky || (lo & 1u) == 1u)) {
    lo += 1u;
    if (lo == 0u) { mid += 1u; }
  }
  if (mid == 0x200000u) {
    mid = 0x100000u;
    top += 1;
  }
  var m = (mid << 3u) | (lo >> 29u);
  if (((lo >> 28u) & 1u) == 1u && ((lo & 0x0fffffffu) != 0u || (m & 1u) == 1u)) { m += 1u; }
  if (m == 0x1000000u) {
    m = 0x800000u;
    top += 1;
  }
  let e = top + i32(sgrid[4u * j + 2u]) - 1023 + i32((ux >> 23u) & 0xffu) - 127 - 75 + 127;
  if (e <= 0 || e >= 255) { return bitcast<f32>(0x7fc00000u); }
  let sgn = (sgrid[4u * j + 3u] << 31u) ^ (ux & 0x80000000u);
  return bitcast<f32>(sgn | (u32(e) << 23u) | (m & 0x7fffffu));
}

// (a.hi + a.lo) + (b.hi + b.lo), renormalized.
fn pair_add(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let s = two_sum(a.x, b.x);
  let t = fadd(s.y, fadd(a.y, b.y));
  let h = fadd(s.x, t);
  return vec2<f32>(h, fsub(t, fsub(h, s.x)));
}

// a · b of two pairs (the lo·lo term dropped).
fn pair_mul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let p = two_prod(a.x, b.x);
  return pair_add(vec2<f32>(p.x, 0.0), vec2<f32>(p.y, fadd(fmul(a.x, b.y), fmul(a.y, b.x))));
}

fn pair_lt(a: vec2<f32>, b: vec2<f32>) -> bool {
  return a.x < b.x || (a.x == b.x && a.y < b.y);
}

// Sum of every thread's pair (workgroup-uniform call).
fn reduce_pair(v: vec2<f32>, lid: u32) -> vec2<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var s = SWG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = pair_add(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let out = red[0];
  workgroupBarrier();
  return out;
}

@compute @workgroup_size(SWG)
fn opt_rtn_search(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let grp = group_index(wid, nwg);
  if (grp >= P.count) { return; }
  let base = P.w_base + (grp / P.blk0) * P.k;
  let c0 = (grp % P.blk0) * P.col0;
  let c1 = min(c0 + P.col0, P.k);
  // Statistics: the signed value of the largest |w| (first on ties), and for the importance the
  // zero count, Σ imatrix and Σ w² (importanceForWeight).
  var best = -1.0;
  var at = c1;
  var zeros = 0u;
  var isum = vec2<f32>(0.0);
  var sq = vec2<f32>(0.0);
  for (var c = c0 + lid; c < c1; c += SWG) {
    let x = f32(sw[base + c]);
    if (abs(x) > best) {
      best = abs(x);
      at = c;
    }
    sq = pair_add(sq, two_prod(x, x));
    if (IMATRIX) {
      zeros += select(0u, 1u, sim[P.im_base + c] < r30());
      isum = pair_add(isum, vec2<f32>(sim[P.im_base + c], 0.0));
    }
  }
  redf[lid] = best;
  redi[lid] = at;
  workgroupBarrier();
  for (var s = SWG / 2u; s > 0u; s >>= 1u) {
    if (lid < s && (redf[lid + s] > redf[lid] || (redf[lid + s] == redf[lid] && redi[lid + s] < redi[lid]))) {
      redf[lid] = redf[lid + s];
      redi[lid] = redi[lid + s];
    }
    workgroupBarrier();
  }
  let gmax = select(0.0, f32(sw[base + min(redi[0], c1 - 1u)]), redi[0] < c1);
  workgroupBarrier();
  redi[lid] = zeros;
  workgroupBarrier();
  for (var s = SWG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redi[lid] += redi[lid + s]; }
    workgroupBarrier();
  }
  let nzero = redi[0];
  workgroupBarrier();
  let isumT = reduce_pair(isum, lid);
  let sqT = reduce_pair(sq, lid);
  let fallback = IMATRIX && nzero > P.col0 / 2u;
  // avX = sqrt(Σw²/32) and the mean of the non-zero entries, as pairs.
  let v32 = vec2<f32>(sqT.x / 32.0, sqT.y / 32.0);
  let ax = sqrt_rn(v32.x);
  let axp = two_prod(ax, ax);
  var avx = vec2<f32>(0.0);
  if (ax > 0.0) { avx = vec2<f32>(ax, div_rn(fadd(fsub(fsub(v32.x, axp.x), axp.y), v32.y), fmul(2.0, ax))); }
  let den = f32(c1 - c0 - nzero);
  let mq = div_rn(isumT.x, den);
  let mp = two_prod(mq, den);
  let mean = vec2<f32>(mq, div_rn(fadd(fsub(fsub(isumT.x, mp.x), mp.y), isumT.y), den));

  let ig = recip(gmax);
  var best_is = fmul(-SNMAX, ig);
  var best_loss = vec2<f32>(0.0);
  for (var j = 0u; j <= P.ncand; j++) {
    var is = best_is;
    if (j > 0u) { is = mul_f64_f32(j - 1u, ig); }
    let sc = recip(is);
    var loss = vec2<f32>(0.0);
    for (var c = c0 + lid; c < c1; c += SWG) {
      let x = f32(sw[base + c]);
      let q = clamp(round(fmul(is, x)), -SNMAX, SNMAX - 1.0);
      let e = two_sum(fmul(sc, q), -x);
      let p = two_prod(e.x, e.x);
      var e2 = vec2<f32>(p.x, fadd(p.y, fmul(fmul(2.0, e.x), e.y)));
      if (IMATRIX) {
        var imp = vec2<f32>(sim[P.im_base + c], 0.0);
        if (fallback) {
          imp = select(pair_add(vec2<f32>(abs(x), 0.0), avx), vec2<f32>(abs(x), 0.0), BITS <= 3u);
        } else if (nzero > 0u && imp.x == 0.0) {
          imp = mean;
        }
        e2 = pair_mul(e2, imp);
      }
      loss = pair_add(loss, e2);
    }
    let total = reduce_pair(loss, lid);
    if (j == 0u || pair_lt(total, best_loss)) {
      best_loss = total;
      best_is = is;
    }
  }
  if (lid == 0u) {
    // Clamped to ±float32(1e-5) (0x3727c5ac), like the host's float64 clamp stored as float32.
    let thr = bitcast<f32>(0x3727c5acu);
    let s = recip(best_is);
    sout[P.par_base + grp] = select(select(s, thr, s < thr), select(s, -thr, s > -thr), s < 0.0);
  }
}
