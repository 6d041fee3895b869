// two_prod.wgsl — the exact product of two f32 values, appended to the kernel families that need it
// (fake_quant.wgsl, and the GGUF kernels through kernels.ts). Each of those files defines
// `opaque(x)` (x XOR a uniform that is always 0), which keeps shader compilers from fusing or
// rewriting the product.
// Error bound: exact for normal products (|p| in [1e-30, 1e30]); outside that the error term is 0.

// a · b = p + e exactly, from the 24-bit integer mantissas: the low 32 bits of ma·mb − mp·2^k hold
// the (small) error exactly, whatever the wrap-around above them.
fn two_prod(a: f32, b: f32) -> vec2<f32> {
  let p = opaque(a * b);
  if (a == 0.0 || b == 0.0 || abs(p) < 1e-30 || abs(p) > 1e30) { return vec2<f32>(p, 0.0); }
  let fa = frexp(a);
  let fb = frexp(b);
  let fp = frexp(p);
  let ma = u32(abs(fa.fract) * 16777216.0);
  let mb = u32(abs(fb.fract) * 16777216.0);
  let mp = u32(abs(fp.fract) * 16777216.0);
  let k = u32(fp.exp - fa.exp - fb.exp + 24);
  let diff = bitcast<i32>(ma * mb - (mp << k));
  return vec2<f32>(p, sign(p) * ldexp(f32(diff), fa.exp + fb.exp - 48));
}
