/**
 * Typed access to parsed flag values, with aliases (auto-round accepts several names per flag)
 * and one clear UsageError for a malformed number.
 */
import type { BackendOptions } from "../backend/select.ts";
import { UsageError } from "../errors.ts";
import type { ParsedFlags } from "../std/cli.ts";

type Values = ParsedFlags["values"];

/** The first of `names` that was given, as a string. */
export function flagStr(v: Values, ...names: string[]): string | undefined {
  for (const n of names) {
    const x = v[n];
    if (typeof x === "string") return x;
  }
  return undefined;
}

/** The first of `names` that was given, as an integer. */
export function flagInt(v: Values, ...names: string[]): number | undefined {
  const s = flagStr(v, ...names);
  if (s === undefined) return undefined;
  const x = Number(s);
  if (!Number.isInteger(x)) throw new UsageError(`--${names[0]} must be an integer (got "${s}")`);
  return x;
}

/** The first of `names` that was given, as a finite number. */
export function flagNum(v: Values, ...names: string[]): number | undefined {
  const s = flagStr(v, ...names);
  if (s === undefined) return undefined;
  const x = Number(s);
  if (!Number.isFinite(x)) throw new UsageError(`--${names[0]} must be a number (got "${s}")`);
  return x;
}

/** `--threads N`: CPU threads, at least 1 (undefined: every core). */
export function flagThreads(v: Values): number | undefined {
  const n = flagInt(v, "threads");
  if (n !== undefined && n < 1) throw new UsageError(`--threads must be >= 1 (got ${n})`);
  return n;
}

/** `--threads N` and `--deterministic`: how the commands set up their backend. */
export function flagBackendOptions(v: Values): BackendOptions {
  return { threads: flagThreads(v), deterministic: v.deterministic === true };
}
