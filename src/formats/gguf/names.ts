/**
 * Tensor names and row order between Hugging Face Llama-family checkpoints and GGUF.
 *
 * Names: llama.cpp `gguf-py/gguf/tensor_mapping.py` / `constants.py` (TOKEN_EMBD "token_embd",
 * OUTPUT_NORM "output_norm", OUTPUT "output", ATTN_NORM "blk.{bid}.attn_norm", ATTN_Q/K/V
 * "blk.{bid}.attn_q|k|v", ATTN_OUT "blk.{bid}.attn_output", ATTN_Q_NORM/ATTN_K_NORM
 * "blk.{bid}.attn_q_norm|attn_k_norm", FFN_NORM "blk.{bid}.ffn_norm", FFN_GATE/UP/DOWN
 * "blk.{bid}.ffn_gate|up|down").
 *
 * Row order: `convert_hf_to_gguf.py` LlamaModel.modify_tensors permutes the q and k projection rows
 * for the "llama" architecture (`permute(w, n_head, n_head_kv)`: reshape(n_head, 2, D/2, ...)
 * .swapaxes(1, 2)), undoing transformers' rotate_half layout so llama.cpp's interleaved (GPT-J
 * style) RoPE applies. Qwen2/Qwen3 use NEOX RoPE in llama.cpp and keep the HF order.
 */

const BLOCK_PARTS: [string, string][] = [
  ["input_layernorm.weight", "attn_norm.weight"],
  ["self_attn.q_proj.weight", "attn_q.weight"],
  ["self_attn.k_proj.weight", "attn_k.weight"],
  ["self_attn.v_proj.weight", "attn_v.weight"],
  ["self_attn.o_proj.weight", "attn_output.weight"],
  ["self_attn.q_proj.bias", "attn_q.bias"],
  ["self_attn.k_proj.bias", "attn_k.bias"],
  ["self_attn.v_proj.bias", "attn_v.bias"],
  ["self_attn.q_norm.weight", "attn_q_norm.weight"],
  ["self_attn.k_norm.weight", "attn_k_norm.weight"],
  ["post_attention_layernorm.weight", "ffn_norm.weight"],
  ["mlp.gate_proj.weight", "ffn_gate.weight"],
  ["mlp.up_proj.weight", "ffn_up.weight"],
  ["mlp.down_proj.weight", "ffn_down.weight"],
];

/**
 * Per-architecture differences (spec/MODELS.md § 8.1). Gemma's `post_attention_layernorm` normalises
 * the attention output (`post_attention_norm`), its pre-MLP norm is `pre_feedforward_layernorm`
 * (`ffn_norm`); Phi-3 keeps qkv and gate_up fused (`attn_qkv`, `ffn_up` of 2·I rows, gate half
 * first: llama.cpp phi3.cpp LLM_FFN_SWIGLU on ffn_up alone); MoE routers and the Qwen2-MoE shared
 * expert. "mixtral" is the llama architecture with experts (Mixtral's own HF names).
 */
const GEMMA_PARTS: [string, string][] = [
  ["post_attention_layernorm.weight", "post_attention_norm.weight"],
  ["pre_feedforward_layernorm.weight", "ffn_norm.weight"],
  ["post_feedforward_layernorm.weight", "post_ffw_norm.weight"],
];
const QWEN_MOE_PARTS: [string, string][] = [
  ["mlp.gate.weight", "ffn_gate_inp.weight"],
  ["mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"],
  ["mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"],
  ["mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight"],
  ["mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"],
];
const ARCH_PARTS: Record<string, [string, string][]> = {
  gemma2: GEMMA_PARTS,
  gemma3: GEMMA_PARTS,
  phi3: [["self_attn.qkv_proj.weight", "attn_qkv.weight"], ["mlp.gate_up_proj.weight", "ffn_up.weight"]],
  qwen2moe: QWEN_MOE_PARTS,
  qwen3moe: QWEN_MOE_PARTS,
  mixtral: [["block_sparse_moe.gate.weight", "ffn_gate_inp.weight"]],
};

/** HF spelling of the routed experts' projections per naming (MODELS.md § 8.2). */
const EXPERT_PROJ: Record<string, { prefix: string; gate: string; up: string; down: string }> = {
  qwen2moe: { prefix: "mlp.experts", gate: "gate_proj", up: "up_proj", down: "down_proj" },
  qwen3moe: { prefix: "mlp.experts", gate: "gate_proj", up: "up_proj", down: "down_proj" },
  mixtral: { prefix: "block_sparse_moe.experts", gate: "w1", up: "w3", down: "w2" },
};

const TOP_PARTS: [string, string][] = [
  ["model.embed_tokens.weight", "token_embd.weight"],
  ["model.norm.weight", "output_norm.weight"],
  ["lm_head.weight", "output.weight"],
];
const HF_TOP = new Map(TOP_PARTS);
const GG_TOP = new Map(TOP_PARTS.map(([a, b]) => [b, a]));

const tables = new Map<string, { hf: Map<string, string>; gg: Map<string, string> }>();
function tableOf(naming: string) {
  let t = tables.get(naming);
  if (!t) {
    const parts = [...BLOCK_PARTS, ...(ARCH_PARTS[naming] ?? [])];
    t = { hf: new Map(parts), gg: new Map(parts.map(([a, b]) => [b, a])) };
    tables.set(naming, t);
  }
  return t;
}

