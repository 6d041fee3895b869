// attention.wgsl — fused causal grouped-query attention forward with the row log-sum-exp.
//
// Layout: q, out [B·T, H·D]; k, v [B·T, KV·D]; lse [B·H·T] f32 at (b·H + h)·T + t. Query head h
// reads kv head h / (H/KV). The dispatch covers a chunk of batch entries (z), heads (y) and query
// blocks (x); bases address the chunk's windows.
// Tiling: a workgroup owns BQ queries of one (b, h) with TPR threads per query (BQ·TPR threads).
// Q is staged once; K and V stream through workgroup memory BK keys at a time, only up to the
// block's last query (causal). Each thread computes BK/TPR full scores of its query, the row's
// threads share them through workgroup memory, and the online softmax (running max m, sum l)
// rescales a D/TPR-wide slice of the output accumulator held in registers (dims lane + i·TPR).
// Rows are padded by one float against bank conflicts. Scores and accumulation are f32.
// Measured (tests/webgpu_attention_test.ts, llvmpipe, T = 37 and 21, GQA): relative error ≤ 1.3e-7
// (out) and ≤ 7e-8 (lse) with f32 inputs (bound 1e-5); f16 inputs ≤ 1.3e-5 (f16 out; bound 2e-3).

struct AttnParams {
  T: u32, H: u32, KV: u32, group: u32,
  q_base: u32, k_base: u32, v_base: u32, o_base: u32,
  l_base: u32, q_stride: u32, kv_stride: u32, scale: f32,
}
@group(0) @binding(0) var<uniform> pa: AttnParams;
@group(0) @binding(1) var<storage, read> aq: array<q_t>;
@group(0) @binding(2) var<storage, read> ak: array<k_t>;
@group(0) @binding(3) var<storage, read> av: array<v_t>;
@group(0) @binding(4) var<storage, read_write> ao: array<o_t>;
@group(0) @binding(5) var<storage, read_write> al: array<f32>;

const DPT: u32 = D / TPR;
const KPT: u32 = BK / TPR;
const NTH: u32 = BQ * TPR;
const DS: u32 = D + 1u;
const SS: u32 = BK + 1u;
const MASKED: f32 = -1e30;

var<workgroup> Qs: array<f32, BQ * DS>;
var<workgroup> Ks: array<f32, BK * DS>;
var<workgroup> Vs: array<f32, BK * DS>;
var<workgroup> Ss: array<f32, BQ * SS>;

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

  for (var i = lid; i < BQ * D; i += NTH) {
    let rr = i / D;
    let d = i % D;
    var x = 0.0;
    if (q0 + rr < pa.T) { x = f32(aq[pa.q_base + (row0 + q0 + rr) * pa.q_stride + h * D + d]); }
    Qs[rr * DS + d] = x;
  }

  var m = MASKED;
  var l = 0.0;
  var acc: array<f32, DPT>;
  let kend = min(pa.T, q0 + BQ);
  for (var k0 = 0u; k0 < kend; k0 += BK) {
    workgroupBarrier();
    for (var i = lid; i < BK * D; i += NTH) {
      let j = i / D;
      let d = i % D;
      var kx = 0.0;
      var vx = 0.0;
      if (k0 + j < pa.T) {
        let o = (row0 + k0 + j) * pa.kv_stride + kh * D + d;
        kx = f32(ak[pa.k_base + o]);
        vx = f32(av[pa.v_base + o]);
      }
      Ks[j * DS + d] = kx;
      Vs[j * DS + d] = vx;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < KPT; jj++) {
      let j = lane + jj * TPR;
      var dot = 0.0;
      for (var d = 0u; d < D; d++) { dot += Qs[r * DS + d] * Ks[j * DS + d]; }
      Ss[r * SS + j] = select(MASKED, dot * pa.scale, k0 + j <= t && k0 + j < pa.T);
    }
    workgroupBarrier();
    var mx = m;
    for (var j = 0u; j < BK; j++) { mx = max(mx, Ss[r * SS + j]); }
    let corr = exp(m - mx);
    l *= corr;
    for (var dd = 0u; dd < DPT; dd++) { acc[dd] *= corr; }
    for (var j = 0u; j < BK; j++) {
      let p = exp(Ss[r * SS + j] - mx);
      l += p;
      for (var dd = 0u; dd < DPT; dd++) { acc[dd] += p * Vs[j * DS + lane + dd * TPR]; }
    }
    m = mx;
  }
  if (t < pa.T) {
    let o = pa.o_base + (row0 + t) * pa.q_stride + h * D + lane;
    for (var dd = 0u; dd < DPT; dd++) { ao[o + dd * TPR] = o_cv(acc[dd] / l); }
    if (lane == 0u) { al[pa.l_base + (b * pa.H + h) * pa.T + t] = m + log(l); }
  }
}
