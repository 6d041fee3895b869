// attention.wgsl — fused causal grouped-query attention forward with the row log-sum-exp.
// Options (AttentionShape): softcap > 0 turns each score s into cap·tanh(s/cap) before the mask
// (Gemma 2); a sliding window lets query t see keys t − window < j ≤ t (window = T: plain causal),
// and the key loop starts at the block holding the block's first visible key.
//
// Layout: q, out [B·T, H·D]; k, v [B·T, KV·D]; lse [B·H·T] f32 at (b·H + h)·T + t. Query head h
// reads kv head h / (H/KV). The dispatch covers a chunk of batch entries (z), heads (y) and query
// blocks (x); bases address the chunk's windows. D is a multiple of 4.
// Tiling: a workgroup owns BQ queries of one (b, h) with TPR threads per query (BQ·TPR threads).
// Q is staged once; K and V stream through workgroup memory BK keys at a time, only up to the
// block's last query (causal). Rows live in workgroup memory as vec4s, padded by one vec4 (so the
// rows a warp touches fall in different banks): each thread forms BK/TPR scores of its query as
// vec4 dot products (2 shared loads per 4 multiply-adds), the row's threads share them through
// workgroup memory, and the online softmax (running max m, sum l) rescales a D/TPR-wide slice of
// the output accumulator held in registers (vec4 chunks lane + i·TPR, so a warp reads V rows
// contiguously). Scores and accumulation are f32. Loops over D4 and C4 carry `// @unroll` and are
// written out by kernels.ts (unrollMarked): naga bounds every loop, so the driver would not unroll
// them and `acc` would live in local memory (H100, 8×2048 tokens, 32 heads of 128: 156 → 57 ms).
// Measured (tests/webgpu_attention_test.ts, llvmpipe, T = 37/21/19, head sizes 8/16/128, GQA):
// relative error ≤ 1.4e-7 (out) and ≤ 7e-8 (lse) with f32 inputs (bound 1e-5); f16 inputs ≤ 2.4e-5
// (f16 out; bound 2e-3). Soft cap and window (tests/webgpu_family_ops_test.ts, T up to 150, head
// sizes 8/16/32, caps 1–2, windows 1–40): out ≤ 1.7e-7, lse ≤ 6.6e-8 (bound 1e-5).

struct AttnParams {
  T: u32, H: u32, KV: u32, group: u32,
  q_base: u32, k_base: u32, v_base: u32, o_base: u32,
  l_base: u32, q_stride: u32, kv_stride: u32, scale: f32,
  softcap: f32, window: u32, pad0: u32, pad1: u32,
}
@group(0) @binding(0) var<uniform> pa: AttnParams;
@group(0) @binding(1) var<storage, read> aq: array<q_t>;
@group(0) @binding(2) var<storage, read> ak: array<k_t>;
@group(0) @binding(3) var<storage, read> av: array<v_t>;
@group(0) @binding(4) var<storage, read_write> ao: array<o_t>;
@group(0) @binding(5) var<storage, read_write> al: array<f32>;

const D4: u32 = D / 4u;
const C4: u32 = D4 / TPR;
const KPT: u32 = BK / TPR;
const NTH: u32 = BQ * TPR;
const DS4: u32 = D4 + 1u;
const SS: u32 = BK + 1u;
const MASKED: f32 = -1e30;

var<workgroup> Qs: array<vec4<f32>, BQ * DS4>;
var<workgroup> Ks: array<vec4<f32>, BK * DS4>;
var<workgroup> Vs: array<vec4<f32>, BK * DS4>;
var<workgroup> Ss: array<f32, BQ * SS>;

fn ld_q(o: u32) -> vec4<f32> {
  return vec4<f32>(f32(aq[o]), f32(aq[o + 1u]), f32(aq[o + 2u]), f32(aq[o + 3u]));
}
fn ld_k(o: u32) -> vec4<f32> {
  return vec4<f32>(f32(ak[o]), f32(ak[o + 1u]), f32(ak[o + 2u]), f32(ak[o + 3u]));
}
fn ld_v(o: u32) -> vec4<f32> {
  return vec4<f32>(f32(av[o]), f32(av[o + 1u]), f32(av[o + 2u]), f32(av[o + 3u]));
}

