/**
 * What `autoround inspect FILE.gguf` prints: the header, the tensors per GGML type with their bits per
 * weight, and the metadata (long arrays shortened).
 */
import { llamaFileTypeName } from "./constants.ts";
import { GgufFile } from "./file.ts";

/** What `autoround inspect FILE.gguf` reports. */
export interface GgufSummary {
  path: string;
  format: "gguf";
  version: number;
  fileBytes: number;
  architecture?: string;
  name?: string;
  fileType?: string;
  tensors: number;
  /** Per GGML type: tensors, weights and bytes. */
  byType: Record<string, { tensors: number; weights: number; bytes: number }>;
  /** Bits per weight over all tensors. */
  bitsPerWeight: number;
  /** Metadata, arrays shown by length and first items. */
  metadata: Record<string, unknown>;
  tensorList?: { name: string; type: string; ne: number[] }[];
}

/**
 * Summarise a GGUF file for `autoround inspect`.
 *
 * @example
 * ```ts
 * const s = await inspectGguf("out/stories260K-Q4_K_M.gguf");
 * console.log(formatGgufSummary(s));
 * ```
 */
export async function inspectGguf(path: string, listTensors = false): Promise<GgufSummary> {
  using f = await GgufFile.open(path);
  const byType: GgufSummary["byType"] = {};
  let weights = 0, bytes = 0;
  for (const t of f.tensors) {
    const n = t.ne.reduce((a, b) => a * b, 1);
    const e = (byType[t.type] ??= { tensors: 0, weights: 0, bytes: 0 });
    e.tensors++;
    e.weights += n;
    e.bytes += t.bytes;
    weights += n;
    bytes += t.bytes;
  }
  const metadata: Record<string, unknown> = {};
  for (const [key, v] of f.metadata) {
    if (v.type !== "array") {
      metadata[key] = typeof v.value === "bigint" ? v.value.toString() : v.value;
      continue;
    }
    const head = v.value.slice(0, 8).map((x) => (typeof x === "bigint" ? x.toString() : x));
    metadata[key] = v.value.length <= 8 ? head : { length: v.value.length, first: head };
  }
  const ft = f.num("general.file_type");
  return {
    path,
    format: "gguf",
    version: f.version,
    fileBytes: f.fileSize,
    architecture: f.str("general.architecture"),
    name: f.str("general.name"),
    fileType: ft === undefined ? undefined : llamaFileTypeName(ft) ?? String(ft),
    tensors: f.tensors.length,
    byType,
    bitsPerWeight: weights ? (bytes * 8) / weights : 0,
    metadata,
    tensorList: listTensors ? f.tensors.map((t) => ({ name: t.name, type: t.type, ne: t.ne })) : undefined,
  };
}

/** The summary as the lines `autoround inspect` prints. */
export function formatGgufSummary(s: GgufSummary): string {
  const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
  const lines = [
    `path: ${s.path}`,
    `format: GGUF v${s.version}, ${mb(s.fileBytes)}, architecture ${s.architecture ?? "?"}` +
    `${s.name ? ` (${s.name})` : ""}, file type ${s.fileType ?? "?"}`,
    `tensors: ${s.tensors}, ${s.bitsPerWeight.toFixed(3)} bits per weight`,
  ];
  for (const [t, e] of Object.entries(s.byType)) {
    lines.push(
      `  ${t.padEnd(6)} ${String(e.tensors).padStart(5)} tensors ${String(e.weights).padStart(12)} weights  ${
        mb(e.bytes)
      }`,
    );
  }
  lines.push("metadata:");
  for (const [k, v] of Object.entries(s.metadata)) {
    let text = JSON.stringify(v);
    if (text.length > 160) text = text.slice(0, 157) + "...";
    lines.push(`  ${k} = ${text}`);
  }
  for (const t of s.tensorList ?? []) lines.push(`  ${t.name}  ${t.type}  [${t.ne.join(", ")}]`);
  return lines.join("\n");
}
