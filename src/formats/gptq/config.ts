/**
 * The `quantization_config` keys of auto_round and auto_gptq, both directions: what our exporters
 * write (auto-round's `packing_format`, `extra_config`; GPTQ's `dynamic` rules) and how the loader
 * reads auto-round's packing back, plus the warning auto-round gives for asymmetric GPTQ. Sources:
 * auto_round/export/export_to_autoround/export.py, export_to_autogptq/export.py
 * (`convert_to_autogptq_dynamic`).
 */
import { toStandardRegex } from "../../model/config.ts";
import type { QuantScheme } from "../../qmath/quantized.ts";
import { AUTOROUND_COMPAT_VERSION, PRODUCER } from "../../version.ts";
import { layerDifferences, type RunInfo, tuningConfig } from "../run.ts";

/** The packing_format string auto-round writes for a default scheme. */
export function autoRoundPackingFormat(sym: boolean): string {
  return sym ? "auto_round:auto_gptq" : "auto_round";
}

/** `quantization_config` as auto-round writes it (plus the tuning settings FORMATS.md asks for). */
export function autoRoundQuantizationConfig(r: RunInfo, packing: string): Record<string, unknown> {
  const s = r.scheme;
  const extra: Record<string, Record<string, unknown>> = {};
  for (const [name, plan] of r.layers.layers) {
    if (!plan.quantize) {
      extra[name] = { bits: 16, data_type: "fp" };
      continue;
    }
    const diff: Record<string, unknown> = {};
    if (plan.scheme.bits !== s.bits) diff.bits = plan.scheme.bits;
    if (plan.scheme.groupSize !== s.groupSize) diff.group_size = plan.scheme.groupSize;
    if (plan.scheme.sym !== s.sym) diff.sym = plan.scheme.sym;
    if (Object.keys(diff).length) extra[name] = diff;
  }
  const cfg: Record<string, unknown> = {
    bits: s.bits,
    data_type: s.dataType,
    group_size: s.groupSize,
    sym: s.sym,
    batch_size: r.batchSize,
    gradient_accumulate_steps: r.gradientAccumulateSteps,
    iters: r.iters,
    nsamples: r.nsamples,
    seqlen: r.seqlen,
    enable_minmax_tuning: r.enableMinmaxTuning,
    enable_quanted_input: r.enableQuantedInput,
    low_gpu_mem_usage: r.lowGpuMemUsage,
    amp: r.amp,
    scale_dtype: "torch.float16",
    dataset: r.dataset,
    autoround_version: AUTOROUND_COMPAT_VERSION,
    block_name_to_quantize: r.blocksName ?? "model.layers",
    quant_method: "auto-round",
    packing_format: packing,
    producer: PRODUCER,
  };
  if (r.lr !== undefined) cfg.lr = r.lr;
  if (r.minmaxLr !== undefined) cfg.minmax_lr = r.minmaxLr;
  if (Object.keys(extra).length) cfg.extra_config = extra;
  return cfg;
}

/** `quantization_config` as save_quantized_as_autogptq writes it. */
export function autoGptqQuantizationConfig(run: RunInfo): Record<string, unknown> {
  const cfg: Record<string, unknown> = {
    ...tuningConfig(run),
    block_name_to_quantize: run.blocksName ?? "model.layers",
    quant_method: "gptq",
    desc_act: false,
    true_sequential: false,
    damp_percent: 0.01,
    static_groups: false,
    checkpoint_format: "gptq",
    lm_head: false,
    provider: "auto-round",
    producer: PRODUCER,
  };
  // Per-layer differences as GPTQ "dynamic" rules ("+:regex" quantize with these settings,
  // "-:regex" keep in 16-bit; convert_to_autogptq_dynamic).
  const dynamic: Record<string, Record<string, unknown>> = {};
  const skipped: string[] = [];
  for (const [name, d] of layerDifferences(run)) {
    const re = toStandardRegex(name);
    if (d.bits >= 16) {
      dynamic[`-:${re}`] = {};
      skipped.push(name);
    } else dynamic[`+:${re}`] = { bits: d.bits, group_size: d.group_size, sym: d.sym };
  }
  if (Object.keys(dynamic).length) cfg.dynamic = dynamic;
  if (skipped.length) {
    // modules_in_block_to_quantize: the quantized layers of the blocks, relative to the block.
    const inBlock = new Set<string>();
    for (const [name, p] of run.layers.layers) {
      if (p.quantize) inBlock.add(name.replace(/^model\.layers\.\d+\./, ""));
    }
    cfg.modules_in_block_to_quantize = [[...inBlock].sort()];
  }
  return cfg;
}

/**
 * How an auto-round folder packs (its `packing_format`): the AWQ layout for "auto_round:auto_awq",
 * else the GPTQ one, with zero points stored minus one for "auto_round:auto_gptq" and
 * "auto_round:gptq*" and as they are for plain "auto_round".
 */
export function autoRoundPacking(qc: Record<string, unknown>): { awq: boolean; zeroPlusOne: boolean } {
  const packing = typeof qc.packing_format === "string" ? qc.packing_format : "auto_round:auto_gptq";
  if (packing.includes("awq")) return { awq: true, zeroPlusOne: false };
  return { awq: false, zeroPlusOne: packing.includes("gptq") };
}

/** auto-round's warning for an asymmetric scheme written as auto_gptq; none otherwise. */
export function gptqWarnings(scheme: QuantScheme): string[] {
  return scheme.sym ? [] : [
    `the asymmetrical kernel of the GPTQ format may result in a noticeable accuracy drop (auto-round); ` +
    `auto_round or auto_awq store asymmetric weights better`,
  ];
}
