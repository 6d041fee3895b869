// float_math.wgsl — float32 helpers of the float-scheme kernels (float_quant.wgsl, act_quant.wgsl):
// exact division, torch's float32 log2 floor/ceil, FP8 E4M3 / FP4 E2M1 rounding, MX quant_element.
//
// Layout: no bindings of its own; the including file declares `P` with a u32 field `zero` that is
// always 0 (see opq). Tiling: none (per-element functions).
// Exactness (why integer arithmetic): WGSL's x / y is only 2.5 ulp accurate and compilers may
// contract a·b + c, while the CPU reference (src/qmath/float_groups.ts) rounds every quotient
// correctly (double quotient of f32 inputs rounded to f32, which equals the correctly rounded f32
// quotient). So quotients are formed by integer long division with round-half-even (div_mant);
// log2 floor/ceil read the exponent bits and decide from the mantissa whether torch's float32 log2
// rounds onto the neighbouring integer; power-of-two scalings use ldexp (exact for normal results).
// Measured: tests/webgpu_float_quant_test.ts compares every output bit with the CPU (max error 0).
// Subnormal scaled values (|x·2^-e| < 2^-126) may be flushed by a GPU; no weight/activation group
// of a real model reaches them.

// x hidden from the optimizer (XOR with a uniform that is always 0), so a·b + c is never fused.
fn opq(x: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) ^ P.zero);
}

// The name two_prod.wgsl uses.
fn opaque(x: f32) -> f32 {
  return opq(x);
}

// a + b = s + e exactly (Knuth's two-sum; opq keeps compilers from simplifying e away).
fn two_sum_f(a: f32, b: f32) -> vec2<f32> {
  let s = opq(a + b);
  let bb = opq(s - a);
  let t = opq(s - bb);
  return vec2<f32>(s, (a - t) + (b - bb));
}

// Compensated sums (hi, lo) for the gradient reductions: a long f32 sum of terms that cancel (dβ of
// an FP8 per-tensor scale, dActMaxScale) keeps ~1 ulp of the result instead of ~√n·ulp·Σ|terms|.
fn acc_add(acc: vec2<f32>, x: f32) -> vec2<f32> {
  let s = two_sum_f(acc.x, x);
  return vec2<f32>(s.x, acc.y + s.y);
}
fn acc_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let s = two_sum_f(a.x, b.x);
  return vec2<f32>(s.x, (a.y + b.y) + s.y);
}

// ---- INT8 scale-gradient pieces: near-f64 sums, so their f16 rounding matches the host's --------

// (d·x)/s as a pair accurate to ~2^-46 relative: exact product, quotient, exact-remainder correction.
fn prod_div(d: f32, x: f32, s: f32) -> vec2<f32> {
  let p = two_prod(d, x);
  let q = div_rn(p.x, s);
  let t = two_prod(q, s);
  return vec2<f32>(q, (((p.x - t.x) - t.y) + p.y) / s);
}

// acc + x for pairs (compensated).
fn acc_pair(acc: vec2<f32>, x: vec2<f32>) -> vec2<f32> {
  let s = two_sum_f(acc.x, x.x);
  return vec2<f32>(s.x, (acc.y + x.y) + s.y);
}

// torch's fp16 scale gradient from the two pieces (through s·q and through w/s): each rounded to
// f16, then their sum rounded again (int_quant.ts fakeQuantizeBackward: r(r(gP) + r(gQ))).
fn f16_pieces(gp: vec2<f32>, gq: vec2<f32>) -> f32 {
  let a = two_sum_f(gp.x, gp.y);
  let b = two_sum_f(gq.x, gq.y);
  let s = two_sum_f(round_f16_pair(a.x, a.y), round_f16_pair(b.x, b.y));
  return round_f16_pair(s.x, s.y);
}

