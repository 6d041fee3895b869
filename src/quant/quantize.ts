/**
 * `quantize()`: the whole job as a library call — open the model, resolve the plan, load the
 * calibration set, run the block pipeline, write every requested format, and move the output
 * into place only when everything succeeded. The CLI maps flags onto QuantizeOptions.
 */
import type { Backend } from "../backend/backend.ts";
import { createBackend, type DeviceName } from "../backend/select.ts";
import { UsageError } from "../errors.ts";
import type { ExportContext } from "../export/exporter.ts";
import { ggufQuantizerOf } from "./gguf_device.ts";
import type { RunInfo } from "../formats/run.ts";
import {
  checkFormats,
  createExporters,
  formatDirName,
  parseFormats,
  resolveRunScheme,
} from "../export/registry.ts";
import { peakRss, type RunSummary, summaryLine, treeBytes } from "./run_summary.ts";
import { isFloatGguf } from "../formats/gguf/presets.ts";
import { type CalibrationSet, loadCalibration } from "../io/calib.ts";
import { type Checkpoint, openCheckpoint } from "../io/checkpoint.ts";
import { OutputFolder } from "../io/output_folder.ts";
import { Tokenizer } from "../io/tokenizer.ts";
import type { Log } from "../log.ts";
import { Progress } from "../log.ts";
import {
  compressLayerNames,
  type LayerConfigResult,
  type LayerOverride,
  resolveLayerConfig,
} from "./layer_config.ts";
import { type BlockReport, runPipeline } from "./pipeline.ts";
import { usesOptRtn } from "./linear_state.ts";
import { JOURNAL_DIR, RunJournal } from "./journal.ts";
import { VERSION } from "../version.ts";
import { textBlocksName } from "../model/multimodal.ts";
import { type FloatScheme, isIntWeightOnly, type QuantScheme } from "../qmath/quantized.ts";
import { needsCalibration } from "./act_quant.ts";
import { CpuBackend } from "../backend/cpu/cpu_backend.ts";
import { type AutoSchemeConfig, resolveAutoScheme, runAutoScheme } from "./auto_scheme/run.ts";

/** Everything a quantization run needs (CLI flags map onto these). */
export interface QuantizeOptions {
  model: string;
  outputDir: string;
  formats: string[];
  scheme: QuantScheme;
  /** Whether the scheme was given explicitly (--scheme/--bits/...); otherwise GGUF formats choose it. */
  schemeGiven?: boolean;
  layerConfig?: Record<string, LayerOverride>;
  ignoreLayers?: string[];
  /** AutoScheme (spec/AUTOSCHEME.md): choose per-layer schemes first; `scheme` is then replaced (§ 1.3). */
  autoScheme?: AutoSchemeConfig;
  iters: number;
  /** SignRound learning rates (undefined: auto-round's 1/iters rule). */
  lr?: number;
  minmaxLr?: number;
  enableMinmaxTuning?: boolean;
  notUseBestMse?: boolean;
  dynamicMaxGap?: number;
  /** SignRoundV2 (auto-round enable_alg_ext). */
  enableAlgExt?: boolean;
  enableQuantedInput?: boolean;
  lowGpuMemUsage?: boolean;
  nsamples: number;
  seqlen: number;
  batchSize: number;
  gradientAccumulateSteps?: number;
  seed?: number;
  dataset: string;
  disableOptRtn?: boolean;
  maxShardSize: number;
  device?: DeviceName;
  /** CPU threads when the backend is the CPU (default every core). */
  threads?: number;
  /** `--deterministic` (BackendOptions.deterministic) for the backend created for `device`. */
  deterministic?: boolean;
  /** Use this backend instead of creating one for `device` (tests). */
  backend?: Backend;
  /** Runs after validation and before quantization (e.g. the fp perplexity for --eval_text). */
  beforeRun?: (ctx: { be: Backend; ckpt: Checkpoint; tok: Tokenizer }) => Promise<void>;
  /** Receives each quantized Linear's fake-quantized weight (in-memory model checks). */
  onFakeWeight?: (name: string, values: Float32Array) => void;
  /** Called after each block with its report and the progress so far (e.g. --log_json). */
  onBlock?: (r: BlockReport, progress: BlockProgressInfo) => void;
  /** Called as each phase of the run starts (e.g. --log_json). */
  onPhase?: (phase: QuantizePhase) => void;
  /**
   * Continue the run a killed process left in `<outputDir>.partial` (same settings), from its
   * journal's last finished block; without it such a folder is removed and the run starts over.
   */
  resume?: boolean;
}

/** The phases of a run, in order: load the model, read the calibration data (when needed), quantize
 * block by block (the exporters write each block as it is done), finish the formats' files. */
