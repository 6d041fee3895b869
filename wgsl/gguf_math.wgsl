// gguf_math.wgsl — float32 arithmetic as torch does it on a CPU, for the GGUF searches and packers
// (gguf_search.wgsl, gguf_super.wgsl, gguf_pack.wgsl; this file is prepended to each).
//
// Layout: none of its own; the uniform `P` below is shared by the three GGUF kernel files. The
// dispatcher (src/backend/webgpu/gguf.ts) writes the type's constants first (GS group size, SGS
// groups per super-block, BITS, TYPE, and the mode flags).
// Exactness: the host reference (src/qmath/gguf/torch_f32.ts) rounds every operation to float32 in
// torch's order. Here every + − × goes through `opaque` (XOR with a uniform that is always 0), so no
// shader compiler can fuse a product into an FMA or apply inexact algebra (Mesa's NIR rewrites
// (a + b) − a to b); WGSL's `/` and `sqrt` are only 2.5 ulp accurate, so `div_rn` divides the
// integer mantissas and `sqrt_rn` corrects the native root from exact squares. `round` is
// half-to-even like torch.round. Row sums follow torch's CPU kernel (8 lanes, element i in lane
// i mod 8, lanes added left to right): `lane_sum_*`. Measured on llvmpipe: every code, scale and min
// equal to the host's (tests/webgpu_gguf_test.ts). Subnormal inputs are outside the guarantee (a GPU
// may flush them).

struct GgufUniform {
  zero: u32, count: u32, k: u32, col0: u32,
  w_base: u32, im_base: u32, par_base: u32, sup_base: u32,
  out_base: u32, out_bytes: u32, ncand: u32, blk0: u32,
}
@group(0) @binding(0) var<uniform> P: GgufUniform;

// x, hidden from the optimizer (see the file comment).
fn opaque(x: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) ^ P.zero);
}
fn fmul(a: f32, b: f32) -> f32 {
  return opaque(a * b);
}
fn fadd(a: f32, b: f32) -> f32 {
  return opaque(a + b);
}
fn fsub(a: f32, b: f32) -> f32 {
  return opaque(a - b);
}

// Smallest f32 ≥ 1e-30 (0x0da24260): |x| ≥ 1e-30, |x| < 1e-30 and x ≤ 1e-30 of the host's float64
// comparisons are |x| ≥ R30, |x| < R30 and x < R30 on float32 values.
fn r30() -> f32 {
  return bitcast<f32>(0x0da24260u);
}
// float32(1e-8), AutoRound's scale threshold for float32 scales.
fn thr8() -> f32 {
  return bitcast<f32>(0x322bcc77u);
}
fn is_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}
// Normal and finite (exponent field 1..254).
fn is_normal(x: f32) -> bool {
  let e = (bitcast<u32>(x) >> 23u) & 0xffu;
  return e != 0u && e != 255u;
}

// a / b rounded to nearest even: long division of the 24-bit mantissas (25 quotient bits and a
// sticky remainder). Zero, subnormal, infinite or NaN operands, and quotients outside the normal
// range, take the native quotient.
fn div_rn(a: f32, b: f32) -> f32 {
  let q0 = opaque(a / b);
  if (!is_normal(a) || !is_normal(b) || !is_normal(q0)) { return q0; }
  let ua = bitcast<u32>(a);
  let ub = bitcast<u32>(b);
  var ma = (ua & 0x7fffffu) | 0x800000u;
  let mb = (ub & 0x7fffffu) | 0x800000u;
  var e = i32((ua >> 23u) & 0xffu) - i32((ub >> 23u) & 0xffu);
  if (ma < mb) {
    ma = ma << 1u;
    e -= 1;
  }
  var rem = ma;
  var qm = 0u;
  for (var i = 0u; i < 25u; i++) {
    qm = qm << 1u;
    if (rem >= mb) {
      rem -= mb;
      qm |= 1u;
    }
    rem = rem << 1u;
  }
  var m = qm >> 1u;
  if ((qm & 1u) == 1u && (rem != 0u || (m & 1u) == 1u)) { m += 1u; }
  if (m == 0x1000000u) {
    m = 0x800000u;
    e += 1;
  }
  let ex = e + 127;
  if (ex <= 0 || ex >= 255) { return q0; }
  return bitcast<f32>(((ua ^ ub) & 0x80000000u) | (u32(ex) << 23u) | (m & 0x7fffffu));
}

// two_prod(a, b): the exact product, from two_prod.wgsl (appended by kernels.ts).

