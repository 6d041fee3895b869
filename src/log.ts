/**
 * Where the program's messages go. Library code takes a Log so tests can capture it and the CLI
 * can send it to stderr; stdout stays free for results (tables, JSON).
 */
export interface Log {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

/** Messages to stderr; debug lines only when `debug` is set. */
export function stderrLog(opts: { debug?: boolean; quiet?: boolean } = {}): Log {
  const enc = new TextEncoder();
  const write = (s: string) => Deno.stderr.writeSync(enc.encode(s + "\n"));
  return {
    info: (m) => opts.quiet || write(m),
    warn: (m) => write(`warning: ${m}`),
    debug: (m) => opts.debug && write(`debug: ${m}`),
  };
}

/** A Log that drops everything (tests). */
export const silentLog: Log = { info() {}, warn() {}, debug() {} };

/** Format seconds as `1h 02m`, `6m 10s` or `4.2s`. */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return "?";
  if (sec < 60) return `${sec.toFixed(1)}s`;
  const m = Math.floor(sec / 60), s = Math.round(sec % 60);
  if (m < 60) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

/** Tracks elapsed time and estimates the rest from the average step time so far. */
export class Progress {
  private readonly t0 = performance.now();
  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly write: (s: string) => void,
  ) {}

  /** Report that `done` of `total` steps are finished; returns the ETA in seconds (NaN before the first). */
  step(done: number, detail = ""): number {
    const elapsed = (performance.now() - this.t0) / 1000;
    const eta = done > 0 ? (elapsed / done) * (this.total - done) : NaN;
    const parts = [
      `${this.label} ${done}/${this.total}`,
      `${formatDuration(elapsed)} elapsed`,
      `ETA ${formatDuration(eta)}`,
    ];
    if (detail) parts.push(detail);
    this.write(parts.join(" | "));
    return eta;
  }
}
