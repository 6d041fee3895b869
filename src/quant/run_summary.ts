/**
 * The line a quantize run ends with, and its `--log_json` record: wall time, peak host memory
 * (the kernel's high-water mark of the resident set, worker threads included), the device
 * allocator's peak, and the bytes written per format.
 *
 *   done in 312.4 s; peak RSS 1.84 GiB; peak device memory 9.61 GiB (cuda); wrote auto_round 5.69 GB
 */

/** What a finished run measured. */
export interface RunSummary {
  seconds: number;
  /** Peak resident set size in bytes (VmHWM; where the OS has none, the current RSS). */
  peakRssBytes: number;
  /** Whether peakRssBytes is a true peak (Linux VmHWM) or only the RSS at the end. */
  peakRssIsPeak: boolean;
  /** The backend allocator's peak, when the backend tracks one. */
  peakDeviceBytes?: number;
  device: string;
  /** Format name → bytes of its files (all of them: weights, configs, tokenizer). */
  bytesWritten: Record<string, number>;
}

/** The process's peak RSS: /proc/self/status VmHWM on Linux, else the current RSS. */
export function peakRss(): { bytes: number; isPeak: boolean } {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    if (m) return { bytes: Number(m[1]) * 1024, isPeak: true };
  } catch { /* not Linux */ }
  return { bytes: Deno.memoryUsage().rss, isPeak: false };
}

/** Bytes of every file under `dir`. */
export async function treeBytes(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) n += await treeBytes(p);
    else if (e.isFile) n += (await Deno.stat(p)).size;
  }
  return n;
}

function gib(b: number): string {
  return b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;
}

function gb(b: number): string {
  return b >= 1e9
    ? `${(b / 1e9).toFixed(2)} GB`
    : b >= 1e6
    ? `${(b / 1e6).toFixed(1)} MB`
    : `${(b / 1e3).toFixed(1)} kB`;
}

/** The summary as one line. */
export function summaryLine(s: RunSummary): string {
  const parts = [
    `done in ${s.seconds.toFixed(1)} s`,
    `${s.peakRssIsPeak ? "peak RSS" : "RSS at the end"} ${gib(s.peakRssBytes)}`,
  ];
  if (s.peakDeviceBytes !== undefined) {
    parts.push(`peak device memory ${gib(s.peakDeviceBytes)} (${s.device})`);
  }
  parts.push(`wrote ${Object.entries(s.bytesWritten).map(([f, b]) => `${f} ${gb(b)}`).join(", ")}`);
  return parts.join("; ");
}
