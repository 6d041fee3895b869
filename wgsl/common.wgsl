// common.wgsl — helpers prepended to every kernel of the WebGPU backend.
//
// Layout: none of its own. The dispatcher (src/backend/webgpu/kernels.ts) writes, before this file,
// `enable f16;` when needed, the kernel's compile-time constants, and for every tensor binding X a
// storage alias `X_t` plus a store conversion `X_cv(v: f32) -> X_t` that rounds to the tensor's dtype.
// Error bound: round_f16 / round_bf16 are bit-exact round-to-nearest-even (checked against
// Math.f16round and roundBf16 on the CPU), so f16-as-f32 and bf16-as-f32 tensors hold exactly the
// values the CPU reference holds.

const WG: u32 = 256u;

// Linear workgroup index of a 2-D dispatch (x is capped at 65535 groups per dimension).
fn group_index(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.y * nwg.x + wid.x;
}

fn f32_inf() -> f32 {
  return bitcast<f32>(0x7f800000u);
}

// Round to bf16 precision, ties to even; NaN and infinities pass unchanged (dtype.ts f32ToBf16).
fn round_bf16(x: f32) -> f32 {
  let u = bitcast<u32>(x);
  if ((u & 0x7f800000u) == 0x7f800000u) { return x; }
  let r = u + 0x7fffu + ((u >> 16u) & 1u);
  return bitcast<f32>(r & 0xffff0000u);
}

// Round to f16 precision as Math.f16round does: ties to even, subnormals on the 2^-24 grid,
// |x| ≥ 65520 to ±infinity.
fn round_f16(x: f32) -> f32 {
  let a = abs(x);
  if (a != a || a == f32_inf()) { return x; }
  if (a < 6.103515625e-5) {
    // f16 subnormal range: a fixed quantum of 2^-24 (scaling by 2^24 is exact).
    return round(x * 16777216.0) * 5.9604644775390625e-8;
  }
  let u = bitcast<u32>(x);
  let r = bitcast<f32>((u + 0xfffu + ((u >> 13u) & 1u)) & 0xffffe000u);
  if (abs(r) > 65504.0) { return sign(x) * f32_inf(); }
  return r;
}
