// fake_quant.wgsl — AutoRound's integer fake-quantizer with straight-through gradients, and export.
//
// Layout: weight w, offsets v, dŴ, Ŵ, dV are [rows, K] row-major; α (minScale), β (maxScale), wMin,
// wMax, initScale, dα, dβ are [rows·G] with G = ceil(K/g) groups per row; `info` is a scratch of 8
// words per group: 0 scale (stored, rounded to the scale dtype), 1 zero point, 2 lo (asym) or the
// divisor of the codes (sym: the scale, or for opt-RTN the unrounded initScale·β as a pair with 4),
// 3 flags, 4 divisor low part, and for the backward 5–7: the two pieces of ∂/∂scale (through the
// product s·q and through the quotient w/s) and Σ∂/∂zp.
// Kernels: fq_groups (one thread per group: scale and zero point), fq_apply (one thread per
// element: Ŵ), fq_codes (one thread per 4 codes of a row, packed into a u32), fq_bwd (64 threads per
// group: dV and the group sums, tree-reduced), fq_bwd_groups (one thread per group: dα, dβ).
// Exactness: the CPU reference (int_quant.ts) forms products, the scale, the zero point and
// w/scale + v in f64 before rounding. Here those quantities are carried as unevaluated f32 pairs
// (hi + lo): products exactly via integer mantissa arithmetic (two_prod; WGSL's fma need not be
// fused — on llvmpipe it is not), sums with two_sum, quotients with one correction step. Scale
// rounding to f16/bf16 and round-half-even to integers are decided on the pair, so ties and near-ties
// resolve as in f64. The fast path rounds w/scale + v in plain f32 when it lies farther than 1e-5
// (relative) from a half-integer — far beyond f32 division error — and uses the pair otherwise.
// Result: integer codes, scales and zero points equal the CPU's bit for bit (tests check every code
// on random inputs and on constructed ties); Ŵ equals scale·q rounded once, as on the CPU. The
// gradient sums are f32 tree reductions; like the reference (which follows torch autograd on a
// 16-bit scale) each piece of the scale gradient is rounded to the scale dtype before it is summed,
// so a piece that lies on a rounding boundary can differ by one f16 ulp: measured relative error of
// dα/dβ ≈ 1e-7 typical, bound asserted 1e-4.

struct QuantParams {
  rows: u32, k: u32, g: u32, groups: u32,
  bits: u32, sym: u32, scale_kind: u32, has_init: u32,
  w_base: u32, v_base: u32, min_base: u32, max_base: u32,
  wmin_base: u32, wmax_base: u32, init_base: u32, info_base: u32,
  out_base: u32, thr: f32, maxq: f32, qlo: f32,
  qhi: f32, d_base: u32, zero: u32, pad1: u32,
}
@group(0) @binding(0) var<uniform> P: QuantParams;
// fq_groups / fq_bwd_groups bindings.
@group(0) @binding(1) var<storage, read> qmin: array<mn_t>;
@group(0) @binding(2) var<storage, read> qmax: array<mx_t>;
@group(0) @binding(3) var<storage, read> qwmin: array<wmn_t>;
@group(0) @binding(4) var<storage, read> qwmax: array<wmx_t>;
@group(0) @binding(5) var<storage, read> qinit: array<init_t>;
@group(0) @binding(6) var<storage, read_write> ginfo: array<u32>;
@group(0) @binding(7) var<storage, read_write> gdmin: array<f32>;
@group(0) @binding(8) var<storage, read_write> gdmax: array<f32>;
// fq_apply / fq_codes / fq_bwd bindings.
@group(0) @binding(1) var<storage, read> ew: array<w_t>;
@group(0) @binding(2) var<storage, read> ev: array<v_t>;
@group(0) @binding(3) var<storage, read_write> einfo: array<u32>;
@group(0) @binding(4) var<storage, read_write> eout: array<out_t>;
@group(0) @binding(4) var<storage, read_write> ecodes: array<u32>;
@group(0) @binding(4) var<storage, read> edwq: array<dwq_t>;
@group(0) @binding(5) var<storage, read_write> edv: array<f32>;

const FLAG_PASSES: u32 = 1u;
const FLAG_SIDE_MIN: u32 = 2u;
const FLAG_SIDE_TIE: u32 = 4u;
const FLAG_NEG: u32 = 8u;

// ---- exact arithmetic on f32 pairs -------------------------------------------------------------

// x, hidden from the optimizer (XOR with a uniform that is always 0). Shader compilers apply
// inexact algebra to float ops — Mesa's NIR rewrites (a + b) − a to b, which turns two-sum's error
// term into 0 — and WGSL has no way to mark an operation exact.
fn opaque(x: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) ^ P.zero);
}

