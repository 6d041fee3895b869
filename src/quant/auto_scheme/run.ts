/**
 * AutoScheme inside a quantize run (spec/AUTOSCHEME.md § 1, § 3, § 6): resolve the options, score
 * them on the scoring samples (score.ts), choose per-layer schemes (select.ts), and turn the choice
 * into per-layer overrides for resolveLayerConfig, so the run then quantizes (SignRound or RTN with
 * its own settings, § 6) and the exporters write `extra_config` as for --layer_config.
 *
 * This build scores weight-only integer options (W2A16 … W8A16, W2A16G64, W2A16G32) and BF16; the
 * others (MX/NV/FP8, INT8_W8A8, MXINT4, GGUF:*) are refused with one line.
 */
import type { Backend } from "../../backend/backend.ts";
import { UsageError } from "../../errors.ts";
import type { EnvReader } from "../../io/model_source.ts";
import { loadCalibration } from "../../io/calib.ts";
import type { Checkpoint } from "../../io/checkpoint.ts";
import type { Tokenizer } from "../../io/tokenizer.ts";
import type { Log } from "../../log.ts";
import type { WeightSource } from "../../model/transformer.ts";
import { blockPrefix } from "../../model/config.ts";
import { isIntWeightOnly, type QuantScheme } from "../../qmath/quantized.ts";
import { type LayerOverride, resolveLayerConfig } from "../layer_config.ts";
import type { SchemeOverrides } from "../scheme.ts";
import { type AutoOption, defaultOptionIndex, resolveOptions } from "./options.ts";
import { scoreOptions, type ScoreQuantizer } from "./score.ts";
import { type AutoLayer, chooseSchemes, type Selection } from "./select.ts";

/** `AutoScheme` fields (§ 1.1) as QuantizeOptions.autoScheme. */
export interface AutoSchemeConfig {
  /** `avg_bits` (one target; the list form is not handled by the compressor either, § 8). */
  avgBits: number;
  /** A string (§ 1.1 string parsing) or a list of names. */
  options: string | readonly string[];
  sharedLayers?: readonly (readonly string[])[];
  ignoreScaleZpBits?: boolean;
  /** Scoring samples, tokens and batch (§ 1.4; environment variables take part as there). */
  nsamples?: number;
  seqlen?: number;
  batchSize?: number;
  /** Scheme overrides of the command line (--group_size, --asym, …), applied to every option (§ 1.2). */
  overrides?: SchemeOverrides;
}

/** Resolved options and the run's default scheme (§ 1.2). */
export interface AutoSchemeOptions {
  options: AutoOption[];
  defaultIndex: number;
  scheme: QuantScheme;
}

/** § 1.1-1.2 with this build's restriction: weight-only int options and BF16, a quantizing default. */
export function resolveAutoScheme(cfg: AutoSchemeConfig, log?: Log): AutoSchemeOptions {
  const r = resolveOptions(cfg.options, cfg.overrides ?? {});
  for (const w of r.warnings) log?.warn(w);
  if (r.dropped.length) log?.info(`AutoScheme: dropped duplicate options ${r.dropped.join(", ")}`);
  const bad = r.options.filter((o) => !o.keep16 && !(o.scheme && isIntWeightOnly(o.scheme)));
  if (bad.length) {
    throw new UsageError(
      `AutoScheme options ${bad.map((o) => o.name).join(", ")} are not supported by this build yet ` +
        `(weight-only int schemes such as W2A16, W4A16, W8A16, W2A16G32, and BF16 are)`,
    );
  }
  const defaultIndex = defaultOptionIndex(r.options);
  const scheme = r.options[defaultIndex].scheme;
  if (!scheme) {
    throw new UsageError(
      `AutoScheme's default scheme would be ${r.options[defaultIndex].name} (options[0], § 1.2): ` +
        `put a quantizing option first`,
    );
  }
  if (!Number.isFinite(cfg.avgBits)) throw new UsageError(`--avg_bits must be a number`);
  return { options: r.options, defaultIndex, scheme };
}

