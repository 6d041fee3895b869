/**
 * The text rules lm-eval's scores depend on, against lm-eval's own Python code and CPython:
 * tests/fixtures/eval/goldens.json is written by tools/eval_goldens.py, which runs lm-eval's
 * wikitext detokenizer, document splitter, word/byte counts, `_encode_pair` whitespace move, the
 * stderr functions and CPython's `re`/`len`/`random`. Rolling windows are checked against the
 * expected windows in lm-eval's tests/test_utils.py.
 */
import { encodeRequest, rollingWindows } from "../src/eval/loglikelihood.ts";
import { bootstrapPerplexityStderr, meanStderr, perplexity } from "../src/eval/metrics.ts";
import { pyLen, pyRstrip, pyWhitespaceSplitCount } from "../src/eval/pystr.ts";
import { parseTaskDocs, processDoc, taskRequests, TASKS } from "../src/eval/tasks.ts";
import { wikitextDetokenize, wikitextDocuments, wikitextRows } from "../src/eval/wikitext.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertEqualsInOrder,
  EVAL_DATA,
  exists,
  FIXTURES,
  SHARED_DATA,
  STORIES,
} from "./eval_assert.ts";

const G = JSON.parse(await Deno.readTextFile(FIXTURES + "eval/goldens.json"));

Deno.test("pyWhitespaceSplitCount equals len(re.split(r'\\s+', s)) incl. Python-only whitespace", () => {
  for (const [s, n] of G.split_counts) assertEquals(pyWhitespaceSplitCount(s), n, JSON.stringify(s));
});

Deno.test("pyLen counts code points like Python len", () => {
  for (const [s, n] of G.py_len) assertEquals(pyLen(s), n, s);
});

Deno.test("trailing context whitespace moves to the continuation as _encode_pair does", () => {
  for (const [ctx, cont, ctx2, cont2] of G.move_trailing_space) {
    const stripped = pyRstrip(ctx);
    assertEquals([stripped, ctx.slice(stripped.length) + cont], [ctx2, cont2], JSON.stringify(ctx));
  }
});

Deno.test("wikitextDetokenize equals lm-eval's wikitext_detokenizer on known strings", () => {
  for (const [s, d] of G.detokenize) assertEquals(wikitextDetokenize(s), d, JSON.stringify(s));
});

Deno.test("wikitext fixture: documents, detokenized pages, word and byte counts as lm-eval", async () => {
  const raw = await Deno.readTextFile(EVAL_DATA + "/wikitext-2-raw/wiki.test.raw");
  const docs = wikitextDocuments(raw);
  const g = G.wikitext_fixture;
  assertEquals(docs, g.pages);
  assertEquals(docs.map(wikitextDetokenize), g.detokenized);
  const items = docs.map((page) => processDoc(TASKS.wikitext, { page }, [{ logprob: -1, isGreedy: false }]));
  assertEquals(items.map((it) => (it.word_perplexity as number[])[1]), g.words);
  assertEquals(items.map((it) => (it.byte_perplexity as number[])[1]), g.bytes);
});

Deno.test({
  name: "full wiki.test.raw: 62 documents with lm-eval's word and byte counts and detokenized text",
  ignore: !exists(SHARED_DATA + "/wikitext-2-raw/wiki.test.raw"),
  async fn() {
    const raw = await Deno.readTextFile(SHARED_DATA + "/wikitext-2-raw/wiki.test.raw");
    const docs = wikitextDocuments(raw);
    const g = G.wikitext_shared;
    assertEquals(docs.length, g.documents);
    assertEquals(docs.map(pyWhitespaceSplitCount), g.words);
    assertEquals(docs.map((d) => new TextEncoder().encode(d).length), g.bytes);
    const sha = async (s: string) =>
      Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s))))
        .map((b) => b.toString(16).padStart(2, "0")).join("");
    for (let i = 0; i < docs.length; i++) {
      assertEquals(await sha(wikitextDetokenize(docs[i])), g.detokenized_sha256[i], `document ${i}`);
    }
    // GPTQ rows: 4,358 rows whose byte sizes add up to HF's num_bytes 1,305,088 − 4 per row
    // (shared/data/README.md).
    const rows = wikitextRows(raw);
    assertEquals(rows.length, 4358);
    assertEquals(rows.reduce((a, r) => a + new TextEncoder().encode(r).length, 0), 1305088 - 4 * 4358);
  },
});

Deno.test("rollingWindows equals lm-eval's get_rolling_token_windows + make_disjoint_window", () => {
  // tests/test_utils.py test_get_rolling_token_windows_v1 and _v6, each pair made disjoint
  // (context a[: len(a) − (len(b) − 1)]) as loglikelihood_rolling does.
  const disjoint = (a: number[], b: number[]) => ({
    context: a.slice(0, a.length - (b.length - 1)),
    continuation: b,
  });
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
  assertEqualsInOrder(rollingWindows(range(0, 34), -100, 10), [
    disjoint([-100, ...range(0, 9)], range(0, 10)),
    disjoint(range(9, 19), range(10, 20)),
    disjoint(range(19, 29), range(20, 30)),
    disjoint(range(23, 33), range(30, 34)),
  ]);
  assertEqualsInOrder(rollingWindows(range(0, 9), -100, 2), [
    disjoint([-100, 0], [0, 1]),
    disjoint([1, 2], [2, 3]),
    disjoint([3, 4], [4, 5]),
    disjoint([5, 6], [6, 7]),
    disjoint([6, 7], [8]),
  ]);
  assertEquals(rollingWindows([], -100, 2), []);
});