// a + b = s + e exactly (Knuth's two-sum; needs only correctly rounded additions).
fn two_sum(a: f32, b: f32) -> vec2<f32> {
  let s = opaque(a + b);
  let bb = opaque(s - a);
  let t = opaque(s - bb);
  return vec2<f32>(s, (a - t) + (b - bb));
}

// two_prod(a, b): the exact product, from two_prod.wgsl (appended by kernels.ts).

// (x.hi + x.lo) / s as a pair: quotient plus the correction from the exact remainder.
fn div_pair(x: vec2<f32>, s: f32) -> vec2<f32> {
  let q = opaque(x.x / s);
  let p = two_prod(q, s);
  let r = ((x.x - p.x) - p.y) + x.y;
  return vec2<f32>(q, r / s);
}

// w / (d.hi + d.lo) as a pair (the opt-RTN divisor is an exact product, two floats wide).
fn div_by_pair(w: f32, d: vec2<f32>) -> vec2<f32> {
  let q = opaque(w / d.x);
  let p = two_prod(q, d.x);
  let r = ((w - p.x) - p.y) - q * d.y;
  return vec2<f32>(q, r / d.x);
}

fn even_of(a: f32, b: f32) -> f32 {
  return select(b, a, fract(a * 0.5) == 0.0);
}

// Round half to even of the exact value h + l (|l| far below 0.5), like torch.round in f64.
fn round_pair(h: f32, l: f32) -> f32 {
  let n = round(h);
  let a = h - n;
  if (a == 0.5) { return select(n, n + 1.0, l > 0.0); }
  if (a == -0.5) { return select(n, n - 1.0, l < 0.0); }
  if (a > 0.0) {
    let gap = 0.5 - a;
    if (l > gap) { return n + 1.0; }
    if (l == gap) { return even_of(n, n + 1.0); }
  } else if (a < 0.0) {
    let gap = -0.5 - a;
    if (l < gap) { return n - 1.0; }
    if (l == gap) { return even_of(n - 1.0, n); }
  }
  return n;
}

// The scale dtype's rounding of the exact value x.hi + x.lo (0 = f32, 1 = f16, 2 = bf16).
fn round_scale(x: vec2<f32>) -> f32 {
  // A zero product keeps its sign (two-sum would turn −0 + 0 into +0).
  if (x.y == 0.0 && x.x == 0.0) { return x.x; }
  let s = two_sum(x.x, x.y);
  if (P.scale_kind == 0u || s.x == 0.0) { return s.x; }
  let e = frexp(s.x).exp;
  var qe = e - 8;
  if (P.scale_kind == 1u) { qe = max(e - 11, -24); }
  let r = ldexp(round_pair(ldexp(s.x, -qe), ldexp(s.y, -qe)), qe);
  if (P.scale_kind == 1u && abs(r) > 65504.0) { return sign(r) * f32_inf(); }
  return r;
}

// roundHalfEven(w / d + v) as the f64 reference computes it (d = d.hi + d.lo; d.lo/d.hi ≤ 2^-24
// moves w/d far less than the fast path's margin).
fn round_code(w: f32, v: f32, d: vec2<f32>) -> f32 {
  let ws = w / d.x;
  let z = ws + v;
  // A zero divisor (opt-RTN scale with β = 0) sends w to ±∞, which the clamp maps to qlo/qhi.
  if (abs(z) == f32_inf()) { return z; }
  let n = round(z);
  if (abs(abs(z - n) - 0.5) > 1e-5 * max(1.0, max(abs(ws), abs(z)))) { return n; }
  let q = div_by_pair(w, d);
  let zz = two_sum(q.x, v);
  return round_pair(zz.x, zz.y + q.y);
}

fn neg2(x: vec2<f32>) -> vec2<f32> {
  return -x;
}

fn lt2(a: vec2<f32>, b: vec2<f32>) -> bool {
  return a.x < b.x || (a.x == b.x && a.y < b.y);
}

// ---- group scales ---------------------------------------------------------------------------------

fn clamp01(x: f32) -> f32 {
  return select(select(x, 1.0, x > 1.0), 0.0, x < 0.0);
}

