// attention_backward.wgsl — gradients of causal GQA attention from the saved log-sum-exp.
//
// Layout: as attention.wgsl; dOut like q; delta scratch [B·H·T] f32 at (b·H + h)·T + t.
// Math (FlashAttention-2 backward, kernels.ts attentionBackward on the CPU): P = exp(S·scale − lse),
// delta = rowsum(dO ∘ O), dS = P ∘ (dO·Vᵀ − delta), dV = Pᵀ·dO, dK = scale·dSᵀ·Q (summed over the
// query heads sharing a kv head), dQ = scale·dS·K.
// Kernels: attn_delta (one thread per row and head); attn_bwd_kv: a workgroup owns BK keys of one
// (b, kv head) with TPR threads per key, keeps dK/dV slices in registers, and walks every query
// head of its group and every query block at or after its keys; attn_bwd_q: a workgroup owns BQ
// queries, walks key blocks up to its last query and accumulates dQ in registers. P and dP are
// recomputed in both (no atomics: WGSL has no float atomics). Rows padded by one float.
// Measured (tests/webgpu_attention_test.ts, llvmpipe): relative error ≤ 3.8e-7 (dq, dk, dv) with f32
// inputs (bound 4e-5); f16 ≤ 3.4e-5 (bound 8e-3).

struct BwdParams {
  T: u32, H: u32, KV: u32, group: u32,
  q_base: u32, k_base: u32, v_base: u32, do_base: u32,
  l_base: u32, q_stride: u32, kv_stride: u32, scale: f32,
  d_base: u32, o_base: u32, g_base: u32, rows: u32,
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

const DPT: u32 = D / TPR;
const KPT: u32 = BK / TPR;
const QPT: u32 = BQ / TPR;
const DS: u32 = D + 1u;
const PS: u32 = BQ + 1u;
const SS: u32 = BK + 1u;

var<workgroup> Qs: array<f32, BQ * DS>;
var<workgroup> dOs: array<f32, BQ * DS>;
var<workgroup> Ks: array<f32, BK * DS>;
var<workgroup> Vs: array<f32, BK * DS>;
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

fn load_kv_block(lid: u32, nth: u32, row0: u32, k0: u32, kh: u32) {
  for (var i = lid; i < BK * D; i += nth) {
    let j = i / D;
    let d = i % D;
    var kx = 0.0;
    var vx = 0.0;
    if (k0 + j < pb.T) {
      let o = (row0 + k0 + j) * pb.kv_stride + kh * D + d;
      kx = f32(bk[pb.k_base + o]);
      vx = f32(bv[pb.v_base + o]);
    }
    Ks[j * DS + d] = kx;
    Vs[j * DS + d] = vx;
  }
}

fn load_q_block(lid: u32, nth: u32, row0: u32, q0: u32, h: u32) {
  for (var i = lid; i < BQ * D; i += nth) {
    let r = i / D;
    let d = i % D;
    var qx = 0.0;
    var gx = 0.0;
    if (q0 + r < pb.T) {
      let o = (row0 + q0 + r) * pb.q_stride + h * D + d;
      qx = f32(bq[pb.q_base + o]);
      gx = f32(bdo[pb.do_base + o]);
    }
    Qs[r * DS + d] = qx;
    dOs[r * DS + d] = gx;
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
  var dk: array<f32, DPT>;
  var dv: array<f32, DPT>;
  for (var hh = 0u; hh < pb.group; hh++) {
    let h = kh * pb.group + hh;
    for (var q0 = (k0 / BQ) * BQ; q0 < pb.T; q0 += BQ) {
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
        for (var d = 0u; d < D; d++) {
          s += Qs[i * DS + d] * Ks[j * DS + d];
          dp += dOs[i * DS + d] * Vs[j * DS + d];
        }
        var p = 0.0;
        if (tq < pb.T && key <= tq) { p = exp(s * pb.scale - Ls[i]); }
        Ps[j * PS + i] = p;
        dSs[j * PS + i] = p * (dp - Dl[i]);
      }
      workgroupBarrier();
      for (var i = 0u; i < BQ; i++) {
        let p = Ps[j * PS + i];
        let ds = dSs[j * PS + i];
        for (var dd = 0u; dd < DPT; dd++) {
          let d = lane + dd * TPR;
          dv[dd] += p * dOs[i * DS + d];
          dk[dd] += ds * Qs[i * DS + d];
        }
      }
    }
  }
  if (key < pb.T) {
    let o = (row0 + key) * pb.kv_stride + kh * D + lane;
    for (var dd = 0u; dd < DPT; dd++) {
      bdk[pb.g_base + o + dd * TPR] = dk_cv(dk[dd] * pb.scale);
      bdv[pb.o_base + o + dd * TPR] = dv_cv(dv[dd]);
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
  var dq: array<f32, DPT>;
  let kend = min(pb.T, q0 + BQ);
  for (var k0 = 0u; k0 < kend; k0 += BK) {
    workgroupBarrier();
    load_kv_block(lid, BQ * TPR, row0, k0, kh);
    workgroupBarrier();
    for (var jj = 0u; jj < KPT; jj++) {
      let j = lane + jj * TPR;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < D; d++) {
        s += Qs[i * DS + d] * Ks[j * DS + d];
        dp += dOs[i * DS + d] * Vs[j * DS + d];
      }
      var p = 0.0;
      if (t < pb.T && k0 + j <= t) { p = exp(s * pb.scale - lv); }
      dSq[i * SS + j] = p * (dp - dl);
    }
    workgroupBarrier();
    for (var j = 0u; j < BK; j++) {
      let ds = dSq[i * SS + j];
      for (var dd = 0u; dd < DPT; dd++) { dq[dd] += ds * Ks[j * DS + lane + dd * TPR]; }
    }
  }
  if (t < pb.T) {
    let o = pb.g_base + (row0 + t) * pb.q_stride + h * D + lane;
    for (var dd = 0u; dd < DPT; dd++) { bdq[o + dd * TPR] = dq_cv(dq[dd] * pb.scale); }
  }
}
