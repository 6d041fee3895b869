/**
 * Shared pieces of the export and GGUF tests: a quantize-and-export run through the real pipeline
 * and the format registry, the stories260K evaluation stream, and the bridge to llama.cpp
 * (node-llama-cpp under Node, installed by tests/consumers/install.sh; tests skip with a printed
 * reason when it is missing).
 */
import type { Backend } from "../../src/backend/backend.ts";
import { CpuBackend } from "../../src/backend/cpu/cpu_backend.ts";
import type { ExportContext, Exporter } from "../../src/export/exporter.ts";
import type { RunInfo } from "../../src/formats/run.ts";
import { GgufExporter } from "../../src/export/gguf.ts";
import { createExporters, parseFormats, resolveRunScheme } from "../../src/export/registry.ts";
import type { GgmlTypeName } from "../../src/qmath/gguf/types.ts";
import { loadCalibration } from "../../src/io/calib.ts";
import { openCheckpoint, overlaySource } from "../../src/io/checkpoint.ts";
import { Tokenizer } from "../../src/io/tokenizer.ts";
import { silentLog } from "../../src/log.ts";
import type { WeightSource } from "../../src/model/transformer.ts";
import { LoadedModel } from "../../src/model/transformer.ts";
import type { ModelSpec } from "../../src/model/config.ts";
import { documentStream, windowedPerplexity } from "../../src/eval/perplexity.ts";
import { type LayerOverride, resolveLayerConfig } from "../../src/quant/layer_config.ts";
import { type PipelineInput, runPipeline } from "../../src/quant/pipeline.ts";
import type { QuantScheme } from "../../src/qmath/quantized.ts";
import { dirname, fromFileUrl, join } from "./path.ts";

export const REPO = join(dirname(fromFileUrl(import.meta.url)), "..", "..");
export const STORIES = join(REPO, "tests", "fixtures", "stories260K");
export const CONSUMERS = join(REPO, "tests", "consumers");

/** Options of {@link exportModel}. */
export interface ExportOptions {
  model: string;
  formats: string;
  out: string;
  /** Explicit scheme (undefined: the formats decide, W4A16 otherwise). */
  scheme?: QuantScheme;
  layerConfig?: Record<string, LayerOverride>;
  ignoreLayers?: string[];
  /** Calibration: text file, samples, tokens per sample. */
  dataset?: string;
  nsamples?: number;
  seqlen?: number;
  disableOptRtn?: boolean;
  be?: Backend;
  /** GGUF only: write every weight in this type (e.g. F32) instead of the format's mix. */
  forceType?: GgmlTypeName;
  /** GGUF only: quantize on a device (ExportContext.ggufQuantizer) instead of the host. */
  ggufQuantizer?: ExportContext["ggufQuantizer"];
}

/** What a run left behind. */
export interface ExportRun {
  exporters: Exporter[];
  /** The in-memory fake-quantized weights of the packed scheme (HF names). */
  fakeWeights: Map<string, Float32Array>;
  spec: ModelSpec;
  seconds: number;
}

const W4G32: QuantScheme = { bits: 4, groupSize: 32, sym: true, dataType: "int" };

/**
 * Quantize `model` with RTN (opt-RTN with the importance matrix from the calibration text) and write
 * `formats` into `out`, the way the CLI's run does: registry → pipeline → exporters.
 */
export async function exportModel(o: ExportOptions): Promise<ExportRun> {
  const t0 = performance.now();
  const formats = parseFormats(o.formats);
  const { scheme } = resolveRunScheme(formats, o.scheme, W4G32, 0);
  using ckpt = await openCheckpoint(o.model);
  const layers = resolveLayerConfig(ckpt.spec, scheme, o.layerConfig ?? {}, o.ignoreLayers ?? []);
  const tok = await Tokenizer.fromDir(ckpt.dir);
  const calib = await loadCalibration(o.dataset ?? join(STORIES, "eval.txt"), tok, {
    seqlen: o.seqlen ?? 64,
    nsamples: o.nsamples ?? 16,
    seed: 42,
  });
  const be = o.be ?? new CpuBackend();
  const run: RunInfo = {
    scheme,
    layers,
    iters: 0,
    nsamples: calib.nsamples,
    seqlen: calib.seqlen,
    batchSize: 8,
    gradientAccumulateSteps: 1,
    enableMinmaxTuning: true,
    enableQuantedInput: false,
    lowGpuMemUsage: false,
    amp: false,
    dataset: o.dataset ?? "eval.txt",
    disableOptRtn: o.disableOptRtn,
  };
  const ctx: ExportContext = {
    spec: ckpt.spec,
    sourceDir: ckpt.dir,
    config: ckpt.config,
    run,
    maxShardSize: 5e9,
    ggufQuantizer: o.ggufQuantizer,
  };
  await Deno.mkdir(o.out, { recursive: true });
  const exporters = o.forceType
    ? formats.map((f) => new GgufExporter(o.out, ctx, f.name, { forceType: o.forceType }))
    : createExporters(formats, o.out, ctx);
  const fakeWeights = new Map<string, Float32Array>();
  await runPipeline({
    be,
    ckpt,
    scheme,
    layers,
    // RTN settings; written loosely so this helper follows the pipeline's settings type as it grows.
    settings: {
      iters: 0,
      disableOptRtn: o.disableOptRtn,
      batchSize: 8,
      gradientAccumulateSteps: 1,
      enableMinmaxTuning: true,
      notUseBestMse: false,
      dynamicMaxGap: -1,
      enableQuantedInput: false,
      lowGpuMemUsage: false,
      seed: 42,
    } as unknown as PipelineInput["settings"],
    calib,
    exporters,
    log: silentLog,
    onFakeWeight: (n, v) => fakeWeights.set(n, v),
  });
  for (const e of exporters) await e.finish();
  return { exporters, fakeWeights, spec: ckpt.spec, seconds: (performance.now() - t0) / 1000 };
}