@compute @workgroup_size(WG)
fn fq_groups(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let gi = group_index(wid, nwg) * WG + lid;
  if (gi >= P.rows * P.groups) { return; }
  let alpha = clamp01(f32(qmin[P.min_base + gi]));
  let beta = clamp01(f32(qmax[P.max_base + gi]));
  let wmin = f32(qwmin[P.wmin_base + gi]);
  let wmax = f32(qwmax[P.wmax_base + gi]);
  var scale = 0.0;
  var zp = 0.0;
  var lo = 0.0;
  var div = vec2<f32>(0.0);
  var flags = 0u;
  if (P.sym != 0u) {
    var raw = 0.0;
    if (P.has_init != 0u) {
      // The stored scale is rounded; the codes divide by the exact initScale·β (int_quant.ts divScale).
      div = two_prod(f32(qinit[P.init_base + gi]), beta);
      raw = round_scale(div);
    } else {
      let min_abs = neg2(two_prod(wmin, alpha));
      let max_abs = two_prod(wmax, beta);
      let lt = lt2(max_abs, min_abs);
      let gt = lt2(min_abs, max_abs);
      if (lt) { flags |= FLAG_SIDE_MIN; } else if (!gt) { flags |= FLAG_SIDE_TIE; }
      // Negative scale when the positive side dominates (int.py quant_tensor_sym, full range).
      var big = max_abs;
      var sgn = -1.0;
      if (lt) { big = min_abs; sgn = 1.0; } else { flags |= FLAG_NEG; }
      let e = -i32(P.bits - 1u);
      raw = round_scale(vec2<f32>(ldexp(sgn * big.x, e), ldexp(sgn * big.y, e)));
    }
    scale = raw;
    flags |= FLAG_PASSES;
    // opt-RTN init scales come clamped from the search: the reference applies no threshold to them.
    if (P.has_init == 0u && select((raw < P.thr), (raw > -P.thr), raw < 0.0)) {
      scale = select(P.thr, -P.thr, raw < 0.0);
      flags &= ~FLAG_PASSES;
    }
    if (P.has_init == 0u) { div = vec2<f32>(scale, 0.0); }
    lo = div.x;
    zp = P.maxq;
  } else {
    let l2 = two_prod(wmin, alpha);
    let h2 = two_prod(wmax, beta);
    let s1 = two_sum(h2.x, -l2.x);
    let raw = round_scale(div_pair(vec2<f32>(s1.x, s1.y + (h2.y - l2.y)), P.maxq));
    scale = max(raw, P.thr);
    if (raw >= P.thr) { flags |= FLAG_PASSES; }
    let zq = div_pair(neg2(l2), scale);
    zp = round_pair(zq.x, zq.y);
    lo = l2.x;
  }
  let o = P.info_base + gi * 8u;
  ginfo[o] = bitcast<u32>(scale);
  ginfo[o + 1u] = bitcast<u32>(zp);
  ginfo[o + 2u] = bitcast<u32>(lo);
  ginfo[o + 3u] = flags;
  ginfo[o + 4u] = bitcast<u32>(div.y);
}

// The divisor of the codes: the scale, or (sym) the pair in words 2 and 4.
fn divisor(o: u32) -> vec2<f32> {
  if (P.sym != 0u) { return vec2<f32>(bitcast<f32>(einfo[o + 2u]), bitcast<f32>(einfo[o + 4u])); }
  return vec2<f32>(bitcast<f32>(einfo[o]), 0.0);
}

// ---- elements ---------------------------------------------------------------------------------------

struct Code { q: f32, in_range: f32 }

fn quant_code(i: u32, w: f32, d: vec2<f32>, zp: f32) -> Code {
  let v = f32(ev[P.v_base + i]);
  var rz = round_code(w, v, d);
  if (P.sym == 0u) { rz += zp; }
  let inside = rz >= P.qlo && rz <= P.qhi;
  return Code(clamp(rz, P.qlo, P.qhi), select(0.0, 1.0, inside));
}

@compute @workgroup_size(WG)
fn fq_apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i >= P.rows * P.k) { return; }
  let gi = (i / P.k) * P.groups + (i % P.k) / P.g;
  let o = P.info_base + gi * 8u;
  let s = bitcast<f32>(einfo[o]);
  let zp = bitcast<f32>(einfo[o + 1u]);
  let w = f32(ew[P.w_base + i]);
  let c = quant_code(i, w, divisor(o), zp);
  eout[P.out_base + i] = out_cv(select(s * (c.q - zp), s * c.q, P.sym != 0u));
}

// Export codes (q + zp for sym, q for asym) packed four per u32, each row starting a new word.
@compute @workgroup_size(WG)
fn fq_codes(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let idx = group_index(wid, nwg) * WG + lid;
  let wpr = (P.k + 3u) / 4u;
  if (idx >= P.rows * wpr) { return; }
  let row = idx / wpr;
  let c0 = (idx % wpr) * 4u;
  var word = 0u;
  for (var j = 0u; j < 4u; j++) {
    let c = c0 + j;
    if (c < P.k) {
      let i = row * P.k + c;
      let o = P.info_base + (row * P.groups + c / P.g) * 8u;
      let zp = bitcast<f32>(einfo[o + 1u]);
      let q = quant_code(i, f32(ew[P.w_base + i]), divisor(o), zp).q;
      word |= (u32(select(q, q + zp, P.sym != 0u)) & 255u) << (8u * j);
    }
  }
  ecodes[P.out_base + idx] = word;
}

