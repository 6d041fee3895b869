// attention_backward.wgsl — gradients of causal GQA attention from the saved log-sum-exp.
//
// Layout: as attention.wgsl; dOut like q; delta scratch [B·H·T] f32 at (b·H + h)·T + t.
// Math (FlashAttention-2 backward, kernels.ts attentionBackward on the CPU): P = exp(S·scale − lse),
// delta = rowsum(dO ∘ O), dS = P ∘ (dO·Vᵀ − delta), dV = Pᵀ·dO, dK = scale·dSᵀ·Q (summed over the
// query heads sharing a kv head), dQ = scale·dS·K. Under a soft cap (softcap > 0) the score is
// cap·tanh(S·scale/cap) and dS gains the factor 1 − tanh²; a sliding window masks keys t − j ≥
// window (window = T: plain causal) and bounds the block loops as in attention.wgsl.
// Kernels: attn_delta (one thread per row and head); attn_bwd_kv: a workgroup owns BK keys of one
// (b, kv head) with TPR threads per key, keeps dK/dV slices in registers, and walks every query
// head of its group and every query block at or after its keys; attn_bwd_q: a workgroup owns BQ
// queries, walks key blocks up to its last query and accumulates dQ in registers. P and dP are
// recomputed in both (no atomics: WGSL has no float atomics). Rows are vec4s padded by one vec4;
// dot products and accumulations run on vec4s as in attention.wgsl; loops over D4 and C4 are
// written out (`// @unroll`, see attention.wgsl): H100, 8×2048 tokens, 32 heads of 128: dK/dV
// 195 → 78 ms, dQ 149 → 64 ms.
// Measured (tests/webgpu_attention_test.ts, llvmpipe, head sizes 8/16/128): relative error ≤ 5e-7
// (dq, dk, dv) with f32 inputs (bound 4e-5); f16 ≤ 3.2e-5 (bound 8e-3). Soft cap and window
// (tests/webgpu_family_ops_test.ts): ≤ 4.4e-7 (bound 4e-5).

struct BwdParams {
  T: u32, H: u32, KV: u32, group: u32,
  q_base: u32, k_base: u32, v_base: u32, do_base: u32,
  l_base: u32, q_stride: u32, kv_stride: u32, scale: f32,
  d_base: u32, o_base: u32, g_base: u32, rows: u32,
  softcap: f32, window: u32, pad0: u32, pad1: u32,
}
@group(0) @binding(0) var<uniform> pb: BwdParams;
@group(0) @binding(1) var<storage, read> bq: array<q_t>;
@group(0) @binding(2) var<storage, read> bk: array<k_t>;
@group(0) @binding(3) var<storage, read> bv: array<v_t>;
@group(0) @binding(4) var<storage, read> bdo: array<do_t>;
@group(0) @binding(5) var<storage, read> blse: array<f32>;
@group(0) @binding(6) var<storage, read> bdelta: array<f32>;
@group(0) @binding(7) var<storage, read_write> bdk: array<dk_t>;
@group(0) @binding(8) var<storage, read_write> bdv: array<dv_t>;
@group(0) @binding(7) var<storage, read_write> bdq: array<dq_t>;
// attn_delta's own bindings: dO, O, delta.
@group(0) @binding(1) var<storage, read> ddo: array<do_t>;
@group(0) @binding(2) var<storage, read> dout: array<o_t>;
@group(0) @binding(3) var<storage, read_write> ddelta: array<f32>;

const D4: u32 = D / 4u;
const C4: u32 = D4 / TPR;
const KPT: u32 = BK / TPR;
const QPT: u32 = BQ / TPR;
const DS4: u32 = D4 + 1u;
const PS: u32 = BQ + 1u;
const SS: u32 = BK + 1u;

var<workgroup> Qs: array<vec4<f32>, BQ * DS4>;
var<workgroup> dOs: array<vec4<f32>, BQ * DS4>;
var<workgroup> Ks: array<vec4<f32>, BK * DS4>;
var<workgroup> Vs: array<vec4<f32>, BK * DS4>;
var<workgroup> Ps: array<f32, BK * PS>;
var<workgroup> dSs: array<f32, BK * PS>;
var<workgroup> Ls: array<f32, BQ>;
var<workgroup> Dl: array<f32, BQ>;
var<workgroup> dSq: array<f32, BQ * SS>;

