/**
 * AutoScheme's command-line flags with auto-round's names (spec/AUTOSCHEME.md § 1.3): `--avg_bits`
 * / `--target_bits`, `--options` and `--shared_layers` (argparse `nargs="+"`, the latter repeatable),
 * `--ignore_scale_zp_bits`, `--disable_low_cpu_mem_usage` / `--low_cpu_mem_usage` (accepted; this
 * build always streams blocks). The scoring samples come from AR_AUTO_SCHEME_NSAMPLES / _SEQLEN /
 * _BATCH_SIZE as in auto-round (§ 1.4: the CLI never sets them).
 */
import { UsageError } from "../errors.ts";
import { joinCliOptions, parseSharedLayersCli } from "../quant/auto_scheme/options.ts";
import type { AutoSchemeConfig } from "../quant/auto_scheme/run.ts";
import type { SchemeOverrides } from "../quant/scheme.ts";
import type { FlagSpec, ParsedFlags } from "../std/cli.ts";
import { flagNum, flagStr } from "./flags.ts";

/** The flags (merged into QUANTIZE_FLAGS). */
export const AUTO_SCHEME_FLAGS: FlagSpec = {
  avg_bits: { type: "string" },
  target_bits: { type: "string" },
  options: { type: "string" },
  shared_layers: { type: "string", multiple: true },
  ignore_scale_zp_bits: { type: "boolean" },
  disable_low_cpu_mem_usage: { type: "boolean" },
  low_cpu_mem_usage: { type: "boolean" },
};

/** Help lines for `quantize --help`. */
export const AUTO_SCHEME_HELP = `AutoScheme (mixed precision; README § Using it)
  --avg_bits X           target average bits (alias --target_bits) over the quantized layers,
                         scale/zero-point overhead counted unless --ignore_scale_zp_bits
  --options A,B ...      candidate schemes: weight-only int (W2A16 ... W8A16, W2A16G32) and BF16
  --shared_layers A B    layers that must share one option (repeatable)
                         scoring samples: AR_AUTO_SCHEME_NSAMPLES/_SEQLEN/_BATCH_SIZE (16/256/8)
`;

const NARGS = new Set(["--options", "--shared_layers"]);

/**
 * argparse's `nargs="+"` for --options and --shared_layers: the tokens after the flag up to the
 * next `-`-prefixed one become one value (joined by spaces), so `--options W2A16 W4A16,W8A16`
 * reads as the one value the flag parser expects. Other arguments pass unchanged.
 */
export function gatherNargs(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    out.push(argv[i]);
    if (!NARGS.has(argv[i])) continue;
    const toks: string[] = [];
    while (i + 1 < argv.length && !argv[i + 1].startsWith("-")) toks.push(argv[++i]);
    if (toks.length) out.push(toks.join(" "));
  }
  return out;
}

/** AutoScheme's settings from the flags, or undefined when --avg_bits is not given (§ 1.3). */
export function autoSchemeFromFlags(
  f: ParsedFlags["values"],
  overrides: SchemeOverrides,
): AutoSchemeConfig | undefined {
  const avgBits = flagNum(f, "avg_bits", "target_bits");
  if (avgBits === undefined) return undefined; // --options alone is ignored, as in auto-round
  const options = flagStr(f, "options");
  if (options === undefined) throw new UsageError("please set --options for auto scheme");
  const shared = f.shared_layers as string[] | undefined;
  const joined = joinCliOptions(options.split(" "));
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return {
    avgBits,
    options: joined,
    sharedLayers: shared ? parseSharedLayersCli(shared.map((s) => s.split(" "))) : undefined,
    ignoreScaleZpBits: f.ignore_scale_zp_bits === true,
    overrides: defined,
  };
}