/** § 1.4: nsamples/seqlen env > config; batch_size config > env; defaults 16, 256, 8. */
export function scoringParams(cfg: AutoSchemeConfig, env: EnvReader = Deno.env) {
  const envInt = (name: string) => {
    const s = env.get(name);
    if (s === undefined) return undefined;
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer, got ${s}`);
    return n;
  };
  return {
    nsamples: envInt("AR_AUTO_SCHEME_NSAMPLES") ?? cfg.nsamples ?? 16,
    seqlen: envInt("AR_AUTO_SCHEME_SEQLEN") ?? cfg.seqlen ?? 256,
    batchSize: cfg.batchSize ?? envInt("AR_AUTO_SCHEME_BATCH_SIZE") ?? 8,
  };
}

/** What the AutoScheme step needs from the run. */
export interface AutoSchemeRunInput {
  be: Backend;
  ckpt: Checkpoint;
  tok: Tokenizer;
  dataset: string;
  seed: number;
  cfg: AutoSchemeConfig;
  resolved: AutoSchemeOptions;
  userLayers: Record<string, LayerOverride>;
  ignoreLayers: string[];
  log: Log;
  env?: EnvReader;
  /** Read the weights through this instead of the checkpoint's (tests count reads). */
  weights?: WeightSource;
  quantizer?: ScoreQuantizer;
}

/** The AutoScheme step's result: the layer overrides for the run and the selection. */
export interface AutoSchemeResult {
  layerConfig: Record<string, LayerOverride>;
  selection: Selection;
  layers: AutoLayer[];
}

/** `quant_layer_names` with fixed schemes (§ 2.3) from this build's layer plan of the default scheme. */
export function autoLayers(
  ckpt: Checkpoint,
  res: AutoSchemeOptions,
  userLayers: Record<string, LayerOverride>,
  ignore: string[],
): AutoLayer[] {
  const plan = resolveLayerConfig(ckpt.spec, res.scheme, userLayers, ignore);
  const out: AutoLayer[] = [];
  for (const [name, p] of plan.layers) {
    const l: AutoLayer = { name, inFeatures: p.inFeatures, outFeatures: p.outFeatures };
    if (!p.quantize) l.fixed = { bits: 16, data_type: "fp" };
    else if (p.fromUser) {
      l.fixed = { bits: p.scheme.bits, group_size: p.scheme.groupSize, sym: p.scheme.sym, data_type: "int" };
    } else {
      for (const o of res.options) {
        const g = o.fields.group_size ?? 0;
        if (!o.keep16 && g > 0 && g < l.inFeatures && l.inFeatures % g !== 0) {
          throw new UsageError(
            `AutoScheme option ${o.name}: group size ${g} does not divide ${name}'s input size ` +
              `${l.inFeatures} (set --group_size)`,
          );
        }
      }
    }
    out.push(l);
  }
  return out;
}

/** Score, select, and return the run's per-layer overrides (§ 3, § 4, § 6). */
export async function runAutoScheme(a: AutoSchemeRunInput): Promise<AutoSchemeResult> {
  const { ckpt, resolved, log } = a;
  const spec = ckpt.spec;
  const layers = autoLayers(ckpt, resolved, a.userLayers, a.ignoreLayers);
  const sp = scoringParams(a.cfg, a.env);
  const calib = await loadCalibration(a.dataset, a.tok, {
    seqlen: sp.seqlen,
    nsamples: sp.nsamples,
    seed: 42,
  });
  for (const w of calib.warnings) log.warn(w);
  log.info(
    `AutoScheme: scoring ${resolved.options.map((o) => o.name).join(", ")} on ${calib.nsamples} samples × ` +
      `${calib.seqlen} tokens (batch ${sp.batchSize}) from ${calib.source}`,
  );
  const scored = new Set(layers.filter((l) => !l.fixed).map((l) => l.name));
  const { scores } = await scoreOptions({
    be: a.be,
    spec,
    weights: a.weights ?? ckpt.weights,
    options: resolved.options,
    scored,
    ids: calib.ids,
    lossMask: calib.lossMask,
    nsamples: calib.nsamples,
    seqlen: calib.seqlen,
    batchSize: sp.batchSize,
    quantizer: a.quantizer,
    log: (s) => log.info(s),
  });
  const selection = chooseSchemes({
    layers,
    options: resolved.options,
    scores,
    target: a.cfg.avgBits,
    ignoreScaleZpBits: a.cfg.ignoreScaleZpBits,
    sharedLayers: a.cfg.sharedLayers,
    blocks: Array.from({ length: spec.nLayers }, (_, i) => blockPrefix(i, spec).slice(0, -1)),
    tiedEmbeddings: spec.tieEmbeddings,
  });
  const layerConfig: Record<string, LayerOverride> = { ...a.userLayers };
  const counts = new Map<string, number>();
  for (const [name, oi] of selection.choice) {
    const o = resolved.options[oi];
    counts.set(o.name, (counts.get(o.name) ?? 0) + 1);
    layerConfig[name] = o.keep16 ? { bits: 16 } : {
      bits: o.scheme!.bits,
      group_size: o.scheme!.groupSize,
      sym: o.scheme!.sym,
      data_type: o.scheme!.dataType,
    };
  }
  const fixed = layers.length - selection.choice.size;
  log.info(
    `AutoScheme: ${[...counts].map(([n, c]) => `${n} ×${c}`).join(", ")}${
      fixed ? `, ${fixed} fixed` : ""
    }; ` +
      `average bits ${selection.finalAvgBits.toFixed(4)} (target ${selection.target})`,
  );
  return { layerConfig, selection, layers };
}