// |x| = m · 2^e with m an integer below 2^24 (x finite, nonzero).
fn decompose(x: f32) -> vec2<i32> {
  let u = bitcast<u32>(x) & 0x7fffffffu;
  let be = i32(u >> 23u);
  let f = u & 0x7fffffu;
  if (be == 0) { return vec2<i32>(i32(f), -149); }
  return vec2<i32>(i32(f | 0x800000u), be - 150);
}

// Correctly rounded (ties to even) f32 of ±(na / nb)·2^e for integers 0 < na, nb < 2^28.
fn div_mant(na: u32, nb: u32, e0: i32, neg: bool) -> f32 {
  var a = na;
  var b = nb;
  var e = e0;
  let la = 31 - i32(countLeadingZeros(a));
  let lb = 31 - i32(countLeadingZeros(b));
  if (la > lb) { b = b << u32(la - lb); e += la - lb; } else { a = a << u32(lb - la); e -= lb - la; }
  if (a < b) { a = a << 1u; e -= 1; }
  // a / b ∈ [1, 2): 25 quotient bits (24 of the result and the rounding bit), the rest as sticky.
  var q = 0u;
  var r = a;
  for (var i = 0; i < 25; i++) {
    q = q << 1u;
    if (r >= b) { r -= b; q |= 1u; }
    r = r << 1u;
  }
  let sign = select(0u, 0x80000000u, neg);
  if (e > 127) { return bitcast<f32>(sign | 0x7f800000u); }
  let s = select(1, -(e + 125), e < -126); // bits dropped: 1, more for a subnormal result
  if (s > 25) { return bitcast<f32>(sign); }
  var mant = q >> u32(s);
  let rb = (q >> u32(s - 1)) & 1u;
  let sticky = (q & ((1u << u32(s - 1)) - 1u)) != 0u || r != 0u;
  if (rb == 1u && (sticky || (mant & 1u) == 1u)) { mant += 1u; }
  if (e < -126) { return bitcast<f32>(sign | mant); }
  // mant carries the implicit bit (2^23), which adds one to the exponent field; a carry to 2^24 too.
  return bitcast<f32>(sign | ((u32(e + 126) << 23u) + mant));
}

// a / b rounded to nearest even (b ≠ 0), as f32(a / b) on the host.
fn div_rn(a: f32, b: f32) -> f32 {
  let neg = (bitcast<u32>(a) ^ bitcast<u32>(b)) >= 0x80000000u;
  if (a == 0.0) { return bitcast<f32>(select(0u, 0x80000000u, neg)); }
  let da = decompose(a);
  let db = decompose(b);
  return div_mant(u32(da.x), u32(db.x), da.y - db.y, neg);
}

// Whether torch's float32 log2 of a value at distance j ulps (of 2^lm units) from the integer k,
// on the side away from the binade of exponent eb, rounds onto k: j·2^-lm / ln 2 < half an ulp of
// the result (2^(eb−24)). ln 2 · 2^n is never within 1e-6 of an integer for the n that occur.
fn log2_snaps(j: u32, lm: i32, eb: i32) -> bool {
  return f32(j) < ldexp(0.6931472, eb + lm - 24);
}

// Binade exponent of a float32 next to the integer |k| on the side towards zero (|k| ≥ 1).
fn binade_below(k: i32) -> i32 {
  let a = abs(k);
  if (a == 1) { return -1; }
  return 31 - i32(countLeadingZeros(u32(a - 1)));
}

// Binade exponent of a float32 next to the integer |k| on the side away from zero (|k| ≥ 1).
fn binade_above(k: i32) -> i32 {
  return 31 - i32(countLeadingZeros(u32(abs(k))));
}

// floor(fl32(log2 x)) for x > 0, as torch computes it: the exact floor E, or E + 1 where x lies so
// close below 2^(E+1) that the float32 log2 rounds up onto that integer.
fn floor_log2f(x: f32) -> i32 {
  let d = decompose(x);
  let m = u32(d.x);
  let lm = 31 - i32(countLeadingZeros(m));
  let e = d.y + lm;
  let k = e + 1;
  if (k == 0) { return e; }
  let j = (1u << u32(lm + 1)) - m;
  // k > 0: the result lies just below k (binade towards zero); k < 0: just beyond |k|.
  let eb = select(binade_above(k), binade_below(k), k > 0);
  return select(e, k, log2_snaps(j, lm + 1, eb));
}

