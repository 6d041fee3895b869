/**
 * A GGUF file opened as a model for our own forward pass (eval, generate): its metadata as a
 * config.json (formats/gguf/metadata.ts), Hugging Face tensor names (formats/gguf/names.ts) and
 * weights dequantized to f32 (formats/gguf/file.ts).
 */
import { FormatError } from "../errors.ts";
import { GgufFile, type GgufTensorInfo } from "../formats/gguf/file.ts";
import { ggufModelConfig } from "../formats/gguf/metadata.ts";
import {
  expertHfName,
  ggufNaming,
  ggufToHfName,
  hfToGgufName,
  permuteRowsGgufToHf,
  permutesQK,
  qkHeads,
} from "../formats/gguf/names.ts";
import { type ModelSpec, parseModelConfig } from "../model/config.ts";
import type { WeightSource } from "../model/transformer.ts";

/** A GGUF file opened as a model: spec, config and a WeightSource with HF names (dequantized f32). */
export interface GgufModel extends Disposable {
  file: GgufFile;
  config: Record<string, unknown>;
  spec: ModelSpec;
  weights: WeightSource;
}

/**
 * Open a GGUF file for our own forward pass: HF tensor names, weights dequantized to f32, q/k rows
 * put back into HF order for the "llama" architecture, stacked experts split per expert and Gemma's
 * stored 1 + w norms back to w (spec/MODELS.md § 8.5).
 *
 * @example
 * ```ts
 * using m = await openGgufModel("out/stories260K-Q4_K_M.gguf");
 * using model = await LoadedModel.load(be, m.spec, m.weights);
 * ```
 */
export async function openGgufModel(path: string): Promise<GgufModel> {
  const file = await GgufFile.open(path);
  try {
    const arch = file.str("general.architecture") ?? "";
    const hasFactors = file.tensors.some((t) => t.name === "rope_factors_long.weight");
    const factors = hasFactors
      ? {
        long: [...await file.readF32("rope_factors_long.weight")],
        short: [...await file.readF32("rope_factors_short.weight")],
      }
      : undefined;
    const config = ggufModelConfig(file, factors);
    const spec = parseModelConfig(config, path);
    const permute = permutesQK(arch);
    const naming = ggufNaming(arch, spec.moe?.style);
    // HF name → tensor, and the expert's index for the slices of a stacked `*_exps` tensor.
    const names = new Map<string, { t: GgufTensorInfo; expert?: number }>();
    for (const t of file.tensors) {
      const hf = ggufToHfName(t.name, naming);
      if (hf) names.set(hf, { t });
      for (let e = 0; t.ne.length === 3 && e < t.ne[2]; e++) {
        const name = expertHfName(t.name, e, naming);
        if (name) names.set(name, { t, expert: e });
      }
    }
    // The last stacked tensor read, dequantized whole once for all its experts.
    let cached: { name: string; w: Float32Array } | undefined;
    const read = async (t: GgufTensorInfo) => {
      if (cached?.name !== t.name) cached = { name: t.name, w: await file.readF32(t.name) };
      return cached.w;
    };
    const get = (n: string) => {
      const hit = names.get(n);
      if (!hit) {
        throw new FormatError(
          `tensor "${n}" (${hfToGgufName(n, naming) ?? "no GGUF name"}) is missing`,
          path,
        );
      }
      return hit;
    };
    const weights: WeightSource = {
      origin: path,
      has: (n) => names.has(n),
      shape: (n) => {
        const { t, expert } = get(n);
        if (expert !== undefined) return [t.ne[1], t.ne[0]];
        // The shared-expert gate is stored as a vector (families: qwen2moe ffn_gate_inp_shexp).
        if (n.endsWith("shared_expert_gate.weight")) return [1, t.ne[0]];
        return [...t.ne].reverse();
      },
      readF32: async (n) => {
        const { t, expert } = get(n);
        if (expert !== undefined) {
          const size = t.ne[0] * t.ne[1];
          return (await read(t)).slice(expert * size, (expert + 1) * size);
        }
        const w = await file.readF32(t.name);
        // Gemma's GGUF norms hold 1 + w (the converter's shift); the ModelSpec wants w.
        if (spec.normOffset && n.endsWith("norm.weight")) { for (let i = 0; i < w.length; i++) w[i] -= 1; }
        const heads = permute ? qkHeads(n, spec.nHeads, spec.nKvHeads) : 0;
        if (!heads) return w;
        const rows = t.ne.length > 1 ? t.ne[1] : t.ne[0];
        const cols = t.ne.length > 1 ? t.ne[0] : 1;
        return permuteRowsGgufToHf(w, rows, cols, heads);
      },
    };
    return { file, config, spec, weights, [Symbol.dispose]: () => file[Symbol.dispose]() };
  } catch (e) {
    file[Symbol.dispose]();
    throw e;
  }
}
