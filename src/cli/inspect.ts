/**
 * `autoround inspect PATH`: what a checkpoint or output folder holds — architecture, tensor counts
 * and bytes by dtype, quantized layers and the quantization_config.
 */
import { InputError, UsageError } from "../errors.ts";
import { readConfig } from "../io/checkpoint.ts";
import { SafetensorsReader } from "../io/safetensors/reader.ts";
import type { Log } from "../log.ts";
import { parseModelConfig } from "../model/config.ts";
import { compressLayerNames } from "../quant/layer_config.ts";
import { type FlagSpec, parseFlags } from "../std/cli.ts";
import { join } from "../std/path.ts";
import { resolveModelDir } from "../io/model_source.ts";
import { formatGgufSummary, inspectGguf } from "../formats/gguf/summary.ts";

export const INSPECT_FLAGS: FlagSpec = {
  json: { type: "boolean" },
  tensors: { type: "boolean" },
  quiet: { type: "boolean" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

export const INSPECT_HELP = `autoround inspect — summarise a checkpoint or an output folder

Usage: autoround inspect PATH [--tensors] [--json]

  PATH        a model folder, a .safetensors or .gguf file, or a repo id in the local HF cache
  --tensors   list every tensor (name, dtype, shape)
  --json      print one JSON object

Example
  autoround inspect tests/fixtures/stories260K
`;

/** A summary of a checkpoint, printable or as JSON. */
export interface InspectSummary {
  path: string;
  architecture?: string;
  modelType?: string;
  layers?: number;
  hidden?: number;
  vocab?: number;
  tensors: number;
  bytes: number;
  byDType: Record<string, { tensors: number; bytes: number }>;
  quantizedLayers: string[];
  quantizationConfig?: unknown;
  tensorList?: { name: string; dtype: string; shape: number[] }[];
}

/** Build the summary of PATH. */
export async function inspectPath(path: string, listTensors = false): Promise<InspectSummary> {
  let st: Deno.FileInfo | undefined;
  try {
    st = await Deno.stat(path);
  } catch { /* maybe a repo id */ }
  const dir = st?.isFile ? undefined : await resolveModelDir(path);
  using reader = await SafetensorsReader.open(dir ?? path);
  const s: InspectSummary = { path: dir ?? path, tensors: 0, bytes: 0, byDType: {}, quantizedLayers: [] };
  if (dir) {
    const cfg = await readConfig(dir);
    const spec = parseModelConfig(cfg, join(dir, "config.json"));
    Object.assign(s, {
      architecture: spec.architecture,
      modelType: spec.modelType,
      layers: spec.nLayers,
      hidden: spec.hidden,
      vocab: spec.vocab,
      quantizationConfig: cfg.quantization_config,
    });
  }
  if (listTensors) s.tensorList = [];
  for (const name of reader.names()) {
    const info = reader.info(name);
    const bytes = info.end - info.start;
    s.tensors++;
    s.bytes += bytes;
    const d = (s.byDType[info.dtype] ??= { tensors: 0, bytes: 0 });
    d.tensors++;
    d.bytes += bytes;
    if (name.endsWith(".qweight")) s.quantizedLayers.push(name.slice(0, -".qweight".length));
    s.tensorList?.push({ name, dtype: info.dtype, shape: info.shape });
  }
  return s;
}

function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i ? 2 : 0)} ${units[i]}`;
}

/** Run `inspect` with argv (after the subcommand). */
export async function inspectCommand(argv: string[], _log: Log): Promise<void> {
  const { values: f, positionals } = parseFlags(argv, INSPECT_FLAGS);
  if (f.help) {
    console.log(INSPECT_HELP);
    return;
  }
  const path = positionals[0];
  if (!path) throw new UsageError(`inspect needs a PATH`);
  if (positionals.length > 1) throw new UsageError(`inspect takes one PATH (got ${positionals.length})`);
  if (path.toLowerCase().endsWith(".gguf")) {
    const g = await inspectGguf(path, f.tensors === true);
    console.log(f.json ? JSON.stringify(g, null, 2) : formatGgufSummary(g));
    return;
  }
  const s = await inspectPath(path, f.tensors === true).catch((e) => {
    if (e instanceof Deno.errors.NotFound) throw new InputError(`not found`, path);
    throw e;
  });
  if (f.json) {
    console.log(JSON.stringify(s, null, 2));
    return;
  }
  const lines = [`path: ${s.path}`];
  if (s.modelType) {
    lines.push(
      `architecture: ${s.architecture} (model_type ${s.modelType}), ${s.layers} blocks, hidden ${s.hidden}, vocab ${s.vocab}`,
    );
  }
  lines.push(`tensors: ${s.tensors}, ${formatBytes(s.bytes)}`);
  for (const [dt, d] of Object.entries(s.byDType)) {
    lines.push(`  ${dt.padEnd(8)} ${String(d.tensors).padStart(6)} tensors  ${formatBytes(d.bytes)}`);
  }
  if (s.quantizedLayers.length) {
    lines.push(
      `quantized layers (${s.quantizedLayers.length}): ${compressLayerNames(s.quantizedLayers).join(", ")}`,
    );
  }
  if (s.quantizationConfig) lines.push(`quantization_config: ${JSON.stringify(s.quantizationConfig)}`);
  for (const t of s.tensorList ?? []) lines.push(`  ${t.name}  ${t.dtype}  [${t.shape.join(", ")}]`);
  console.log(lines.join("\n"));
}
