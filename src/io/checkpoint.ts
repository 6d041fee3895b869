/**
 * Open a model for reading: resolve the folder (or HF cache entry), parse config.json, and expose
 * its weights as a WeightSource. Quantized folders (auto_round, auto_gptq, …) are read through
 * their loader, which dequantizes on the fly, so evaluation treats every format alike.
 */
import { FormatError, InputError } from "../errors.ts";
import { type ModelSpec, parseModelConfig } from "../model/config.ts";
import { locateTextTower } from "../model/multimodal.ts";
import type { WeightSource } from "../model/transformer.ts";
import { nestsDeeperThan } from "../std/json.ts";
import { join } from "../std/path.ts";
import { resolveModelDir } from "./model_source.ts";
import { SafetensorsReader } from "./safetensors/reader.ts";
import { openQuantizedSource, withActivationQuant } from "./quantized_loader.ts";

/** An opened model folder. Close it with `using`. */
export interface Checkpoint extends Disposable {
  dir: string;
  config: Record<string, unknown>;
  spec: ModelSpec;
  reader: SafetensorsReader;
  /** Weights as f32 (dequantized when the folder is quantized). */
  weights: WeightSource;
  /** `quant_method` of a quantized folder, else undefined. */
  quantMethod?: string;
}

/** Deepest nesting config.json may have (real ones nest 3 or 4 levels; quantize writes it back). */
const MAX_CONFIG_DEPTH = 100;

/** Read and parse `<dir>/config.json`. */
export async function readConfig(dir: string): Promise<Record<string, unknown>> {
  const file = join(dir, "config.json");
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch {
    throw new InputError(`no config.json in the model folder`, dir);
  }
  try {
    const cfg = JSON.parse(text);
    if (typeof cfg !== "object" || cfg === null || Array.isArray(cfg)) throw new Error("not an object");
    if (nestsDeeperThan(cfg, MAX_CONFIG_DEPTH)) {
      throw new Error(`nested over ${MAX_CONFIG_DEPTH} levels deep`);
    }
    return cfg as Record<string, unknown>;
  } catch (e) {
    throw new FormatError(`config.json is not a JSON object: ${(e as Error).message}`, file);
  }
}

/** A WeightSource over a plain (unquantized) safetensors checkpoint. */
export function plainSource(reader: SafetensorsReader, origin: string): WeightSource {
  return {
    origin,
    has: (n) => reader.has(n),
    shape: (n) => reader.info(n).shape,
    readF32: (n) => reader.readF32(n),
    readRaw: async (n, into) => ({ dtype: reader.info(n).dtype, bytes: await reader.readBytes(n, into) }),
  };
}

/**
 * Open a model folder, a Hugging Face cache entry (`org/name`), or a quantized output folder.
 *
 * @example
 * ```ts
 * using ckpt = await openCheckpoint("tests/fixtures/stories260K");
 * console.log(ckpt.spec.nLayers);
 * ```
 */
export async function openCheckpoint(model: string): Promise<Checkpoint> {
  const dir = await resolveModelDir(model);
  const config = await readConfig(dir);
  const parsed = parseModelConfig(config, join(dir, "config.json"));
  const reader = await SafetensorsReader.open(dir);
  try {
    // A VLM's text tower under the names this checkpoint uses (spec/MODELS.md § 9.1).
    const spec = { ...parsed, ...locateTextTower(parsed, (n) => reader.has(n), dir) };
    const raw = config.quantization_config ?? undefined;
    if (raw !== undefined && (typeof raw !== "object" || Array.isArray(raw))) {
      throw new FormatError(`quantization_config is not an object`, join(dir, "config.json"));
    }
    const qc = raw as Record<string, unknown> | undefined;
    const weights = qc
      ? await withActivationQuant(openQuantizedSource(reader, qc, dir), reader, qc)
      : plainSource(reader, dir);
    return {
      dir,
      config,
      spec,
      reader,
      weights,
      quantMethod: qc ? (typeof qc.quant_method === "string" ? qc.quant_method : "?") : undefined,
      [Symbol.dispose]: () => reader.close(),
    };
  } catch (e) {
    reader.close();
    throw e;
  }
}

/** A WeightSource that serves `overrides` (e.g. fake-quantized weights) in place of `base`'s tensors. */
export function overlaySource(
  base: WeightSource,
  overrides: ReadonlyMap<string, Float32Array>,
): WeightSource {
  return {
    origin: base.origin,
    has: (n) => overrides.has(n) || base.has(n),
    shape: (n) => base.shape(n),
    readF32: (n) => overrides.has(n) ? Promise.resolve(overrides.get(n)!) : base.readF32(n),
  };
}
