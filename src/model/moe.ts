/**
 * The mixture-of-experts MLP of qwen2_moe, qwen3_moe and mixtral blocks (spec/MODELS.md § 2), in
 * place of the dense MLP, forward and backward, written once against the Backend ops:
 *
 *   p = softmax(h2·Wrᵀ) (host, f32);  top-k, renorm;  w cast to h2's dtype
 *   out[t] = Σ_j w[t, j]·y_{idx[t,j]}(t),  y_e = (silu(x_e·Wgᵀ) ∘ (x_e·Wuᵀ))·Wdᵀ over e's rows x_e
 *   qwen2_moe: out += sigmoid(h2·Wsgateᵀ) ∘ shared(h2)
 *
 * Every Linear runs through the caller's `lin` (the block's input transform and weights), the router
 * too, whose weight is never tuned and gets no gradient. An expert no token is routed to is skipped
 * entirely: no Linear call, no observation, no gradient (SignRound must leave it untouched, § 7.2).
 * Needs the optional row ops and readSync (the CPU backend has them); others get UnsupportedError.
 */
import type { Backend, DType, Tensor } from "../backend/backend.ts";
import { UnsupportedError } from "../errors.ts";
import { roundBf16 } from "../tensor/dtype.ts";
import { routeTokens, type Routing, routingBackward } from "./moe_routing.ts";

export { routeTokens, type Routing, routingBackward } from "./moe_routing.ts";

/** Names of the MoE Linears relative to the block prefix (spec § 2.3). */
export interface MoeNames {
  /** The router `[E, H]`. */
  router: string;
  /** Expert e's Linears are `${experts}.${e}.${proj.gate | proj.up | proj.down}`. */
  experts: string;
  proj: { gate: string; up: string; down: string };
  /** qwen2_moe's shared expert (full relative names) and its sigmoid gate `[1, H]`. */
  shared?: { gate: string; up: string; down: string; gateLinear: string };
}

/** qwen3_moe (and qwen2_moe without its shared expert). */
export const QWEN3_MOE_NAMES: MoeNames = {
  router: "mlp.gate",
  experts: "mlp.experts",
  proj: { gate: "gate_proj", up: "up_proj", down: "down_proj" },
};

/** qwen2_moe: routed experts plus the gated shared expert. */
export const QWEN2_MOE_NAMES: MoeNames = {
  ...QWEN3_MOE_NAMES,
  shared: {
    gate: "mlp.shared_expert.gate_proj",
    up: "mlp.shared_expert.up_proj",
    down: "mlp.shared_expert.down_proj",
    gateLinear: "mlp.shared_expert_gate",
  },
};

/** mixtral: w1 is the gate, w3 the up and w2 the down projection. */
export const MIXTRAL_NAMES: MoeNames = {
  router: "block_sparse_moe.gate",
  experts: "block_sparse_moe.experts",
  proj: { gate: "w1", up: "w3", down: "w2" },
};

/** One MoE MLP's geometry and names. */
export interface MoeConfig {
  nExperts: number;
  topK: number;
  /** Renormalise the k weights to sum 1 (qwen `norm_topk_prob`; mixtral always). */
  renorm: boolean;
  /** Expert width (qwen `moe_intermediate_size`, mixtral `intermediate_size`). */
  expertInter: number;
  /** Shared expert width (qwen2_moe `shared_expert_intermediate_size`); with `linearNames.shared`. */
  sharedInter?: number;
  linearNames: MoeNames;
}

/** The name of expert e's gate, up or down Linear. */
export function expertLinear(cfg: MoeConfig, e: number, which: "gate" | "up" | "down"): string {
  const n = cfg.linearNames;
  return `${n.experts}.${e}.${n.proj[which]}`;
}

/** The MLP's Linears SignRound may quantize: experts, shared expert and its gate; not the router. */
export function moeLinearNames(cfg: MoeConfig): string[] {
  const out: string[] = [];
  for (let e = 0; e < cfg.nExperts; e++) {
    for (const w of ["gate", "up", "down"] as const) out.push(expertLinear(cfg, e, w));
  }
  const s = cfg.linearNames.shared;
  return s ? [...out, s.gate, s.up, s.down, s.gateLinear] : out;
}

/** What one routed expert's backward reads. */
interface ExpertSaved {
  /** Tokens routed to it, i32 `[n]`, and their routing weights (h2's dtype values), f32 `[n]`. */
  rows: Tensor;
  scale: Tensor;
  /** Its input rows of h2, gate and up products, silu(gate)·up, and output y_e, all `[n, ·]`. */
  x: Tensor;
  gate: Tensor;
  up: Tensor;
  act: Tensor;
  y: Tensor;
}

