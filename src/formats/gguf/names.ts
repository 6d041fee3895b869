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
const TOP_PARTS: [string, string][] = [
  ["model.embed_tokens.weight", "token_embd.weight"],
  ["model.norm.weight", "output_norm.weight"],
  ["lm_head.weight", "output.weight"],
];
const HF_BLOCK = new Map(BLOCK_PARTS);
const GG_BLOCK = new Map(BLOCK_PARTS.map(([a, b]) => [b, a]));
const HF_TOP = new Map(TOP_PARTS);
const GG_TOP = new Map(TOP_PARTS.map(([a, b]) => [b, a]));

/**
 * GGUF name of a HF tensor name, or undefined when it has none.
 *
 * @example
 * ```ts
 * hfToGgufName("model.layers.3.mlp.down_proj.weight"); // "blk.3.ffn_down.weight"
 * ```
 */
export function hfToGgufName(name: string): string | undefined {
  const top = HF_TOP.get(name);
  if (top) return top;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  const part = m && HF_BLOCK.get(m[2]);
  return part ? `blk.${m![1]}.${part}` : undefined;
}

/** HF name of a GGUF tensor name (inverse of {@link hfToGgufName}). */
export function ggufToHfName(name: string): string | undefined {
  const top = GG_TOP.get(name);
  if (top) return top;
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  const part = m && GG_BLOCK.get(m[2]);
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
