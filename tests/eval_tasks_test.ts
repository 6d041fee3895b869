/**
 * Every task end to end on CI-sized subsets (tests/fixtures/eval/data: the first records of each
 * shared/data file, and two shortened WikiText articles) with stories260K, fp and a W4 folder
 * written by `quantize`. The oracle re-scores each logged request on another path: the whole
 * context + continuation through LoadedModel.nextTokenNll (the forward reference.json checks),
 * summing the continuation's targets, then applies lm-eval's acc / acc_norm / perplexity rules by
 * hand. Also checks the CLI's table, --json in lm-eval's layout, and the missing-file message.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { InputError, UsageError } from "../src/errors.ts";
import { openEvalModel } from "../src/eval/model_source.ts";
import { type EvalReport, runEvalTasks } from "../src/eval/run.ts";
import { silentLog } from "../src/log.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { main } from "../main.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertEqualsInOrder,
  assertRejects,
  EVAL_DATA,
  STORIES,
} from "./eval_assert.ts";

/**
 * Σ log p(continuation) by one plain forward of context + continuation, left-truncated to
 * maxLength + 1 tokens as HFLM does.
 */
async function oracleLogprob(
  lm: LoadedModel,
  ctx: number[],
  cont: number[],
  maxLength: number,
): Promise<number> {
  const all = Int32Array.from([...ctx, ...cont].slice(-(maxLength + 1)));
  const nll = await lm.nextTokenNll(all, { batch: 1, seqLen: all.length });
  let s = 0;
  for (let t = all.length - 1 - cont.length; t < all.length - 1; t++) s -= nll[t];
  return s;
}

async function checkAgainstOracle(modelDir: string, report: EvalReport, maxLength: number) {
  using src = await openEvalModel(modelDir);
  using be = new CpuBackend();
  using lm = await LoadedModel.load(be, src.spec, src.weights);
  for (const r of report.results) {
    const lls: number[][] = [];
    for (const s of r.samples!) {
      const docLls: number[] = [];
      for (let i = 0; i < s.requests.length; i++) {
        const { context, continuation } = s.requests[i].tokens;
        let want: number;
        if (r.task.startsWith("wikitext")) {
          // rolling: blocks of maxLength predicted tokens, the first after the prefix token, each
          // later one after up to maxLength tokens before it.
          want = 0;
          const ids = continuation;
          for (let start = 0; start < ids.length; start += maxLength) {
            const end = Math.min(ids.length, start + maxLength);
            const ctx = start === 0 ? context : ids.slice(Math.max(0, end - maxLength - 1), start);
            want += await oracleLogprob(lm, ctx, ids.slice(start, end), maxLength);
          }
        } else {
          want = await oracleLogprob(lm, context, continuation, maxLength);
        }
        assertClose(s.answers[i].logprob, want, 1e-4, `${r.task} doc ${s.docId} request ${i}`);
        docLls.push(want);
      }
      lls.push(docLls);
    }
    const metric = (n: string) => r.metrics.find((m) => m.name === n)!.value;
    const arg = (xs: number[]) => xs.indexOf(Math.max(...xs));
    const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    if (["arc_easy", "arc_challenge", "piqa", "hellaswag"].includes(r.task)) {
      assertEquals(
        metric("acc"),
        meanOf(r.samples!.map((s, d) => (arg(lls[d]) === goldOf(s) ? 1 : 0))),
        r.task,
      );
      const norm = r.samples!.map((s, d) => {
        const chars = s.requests.map((q) => [...q.continuation].length - 1); // without the leading space
        return arg(lls[d].map((l, i) => l / chars[i])) === goldOf(s) ? 1 : 0;
      });
      assertEquals(metric("acc_norm"), meanOf(norm), `${r.task} acc_norm`);
    }
    if (r.task === "lambada_openai") {
      assertClose(
        metric("perplexity"),
        Math.exp(-meanOf(lls.map((l) => l[0]))),
        1e-4,
      );
    }
    if (r.task === "wikitext2") {
      const words = r.samples!.map((s) => (s.items.word_perplexity as number[])[1]);
      const total = lls.reduce((a, l) => a + l[0], 0);
      assertClose(metric("word_perplexity"), Math.exp(-total / words.reduce((a, b) => a + b, 0)), 1e-4);
    }
  }
}

const GOLD = new Map<string, number[]>();
for (const t of ["arc_easy", "arc_challenge", "piqa", "hellaswag", "winogrande"]) {
  const lines = (await Deno.readTextFile(`${EVAL_DATA}/eval/${t}.jsonl`)).trim().split("\n");
  GOLD.set(t, lines.map((l) => JSON.parse(l).gold));
}
let currentTask = "";
const goldOf = (s: { docId: number }) => GOLD.get(currentTask)![s.docId];

async function evalAll(modelDir: string): Promise<EvalReport> {
  using src = await openEvalModel(modelDir);
  using be = new CpuBackend();
  return await runEvalTasks(be, src, src.tokenizer, {
    tasks: "all",
    dataDir: EVAL_DATA,
    batchSize: 5,
    maxLength: 128,
    seqlen: 128,
    logSamples: true,
    bootstrapIters: 1000,
  });
}