// ceil(fl32(log2 x)) for x > 0: E for a power of two or where the float32 log2 rounds down onto E.
fn ceil_log2f(x: f32) -> i32 {
  let d = decompose(x);
  let m = u32(d.x);
  let lm = 31 - i32(countLeadingZeros(m));
  let e = d.y + lm;
  let j = m - (1u << u32(lm));
  if (j == 0u || e == 0) { return select(e + 1, e, j == 0u); }
  let eb = select(binade_below(e), binade_above(e), e > 0);
  return select(e + 1, e, log2_snaps(j, lm, eb));
}

// |q| with the sign bit of x (Math.sign(x)·q keeps −0 for a negative x).
fn with_sign(q: f32, x: f32) -> f32 {
  return bitcast<f32>((bitcast<u32>(q) & 0x7fffffffu) | (bitcast<u32>(x) & 0x80000000u));
}

// float8_e4m3fn nearest x (ties to even; |x| ≤ 448): 3 mantissa bits, subnormal step 2^-9.
fn round_e4m3(x: f32) -> f32 {
  if (x == 0.0) { return x; }
  let a = abs(x);
  let d = decompose(a);
  let e = max(d.y + 31 - i32(countLeadingZeros(u32(d.x))), -6);
  return with_sign(ldexp(round(ldexp(a, 3 - e)), e - 3), x);
}

// nvfp.py cast_to_fp4: round(2|x|)/2 below 2, round(|x|) below 4, else 2·round(|x|/2), max 6.
fn cast_fp4(x: f32) -> f32 {
  let a = abs(x);
  var q = 2.0 * round(a * 0.5);
  if (a < 2.0) { q = round(a * 2.0) * 0.5; } else if (a < 4.0) { q = round(a); }
  return with_sign(min(q, 6.0), x);
}

// mxfp.py quant_element (mantissa_rounding "even") for format (ebits, mbits, max_norm).
fn quant_element(x: f32, ebits: u32, mbits: u32, max_norm: f32) -> f32 {
  var sh = i32(mbits) - 2; // scale = 2^sh into the integer grid
  if (ebits != 0u) {
    let min_exp = 2 - (1 << (ebits - 1u));
    sh -= max(floor_log2f(select(abs(x), 1.0, x == 0.0)), min_exp);
  }
  let t = ldexp(x, sh);
  let a = abs(t);
  let d = a - 0.5;
  // (|t| − 0.5) mod 2 == 0: an even integer (the tie of floor(|t| + 0.5) goes down to even).
  let tie = select(0.0, 1.0, d == floor(d) && fract(d * 0.5) == 0.0);
  let r = with_sign(floor(a + 0.5) - tie, t);
  return clamp(ldexp(r, -sh), -max_norm, max_norm);
}

// Correctly rounded g·q/t (the MX element gradient dOut·scale·(1 + (q − t)/t) = dOut·q/t before
// the power-of-two scale): q lies on an element grid of at most 4 significant bits, so dOut·q is
// an exact integer below 2^28 and one long division rounds it once, as the host's f64 does.
fn mul_div(g: f32, q: f32, t: f32) -> f32 {
  if (g == 0.0) { return g; }
  let dg = decompose(g);
  let dq = decompose(q);
  let dt = decompose(t);
  let qm = u32(dq.x) >> countTrailingZeros(u32(dq.x));
  let qe = dq.y + i32(countTrailingZeros(u32(dq.x)));
  let neg = ((bitcast<u32>(g) ^ bitcast<u32>(q) ^ bitcast<u32>(t)) & 0x80000000u) != 0u;
  return div_mant(u32(dg.x) * qm, u32(dt.x), dg.y + qe - dt.y, neg);
}

