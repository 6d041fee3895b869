/**
 * `autoround generate`: continue a prompt with a model (fp or any quantized folder we read),
 * greedy at temperature 0 or sampled like llama2.c's run.c, with the tokenizer's chat template
 * under `--chat`. Text goes to stdout (streamed on a terminal), statistics to stderr.
 */
import { createBackend, parseDevice } from "../backend/select.ts";
import { FormatError, UsageError } from "../errors.ts";
import { generate } from "../eval/generate.ts";
import { openEvalModel } from "../eval/model_source.ts";
import type { Log } from "../log.ts";
import { LoadedModel } from "../model/transformer.ts";
import { type FlagSpec, parseFlags } from "../std/cli.ts";
import { flagBackendOptions, flagInt, flagNum, flagStr } from "./flags.ts";

export const GENERATE_FLAGS: FlagSpec = {
  model: { type: "string" },
  prompt: { type: "string" },
  chat: { type: "boolean" },
  system: { type: "string" },
  max_new_tokens: { type: "string" },
  temperature: { type: "string" },
  top_p: { type: "string" },
  seed: { type: "string" },
  device: { type: "string" },
  threads: { type: "string" },
  deterministic: { type: "boolean" },
  quiet: { type: "boolean" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

export const GENERATE_HELP = `autoround generate — continue a prompt with a model or a quantized folder

Usage: autoround generate --model DIR --prompt TEXT [options]

  --model DIR           model folder (fp or quantized output), or a repo id in the HF cache
  --prompt TEXT         the text to continue (with the tokenizer's BOS, as transformers encodes)
  --chat                wrap the prompt as a user turn with the tokenizer's chat template
  --system TEXT         a system turn before it (with --chat)
  --max_new_tokens N    at most N new tokens (default 256; also bounded by the model's context)
  --temperature T       0 = greedy (default); > 0 samples from softmax(logits / T)
  --top_p P             nucleus sampling mass (default 1 = off), as llama2.c run.c
  --seed S              sampler seed (default 42; run.c's xorshift* generator)
  --device NAME         auto, cpu, cuda, webgpu
  --threads N           CPU threads (default: every core; 1 = single-threaded)
  --deterministic       CUDA: no split-K products, algorithms by shape alone (README § Determinism)

Generation stops at the tokenizer's EOS ids and at BOS (a model trained on BOS-separated
documents, such as stories260K, ends a text by predicting BOS; llama2.c's run.c stops there too).

Examples
  autoround generate --model tests/fixtures/stories260K --prompt "Once upon a time"
  autoround generate --model out --prompt "Lily" --temperature 0.8 --top_p 0.9 --seed 7
  autoround generate --model Qwen/Qwen3-0.6B --chat --prompt "What is 2+2?"
`;

/** Run `generate` with argv (after the subcommand). */
export async function generateCommand(argv: string[], log: Log): Promise<void> {
  const { values: f, positionals } = parseFlags(argv, GENERATE_FLAGS);
  if (f.help) {
    console.log(GENERATE_HELP);
    return;
  }
  const modelPath = flagStr(f, "model") ?? positionals[0];
  if (!modelPath) throw new UsageError(`--model is required`);
  const prompt = flagStr(f, "prompt") ?? "";
  const maxNewTokens = flagInt(f, "max_new_tokens") ?? 256;
  const temperature = flagNum(f, "temperature") ?? 0;
  const topP = flagNum(f, "top_p") ?? 1;
  const seed = flagInt(f, "seed") ?? 42;
  if (maxNewTokens < 0) throw new UsageError(`--max_new_tokens must be >= 0`);
  if (temperature < 0) throw new UsageError(`--temperature must be >= 0`);
  if (f.system && !f.chat) throw new UsageError(`--system needs --chat`);

  using model = await openEvalModel(modelPath);
  const tok = model.tokenizer;
  let promptIds: number[];
  if (f.chat) {
    const messages = [
      ...(f.system ? [{ role: "system", content: String(f.system) }] : []),
      { role: "user", content: prompt },
    ];
    // transformers' apply_chat_template(tokenize=True) encodes the rendering without special
    // tokens: the template writes any BOS itself.
    promptIds = tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), {
      addSpecialTokens: false,
    });
    if (promptIds.length === 0) {
      throw new FormatError(`the chat template renders this conversation as no tokens`, modelPath);
    }
  } else {
    promptIds = tok.encode(prompt, { addSpecialTokens: true });
    if (promptIds.length === 0) {
      const start = tok.bosTokenId ?? tok.eosTokenId;
      if (start === undefined) {
        throw new UsageError(`empty --prompt and the tokenizer has no BOS to start from`);
      }
      promptIds = [start];
    }
  }
  const stopIds = [...tok.eosTokenIds];
  if (tok.bosTokenId !== undefined && !stopIds.includes(tok.bosTokenId)) stopIds.push(tok.bosTokenId);

  using be = await createBackend(parseDevice(flagStr(f, "device") ?? "auto"), log, flagBackendOptions(f));
  // RoPE tables (and the KV cache) for this conversation only, not the model's whole context.
  const positions = Math.min(model.spec.maxPositions, promptIds.length + maxNewTokens + 1);
  using lm = await LoadedModel.load(be, model.spec, model.weights, { positions });
  const stream = Deno.stdout.isTerminal();
  const enc = new TextEncoder();
  const shownPrefix = f.chat ? [] : promptIds;
  const generated: number[] = [];
  let printed = "";
  const render = () => tok.decode([...shownPrefix, ...generated], { skipSpecialTokens: true });
  const flush = (final: boolean) => {
    const text = render();
    // Hold back an incomplete UTF-8 sequence (byte-fallback tokens) until it completes.
    if (!final && text.endsWith("\uFFFD")) return;
    if (text.startsWith(printed)) Deno.stdout.writeSync(enc.encode(text.slice(printed.length)));
    printed = text;
  };
  const t0 = performance.now();
  const r = await generate(lm, promptIds, {
    maxNewTokens,
    temperature,
    topP,
    seed,
    stopIds,
    onToken: (id) => {
      generated.push(id);
      if (stream) flush(false);
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  if (stream) {
    flush(true);
    Deno.stdout.writeSync(enc.encode("\n"));
  } else {
    console.log(render());
  }
  log.info(
    `${r.ids.length} tokens in ${seconds.toFixed(2)}s (${
      (r.ids.length / Math.max(seconds, 1e-9)).toFixed(1)
    } tok/s, ` +
      `prompt ${promptIds.length} tokens), stopped by ${r.stop.replaceAll("_", " ")}; device ${be.device}`,
  );
}