async function checkReport(modelDir: string) {
  const report = await evalAll(modelDir);
  assertEquals(report.results.map((r) => r.task), [
    "arc_easy",
    "arc_challenge",
    "piqa",
    "hellaswag",
    "winogrande",
    "lambada_openai",
    "wikitext2",
  ]);
  for (const r of report.results) {
    currentTask = r.task;
    await checkAgainstOracle(modelDir, { ...report, results: [r] }, 128);
    if (r.task === "winogrande") {
      const acc = r.samples!.map((s) =>
        (s.answers[0].logprob >= s.answers[1].logprob ? 0 : 1) === goldOf(s) ? 1 : 0
      );
      assertEquals(r.metrics[0].value, acc.reduce((a: number, b: number) => a + b, 0) / acc.length);
    }
  }
  const wt = report.results.at(-1)!;
  assertEquals(wt.metrics.map((m) => m.name), [
    "word_perplexity",
    "byte_perplexity",
    "bits_per_byte",
    "token_perplexity",
  ]);
  assert(wt.tokenPerplexity!.windows >= 10, `token perplexity windows ${wt.tokenPerplexity!.windows}`);
  return report;
}

Deno.test("all tasks on fixture subsets, fp stories260K: every request and metric equals the oracle", async () => {
  const report = await checkReport(STORIES);
  const wt = report.results.at(-1)!;
  const bpb = wt.metrics.find((m) => m.name === "bits_per_byte")!.value;
  const bytePpl = wt.metrics.find((m) => m.name === "byte_perplexity")!.value;
  assertClose(bpb, Math.log2(bytePpl), 1e-12);
});

Deno.test("all tasks on a W4 auto_round folder written by quantize: equal to the oracle on that folder", async () => {
  const out = await Deno.makeTempDir({ prefix: "eval_w4_" });
  try {
    const code = await main([
      "quantize",
      "--model",
      STORIES,
      "--scheme",
      "W4A16",
      "--group_size",
      "32",
      "--iters",
      "0",
      "--disable_opt_rtn",
      "--output_dir",
      `${out}/w4`,
      "--quiet",
    ]);
    assertEquals(code, 0);
    await checkReport(`${out}/w4`);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("autoround eval --tasks prints lm-eval's table and writes lm-eval's JSON layout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "eval_cli_" });
  const lines: string[] = [];
  const orig = console.log;
  console.log = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    const code = await main([
      "eval",
      "--model",
      STORIES,
      "--tasks",
      "arc_easy,lambada_openai",
      "--data_dir",
      EVAL_DATA,
      "--limit",
      "4",
      "--bootstrap_iters",
      "1000",
      "--json",
      `${dir}/r.json`,
      "--quiet",
    ]);
    assertEquals(code, 0);
  } finally {
    console.log = orig;
  }
  const table = lines.join("\n").split("\n").filter((l) => l.startsWith("|"));
  assertEquals(table[0].replace(/ +/g, ""), "|Tasks|Version|Filter|n-shot|Metric||Value||Stderr|");
  const cells = (l: string) => l.split("|").slice(1, -1).map((c) => c.trim());
  assertEquals(cells(table[2]).slice(0, 6), ["arc_easy", "1", "none", "0", "acc", "↑"]);
  assert(/^0\.\d{4}$/.test(cells(table[2])[6]) && /^0\.\d{4}$/.test(cells(table[2])[8]), table[2]);
  assertEquals(cells(table[5]).slice(0, 6), ["", "", "none", "0", "perplexity", "↓"]);
  assert(/^\d+\.\d{4}$/.test(cells(table[5])[6]) && cells(table[5])[7] === "±", table[5]);
  assert(table[2].length === table[0].length && /^\|-+\|-+:\|/.test(table[1]), "aligned columns");
  const j = JSON.parse(await Deno.readTextFile(`${dir}/r.json`));
  assertEquals(Object.keys(j.results), ["arc_easy", "lambada_openai"]);
  assert(typeof j.results.arc_easy["acc,none"] === "number");
  assert(typeof j.results.arc_easy["acc_stderr,none"] === "number");
  assertEqualsInOrder(j.versions, { arc_easy: 1, lambada_openai: 1 });
  assertEqualsInOrder(j["n-samples"].arc_easy, { original: 6, effective: 4 });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a missing task file gives one line naming every path tried; unknown tasks are usage errors", async () => {
  using src = await openEvalModel(STORIES);
  using be = new CpuBackend();
  const e = await assertRejects(
    () =>
      runEvalTasks(be, src, src.tokenizer, { tasks: "piqa", dataDir: "/nonexistent/data", log: silentLog }),
    InputError,
  );
  assert(
    e.message.includes("/nonexistent/data/eval/piqa.jsonl") && e.message.includes("from --data_dir"),
    e.message,
  );
  await assertRejects(
    () => runEvalTasks(be, src, src.tokenizer, { tasks: "mmlu", dataDir: EVAL_DATA }),
    UsageError,
  );
});