// cap·tanh(s/cap) (tanh's argument clamped: tanh(15) is 1 in f32, and some drivers' tanh overflows).
fn soft_cap(s: f32) -> f32 {
  if (pa.softcap > 0.0) { return pa.softcap * tanh(clamp(s / pa.softcap, -15.0, 15.0)); }
  return s;
}

@compute @workgroup_size(NTH)
fn attention(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q0 = wid.x * BQ;
  let h = wid.y;
  let b = wid.z;
  let kh = h / pa.group;
  let r = lid / TPR;
  let lane = lid % TPR;
  let t = q0 + r;
  let row0 = b * pa.T;

  for (var i = lid; i < BQ * D4; i += NTH) {
    let rr = i / D4;
    let c = i % D4;
    var x = vec4<f32>(0.0);
    if (q0 + rr < pa.T) { x = ld_q(pa.q_base + (row0 + q0 + rr) * pa.q_stride + h * D + 4u * c); }
    Qs[rr * DS4 + c] = x;
  }

  var m = MASKED;
  var l = 0.0;
  var acc: array<vec4<f32>, C4>;
  let kend = min(pa.T, q0 + BQ);
  let kfirst = select(0u, q0 + 1u - pa.window, q0 + 1u > pa.window);
  for (var k0 = (kfirst / BK) * BK; k0 < kend; k0 += BK) {
    workgroupBarrier();
    for (var i = lid; i < BK * D4; i += NTH) {
      let j = i / D4;
      let c = i % D4;
      var kx = vec4<f32>(0.0);
      var vx = vec4<f32>(0.0);
      if (k0 + j < pa.T) {
        let o = (row0 + k0 + j) * pa.kv_stride + kh * D + 4u * c;
        kx = ld_k(pa.k_base + o);
        vx = ld_v(pa.v_base + o);
      }
      Ks[j * DS4 + c] = kx;
      Vs[j * DS4 + c] = vx;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < KPT; jj++) {
      let j = lane + jj * TPR;
      var s = 0.0;
      // @unroll
      for (var c = 0u; c < D4; c++) { s += dot(Qs[r * DS4 + c], Ks[j * DS4 + c]); }
      let seen = k0 + j <= t && t < k0 + j + pa.window && k0 + j < pa.T;
      Ss[r * SS + j] = select(MASKED, soft_cap(s * pa.scale), seen);
    }
    workgroupBarrier();
    var mx = m;
    for (var j = 0u; j < BK; j++) { mx = max(mx, Ss[r * SS + j]); }
    let corr = exp(m - mx);
    l *= corr;
    // @unroll
    for (var cc = 0u; cc < C4; cc++) { acc[cc] *= corr; }
    for (var j = 0u; j < BK; j++) {
      let p = exp(Ss[r * SS + j] - mx);
      l += p;
      // @unroll
      for (var cc = 0u; cc < C4; cc++) { acc[cc] += p * Vs[j * DS4 + lane + cc * TPR]; }
    }
    m = mx;
  }
  if (t < pa.T) {
    let o = pa.o_base + (row0 + t) * pa.q_stride + h * D;
    // @unroll
    for (var cc = 0u; cc < C4; cc++) {
      let d = 4u * (lane + cc * TPR);
      let v = acc[cc] / l;
      ao[o + d] = o_cv(v.x);
      ao[o + d + 1u] = o_cv(v.y);
      ao[o + d + 2u] = o_cv(v.z);
      ao[o + d + 3u] = o_cv(v.w);
    }
    if (lane == 0u) { al[pa.l_base + (b * pa.H + h) * pa.T + t] = m + log(l); }
  }
}