// Round the exact value h + l (|l| ≤ half an f32 ulp of h) to f16 once: round_f16(h) unless h lies
// exactly halfway between two f16 values, where l decides (the host rounds the f64 value once).
fn round_f16_pair(h: f32, l: f32) -> f32 {
  let a = abs(h);
  var mid = false;
  var toward = 0.0;
  if (a < 6.103515625e-5) {
    let q = ldexp(a, 24);
    mid = fract(q) == 0.5;
    toward = ldexp(floor(q), -24);
  } else {
    let u = bitcast<u32>(a);
    mid = (u & 0x1fffu) == 0x1000u;
    toward = bitcast<f32>(u & 0xffffe000u);
  }
  if (!mid || l == 0.0) { return round_f16(h); }
  let away = 2.0 * a - toward;
  return with_sign(select(toward, away, (l > 0.0) == (h > 0.0)), h);
}

// ---- one group's scale (float_groups.ts mxScale / nvScale / fp8Scale) ---------------------------
// The including file's `P` has: kind (0 MX, 1 NV, 2 FP8), ebits, mbits, emax, max_norm, rceil,
// gs, rgs = fl32(1/gs) (read through the file's global_scale()), min_scale (FP8's 1/229376) and fixed (a stored FP8 scale; 0 = none).

const SIXTH: f32 = 0.16666667163372040; // fl32(1/6)

struct Ctx {
  vec: f32,
  e: i32,     // MX shared exponent
  scale: f32, // FP8 scale
  os: f32,    // NV output scale and its reciprocal
  ro: f32,
  p: f32,
  stored: f32, // what a checkpoint stores: MX e, NV s8, FP8 scale
  live: bool,  // the scale depends on vec (clamps inactive)
}

fn ctx_of(vec: f32) -> Ctx {
  var c = Ctx(vec, 0, 0.0, 0.0, 0.0, 0.0, 0.0, false);
  if (P.kind == 0u) {
    var e0 = 1 - i32(P.emax);
    if (P.rceil != 0u) { e0 = 1; }
    if (vec != 0.0) {
      if (P.rceil != 0u) { e0 = ceil_log2f(div_rn(vec, P.max_norm)); } else { e0 = floor_log2f(vec) - i32(P.emax); }
    }
    c.e = clamp(e0, -127, 127);
    c.stored = f32(c.e);
    c.live = vec != 0.0 && e0 >= -127 && e0 <= 127;
  } else if (P.kind == 1u) {
    let gs = global_scale();
    let s = opq(gs.x * opq(vec * SIXTH));
    let s8 = round_e4m3(clamp(s, -448.0, 448.0));
    c.p = opq(s8 * gs.y);
    if (c.p != 0.0) { c.os = div_rn(1.0, c.p); }
    if (c.os != 0.0) { c.ro = div_rn(1.0, c.os); }
    c.stored = s8;
    c.live = s >= -448.0 && s <= 448.0;
  } else if (P.fixed != 0.0) {
    c.scale = P.fixed;
    c.vec = opq(P.fixed * 448.0);
    c.stored = c.scale;
    c.live = true;
  } else {
    let raw = div_rn(vec, 448.0);
    c.scale = max(raw, P.min_scale);
    c.stored = c.scale;
    c.live = raw >= P.min_scale;
  }
  return c;
}

// Fake quant of one element with offset v: (element on the grid, dequantized value).
fn elem(c: Ctx, x: f32, v: f32) -> vec2<f32> {
  if (P.kind == 0u) {
    let t = clamp(opq(ldexp(x, -c.e)) + v, -P.max_norm, P.max_norm);
    let q = quant_element(t, P.ebits, P.mbits, P.max_norm);
    return vec2<f32>(q, ldexp(q, c.e));
  }
  if (P.kind == 1u) {
    let q = cast_fp4(clamp(opq(x * c.os) + v, -6.0, 6.0));
    return vec2<f32>(q, opq(q * c.ro));
  }
  let y = round_e4m3(clamp(opq(div_rn(x, c.scale)) + v, -448.0, 448.0));
  return vec2<f32>(y, opq(y * c.scale));
}