/**
 * The naming a model's tensors follow: its GGUF architecture, or "mixtral" for the llama
 * architecture with Mixtral's experts.
 */
export function ggufNaming(ggufArch: string, moeStyle?: "qwen" | "mixtral"): string {
  return moeStyle === "mixtral" ? "mixtral" : ggufArch;
}

/** A routed expert's Linear weight: the stacked GGUF tensor it goes into and its expert index. */
export interface ExpertSlot {
  /** e.g. `blk.3.ffn_gate_exps.weight`. */
  stacked: string;
  expert: number;
  layer: number;
  proj: "gate" | "up" | "down";
}

/** The stacked tensor of an expert weight `model.layers.N.<experts>.E.<proj>.weight`, or undefined. */
export function expertSlot(name: string, naming: string): ExpertSlot | undefined {
  const p = EXPERT_PROJ[naming];
  if (!p) return undefined;
  const m = /^model\.layers\.(\d+)\.(.+)\.(\d+)\.([^.]+)\.weight$/.exec(name);
  if (!m || m[2] !== p.prefix) return undefined;
  const proj = (["gate", "up", "down"] as const).find((w) => p[w] === m[4]);
  if (!proj) return undefined;
  return { stacked: `blk.${m[1]}.ffn_${proj}_exps.weight`, expert: Number(m[3]), layer: Number(m[1]), proj };
}

/** HF name of expert `e`'s weight in stacked tensor `blk.N.ffn_{proj}_exps.weight`, or undefined. */
export function expertHfName(stacked: string, e: number, naming: string): string | undefined {
  const p = EXPERT_PROJ[naming];
  const m = /^blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight$/.exec(stacked);
  if (!p || !m) return undefined;
  return `model.layers.${m[1]}.${p.prefix}.${e}.${p[m[2] as "gate" | "up" | "down"]}.weight`;
}

/**
 * GGUF name of a HF tensor name, or undefined when it has none. `naming` is the GGUF architecture
 * (see {@link ggufNaming}); a routed expert's weight maps to its stacked tensor.
 *
 * @example
 * ```ts
 * hfToGgufName("model.layers.3.mlp.down_proj.weight"); // "blk.3.ffn_down.weight"
 * hfToGgufName("model.layers.0.pre_feedforward_layernorm.weight", "gemma2"); // "blk.0.ffn_norm.weight"
 * ```
 */
export function hfToGgufName(name: string, naming = "llama"): string | undefined {
  const top = HF_TOP.get(name);
  if (top) return top;
  const slot = expertSlot(name, naming);
  if (slot) return slot.stacked;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  const part = m && tableOf(naming).hf.get(m[2]);
  return part ? `blk.${m![1]}.${part}` : undefined;
}

/** HF name of a GGUF tensor name (inverse of {@link hfToGgufName}; stacked experts excepted). */
export function ggufToHfName(name: string, naming = "llama"): string | undefined {
  const top = GG_TOP.get(name);
  if (top) return top;
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  const part = m && tableOf(naming).gg.get(m[2]);
  return part ? `model.layers.${m![1]}.${part}` : undefined;
}

/** Whether llama.cpp's converter permutes q/k rows for this GGUF architecture. */
export function permutesQK(ggufArch: string): boolean {
  return ggufArch === "llama";
}

/**
 * convert_hf_to_gguf.py `permute`: rows `[heads, 2, D/2]` → `[heads, D/2, 2]` for a `[rows, cols]`
 * row-major weight (or a bias, cols = 1). GGUF row h·D + 2i + j comes from HF row h·D + j·D/2 + i.
 */
export function permuteRowsHfToGguf<T extends Float32Array | Float64Array | Uint8Array>(
  w: T,
  rows: number,
  cols: number,
  heads: number,
): T {
  return permuteRows(w, rows, cols, heads, true);
}

/** Inverse of {@link permuteRowsHfToGguf}. */
export function permuteRowsGgufToHf<T extends Float32Array | Float64Array | Uint8Array>(
  w: T,
  rows: number,
  cols: number,
  heads: number,
): T {
  return permuteRows(w, rows, cols, heads, false);
}

/** Moves row h·D + j·D/2 + i (HF order) to h·D + 2i + j (GGUF order), or back when `!toGguf`. */
function permuteRows<T extends Float32Array | Float64Array | Uint8Array>(
  w: T,
  rows: number,
  cols: number,
  heads: number,
  toGguf: boolean,
): T {
  const out = new (w.constructor as new (n: number) => T)(w.length);
  const d = rows / heads, half = d / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const gguf = h * d + 2 * i + j, hf = h * d + j * half + i;
        const src = toGguf ? hf : gguf, dst = toGguf ? gguf : hf;
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

/** Heads a q/k tensor is permuted with (n_head for q, n_head_kv for k), or 0 for other tensors. */
export function qkHeads(hfName: string, nHeads: number, nKvHeads: number): number {
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(hfName)) return nHeads;
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(hfName)) return nKvHeads;
  return 0;
}