/** The shared expert's saved tensors and its gate values g = sigmoid(z) on the host. */
interface SharedSaved {
  gate: Tensor;
  up: Tensor;
  act: Tensor;
  out: Tensor;
  g: Float64Array;
  /** f32 `[T]` of g and i32 `[T]` of 0…T−1 (rows for the scaled row ops). */
  gScale: Tensor;
  allRows: Tensor;
}

/** What moeBackward reads; free with disposeMoeSaved. `h2` is the caller's, not owned. */
export interface MoeSaved {
  h2: Tensor;
  routing: Routing;
  /** Per expert, undefined when no token was routed to it. */
  experts: (ExpertSaved | undefined)[];
  shared?: SharedSaved;
}

/** Options of moeForward. */
export interface MoeForwardOptions {
  save?: boolean;
  /** x ↦ x̃·Wᵀ for Linear `name` (the caller's input transform and weight): a new tensor. */
  lin: (name: string, x: Tensor) => Tensor;
  /** Called once per Linear the forward runs (not the router) with that Linear's own input. */
  observe?: (name: string, x: Tensor) => void;
}

/** Options of moeBackward. */
export interface MoeBackwardOptions {
  /** dL/dW of Linear `name` is dOutᵀ·x̃ for the `input` x it was given (caller computes and keeps it). */
  weightGrad: (name: string, dOut: Tensor, input: Tensor) => void;
  /** dL/dx from dL/dx̃ = dXt through Linear `name`'s input transform; consumes dXt (may return it). */
  inputGrad: (name: string, x: Tensor, dXt: Tensor) => Tensor;
  /** Free each expert's saved tensors once its backward is done (`saved` must not be used again). */
  release?: boolean;
}

type MoeOps = Required<Pick<Backend, "gatherRows" | "scatterAddRows" | "rowDots" | "readSync">>;

function moeOps(be: Backend): MoeOps {
  const { gatherRows, scatterAddRows, rowDots, readSync } = be;
  if (!gatherRows || !scatterAddRows || !rowDots || !readSync) {
    throw new UnsupportedError(
      `mixture-of-experts blocks need row gather/scatter and synchronous reads, which the ${be.name} ` +
        `backend lacks; use --device cpu or --device cuda`,
    );
  }
  return {
    gatherRows: gatherRows.bind(be),
    scatterAddRows: scatterAddRows.bind(be),
    rowDots: rowDots.bind(be),
    readSync: readSync.bind(be),
  };
}

/** The cast of a routing/gate value to the hidden dtype (f32 rounding skipped by an f64 backend). */
function castTo(dtype: DType, f64: boolean): (v: number) => number {
  if (dtype === "bf16") return roundBf16;
  if (dtype === "f16") return Math.f16round;
  return f64 ? (v) => v : Math.fround;
}

function dispose(...ts: (Tensor | undefined)[]): void {
  for (const t of ts) t?.[Symbol.dispose]();
}

function weight(weights: Record<string, Tensor>, name: string, shape?: readonly number[]): Tensor {
  const w = weights[name];
  if (!w) throw new Error(`MoE weight ${name} missing`);
  if (shape && (w.shape.length !== 2 || w.shape[0] !== shape[0] || w.shape[1] !== shape[1])) {
    throw new Error(`MoE weight ${name} is [${w.shape}], the config says [${shape}]`);
  }
  return w;
}

/** Every MoE weight present with the shape the config gives it (spec § 2.3). */
function checkWeights(cfg: MoeConfig, weights: Record<string, Tensor>, H: number): void {
  const n = cfg.linearNames, I = cfg.expertInter;
  weight(weights, n.router, [cfg.nExperts, H]);
  for (let e = 0; e < cfg.nExperts; e++) {
    weight(weights, expertLinear(cfg, e, "gate"), [I, H]);
    weight(weights, expertLinear(cfg, e, "up"), [I, H]);
    weight(weights, expertLinear(cfg, e, "down"), [H, I]);
  }
  if (!n.shared) return;
  const Is = cfg.sharedInter;
  if (Is === undefined) throw new Error(`MoE config with a shared expert needs sharedInter`);
  weight(weights, n.shared.gate, [Is, H]);
  weight(weights, n.shared.up, [Is, H]);
  weight(weights, n.shared.down, [H, Is]);
  weight(weights, n.shared.gateLinear, [1, H]);
}

/**
 * The MoE MLP of h2 `[T, H]` → out `[T, H]` in h2's dtype (spec § 2.1). With `save` the tensors
 * moeBackward needs are returned (free with disposeMoeSaved); `weights` (by relative name) are
 * checked against the config's shapes; the forward itself reaches them only through `lin`.
 */
