/**
 * The parts of config.json that only some families have (spec/MODELS.md §§ 2–5): mixture of experts
 * (qwen2_moe, qwen3_moe, mixtral), Gemma 2/3 (GeGLU, (1 + w) norms, sandwich norms, soft-capping,
 * sliding-window layers, two RoPE bases) and Phi-3 (fused qkv/gate_up, partial rotary, longrope).
 * config.ts calls {@link parseFamily} and merges the result into the ModelSpec.
 */
import { FormatError, quote, UnsupportedError } from "../errors.ts";

/** Mixture-of-experts MLP of a block (spec/MODELS.md § 2). */
export interface MoeSpec {
  /** Naming and expert layout: `qwen` (mlp.experts.e.{gate,up,down}_proj) or `mixtral` (w1/w3/w2). */
  style: "qwen" | "mixtral";
  nExperts: number;
  topK: number;
  /** Renormalise the top-k probabilities to sum 1 (qwen: norm_topk_prob; mixtral: always). */
  renorm: boolean;
  /** Width of each routed expert. */
  expertInter: number;
  /** Width of the shared expert (qwen2_moe), with its sigmoid gate. */
  sharedInter?: number;
  /** Layers with a dense MLP of width `intermediate_size` instead (qwen `mlp_only_layers` / step). */
  denseLayers: number[];
}

/** RoPE settings of one kind of layer. */
export type LayerKind = "full" | "sliding";

/** What parseFamily adds to a ModelSpec. */
export interface FamilyParts {
  act: "silu" | "gelu_tanh";
  /** Gemma: norm weights are stored as w and applied as (1 + w) (added once at load, in f32). */
  normOffset: boolean;
  /** Gemma: embeddings are multiplied by √hidden rounded to the checkpoint dtype. */
  embedScale?: number;
  /** Softmax scale when not 1/√head_dim (Gemma: query_pre_attn_scalar^−½). */
  attnScale?: number;
  attnSoftcap?: number;
  finalSoftcap?: number;
  /** Per-layer attention kind when the family mixes sliding-window and full layers. */
  layerTypes?: LayerKind[];
  /** Gemma: post-attention and pre/post-feed-forward norms. */
  sandwichNorms: boolean;
  /** Phi-3: `self_attn.qkv_proj` and `mlp.gate_up_proj` instead of the split Linears. */
  fused: boolean;
  /** Partial rotary: the rotated leading part of each head (Phi-3 partial_rotary_factor). */
  rotaryDim?: number;
  /** RoPE base and scaling of sliding layers when they differ from the global ones (Gemma 3). */
  localRopeTheta?: number;
  moe?: MoeSpec;
}

type Cfg = Record<string, unknown>;

function int(cfg: Cfg, key: string, file: string, fallback?: number): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new FormatError(
      `config.json field "${key}" is ${quote(cfg[key])}, expected a positive integer`,
      file,
    );
  }
  return v;
}

