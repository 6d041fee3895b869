// gguf_pack.wgsl — the llama.cpp block bytes of a quantized tensor: W̃ from the searched parameters
// (src/qmath/gguf/quantize.ts fakeQuant), codes re-derived from W̃ (pack.ts packParams; with EXPORT
// the raw weights and packWithoutScales' rules) and laid out as qmath/gguf/blocks.ts packBlocks does.
//
// Layout: w [N, K] row-major in blocks of BS (32 or 256) weights; par 3 floats per group of GS
// (final scale, wmin / zero point / export min, −); sup 2 floats per super-block (d, dmin); out the
// packed bytes as little-endian u32 words, TS bytes per block. The chunk starts at an even block, so
// its first byte is word-aligned (TS is even).
// Tiling: one thread per output word; each of its 4 bytes is computed from the few codes and scales
// it holds (a code is re-derived for each byte that holds a piece of it: at most 2× the work).
// Error bound: float32 in the host's order (gguf_math.wgsl), Q4_0/Q5_0's float64 `x·id + 8.5` as the
// floor of the exact sum, Q6_K's `fr(x·id) + 32` rounded exactly: the bytes equal the host's;
// measured on llvmpipe: 0 differing blocks (tests/webgpu_gguf_test.ts).

@group(0) @binding(1) var<storage, read> ew: array<w_t>;
@group(0) @binding(2) var<storage, read> epar: array<f32>;
@group(0) @binding(3) var<storage, read> esup: array<f32>;
@group(0) @binding(4) var<storage, read_write> eout: array<u32>;

const NMAX: f32 = f32(1u << (BITS - 1u));
const MAXQ: f32 = f32((1u << BITS) - 1u);
const SUB: u32 = BS / GS;

fn par_s(g: u32) -> f32 {
  return epar[P.par_base + 3u * g];
}
fn par_m(g: u32) -> f32 {
  return epar[P.par_base + 3u * g + 1u];
}

// W̃ of element j of block bl (the raw weight with EXPORT).
fn wq_at(bl: u32, j: u32) -> f32 {
  let x = f32(ew[P.w_base + bl * BS + j]);
  if (EXPORT) { return x; }
  let g = bl * SUB + j / GS;
  let s = par_s(g);
  if (TYPE == 0u || TYPE == 2u || TYPE == 4u) {
    // int.py: round(w / scale)
    return fmul(clamp(round(div_rn(x, s)), -NMAX, NMAX - 1.0), s);
  }
  if (TYPE == 1u || TYPE == 3u) {
    let z = par_m(g);
    let q = clamp(fadd(round(fmul(x, recip(s))), z), 0.0, MAXQ);
    return fmul(fsub(q, z), s);
  }
  if (TYPE == 5u || TYPE == 7u || TYPE == 8u) {
    let m = par_m(g);
    let q = clamp(round(fmul(fadd(x, m), recip(s))), 0.0, MAXQ);
    return fsub(fmul(q, s), m);
  }
  return fmul(clamp(round(fmul(x, recip(s))), -NMAX, NMAX - 1.0), s);
}

// Super-block values of a K-quant: d, dmin and their reciprocals.
fn sup_d(bl: u32) -> f32 {
  return esup[P.sup_base + 2u * bl];
}
fn sup_m(bl: u32) -> f32 {
  return esup[P.sup_base + 2u * bl + 1u];
}

// Quantized sub-block scale (`mn` false) or min (true) of group g of block bl, as packParams stores it.
fn sub_scale(bl: u32, g: u32, mn: bool) -> f32 {
  let v = select(par_s(g), par_m(g), mn);
  let l = round(fmul(v, recip(select(sup_d(bl), sup_m(bl), mn))));
  if (TYPE == 5u) { return clamp(l, 0.0, 15.0); }
  if (TYPE == 6u) { return clamp(l, -32.0, 31.0); }
  if (TYPE == 9u) { return min(l, 127.0); }
  return clamp(l, 0.0, 63.0);
}