export type QuantizePhase = "load" | "calibrate" | "quantize" | "export";

/** Where a run is after a block: blocks done (1-based) of total, seconds so far and the estimate left. */
export interface BlockProgressInfo {
  index: number;
  total: number;
  elapsedSeconds: number;
  /** Seconds left for the remaining blocks at the average block time so far. */
  etaSeconds: number;
}

/** auto-round's per-block line: "quantized 4/7 layers in the block, loss iter 0: L0 -> iter k: Lbest". */
export function blockSummary(r: BlockReport): string {
  const n = r.quantized.length, total = n + r.skipped.length;
  const loss = r.lossStart !== undefined
    ? `, loss iter 0: ${r.lossStart.toFixed(6)} -> iter ${r.bestIter}: ${r.lossBest!.toFixed(6)}`
    : "";
  const when = r.replayed
    ? ` (${r.seconds.toFixed(2)}s when tuned; replayed from the journal)`
    : `, ${r.seconds.toFixed(2)}s`;
  return `quantized ${n}/${total} layers in the block${loss}${when}`;
}

/** What a run produced. */
export interface QuantizeResult {
  outputDir: string;
  layers: LayerConfigResult;
  blocks: BlockReport[];
  calibration?: { nsamples: number; seqlen: number; source: string };
  seconds: number;
  summary: RunSummary;
}

/** Refuse the combinations this build does not implement yet, before any work (one line each). */
function checkNotYet(o: QuantizeOptions, s: QuantScheme, log: Log): void {
  const v2 = o.enableAlgExt && o.iters > 0 && s.sym;
  if (v2 && s.dataType === "mx_int") {
    // auto-round's V2 falls back to the mx_fp4 grid for mx_int (SCHEMES.md § 12.1), which the MXINT4
    // packer cannot store: refused instead of reproducing that.
    throw new UsageError(
      "--enable_alg_ext with MXINT4 is not supported (auto-round's runs it on the mx_fp4 grid)",
    );
  }
  // auto-round's own caution (sign_roundv2/quantizer.py prepare_run).
  if (v2 && s.dataType === "int" && s.bits > 2) {
    log.warn("algorithm extension has only undergone limited validation on W2A16, INT4, MXFP4 and NVFP4");
  }
}

