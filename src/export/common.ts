/**
 * Pieces the safetensors-based exporters share: the tuning settings AutoRound records in every
 * `quantization_config`, per-layer differences from the run scheme, and dtype handling.
 */
import type { ModelSpec } from "../model/config.ts";
import { decodeFloats, encodeFloats, type FloatDType, type StDType } from "../tensor/dtype.ts";
import { AUTOROUND_COMPAT_VERSION } from "../version.ts";
import type { ExportContext } from "./exporter.ts";

/** The checkpoint's float dtype as a safetensors dtype. */
export function checkpointDType(spec: ModelSpec): FloatDType {
  return spec.torchDtype === "bfloat16" ? "BF16" : spec.torchDtype === "float16" ? "F16" : "F32";
}

/** Re-encode a float tensor in `to` (non-float tensors pass through). */
export function convertFloat(
  dtype: StDType,
  bytes: Uint8Array,
  to: FloatDType,
): { dtype: StDType; bytes: Uint8Array } {
  if (dtype === to || (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16" && dtype !== "F64")) {
    return { dtype, bytes };
  }
  return { dtype: to, bytes: encodeFloats(decodeFloats(bytes, dtype), to) };
}

/** The run settings AutoRound's serialization_dict carries (auto-round keys and names). */
export function tuningConfig(ctx: ExportContext): Record<string, unknown> {
  const r = ctx.run, s = r.scheme;
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
  ctx: ExportContext,
): Map<string, { bits: number; group_size: number; sym: boolean }> {
  const s = ctx.run.scheme;
  const out = new Map<string, { bits: number; group_size: number; sym: boolean }>();
  for (const [name, plan] of ctx.run.layers.layers) {
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

/** Set the dtype keys of a config.json object (transformers 4 `torch_dtype`, 5 `dtype`). */
export function withDType(config: Record<string, unknown>, dtype: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config, torch_dtype: dtype };
  if ("dtype" in config) out.dtype = dtype;
  return out;
}
