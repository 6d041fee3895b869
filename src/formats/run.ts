/**
 * What a quantization run records in the files it writes: the scheme, the plan of every Linear and
 * the tuning settings (AutoRound's `serialization_dict`). Every format's `quantization_config`
 * is built from a {@link RunInfo}; src/quant/ fills it in.
 */
import type { FloatScheme, QuantScheme } from "../qmath/quantized.ts";
import { AUTOROUND_COMPAT_VERSION } from "../version.ts";

/** What happens to one Linear. */
export type LayerPlan =
  | { quantize: true; scheme: QuantScheme; fromUser: boolean }
  | { quantize: false; reason: string; fromUser: boolean };

/** Every Linear of the model with its plan, keyed by full layer name (quant/layer_config.ts resolves it). */
export interface PlannedLayers {
  layers: ReadonlyMap<string, LayerPlan>;
}

/** Settings of the run that the formats record in their configs. */
export interface RunInfo {
  scheme: QuantScheme;
  layers: PlannedLayers;
  iters: number;
  lr?: number;
  minmaxLr?: number;
  nsamples: number;
  seqlen: number;
  batchSize: number;
  gradientAccumulateSteps: number;
  enableMinmaxTuning: boolean;
  enableQuantedInput: boolean;
  lowGpuMemUsage: boolean;
  amp: boolean;
  dataset: string;
  /**
   * The text blocks' ModuleList, recorded as `block_name_to_quantize` (spec/MODELS.md § 9.3): e.g.
   * `language_model.model.layers` for Gemma 3, so loaders keep a VLM's vision tower 16-bit.
   * Absent: `model.layers`.
   */
  blocksName?: string;
  /**
   * `--disable_opt_rtn` (true) / `--enable_opt_rtn` (false) as given; undefined = AutoRound's default
   * (optimized RTN on at iters 0, off for 8-bit int). Formats that quantize by themselves (GGUF) read it.
   */
  disableOptRtn?: boolean;
  /**
   * The float / activation-quantized scheme of the run (MX, NVFP4, FP8, INT8_W8A8; SCHEMES.md § 1),
   * when its Linears are written with Exporter.writeFloatQuantized; the formats then write the float
   * quantization_config of SCHEMES.md § 10 instead of the integer one. Absent for integer runs.
   */
  floatScheme?: FloatScheme;
}

/** The run settings AutoRound's serialization_dict carries (auto-round keys and names). */
export function tuningConfig(r: RunInfo): Record<string, unknown> {
  const s = r.scheme;
  const cfg: Record<string, unknown> = {
    bits: s.bits,
    group_size: s.groupSize,
    sym: s.sym,
    data_type: s.dataType,
    iters: r.iters,
    nsamples: r.nsamples,
    seqlen: r.seqlen,
    batch_size: r.batchSize,
    gradient_accumulate_steps: r.gradientAccumulateSteps,
    enable_minmax_tuning: r.enableMinmaxTuning,
    enable_quanted_input: r.enableQuantedInput,
    low_gpu_mem_usage: r.lowGpuMemUsage,
    amp: r.amp,
    autoround_version: AUTOROUND_COMPAT_VERSION,
  };
  if (r.lr !== undefined) cfg.lr = r.lr;
  if (r.minmaxLr !== undefined) cfg.minmax_lr = r.minmaxLr;
  return cfg;
}

/** Layers whose quantization differs from the run scheme, with their settings (bits 16 = kept float). */
export function layerDifferences(
  r: RunInfo,
): Map<string, { bits: number; group_size: number; sym: boolean }> {
  const s = r.scheme;
  const out = new Map<string, { bits: number; group_size: number; sym: boolean }>();
  for (const [name, plan] of r.layers.layers) {
    if (!plan.quantize) {
      out.set(name, { bits: 16, group_size: s.groupSize, sym: s.sym });
    } else if (
      plan.scheme.bits !== s.bits || plan.scheme.groupSize !== s.groupSize || plan.scheme.sym !== s.sym
    ) {
      out.set(name, { bits: plan.scheme.bits, group_size: plan.scheme.groupSize, sym: plan.scheme.sym });
    }
  }
  return out;
}