// Backward of elem for dOut: (∂L/∂t — exact, as the host's f32 store — and this element's share
// of ∂L/∂scale (∂L/∂os for NV) as a near-exact pair hi + lo, since its pieces cancel).
fn elem_bwd(c: Ctx, x: f32, v: f32, d: f32) -> vec3<f32> {
  if (P.kind == 0u) {
    let mn = P.max_norm;
    let t1 = opq(ldexp(x, -c.e)) + v;
    let t = clamp(t1, -mn, mn);
    let q = quant_element(t, P.ebits, P.mbits, mn);
    var g = 0.0;
    if (t1 >= -mn && t1 <= mn && t != 0.0) {
      g = ldexp(d, c.e);
      if (P.ebits != 0u && floor_log2f(abs(t)) >= 2 - (1 << (P.ebits - 1u))) {
        g = ldexp(mul_div(d, q, t), c.e);
      }
    }
    // Share d·q − g·x/scale² = d·q − d·grad·t' (t' = x/scale, exact): the two cancel to the rounding
    // residue, so they are formed as pairs (grad = 1, or q/t).
    let dq = two_prod(d, q);
    if (g == 0.0) { return vec3<f32>(g, dq); }
    let tp = ldexp(x, -c.e);
    if (g == ldexp(d, c.e)) { return vec3<f32>(g, acc_pair(dq, -two_prod(d, tp))); }
    let term = acc_pair(prod_div(dq.x, tp, t), vec2<f32>(dq.y * tp / t, 0.0));
    return vec3<f32>(g, acc_pair(dq, -term));
  }
  if (P.kind == 1u) {
    let y1 = opq(x * c.os) + v;
    let y = clamp(y1, -6.0, 6.0);
    let q = cast_fp4(y);
    var g = 0.0;
    if (y1 >= -6.0 && y1 <= 6.0 && y != 0.0) { g = opq(d * c.ro); }
    if (g == 0.0) {
      var s0 = 0.0;
      if (c.os != 0.0) { s0 = -opq(opq(d * q) * c.ro) * c.ro; }
      return vec3<f32>(g, s0, 0.0);
    }
    // −d·q·ro² + d·ro·x = d·ro·(x − q·ro), which cancels like MX's: as pairs.
    let qr = two_prod(q, c.ro);
    let xd = two_sum_f(x, -qr.x);
    let dl = xd.y - qr.y;
    let gr = two_prod(d, c.ro);
    return vec3<f32>(g, acc_pair(two_prod(gr.x, xd.x), vec2<f32>(gr.x * dl + gr.y * xd.x, 0.0)));
  }
  let y1 = opq(div_rn(x, c.scale)) + v;
  let y = round_e4m3(clamp(y1, -448.0, 448.0));
  var g = 0.0;
  if (y1 >= -448.0 && y1 <= 448.0) { g = opq(d * c.scale); }
  // d·y − [in clip]·d·x/scale as a near-exact pair: a static scale's gradient sums these over a
  // whole tensor, where they cancel.
  var s = two_prod(d, y);
  if (g != 0.0) { s = acc_pair(s, -prod_div(d, x, c.scale)); }
  return vec3<f32>(g, s);
}

// ∂L/∂vec from the group's summed ∂L/∂scale (mxScaleGrad / nvScaleGrad / fp8ScaleGrad).
fn vec_grad(c: Ctx, d: f32) -> f32 {
  if (!c.live) { return 0.0; }
  if (P.kind == 0u) { return d * ldexp(1.0, c.e) / c.vec; }
  if (P.kind == 1u) {
    if (c.p == 0.0) { return 0.0; }
    let gs = global_scale();
    return -d * c.os * c.os * gs.y * gs.x * SIXTH;
  }
  return d / 448.0;
}