// delta[(b·H + h)·T + t] = Σ_d dO·O over one head of one row.
@compute @workgroup_size(WG)
fn attn_delta(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let idx = group_index(wid, nwg) * WG + lid;
  if (idx >= pb.rows * pb.H) { return; }
  let row = idx / pb.H;
  let h = idx % pb.H;
  let o = row * pb.q_stride + h * D;
  var s = 0.0;
  for (var d = 0u; d < D; d++) { s += f32(ddo[pb.do_base + o + d]) * f32(dout[pb.o_base + o + d]); }
  let b = row / pb.T;
  ddelta[pb.d_base + (b * pb.H + h) * pb.T + row % pb.T] = s;
}

// P of a raw score s·scale, and the factor dS_raw/dS of the soft cap (1 without one).
fn p_and_dcap(s: f32, lse: f32) -> vec2<f32> {
  if (pb.softcap > 0.0) {
    let th = tanh(clamp(s / pb.softcap, -15.0, 15.0));
    return vec2<f32>(exp(pb.softcap * th - lse), 1.0 - th * th);
  }
  return vec2<f32>(exp(s - lse), 1.0);
}

// Query tq sees key: causal and within the window.
fn visible(key: u32, tq: u32) -> bool {
  return tq < pb.T && key <= tq && tq < key + pb.window;
}

fn ld4_k(o: u32) -> vec4<f32> {
  return vec4<f32>(f32(bk[o]), f32(bk[o + 1u]), f32(bk[o + 2u]), f32(bk[o + 3u]));
}
fn ld4_v(o: u32) -> vec4<f32> {
  return vec4<f32>(f32(bv[o]), f32(bv[o + 1u]), f32(bv[o + 2u]), f32(bv[o + 3u]));
}
fn ld4_q(o: u32) -> vec4<f32> {
  return vec4<f32>(f32(bq[o]), f32(bq[o + 1u]), f32(bq[o + 2u]), f32(bq[o + 3u]));
}
fn ld4_do(o: u32) -> vec4<f32> {
  return vec4<f32>(f32(bdo[o]), f32(bdo[o + 1u]), f32(bdo[o + 2u]), f32(bdo[o + 3u]));
}

fn load_kv_block(lid: u32, nth: u32, row0: u32, k0: u32, kh: u32) {
  for (var i = lid; i < BK * D4; i += nth) {
    let j = i / D4;
    let c = i % D4;
    var kx = vec4<f32>(0.0);
    var vx = vec4<f32>(0.0);
    if (k0 + j < pb.T) {
      let o = (row0 + k0 + j) * pb.kv_stride + kh * D + 4u * c;
      kx = ld4_k(pb.k_base + o);
      vx = ld4_v(pb.v_base + o);
    }
    Ks[j * DS4 + c] = kx;
    Vs[j * DS4 + c] = vx;
  }
}

fn load_q_block(lid: u32, nth: u32, row0: u32, q0: u32, h: u32) {
  for (var i = lid; i < BQ * D4; i += nth) {
    let r = i / D4;
    let c = i % D4;
    var qx = vec4<f32>(0.0);
    var gx = vec4<f32>(0.0);
    if (q0 + r < pb.T) {
      let o = (row0 + q0 + r) * pb.q_stride + h * D + 4u * c;
      qx = ld4_q(pb.q_base + o);
      gx = ld4_do(pb.do_base + o);
    }
    Qs[r * DS4 + c] = qx;
    dOs[r * DS4 + c] = gx;
  }
}

