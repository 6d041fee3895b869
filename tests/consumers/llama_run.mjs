// llama.cpp as a consumer of our GGUF files, through node-llama-cpp (prebuilt CPU binary, never
// built or downloaded here). Usage: node llama_run.mjs REQUEST.json → one JSON object on stdout.
//
// REQUEST: { jobs: [JOB, ...] } → { results: [RESULT, ...] }, one llama.cpp instance for all jobs.
// JOB: { model, sequences?: number[][], lastOnly?: bool, perplexity?: {ids, seqlen},
//        tokenize?: string[], generate?: {prompt, maxTokens} }
// Logits are llama.cpp's raw next-token logits (no sampling options applied), dense by token id.
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({
  gpu: false,
  build: "never",
  logLevel: LlamaLogLevel.error,
  progressLogs: false,
});

async function runJob(req) {
  const out = {};
  try {
    const model = await llama.loadModel({ modelPath: req.model });
    const longest = Math.max(
      8,
      ...(req.sequences ?? []).map((s) => s.length),
      req.perplexity?.seqlen ?? 0,
      req.generate ? req.generate.maxTokens + 64 : 0,
    );
    // Threads stated explicitly: node-llama-cpp's default oversubscribes small machines (2 s per
    // evaluation on 2 cores instead of milliseconds).
    const threads = Math.max(1, Math.min(4, availableParallelism()));
    // One slot more than the longest sequence: a full context makes node-llama-cpp shift it (drop
    // the first tokens) before the last token is evaluated.
    const context = await model.createContext({
      contextSize: Math.max(longest + 1, 32),
      batchSize: Math.max(longest, 32),
      sequences: 1,
      threads,
      // f32 KV cache and no flash attention: the comparison then sees the weights and llama.cpp's
      // matmul (which quantizes activations for quantized weights), not a 16-bit cache.
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
    });
    const seq = context.getSequence();
    const vocabSize = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length;
    out.info = { vocabSize, trainContextSize: model.trainContextSize };

    const dense = (map) => {
      const v = new Array(vocabSize).fill(-Infinity);
      for (const [t, x] of map) v[t] = x;
      return v;
    };
    // Logits after each token of `ids` (or only after the last), evaluated from an empty sequence.
    const evalLogits = async (ids, lastOnly) => {
      await seq.clearHistory();
      const items = ids.map((
        t,
        i,
      ) => (lastOnly && i < ids.length - 1 ? t : [t, { generateNext: { logits: true } }]));
      const res = await seq.controlledEvaluate(items);
      const rows = [];
      for (let i = 0; i < ids.length; i++) if (res[i]?.next?.logits) rows.push(dense(res[i].next.logits));
      return rows;
    };

    if (req.sequences) {
      out.logits = [];
      for (const s of req.sequences) out.logits.push(await evalLogits(s, req.lastOnly));
    }
    if (req.perplexity) {
      // Non-overlapping windows, each from position 0; targets are positions 1..seqlen-1.
      const { ids, seqlen } = req.perplexity;
      let nll = 0, targets = 0;
      for (let w = 0; (w + 1) * seqlen <= ids.length; w++) {
        const win = ids.slice(w * seqlen, (w + 1) * seqlen);
        const rows = await evalLogits(win.slice(0, seqlen - 1), false);
        for (let t = 0; t < seqlen - 1; t++) {
          const row = rows[t];
          let max = -Infinity;
          for (const x of row) if (x > max) max = x;
          let sum = 0;
          for (const x of row) sum += Math.exp(x - max);
          nll += -(row[win[t + 1]] - max - Math.log(sum));
          targets++;
        }
      }
      out.perplexity = { ppl: Math.exp(nll / targets), meanNll: nll / targets, targets };
    }
    if (req.tokenize) out.tokens = req.tokenize.map((t) => [...model.tokenize(t)]);
    if (req.generate) {
      // Greedy decoding with llama.cpp's tokenizer and BOS; stops at BOS/EOS.
      const prompt = [model.tokens.bos, ...model.tokenize(req.generate.prompt)].filter((x) => x !== null);
      const ids = [...prompt];
      await seq.clearHistory();
      let res = await seq.controlledEvaluate(
        prompt.map((t, i) => (i < prompt.length - 1 ? t : [t, { generateNext: { logits: true } }])),
      );
      for (let step = 0; step < req.generate.maxTokens; step++) {
        const logits = res[res.length - 1].next.logits;
        const next = logits.entries().next().value[0];
        if (next === model.tokens.bos || next === model.tokens.eos) break;
        ids.push(next);
        res = await seq.controlledEvaluate([[next, { generateNext: { logits: true } }]]);
      }
      out.generated = { ids, text: model.detokenize(ids.slice(prompt.length)) };
    }
    await context.dispose();
    await model.dispose();
  } catch (e) {
    out.error = String(e?.stack ?? e);
  }
  return out;
}

const results = [];
for (const job of request.jobs) results.push(await runJob(job));
await llama.dispose();
process.stdout.write(JSON.stringify({ results }));
