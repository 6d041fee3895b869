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