function optNum(cfg: Cfg, key: string): number | undefined {
  const v = cfg[key];
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** √H rounded as transformers does: a tensor of the checkpoint dtype. */
function roundToDtype(x: number, dtype: string): number {
  if (dtype === "float16") return Math.f16round(x);
  if (dtype === "bfloat16") {
    const f = new Float32Array([x]), u = new Uint32Array(f.buffer);
    u[0] = (u[0] + 0x7fff + ((u[0] >> 16) & 1)) & 0xffff0000;
    return f[0];
  }
  return Math.fround(x);
}

function layerTypes(cfg: Cfg, n: number, file: string, defaultSliding: (i: number) => boolean): LayerKind[] {
  const raw = cfg.layer_types;
  if (Array.isArray(raw)) {
    if (raw.length !== n) {
      throw new FormatError(`layer_types has ${raw.length} entries for ${n} layers`, file);
    }
    return raw.map((t) => {
      if (t === "sliding_attention") return "sliding";
      if (t === "full_attention") return "full";
      throw new UnsupportedError(`layer type ${quote(t)} is not supported`, file);
    });
  }
  return Array.from({ length: n }, (_, i) => defaultSliding(i) ? "sliding" : "full");
}

function moeOf(cfg: Cfg, modelType: string, file: string, nLayers: number): MoeSpec {
  if (modelType === "mixtral") {
    return {
      style: "mixtral",
      nExperts: int(cfg, "num_local_experts", file),
      topK: int(cfg, "num_experts_per_tok", file),
      renorm: true,
      expertInter: int(cfg, "intermediate_size", file),
      denseLayers: [],
    };
  }
  const step = int(cfg, "decoder_sparse_step", file, 1);
  const only = Array.isArray(cfg.mlp_only_layers)
    ? cfg.mlp_only_layers.filter((x) => typeof x === "number")
    : [];
  // transformers 5 writes num_local_experts for qwen3_moe too.
  const nExperts = int(cfg, cfg.num_experts !== undefined ? "num_experts" : "num_local_experts", file);
  const denseLayers = [];
  for (let i = 0; i < nLayers; i++) if (only.includes(i) || (i + 1) % step !== 0) denseLayers.push(i);
  const shared = modelType === "qwen2_moe" ? optNum(cfg, "shared_expert_intermediate_size") : undefined;
  return {
    style: "qwen",
    nExperts,
    topK: int(cfg, "num_experts_per_tok", file),
    renorm: cfg.norm_topk_prob === true,
    expertInter: int(cfg, "moe_intermediate_size", file),
    sharedInter: shared && shared > 0 ? shared : undefined,
    denseLayers,
  };
}

/** Family-specific parts of config.json for `modelType` (already known to be supported). */
export function parseFamily(
  cfg: Cfg,
  modelType: string,
  file: string,
  dims: { hidden: number; headDim: number; nLayers: number; torchDtype: string },
): FamilyParts {
  const base: FamilyParts = { act: "silu", normOffset: false, sandwichNorms: false, fused: false };
  const act = cfg.hidden_activation ?? cfg.hidden_act ?? "silu";
  if (modelType === "gemma2" || modelType === "gemma3_text") {
    if (act !== "gelu_pytorch_tanh" && act !== "gelu_tanh") {
      throw new UnsupportedError(
        `hidden_activation ${quote(act)} is not supported (gelu_pytorch_tanh)`,
        file,
      );
    }
    const g3 = modelType === "gemma3_text";
    const pattern = optNum(cfg, "sliding_window_pattern") ?? optNum(cfg, "_sliding_window_pattern") ?? 6;
    const window = optNum(cfg, "sliding_window");
    const rp = (typeof cfg.rope_parameters === "object" && cfg.rope_parameters) as Cfg | false;
    const local = rp && typeof rp.sliding_attention === "object"
      ? optNum(rp.sliding_attention as Cfg, "rope_theta")
      : undefined;
    return {
      ...base,
      act: "gelu_tanh",
      normOffset: true,
      sandwichNorms: true,
      embedScale: roundToDtype(Math.sqrt(dims.hidden), dims.torchDtype),
      attnScale: 1 / Math.sqrt(optNum(cfg, "query_pre_attn_scalar") ?? dims.headDim),
      attnSoftcap: optNum(cfg, "attn_logit_softcapping"),
      finalSoftcap: optNum(cfg, "final_logit_softcapping"),
      layerTypes: window === undefined
        ? undefined
        : layerTypes(cfg, dims.nLayers, file, (i) => g3 ? (i + 1) % pattern !== 0 : (i + 1) % 2 !== 0),
      localRopeTheta: g3 ? local ?? optNum(cfg, "rope_local_base_freq") ?? 10000 : undefined,
    };
  }
  if (act !== "silu") {
    throw new UnsupportedError(`hidden_act ${quote(act)} is not supported (only silu)`, file);
  }
  if (modelType === "phi3") {
    const f = optNum(cfg, "partial_rotary_factor") ?? 1;
    const rot = Math.floor(dims.headDim * f);
    if (!(rot >= 2 && rot % 2 === 0 && rot <= dims.headDim)) {
      throw new FormatError(`partial_rotary_factor ${f} gives ${rot} rotary dimensions`, file);
    }
    return { ...base, fused: true, rotaryDim: rot === dims.headDim ? undefined : rot };
  }
  if (modelType === "qwen2_moe" || modelType === "qwen3_moe" || modelType === "mixtral") {
    return { ...base, moe: moeOf(cfg, modelType, file, dims.nLayers) };
  }
  return base;
}
