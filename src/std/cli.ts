/**
 * Command-line parsing. Wraps `node:util` parseArgs because JSR (@std/cli) is unreachable where this
 * project is built; the rest of the program sees only `parseFlags`, so @std/cli's parseArgs can
 * replace the body where JSR is reachable.
 */
import { parseArgs } from "node:util";

/** Flag definitions: name → type, short alias and whether it may repeat. */
export type FlagSpec = Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>;

/** Parsed flags and positionals. */
export interface ParsedFlags {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/** Parse argv strictly (unknown flags throw a TypeError whose message names the flag). */
export function parseFlags(argv: string[], spec: FlagSpec): ParsedFlags {
  const { values, positionals } = parseArgs({
    args: argv,
    options: spec,
    strict: true,
    allowPositionals: true,
  });
  return { values: values as ParsedFlags["values"], positionals };
}