export function moeForward(
  be: Backend,
  cfg: MoeConfig,
  weights: Record<string, Tensor>,
  h2: Tensor,
  opts: MoeForwardOptions,
): { out: Tensor; saved?: MoeSaved } {
  const ops = moeOps(be);
  const names = cfg.linearNames, { lin, observe, save = false } = opts;
  const T = h2.shape[0], H = h2.size / T;
  checkWeights(cfg, weights, H);
  const logitsT = lin(names.router, h2);
  const logits = ops.readSync(logitsT);
  dispose(logitsT);
  const routing = routeTokens(logits, T, cfg.nExperts, cfg.topK, cfg.renorm);
  const cast = castTo(h2.dtype, logits instanceof Float64Array);
  const out = be.full([T, H], 0, h2.dtype);
  const experts: (ExpertSaved | undefined)[] = [];
  for (let e = 0; e < cfg.nExperts; e++) {
    const { rows: r, slots } = routing.experts[e];
    if (r.length === 0) { // § 7.2: no tokens, no Linear call, nothing observed, no gradient
      experts.push(undefined);
      continue;
    }
    const rows = be.uploadInt(r, [r.length]);
    const scale = be.upload(Float64Array.from(slots, (s) => cast(routing.weights[s])), [r.length]);
    const x = ops.gatherRows(h2, rows);
    const mlp = runMlp(be, lin, observe, x, [
      expertLinear(cfg, e, "gate"),
      expertLinear(cfg, e, "up"),
      expertLinear(cfg, e, "down"),
    ]);
    ops.scatterAddRows(out, mlp.y, rows, scale, true); // an expert sees a token once
    if (save) experts.push({ rows, scale, x, ...mlp });
    else dispose(rows, scale, x, mlp.gate, mlp.up, mlp.act, mlp.y);
  }
  const shared = names.shared ? sharedForward(be, ops, names.shared, h2, out, cast, opts) : undefined;
  if (!save) return { out };
  return { out, saved: { h2, routing, experts, shared } };
}

/** y = (silu(x·Wgᵀ) ∘ (x·Wuᵀ))·Wdᵀ through `lin`, keeping the intermediates. */
function runMlp(
  be: Backend,
  lin: MoeForwardOptions["lin"],
  observe: MoeForwardOptions["observe"],
  x: Tensor,
  [g, u, d]: readonly string[],
): { gate: Tensor; up: Tensor; act: Tensor; y: Tensor } {
  observe?.(g, x);
  const gate = lin(g, x);
  observe?.(u, x);
  const up = lin(u, x);
  const act = be.siluMul(gate, up);
  observe?.(d, act);
  return { gate, up, act, y: lin(d, act) };
}

/** qwen2_moe: out += sigmoid(h2·Wsgateᵀ) ∘ shared(h2), the gate computed on the host. */
function sharedForward(
  be: Backend,
  ops: MoeOps,
  names: NonNullable<MoeNames["shared"]>,
  h2: Tensor,
  out: Tensor,
  cast: (v: number) => number,
  opts: MoeForwardOptions,
): SharedSaved | undefined {
  const T = h2.shape[0];
  const mlp = runMlp(be, opts.lin, opts.observe, h2, [names.gate, names.up, names.down]);
  opts.observe?.(names.gateLinear, h2);
  const zT = opts.lin(names.gateLinear, h2);
  const z = ops.readSync(zT);
  dispose(zT);
  const g = Float64Array.from(z, (v) => cast(1 / (1 + Math.exp(-v))));
  const gScale = be.upload(g, [T]);
  const allRows = be.uploadInt(Int32Array.from({ length: T }, (_, i) => i), [T]);
  ops.scatterAddRows(out, mlp.y, allRows, gScale, true);
  if (opts.save) return { gate: mlp.gate, up: mlp.up, act: mlp.act, out: mlp.y, g, gScale, allRows };
  dispose(mlp.gate, mlp.up, mlp.act, mlp.y, gScale, allRows);
  return undefined;
}

/** dL/dx of an MLP's input from dL/dy, weight gradients handed to `weightGrad` (a new tensor). */
function mlpBackward(
  be: Backend,
  weights: Record<string, Tensor>,
  opts: MoeBackwardOptions,
  x: Tensor,
  s: { gate: Tensor; up: Tensor; act: Tensor },
  dy: Tensor,
  [g, u, d]: readonly string[],
): Tensor {
  opts.weightGrad(d, dy, s.act);
  const dAct = opts.inputGrad(d, s.act, be.matmul(dy, weight(weights, d)));
  const { dg, du } = be.siluMulBackward(s.gate, s.up, dAct);
  dispose(dAct);
  opts.weightGrad(g, dg, x);
  opts.weightGrad(u, du, x);
  const dx = opts.inputGrad(g, x, be.matmul(dg, weight(weights, g)));
  const dxUp = opts.inputGrad(u, x, be.matmul(du, weight(weights, u)));
  be.add(dx, dxUp, dx);
  dispose(dg, du, dxUp);
  return dx;
}