Deno.test("mean stderr and the bootstrap perplexity stderr reproduce lm-eval's numbers", () => {
  const s = G.stderr;
  assertClose(meanStderr(s.acc)!, s.acc_mean_stderr, 1e-15);
  assertClose(perplexity(s.xs), s.perplexity, 1e-15);
  // Same RNG stream (CPython random.Random(i).choices), so equal up to summation order.
  assertClose(bootstrapPerplexityStderr(s.xs, 2000)!, s.perplexity_bootstrap_2000, 1e-12);
  assertClose(bootstrapPerplexityStderr(s.xs, 100000)!, s.perplexity_bootstrap_100000, 1e-12);
  assertEquals(bootstrapPerplexityStderr(s.xs, 0), null);
  assertEquals(meanStderr([1]), null);
});

Deno.test("task requests: choices get one leading space, lambada splits at its last space", async () => {
  const arc = parseTaskDocs(
    TASKS.arc_easy,
    await Deno.readTextFile(EVAL_DATA + "/eval/arc_easy.jsonl"),
    "arc",
  );
  const r = taskRequests(TASKS.arc_easy, arc[0]);
  assertEqualsInOrder(r[0], {
    type: "pair",
    context:
      "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:",
    continuation: " Sunlight is the source of energy for nearly all ecosystems.",
  });
  assertEqualsInOrder(taskRequests(TASKS.lambada_openai, { text: 'said "yes.\n\nrecorder' })[0], {
    type: "pair",
    context: 'said "yes.\n\nrecorder'.slice(0, 4),
    continuation: ' "yes.\n\nrecorder',
  });
  assertEqualsInOrder(
    taskRequests(TASKS.winogrande, { contexts: ["A so B", "A so C"], continuation: "ran.", gold: 1 }),
    [
      { type: "pair", context: "A so B", continuation: " ran." },
      { type: "pair", context: "A so C", continuation: " ran." },
    ],
  );
});

Deno.test("acc / acc_norm: argmax of sums and of sums per character, ties to the lower index", () => {
  const doc = { context: "Q", choices: ["ab", "abcd", "x"], gold: 1 };
  const ans = (lls: number[]) => lls.map((logprob) => ({ logprob, isGreedy: false }));
  // lls −2, −3, −2.5: acc picks 0; per char −1, −0.75, −2.5: acc_norm picks 1.
  assertEqualsInOrder(processDoc(TASKS.arc_easy, doc, ans([-2, -3, -2.5])), { acc: 0, acc_norm: 1 });
  // acc: an exact tie between 0 and 1 goes to 0; acc_norm −1, −0.5: picks 1.
  assertEqualsInOrder(processDoc(TASKS.arc_easy, doc, ans([-2, -2, -9])), { acc: 0, acc_norm: 1 });
  assertEqualsInOrder(processDoc(TASKS.arc_easy, doc, ans([-4, -8, -9])), { acc: 0, acc_norm: 0 });
  assertEqualsInOrder(
    processDoc(TASKS.arc_easy, { ...doc, choices: ["é", "e\u0301", "x"] }, ans([-1, -2, -9])),
    {
      acc: 0,
      acc_norm: 0, // −1/1 vs −2/2: a tie, lower index wins (Python len("e\u0301") is 2)
    },
  );
});

Deno.test("encodeRequest: context tokens, then the rest of the whole encoding; BOS only with add_bos_token", async () => {
  const tok = await Tokenizer.fromDir(STORIES);
  const ctx = "Once upon a", cont = " time";
  const r = encodeRequest(tok, ctx, cont, { addSpecialTokens: false });
  // "Once upon a time" is [403, 407, 261, 378] without BOS (tokenizer.json, llama2.c encode).
  assertEqualsInOrder(r, { context: [403, 407, 261], continuation: [378] });
  assertEqualsInOrder(encodeRequest(tok, ctx, cont, { addSpecialTokens: true }), {
    context: [1, 403, 407, 261],
    continuation: [378],
  });
  // A trailing space moves: "Once upon a " + "time" scores the same tokens as above.
  assertEqualsInOrder(encodeRequest(tok, "Once upon a ", "time", { addSpecialTokens: false }), r);
  // Empty context: the prefix token (BOS) conditions the continuation.
  assertEqualsInOrder(encodeRequest(tok, "", "Once", { addSpecialTokens: false }), {
    context: [1],
    continuation: [403],
  });
  assert(tok.decode([1]) === "<s>");
});
