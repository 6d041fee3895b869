/**
 * A GGUF file opened as a model for our own forward pass (eval, generate): its metadata as a
 * config.json (formats/gguf/metadata.ts), Hugging Face tensor names (formats/gguf/names.ts) and
 * weights dequantized to f32 (formats/gguf/file.ts).
 */
import { FormatError } from "../errors.ts";
import { GgufFile, type GgufTensorInfo } from "../formats/gguf/file.ts";
import { ggufModelConfig } from "../formats/gguf/metadata.ts";
import {
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
 * Open a GGUF file for our own forward pass: HF tensor names, weights dequantized to f32 and q/k rows
 * put back into HF order for the "llama" architecture.
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
    const config = ggufModelConfig(file);
    const spec = parseModelConfig(config, path);
    const permute = permutesQK(file.str("general.architecture") ?? "");
    const names = new Map<string, GgufTensorInfo>();
    for (const t of file.tensors) {
      const hf = ggufToHfName(t.name);
      if (hf) names.set(hf, t);
    }
    const weights: WeightSource = {
      origin: path,
      has: (n) => names.has(n),
      shape: (n) => {
        const t = names.get(n);
        if (!t) {
          throw new FormatError(`tensor "${n}" (${hfToGgufName(n) ?? "no GGUF name"}) is missing`, path);
        }
        return [...t.ne].reverse();
      },
      readF32: async (n) => {
        const t = names.get(n);
        if (!t) throw new FormatError(`tensor "${n}" is missing`, path);
        const w = await file.readF32(t.name);
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
