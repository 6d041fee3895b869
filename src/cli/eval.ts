/**
 * `autoround eval`: perplexity of a text file (one document per line, each `[BOS] + tokens`,
 * concatenated, non-overlapping windows — the stories260K reference protocol), for an fp checkpoint
 * or any quantized folder we write.
 */
import type { Backend } from "../backend/backend.ts";
import { createBackend, parseDevice } from "../backend/select.ts";
import { InputError, UsageError } from "../errors.ts";
import { documentStream, windowedPerplexity } from "../eval/perplexity.ts";
import { type Checkpoint, openCheckpoint } from "../io/checkpoint.ts";
import { Tokenizer } from "../io/tokenizer.ts";
import type { Log } from "../log.ts";
import { LoadedModel } from "../model/transformer.ts";
import { type FlagSpec, parseFlags } from "../std/cli.ts";
import { flagInt, flagStr } from "./flags.ts";
import { Progress } from "./progress.ts";

export const EVAL_FLAGS: FlagSpec = {
  model: { type: "string" },
  text: { type: "string" },
  seqlen: { type: "string" },
  batch_size: { type: "string" },
  device: { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

export const EVAL_HELP = `autoround eval — evaluate a model (fp checkpoint or a folder autoround wrote)

Usage: autoround eval --model DIR --text FILE [--seqlen N] [--json]

  --model DIR        model folder (fp safetensors or a quantized output), or a repo id in the HF cache
  --text FILE        text to score: one document per line, each [BOS] + tokens, all concatenated,
                     cut into non-overlapping windows of --seqlen tokens (tail dropped)
  --seqlen N         window length (default 2048, capped by the model's context)
  --batch_size N     windows per forward pass
  --device NAME      auto, cpu, cuda, webgpu
  --json             print one JSON object ({"ppl": ..., ...}) instead of a line

Example
  autoround eval --model tests/fixtures/stories260K --text tests/fixtures/stories260K/eval.txt --seqlen 256
`;

/** Perplexity of `textFile` under a checkpoint (used by eval and by quantize --eval_text). */
export async function evalTextPerplexity(
  be: Backend,
  ckpt: Checkpoint,
  tok: Tokenizer,
  textFile: string,
  seqlen: number,
  log: Log,
  batch?: number,
): Promise<number> {
  return (await textPerplexity(be, ckpt, tok, textFile, seqlen, log, batch)).ppl;
}

async function textPerplexity(
  be: Backend,
  ckpt: Checkpoint,
  tok: Tokenizer,
  textFile: string,
  seqlen: number,
  log: Log,
  batch?: number,
) {
  let text: string;
  try {
    text = await Deno.readTextFile(textFile);
  } catch (e) {
    throw new InputError(`cannot read text file: ${(e as Error).message}`, textFile);
  }
  if (seqlen > ckpt.spec.maxPositions) {
    throw new UsageError(
      `--seqlen ${seqlen} exceeds the model's context of ${ckpt.spec.maxPositions} tokens`,
    );
  }
  const ids = documentStream(text, (line) => tok.encode(line));
  if (ids.length < seqlen) {
    throw new UsageError(`${textFile} has ${ids.length} tokens, fewer than one window of ${seqlen}`);
  }
  using model = await LoadedModel.load(be, ckpt.spec, ckpt.weights, { positions: seqlen });
  const windows = Math.floor(ids.length / seqlen);
  const progress = new Progress("eval windows", windows, (s) => log.debug(s));
  return await windowedPerplexity(model, ids, { seqlen, batch, onProgress: (d) => progress.step(d) });
}

/** Run `eval` with argv (after the subcommand). */
export async function evalCommand(argv: string[], log: Log): Promise<void> {
  const { values: f, positionals } = parseFlags(argv, EVAL_FLAGS);
  if (f.help) {
    console.log(EVAL_HELP);
    return;
  }
  const model = flagStr(f, "model") ?? positionals[0];
  if (!model) throw new UsageError(`--model is required`);
  const textFile = flagStr(f, "text");
  if (!textFile) throw new UsageError(`--text FILE is required (task evaluation comes with --tasks later)`);
  const requested = flagInt(f, "seqlen") ?? 2048;
  if (requested < 2) throw new UsageError(`--seqlen must be >= 2`);
  using ckpt = await openCheckpoint(model);
  const seqlen = Math.min(requested, ckpt.spec.maxPositions);
  if (seqlen < requested) log.warn(`--seqlen ${requested} capped to the model's context of ${seqlen}`);
  const tok = await Tokenizer.fromDir(ckpt.dir);
  using be = await createBackend(parseDevice(flagStr(f, "device") ?? "auto"), log);
  const t0 = performance.now();
  const r = await textPerplexity(be, ckpt, tok, textFile, seqlen, log, flagInt(f, "batch_size"));
  const seconds = (performance.now() - t0) / 1000;
  if (f.json) {
    console.log(JSON.stringify({
      model: ckpt.dir,
      text: textFile,
      seqlen,
      ppl: r.ppl,
      mean_nll: r.meanNll,
      targets: r.targets,
      windows: r.windows,
      quant_method: ckpt.quantMethod ?? null,
      device: be.device,
      seconds,
    }));
  } else {
    console.log(
      `ppl ${r.ppl.toFixed(6)} (mean NLL ${
        r.meanNll.toFixed(6)
      } over ${r.targets} targets, ${r.windows} windows of ${seqlen})`,
    );
  }
}