// The stored code of element j of block bl (pack.ts), in the type's unsigned byte pattern.
fn code(bl: u32, j: u32) -> u32 {
  let v = wq_at(bl, j);
  let g = bl * SUB + j / GS;
  if (TYPE == 0u || TYPE == 2u) {
    // trunc(x·id + 8.5) in float64, clamped (16.5 for Q5_0).
    let f = floor_prod_plus(two_prod(v, recip(par_s(g))), NMAX + 0.5);
    return u32(clamp(f, 0.0, MAXQ));
  }
  if (TYPE == 4u) {
    // torch_roundf: half away from zero, in float64.
    let t = fmul(v, recip(par_s(g)));
    let r = sign(t) * floor_sum(abs(t), 0.5);
    return u32(i32(clamp(r, -128.0, 127.0))) & 0xffu;
  }
  if (TYPE == 1u || TYPE == 3u) {
    let d = par_s(g);
    let m = select(-fmul(par_m(g), d), par_m(g), EXPORT);
    let t = fadd(fmul(fsub(v, m), recip(d)), 0.5);
    return u32(clamp(trunc(t), 0.0, MAXQ));
  }
  let s = par_s(g);
  if (TYPE == 5u) {
    // (W̃ + min) / scale with the float32 scale and min; a 0 scale (or an overflow) gives code 0.
    let r = div_rn(fadd(v, par_m(g)), s);
    return select(0u, u32(clamp(round(r), 0.0, 3.0)), s != 0.0 && is_finite(r));
  }
  if (TYPE == 6u) {
    return u32(clamp(round(fmul(v, recip(s))), -4.0, 3.0) + 4.0);
  }
  if (TYPE == 9u) {
    var dt = fmul(round_f16(sup_d(bl)), sub_scale(bl, g, false));
    dt = select(dt, 1.0, dt == 0.0);
    return u32(clamp(round_sum(fmul(v, recip(dt)), 32.0), 0.0, 63.0));
  }
  // Q4_K, Q5_K: codes against the fp16 d and dmin times the 6-bit scale and min.
  var dt = fmul(round_f16(sup_d(bl)), sub_scale(bl, g, false));
  let mt = fmul(round_f16(sup_m(bl)), sub_scale(bl, g, true));
  dt = select(dt, 1.0, dt == 0.0);
  return u32(clamp(round(fmul(fadd(v, mt), recip(dt))), 0.0, MAXQ));
}

// Byte `i` (0 or 1) of a value's f16 bits.
fn f16_byte(x: f32, i: u32) -> u32 {
  return (f16_bits(x) >> (8u * i)) & 0xffu;
}

// Nibble pair of the 32-wide types: codes j and j + 16, low 4 bits each.
fn nibbles32(bl: u32, j: u32) -> u32 {
  return (code(bl, j) & 0xfu) | ((code(bl, j + 16u) & 0xfu) << 4u);
}

// Byte b of the 32-bit qh of Q5_0/Q5_1 (bit j = bit 4 of code j).
fn qh32(bl: u32, b: u32) -> u32 {
  var v = 0u;
  for (var i = 0u; i < 8u; i++) {
    v |= ((code(bl, 8u * b + i) >> 4u) & 1u) << i;
  }
  return v;
}

// Four 2-bit codes per byte (Q2_K, Q3_K): L[l + 32·s] at bits 2s of byte c·32 + l.
fn low2(bl: u32, at: u32) -> u32 {
  let j = (at / 32u) * 128u + at % 32u;
  var v = 0u;
  for (var s = 0u; s < 4u; s++) {
    v |= (code(bl, j + 32u * s) & 3u) << (2u * s);
  }
  return v;
}

// The 12 scale/min bytes of Q4_K/Q5_K (quantize_row_q4_K_ref; qmath/gguf/blocks.ts packScaleMinK4).
fn scale_min_k4(bl: u32, p: u32) -> u32 {
  let g = bl * 8u;
  if (p < 4u) {
    return u32(sub_scale(bl, g + p, false)) | ((u32(sub_scale(bl, g + p + 4u, false)) >> 4u) << 6u);
  }
  if (p < 8u) {
    return u32(sub_scale(bl, g + p - 4u, true)) | ((u32(sub_scale(bl, g + p, true)) >> 4u) << 6u);
  }
  return (u32(sub_scale(bl, g + p - 4u, false)) & 0xfu) | ((u32(sub_scale(bl, g + p - 4u, true)) & 0xfu) << 4u);
}