// ---- backward ---------------------------------------------------------------------------------------

const NB: u32 = 64u;
var<workgroup> red: array<vec4<f32>, NB>;

@compute @workgroup_size(NB)
fn fq_bwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let gi = group_index(wid, nwg);
  if (gi >= P.rows * P.groups) { return; }
  let row = gi / P.groups;
  let c0 = (gi % P.groups) * P.g;
  let c1 = min(c0 + P.g, P.k);
  let o = P.info_base + gi * 8u;
  let s = bitcast<f32>(einfo[o]);
  let zp = bitcast<f32>(einfo[o + 1u]);
  // x: Σ g·(q − zp) (through the product), y: −Σ g·inRange·w/s (through the quotient), z: Σ∂/∂zp.
  var acc = vec4<f32>(0.0);
  for (var c = c0 + lid; c < c1; c += NB) {
    let i = row * P.k + c;
    let w = f32(ew[P.w_base + i]);
    // The backward divides by the stored scale, also for opt-RTN (int_quant.ts).
    let cd = quant_code(i, w, vec2<f32>(s, 0.0), zp);
    let g = f32(edwq[P.d_base + i]);
    edv[P.out_base + i] = g * s * cd.in_range;
    let qz = select(cd.q - zp, cd.q, P.sym != 0u);
    acc += vec4<f32>(g * qz, -(g * cd.in_range * w / s), g * s * (cd.in_range - 1.0), 0.0);
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var st = NB / 2u; st > 0u; st >>= 1u) {
    if (lid < st) { red[lid] += red[lid + st]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    einfo[o + 5u] = bitcast<u32>(red[0].x);
    einfo[o + 6u] = bitcast<u32>(red[0].y);
    einfo[o + 7u] = bitcast<u32>(select(red[0].z, 0.0, P.sym != 0u));
  }
}

// A gradient piece rounded to the scale dtype (autograd sums the pieces in the 16-bit scale dtype).
fn round_piece(x: f32) -> f32 {
  if (P.scale_kind == 1u) { return round_f16(x); }
  if (P.scale_kind == 2u) { return round_bf16(x); }
  return x;
}

@compute @workgroup_size(WG)
fn fq_bwd_groups(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let gi = group_index(wid, nwg) * WG + lid;
  if (gi >= P.rows * P.groups) { return; }
  let o = P.info_base + gi * 8u;
  let s = bitcast<f32>(ginfo[o]);
  let lo = bitcast<f32>(ginfo[o + 2u]);
  let flags = ginfo[o + 3u];
  var g_scale = round_piece(round_piece(bitcast<f32>(ginfo[o + 5u])) + round_piece(bitcast<f32>(ginfo[o + 6u])));
  let g_zp = bitcast<f32>(ginfo[o + 7u]);
  let wmin = f32(qwmin[P.wmin_base + gi]);
  let wmax = f32(qwmax[P.wmax_base + gi]);
  var a = 0.0;
  var b = 0.0;
  if ((flags & FLAG_PASSES) != 0u) {
    if (P.sym != 0u) {
      if (P.has_init != 0u) {
        b = g_scale * f32(qinit[P.init_base + gi]);
      } else {
        let gmax = select(1.0, -1.0, (flags & FLAG_NEG) != 0u) * g_scale / P.maxq;
        var share = 1.0;
        if ((flags & FLAG_SIDE_MIN) != 0u) { share = 0.0; }
        if ((flags & FLAG_SIDE_TIE) != 0u) { share = 0.5; }
        b = gmax * share * wmax;
        a = gmax * (1.0 - share) * -wmin;
      }
    } else {
      // zp = round_ste(−lo/s): ∂zp/∂lo = −1/s, ∂zp/∂s = lo/s² (the third piece of the scale gradient).
      g_scale = round_piece(g_scale + round_piece(g_zp * lo / (s * s)));
      b = g_scale / P.maxq * wmax;
      a = (-g_scale / P.maxq - g_zp / s) * wmin;
    }
  } else if (P.sym == 0u) {
    a = (-g_zp / s) * wmin;
  }
  // α, β are clamped into [0, 1] before use; the clamp passes gradient inside the closed range.
  let alpha = f32(qmin[P.min_base + gi]);
  let beta = f32(qmax[P.max_base + gi]);
  gdmin[P.out_base + gi] = select(0.0, a, alpha >= 0.0 && alpha <= 1.0);
  gdmax[P.d_base + gi] = select(0.0, b, beta >= 0.0 && beta <= 1.0);
}