// sqrt(x) rounded to nearest: the native root or a neighbour, whichever square is closest to x
// (a square root never lies exactly between two floats).
fn sqrt_rn(x: f32) -> f32 {
  let s = opaque(sqrt(x));
  if (!is_normal(x) || x < 0.0 || !is_normal(s)) { return s; }
  var best = s;
  var err = sq_residual(s, x);
  let bits = bitcast<u32>(s);
  for (var d = 0u; d < 2u; d++) {
    let c = bitcast<f32>(select(bits + 1u, bits - 1u, d == 1u));
    let r = sq_residual(c, x);
    if (r < err) {
      err = r;
      best = c;
    }
  }
  return best;
}
// |c² − x|, from the exact square (x − p is exact for p near x).
fn sq_residual(c: f32, x: f32) -> f32 {
  let p = two_prod(c, c);
  return abs(fsub(fsub(x, p.x), p.y));
}

// auto_round get_reciprocal: 1/x for |x| ≥ 1e-30, else 0 (NaN too).
fn recip(x: f32) -> f32 {
  return select(0.0, div_rn(1.0, x), abs(x) >= r30());
}

// a + b = s + e exactly (Knuth's two-sum).
fn two_sum(a: f32, b: f32) -> vec2<f32> {
  let s = fadd(a, b);
  let bb = fsub(s, a);
  return vec2<f32>(s, fadd(fsub(a, fsub(s, bb)), fsub(b, bb)));
}

// floor(a + b) of the exact sum (e only matters when s is an integer), for |a + b| < 2^23.
fn floor_sum(a: f32, b: f32) -> f32 {
  let p = two_sum(a, b);
  let f = floor(p.x);
  return select(f, f - 1.0, f == p.x && p.y < 0.0);
}

// floor(p.x + p.y + h) of the exact sum (p an exact product pair, h a small half-integer), as
// float64 computes trunc(x·id + h) of packing.py for a non-negative result: V = c.x + c.y + b.y with
// |b.y| far below ulp(c.x), so only an integral c.x needs the sign of the rest.
fn floor_prod_plus(p: vec2<f32>, h: f32) -> f32 {
  let a = two_sum(p.x, h);
  let b = two_sum(a.y, p.y);
  let c = two_sum(a.x, b.x);
  let f = floor(c.x);
  return select(f, f - 1.0, f == c.x && fadd(c.y, b.y) < 0.0);
}

// round-half-even(a + b) of the exact sum, for |a + b| < 2^22: |e| ≤ ulp(s)/2 cannot carry s across
// a half-integer it does not sit on; on one, e decides (away from n when it points the way s − n does).
fn round_sum(a: f32, b: f32) -> f32 {
  let p = two_sum(a, b);
  let n = round(p.x);
  let d = fsub(p.x, n);
  if (p.y == 0.0 || abs(d) != 0.5) { return n; }
  return select(n, n + sign(d), sign(d) == sign(p.y));
}

// JavaScript's ToInt16 (an Int16Array store) of an integral float: NaN and ±∞ give 0, others wrap.
fn to_i16(v: f32) -> i32 {
  if (!is_finite(v)) { return 0; }
  let a = abs(v);
  var m = 0u;
  if (a < 2147483648.0) {
    m = u32(a);
  } else {
    let u = bitcast<u32>(a);
    let sh = i32((u >> 23u) & 0xffu) - 150;
    if (sh < 16) { m = ((u & 0x7fffffu) | 0x800000u) << u32(sh); }
  }
  m = m & 0xffffu;
  if (v < 0.0) { m = (0x10000u - m) & 0xffffu; }
  return select(i32(m), i32(m) - 65536, m >= 32768u);
}

// f16 bits of x (round to nearest even, overflow to ±∞, NaN to 0x7e00), as Float16Array stores it.
fn f16_bits(x: f32) -> u32 {
  let sgn = (bitcast<u32>(x) >> 16u) & 0x8000u;
  if (x != x) { return 0x7e00u; }
  let r = abs(round_f16(x));
  if (r == f32_inf()) { return sgn | 0x7c00u; }
  if (r < 6.103515625e-5) { return sgn | u32(r * 16777216.0); }
  let u = bitcast<u32>(r);
  return sgn | ((((u >> 23u) & 0xffu) - 112u) << 10u) | ((u >> 13u) & 0x3ffu);
}

// The signed value of the largest magnitude (the first on ties), as torch.argmax picks it.
fn signed_abs_max_g(x: ptr<function, array<f32, GS>>) -> f32 {
  var m = 0.0;
  var a = -1.0;
  // @unroll
  for (var i = 0u; i < GS; i++) {
    let v = (*x)[i];
    if (abs(v) > a) {
      a = abs(v);
      m = v;
    }
  }
  return m;
}

// torch.sum of GS (16 or 32) floats: lanes ((t[l] + t[l+8]) + t[l+16]) + t[l+24], added left to right.
fn lane_sum_g(t: ptr<function, array<f32, GS>>) -> f32 {
  var s = 0.0;
  // @unroll
  for (var l = 0u; l < 8u; l++) {
    var lane = (*t)[l];
    // @unroll
    for (var j = 1u; j < GS / 8u; j++) {
      lane = fadd(lane, (*t)[l + 8u * j]);
    }
    s = fadd(s, lane);
  }
  return s;
}