/** The stories260K evaluation stream (README: 334 documents, 32,768 tokens). */
export async function storiesEvalIds(dir = STORIES): Promise<Int32Array> {
  const tok = await Tokenizer.fromDir(dir);
  return documentStream(await Deno.readTextFile(join(dir, "eval.txt")), (l) => tok.encode(l));
}

/** Perplexity of a model given by spec + weights over `ids`, windows of `seqlen` (f32 CPU forward). */
export async function perplexityOf(
  spec: ModelSpec,
  weights: WeightSource,
  ids: Int32Array,
  seqlen = 256,
  be: Backend = new CpuBackend(),
): Promise<number> {
  using m = await LoadedModel.load(be, spec, weights, { positions: seqlen });
  return (await windowedPerplexity(m, ids, { seqlen })).ppl;
}

/** Last-position logits of `ids` under our forward. */
export async function lastLogits(
  spec: ModelSpec,
  weights: WeightSource,
  ids: number[],
  be: Backend = new CpuBackend(),
): Promise<Float32Array> {
  using m = await LoadedModel.load(be, spec, weights, { positions: Math.max(ids.length, 8) });
  using h = m.hidden(Int32Array.from(ids), { batch: 1, seqLen: ids.length });
  using last = be.rows(h, ids.length - 1, 1);
  using lg = m.logits(last);
  return await be.read(lg);
}

/** A source with the pipeline's in-memory fake-quant weights over the fp checkpoint. */
export async function fakeQuantSource(model: string, fake: Map<string, Float32Array>) {
  const ckpt = await openCheckpoint(model);
  return { ckpt, weights: overlaySource(ckpt.weights, fake) };
}

// ---- llama.cpp through node-llama-cpp -----------------------------------------------------------

/** Why llama.cpp cannot run here, or undefined when it can. */
export async function llamaCppUnavailable(): Promise<string | undefined> {
  try {
    await Deno.stat(join(CONSUMERS, "node_modules", "node-llama-cpp", "package.json"));
  } catch {
    return "node-llama-cpp is not installed (run tests/consumers/install.sh)";
  }
  try {
    const p = await new Deno.Command("node", { args: ["--version"], stdout: "piped", stderr: "null" })
      .output();
    if (!p.success) return "node does not run";
  } catch {
    return "node is not on PATH";
  }
  return undefined;
}

/** One request to tests/consumers/llama_run.mjs. */
export interface LlamaRequest {
  model: string;
  /** Token id sequences: the logits of every position of each are returned (or only the last). */
  sequences?: number[][];
  lastOnly?: boolean;
  /** Perplexity over windows of `seqlen` of these ids (each window from position 0). */
  perplexity?: { ids: number[]; seqlen: number };
  /** Texts to tokenize with llama.cpp's own tokenizer. */
  tokenize?: string[];
  /** Greedy generation from a prompt (text, llama.cpp tokenizer with BOS). */
  generate?: { prompt: string; maxTokens: number };
}

/** Its answer. */
export interface LlamaResponse {
  logits?: number[][][];
  perplexity?: { ppl: number; meanNll: number; targets: number };
  tokens?: number[][];
  generated?: { ids: number[]; text: string };
  info?: Record<string, unknown>;
  error?: string;
}

/** Run llama.cpp (node-llama-cpp, CPU) on GGUF files: one process, one job per request. */
export async function runLlamaCpp(jobs: LlamaRequest[]): Promise<LlamaResponse[]> {
  const reqPath = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(reqPath, JSON.stringify({ jobs }));
    const out = await new Deno.Command("node", {
      args: [join(CONSUMERS, "llama_run.mjs"), reqPath],
      cwd: CONSUMERS,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    if (!out.success) {
      throw new Error(
        `llama_run.mjs failed (${out.code}): ${new TextDecoder().decode(out.stderr).slice(-2000)}`,
      );
    }
    const res = (JSON.parse(text.slice(text.indexOf("{"))) as { results: LlamaResponse[] }).results;
    res.forEach((r, i) => {
      if (r.error) throw new Error(`llama.cpp on ${jobs[i].model}: ${r.error}`);
    });
    return res;
  } finally {
    await Deno.remove(reqPath).catch(() => {});
  }
}

/** max |a − b| and the max |b| (for relative statements). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): { diff: number; scale: number } {
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { diff, scale };
}

/**
 * llama.cpp's gguf-py (numpy) as an independent codec, through gguf_py_check.py; undefined (and a
 * printed reason) when python3 or gguf-py is not available.
 */
export async function ggufPy(
  req: unknown,
): Promise<{ dequantize: string[]; quantize: string[] } | undefined> {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(path, JSON.stringify(req));
    const out = await new Deno.Command("python3", {
      args: [join(CONSUMERS, "gguf_py_check.py"), path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      console.log(
        `skipped: gguf-py not usable (${new TextDecoder().decode(out.stderr).trim().split("\n").pop()})`,
      );
      return undefined;
    }
    return JSON.parse(new TextDecoder().decode(out.stdout));
  } catch (e) {
    console.log(`skipped: python3 not available (${(e as Error).message})`);
    return undefined;
  } finally {
    await Deno.remove(path);
  }
}