@compute @workgroup_size(BK * TPR)
fn attn_bwd_kv(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let k0 = wid.x * BK;
  let kh = wid.y;
  let b = wid.z;
  let j = lid / TPR;
  let lane = lid % TPR;
  let key = k0 + j;
  let row0 = b * pb.T;
  load_kv_block(lid, BK * TPR, row0, k0, kh);
  var dk: array<vec4<f32>, C4>;
  var dv: array<vec4<f32>, C4>;
  for (var hh = 0u; hh < pb.group; hh++) {
    let h = kh * pb.group + hh;
    // The last query that sees this block's last key is k0 + BK − 1 + window − 1.
    let qend = min(pb.T, k0 + BK - 1u + pb.window);
    for (var q0 = (k0 / BQ) * BQ; q0 < qend; q0 += BQ) {
      workgroupBarrier();
      load_q_block(lid, BK * TPR, row0, q0, h);
      for (var i = lid; i < BQ; i += BK * TPR) {
        var lv = 0.0;
        var dl = 0.0;
        if (q0 + i < pb.T) {
          let o = (b * pb.H + h) * pb.T + q0 + i;
          lv = blse[pb.l_base + o];
          dl = bdelta[pb.d_base + o];
        }
        Ls[i] = lv;
        Dl[i] = dl;
      }
      workgroupBarrier();
      for (var ii = 0u; ii < QPT; ii++) {
        let i = lane + ii * TPR;
        let tq = q0 + i;
        var s = 0.0;
        var dp = 0.0;
        // @unroll
        for (var c = 0u; c < D4; c++) {
          s += dot(Qs[i * DS4 + c], Ks[j * DS4 + c]);
          dp += dot(dOs[i * DS4 + c], Vs[j * DS4 + c]);
        }
        var p = vec2<f32>(0.0);
        if (visible(key, tq)) { p = p_and_dcap(s * pb.scale, Ls[i]); }
        Ps[j * PS + i] = p.x;
        dSs[j * PS + i] = p.x * (dp - Dl[i]) * p.y;
      }
      workgroupBarrier();
      for (var i = 0u; i < BQ; i++) {
        let p = Ps[j * PS + i];
        let ds = dSs[j * PS + i];
        // @unroll
        for (var cc = 0u; cc < C4; cc++) {
          let c = lane + cc * TPR;
          dv[cc] += p * dOs[i * DS4 + c];
          dk[cc] += ds * Qs[i * DS4 + c];
        }
      }
    }
  }
  if (key < pb.T) {
    let o = (row0 + key) * pb.kv_stride + kh * D;
    // @unroll
    for (var cc = 0u; cc < C4; cc++) {
      let d = o + 4u * (lane + cc * TPR);
      let gk = dk[cc] * pb.scale;
      let gv = dv[cc];
      bdk[pb.g_base + d] = dk_cv(gk.x);
      bdk[pb.g_base + d + 1u] = dk_cv(gk.y);
      bdk[pb.g_base + d + 2u] = dk_cv(gk.z);
      bdk[pb.g_base + d + 3u] = dk_cv(gk.w);
      bdv[pb.o_base + d] = dv_cv(gv.x);
      bdv[pb.o_base + d + 1u] = dv_cv(gv.y);
      bdv[pb.o_base + d + 2u] = dv_cv(gv.z);
      bdv[pb.o_base + d + 3u] = dv_cv(gv.w);
    }
  }
}

@compute @workgroup_size(BQ * TPR)
fn attn_bwd_q(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q0 = wid.x * BQ;
  let h = wid.y;
  let b = wid.z;
  let kh = h / pb.group;
  let i = lid / TPR;
  let lane = lid % TPR;
  let t = q0 + i;
  let row0 = b * pb.T;
  load_q_block(lid, BQ * TPR, row0, q0, h);
  var lv = 0.0;
  var dl = 0.0;
  if (t < pb.T) {
    let o = (b * pb.H + h) * pb.T + t;
    lv = blse[pb.l_base + o];
    dl = bdelta[pb.d_base + o];
  }
  var dq: array<vec4<f32>, C4>;
  let kend = min(pb.T, q0 + BQ);
  let kfirst = select(0u, q0 + 1u - pb.window, q0 + 1u > pb.window);
  for (var k0 = (kfirst / BK) * BK; k0 < kend; k0 += BK) {
    workgroupBarrier();
    load_kv_block(lid, BQ * TPR, row0, k0, kh);
    workgroupBarrier();
    for (var jj = 0u; jj < KPT; jj++) {
      let j = lane + jj * TPR;
      var s = 0.0;
      var dp = 0.0;
      // @unroll
      for (var c = 0u; c < D4; c++) {
        s += dot(Qs[i * DS4 + c], Ks[j * DS4 + c]);
        dp += dot(dOs[i * DS4 + c], Vs[j * DS4 + c]);
      }
      var p = vec2<f32>(0.0);
      if (visible(k0 + j, t)) { p = p_and_dcap(s * pb.scale, lv); }
      dSq[i * SS + j] = p.x * (dp - dl) * p.y;
    }
    workgroupBarrier();
    for (var j = 0u; j < BK; j++) {
      let ds = dSq[i * SS + j];
      // @unroll
      for (var cc = 0u; cc < C4; cc++) { dq[cc] += ds * Ks[j * DS4 + lane + cc * TPR]; }
    }
  }
  if (t < pb.T) {
    let o = pb.g_base + (row0 + t) * pb.q_stride + h * D;
    // @unroll
    for (var cc = 0u; cc < C4; cc++) {
      let d = o + 4u * (lane + cc * TPR);
      let g = dq[cc] * pb.scale;
      bdq[d] = dq_cv(g.x);
      bdq[d + 1u] = dq_cv(g.y);
      bdq[d + 2u] = dq_cv(g.z);
      bdq[d + 3u] = dq_cv(g.w);
    }
  }
}