// Byte o (< TS) of block bl.
fn block_byte(bl: u32, o: u32) -> u32 {
  if (TYPE <= 4u) {
    let g = bl;
    if (o < 2u) { return f16_byte(par_s(g), o); }
    var p = 2u;
    if (TYPE == 1u || TYPE == 3u) {
      if (o < 4u) { return f16_byte(select(-fmul(par_m(g), par_s(g)), par_m(g), EXPORT), o - 2u); }
      p = 4u;
    }
    if (TYPE == 4u) { return code(bl, o - 2u); }
    if (TYPE == 2u || TYPE == 3u) {
      if (o < p + 4u) { return qh32(bl, o - p); }
      p += 4u;
    }
    return nibbles32(bl, o - p);
  }
  if (TYPE == 5u) {
    if (o < 16u) {
      let g = bl * 16u + o;
      return (u32(sub_scale(bl, g, false)) & 0xfu) | ((u32(sub_scale(bl, g, true)) & 0xfu) << 4u);
    }
    if (o < 80u) { return low2(bl, o - 16u); }
    if (o < 82u) { return f16_byte(sup_d(bl), o - 80u); }
    return f16_byte(sup_m(bl), o - 82u);
  }
  if (TYPE == 6u) {
    if (o < 32u) {
      var v = 0u;
      for (var b = 0u; b < 8u; b++) {
        v |= select(0u, 1u << b, code(bl, o + 32u * b) > 3u);
      }
      return v;
    }
    if (o < 96u) { return low2(bl, o - 32u); }
    if (o < 108u) {
      let s = o - 96u;
      let g = bl * 16u;
      if (s < 8u) {
        let lo = u32(sub_scale(bl, g + s, false) + 32.0);
        let hi = u32(sub_scale(bl, g + s + 8u, false) + 32.0);
        return (lo & 0xfu) | ((hi & 0xfu) << 4u);
      }
      var v = 0u;
      for (var i = 0u; i < 4u; i++) {
        v |= (u32(sub_scale(bl, g + s - 8u + 4u * i, false) + 32.0) >> 4u) << (2u * i);
      }
      return v;
    }
    return f16_byte(sup_d(bl), o - 108u);
  }
  if (TYPE == 9u) {
    if (o < 128u) {
      let L = (o / 64u) * 128u;
      let r = o % 64u;
      let l = r % 32u;
      let a = select(L + l, L + l + 32u, r >= 32u);
      return (code(bl, a) & 0xfu) | ((code(bl, a + 64u) & 0xfu) << 4u);
    }
    if (o < 192u) {
      let L = ((o - 128u) / 32u) * 128u + (o - 128u) % 32u;
      var v = 0u;
      for (var s = 0u; s < 4u; s++) {
        v |= (code(bl, L + 32u * s) >> 4u) << (2u * s);
      }
      return v;
    }
    if (o < 208u) { return u32(to_i16(sub_scale(bl, bl * 16u + o - 192u, false))) & 0xffu; }
    return f16_byte(sup_d(bl), o - 208u);
  }
  // Q4_K, Q5_K
  if (o < 2u) { return f16_byte(sup_d(bl), o); }
  if (o < 4u) { return f16_byte(sup_m(bl), o - 2u); }
  if (o < 16u) { return scale_min_k4(bl, o - 4u); }
  var qs = 16u;
  if (TYPE == 8u) {
    if (o < 48u) {
      let l = o - 16u;
      var v = 0u;
      for (var c = 0u; c < 4u; c++) {
        v |= ((code(bl, c * 64u + l) >> 4u) & 1u) << (2u * c);
        v |= ((code(bl, c * 64u + 32u + l) >> 4u) & 1u) << (2u * c + 1u);
      }
      return v;
    }
    qs = 48u;
  }
  let at = o - qs;
  let j = (at / 32u) * 64u + at % 32u;
  return (code(bl, j) & 0xfu) | ((code(bl, j + 32u) & 0xfu) << 4u);
}

@compute @workgroup_size(WG)
fn gg_pack(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let wi = group_index(wid, nwg) * WG + lid;
  if (wi >= P.count) { return; }
  var v = 0u;
  for (var b = 0u; b < 4u; b++) {
    let at = 4u * wi + b;
    if (at < P.out_bytes) { v |= block_byte(at / TS, at % TS) << (8u * b); }
  }
  eout[P.out_base + wi] = v;
}