/**
 * Backward of moeForward for dOut = dL/dout `[T, H]` (spec § 2.2): expert and shared-expert weight
 * gradients through `weightGrad` (only experts that got tokens), and dL/dh2 (a new tensor) through
 * the expert inputs, the shared expert and its gate, and the routing weights into the router logits.
 */
export function moeBackward(
  be: Backend,
  cfg: MoeConfig,
  weights: Record<string, Tensor>,
  saved: MoeSaved,
  dOut: Tensor,
  opts: MoeBackwardOptions,
): Tensor {
  const ops = moeOps(be);
  const { h2, routing } = saved, names = cfg.linearNames;
  const T = h2.shape[0], H = h2.size / T;
  const dh2 = be.full([T, H], 0, dOut.dtype);
  const dw = new Float64Array(T * cfg.topK);
  for (let e = 0; e < cfg.nExperts; e++) {
    const ex = saved.experts[e];
    if (!ex) continue;
    // dL/dw[t, j] = ⟨dOut[t], y_e(t)⟩ for e's slots
    const dOutE = ops.gatherRows(dOut, ex.rows);
    const dotsT = ops.rowDots(dOutE, ex.y);
    const dots = ops.readSync(dotsT), slots = routing.experts[e].slots;
    dispose(dOutE, dotsT);
    for (let i = 0; i < slots.length; i++) dw[slots[i]] = dots[i];
    const dy = ops.gatherRows(dOut, ex.rows, ex.scale);
    const which = ["gate", "up", "down"] as const;
    const dx = mlpBackward(be, weights, opts, ex.x, ex, dy, which.map((w) => expertLinear(cfg, e, w)));
    ops.scatterAddRows(dh2, dx, ex.rows, undefined, true);
    dispose(dy, dx);
    if (opts.release) {
      dispose(ex.rows, ex.scale, ex.x, ex.gate, ex.up, ex.act, ex.y);
      saved.experts[e] = undefined;
    }
  }
  if (names.shared && saved.shared) sharedBackward(be, ops, names.shared, weights, saved, dOut, dh2, opts);
  // Routing weights → router logits → h2 (the router weight itself is frozen).
  const dLogits = be.upload(routingBackward(routing, cfg.renorm, dw), [T, cfg.nExperts], dOut.dtype);
  const dRouter = opts.inputGrad(names.router, h2, be.matmul(dLogits, weight(weights, names.router)));
  be.add(dh2, dRouter, dh2);
  dispose(dLogits, dRouter);
  return dh2;
}

/** The shared expert's and its gate's part of dL/dh2, added into dh2. */
function sharedBackward(
  be: Backend,
  ops: MoeOps,
  names: NonNullable<MoeNames["shared"]>,
  weights: Record<string, Tensor>,
  saved: MoeSaved,
  dOut: Tensor,
  dh2: Tensor,
  opts: MoeBackwardOptions,
): void {
  const s = saved.shared!, h2 = saved.h2, T = h2.shape[0];
  // out += g ∘ s: dL/ds = g·dOut, dL/dz = ⟨dOut, s⟩·g(1 − g)
  const ds = ops.gatherRows(dOut, s.allRows, s.gScale);
  const dx = mlpBackward(be, weights, opts, h2, s, ds, [names.gate, names.up, names.down]);
  be.add(dh2, dx, dh2);
  dispose(ds, dx);
  const dotsT = ops.rowDots(dOut, s.out);
  const dots = ops.readSync(dotsT);
  dispose(dotsT);
  const dz = be.upload(Float64Array.from(dots, (v, t) => v * s.g[t] * (1 - s.g[t])), [T, 1], dOut.dtype);
  opts.weightGrad(names.gateLinear, dz, h2);
  const dGate = opts.inputGrad(names.gateLinear, h2, be.matmul(dz, weight(weights, names.gateLinear)));
  be.add(dh2, dGate, dh2);
  dispose(dz, dGate);
  if (opts.release) {
    dispose(s.gate, s.up, s.act, s.out, s.gScale, s.allRows);
    saved.shared = undefined;
  }
}

/** Free what moeForward saved (not h2, which the caller owns). */
export function disposeMoeSaved(s: MoeSaved): void {
  for (const ex of s.experts) if (ex) dispose(ex.rows, ex.scale, ex.x, ex.gate, ex.up, ex.act, ex.y);
  s.experts = [];
  const sh = s.shared;
  if (sh) dispose(sh.gate, sh.up, sh.act, sh.out, sh.gScale, sh.allRows);
  s.shared = undefined;
}