/** Quantize a model and write the formats; the output folder appears only on success. */
export async function quantize(o: QuantizeOptions, log: Log): Promise<QuantizeResult> {
  const t0 = performance.now();
  o.onPhase?.("load");
  const auto = o.autoScheme ? resolveAutoScheme(o.autoScheme, log) : undefined;
  const given = auto?.scheme ?? o.scheme;
  const formats = parseFormats(o.formats.join(","), given.bits);
  const rs = resolveRunScheme(formats, o.schemeGiven === false && !auto ? undefined : given, given, o.iters);
  const scheme = rs.scheme;
  checkNotYet(o, scheme, log);
  // Everything that can fail on bad input is checked before the slow work starts.
  await using out = await OutputFolder.create(o.outputDir, {
    resume: o.resume,
    keep: [JOURNAL_DIR],
    keepOnSignal: o.resume,
  });
  if (out.discardedStale) log.warn(`removed the unfinished run left in ${out.path} (--resume continues one)`);
  if (o.resume && !out.adopted) log.info(`--resume: no unfinished run in ${out.path}; starting from block 1`);
  using ckpt = await openCheckpoint(o.model);
  if (ckpt.quantMethod) throw new UsageError(`${ckpt.dir} is already quantized (${ckpt.quantMethod})`);
  const owned = o.backend ? undefined : await createBackend(o.device ?? "auto", log, {
    threads: o.threads,
    deterministic: o.deterministic,
  });
  try {
    const be = o.backend ?? owned!;
    let layerConfig = o.layerConfig ?? {};
    let tok = auto || o.beforeRun ? await Tokenizer.fromDir(ckpt.dir) : undefined;
    if (auto) {
      const args = { be, ckpt, tok: tok!, dataset: o.dataset, seed: o.seed ?? 42, log };
      layerConfig = (await runAutoScheme({
        ...args,
        cfg: o.autoScheme!,
        resolved: auto,
        userLayers: layerConfig,
        ignoreLayers: o.ignoreLayers ?? [],
      })).layerConfig;
    }
    const layers = resolveLayerConfig(ckpt.spec, scheme, layerConfig, o.ignoreLayers ?? []);
    for (const w of checkFormats(formats, layers, scheme, ckpt.spec)) log.warn(w);
    // Calibration feeds SignRound, opt-RTN's scale search, and GGUF's importance-weighted searches.
    // gguf:f32/f16/bf16 only: a conversion, nothing is quantized (the layer plan is not reported).
    const conversionOnly = formats.every((f) => f.kind === "gguf" && isFloatGguf(f.gguf!));
    const ggufNeedsImportance = o.iters === 0 &&
      formats.some((f) =>
        f.kind === "gguf" && !isFloatGguf(f.gguf!) && f.gguf!.base !== "MXFP4" &&
        !(o.disableOptRtn ?? f.gguf!.base === "Q8_0")
      );
    const needCalib = o.iters > 0 || ggufNeedsImportance ||
      // FP8_STATIC and NVFP4 calibrate their activation ranges (SCHEMES.md § 8.2), RTN included.
      [...layers.layers.values()].some((p) => p.quantize && p.scheme.act && needsCalibration(p.scheme.act)) ||
      (rs.packs &&
        [...layers.layers.values()].some((p) =>
          p.quantize && usesOptRtn(p.scheme, o.iters, o.disableOptRtn)
        ));
    // The tokenizer is only needed for calibration and evaluation: plain RTN runs without one.
    if (needCalib && !tok) tok = await Tokenizer.fromDir(ckpt.dir);
    let calib: CalibrationSet | undefined;
    if (needCalib) {
      o.onPhase?.("calibrate");
      calib = await loadCalibration(o.dataset, tok!, {
        seqlen: o.seqlen,
        nsamples: o.nsamples,
        seed: o.seed ?? 42,
      });
      for (const w of calib.warnings) log.warn(w);
      log.info(`calibration: ${calib.nsamples} samples × ${calib.seqlen} tokens from ${calib.source}`);
    }
    logPlan(log, ckpt, o, rs.describe, conversionOnly ? undefined : layers, needCalib, be);
    await o.beforeRun?.({ be, ckpt, tok: tok! });
    const run: RunInfo = {
      scheme,
      layers,
      iters: o.iters,
      nsamples: calib?.nsamples ?? o.nsamples,
      seqlen: o.seqlen,
      batchSize: o.batchSize,
      gradientAccumulateSteps: o.gradientAccumulateSteps ?? 1,
      lr: o.iters > 0 ? o.lr ?? 1 / o.iters : undefined,
      minmaxLr: o.iters > 0 ? o.minmaxLr ?? o.lr ?? 1 / o.iters : undefined,
      enableMinmaxTuning: o.enableMinmaxTuning ?? true,
      enableQuantedInput: o.iters > 0 && (o.enableQuantedInput ?? true),
      lowGpuMemUsage: o.lowGpuMemUsage ?? false,
      amp: be.computeDType !== "f32",
      dataset: o.dataset,
      blocksName: textBlocksName(ckpt.spec),
      disableOptRtn: o.disableOptRtn,
      // validateScheme admits float data types and INT8_W8A8 only symmetric.
      floatScheme: isIntWeightOnly(scheme) ? undefined : scheme as FloatScheme,
    };
    const ctx: ExportContext = {
      spec: ckpt.spec,
      sourceDir: ckpt.dir,
      config: ckpt.config,
      run,
      maxShardSize: o.maxShardSize,
      ggufQuantizer: ggufQuantizerOf(be),
      // The CPU backend's threads also run the host-side GGUF searches.
      pool: be instanceof CpuBackend ? be.pool : undefined,
    };
    // A failed run removes its folder, journal included (no partial output is ever left, issue 14);
    // only a killed process leaves one for --resume — and a refused resume leaves it as it was.
    const journal = await RunJournal.open(out.path, await fingerprint(o, ckpt, be), out.adopted).catch(
      (e) => {
        if (out.adopted) out.keep(); // a refused resume leaves the unfinished run as it was
        throw e;
      },
    );
    const exporters = createExporters(formats, out.path, ctx);
    const progress = new Progress("block", ckpt.spec.nLayers, (s) => log.info(s));
    o.onPhase?.("quantize");
    const blocks = await runPipeline({
      be,
      ckpt,
      scheme,
      layers,
      settings: {
        iters: o.iters,
        lr: o.lr,
        minmaxLr: o.minmaxLr,
        batchSize: o.batchSize,
        gradientAccumulateSteps: o.gradientAccumulateSteps ?? 1,
        enableMinmaxTuning: o.enableMinmaxTuning ?? true,
        notUseBestMse: o.notUseBestMse ?? false,
        dynamicMaxGap: o.dynamicMaxGap ?? -1,
        enableAlgExt: o.enableAlgExt ?? false,
        disableOptRtn: o.disableOptRtn,
        enableQuantedInput: o.enableQuantedInput ?? true,
        lowGpuMemUsage: o.lowGpuMemUsage ?? false,
        seed: o.seed ?? 42,
      },
      calib,
      exporters,
      log,
      onBlock: (r, i, total) => {
        const eta = progress.step(
          i,
          conversionOnly ? `converted, ${r.seconds.toFixed(2)}s` : blockSummary(r),
        );
        const elapsedSeconds = (performance.now() - t0) / 1000;
        o.onBlock?.(r, { index: i, total, elapsedSeconds, etaSeconds: eta });
      },
      onFakeWeight: o.onFakeWeight,
      journal,
    });
    o.onPhase?.("export");
    for (const e of exporters) await e.finish();
    await journal.remove();
    await out.commit();
    log.info(`wrote ${formats.map((f) => f.name).join(", ")} to ${out.finalDir}`);
    const rss = peakRss();
    const summary: RunSummary = {
      seconds: (performance.now() - t0) / 1000,
      peakRssBytes: rss.bytes,
      peakRssIsPeak: rss.isPeak,
      peakDeviceBytes: be.peakMemoryBytes?.(),
      device: be.name,
      bytesWritten: {},
    };
    for (const f of formats) {
      const dir = formats.length === 1 ? out.finalDir : `${out.finalDir}/${formatDirName(f.name)}`;
      summary.bytesWritten[f.name] = await treeBytes(dir);
    }
    log.info(summaryLine(summary));
    return {
      outputDir: out.finalDir,
      layers,
      blocks,
      calibration: calib && { nsamples: calib.nsamples, seqlen: calib.seqlen, source: calib.source },
      seconds: summary.seconds,
      summary,
    };
  } finally {
    owned?.[Symbol.dispose]();
  }
}

function logPlan(
  log: Log,
  ckpt: Checkpoint,
  o: QuantizeOptions,
  describe: string,
  layers: LayerConfigResult | undefined,
  needCalib: boolean,
  be: Backend,
): void {
  const spec = ckpt.spec;
  log.info(`model ${ckpt.dir}: ${spec.modelType}, ${spec.nLayers} blocks, hidden ${spec.hidden}`);
  const method = !layers
    ? "no quantization"
    : o.iters === 0
    ? (needCalib ? "optimized RTN" : "RTN")
    : `SignRound ${o.iters} iters`;
  log.info(`scheme: ${describe}; ${method}; device ${be.device}`);
  const reasons = new Map<string, string[]>();
  for (const [n, p] of layers?.layers ?? []) {
    if (!p.quantize) reasons.set(p.reason, [...(reasons.get(p.reason) ?? []), n]);
  }
  for (const [why, names] of reasons) {
    log.info(`kept in 16-bit (${why}): ${compressLayerNames(names).join(", ")}`);
  }
}

/**
 * What makes two runs the same run, for --resume: the program, the model's files, every setting
 * that changes a number, and the device (another device computes other roundings). Flags that
 * change no number (--low_gpu_mem_usage, the output folder) may differ.
 */
async function fingerprint(
  o: QuantizeOptions,
  ckpt: Checkpoint,
  be: Backend,
): Promise<Record<string, unknown>> {
  const files: [string, number, number][] = [];
  for await (const e of Deno.readDir(ckpt.dir)) {
    if (!e.isFile) continue;
    const st = await Deno.stat(`${ckpt.dir}/${e.name}`);
    files.push([e.name, st.size, st.mtime?.getTime() ?? 0]);
  }
  files.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  const dataset = await Deno.stat(o.dataset).then(
    (st) => [o.dataset, st.size, st.mtime?.getTime() ?? 0],
    () => o.dataset,
  );
  return {
    program: VERSION,
    model: ckpt.dir,
    modelFiles: files,
    device: `${be.name}: ${be.device}`,
    computeDType: be.computeDType,
    formats: o.formats,
    scheme: o.scheme,
    schemeGiven: o.schemeGiven,
    layerConfig: o.layerConfig ?? {},
    autoScheme: o.autoScheme,
    ignoreLayers: o.ignoreLayers ?? [],
    iters: o.iters,
    lr: o.lr,
    minmaxLr: o.minmaxLr,
    enableMinmaxTuning: o.enableMinmaxTuning,
    notUseBestMse: o.notUseBestMse,
    dynamicMaxGap: o.dynamicMaxGap,
    enableAlgExt: o.enableAlgExt,
    enableQuantedInput: o.enableQuantedInput,
    nsamples: o.nsamples,
    seqlen: o.seqlen,
    batchSize: o.batchSize,
    gradientAccumulateSteps: o.gradientAccumulateSteps,
    seed: o.seed,
    dataset,
    disableOptRtn: o.disableOptRtn,
    maxShardSize: o.maxShardSize,
  };
}
