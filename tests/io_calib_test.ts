/**
 * Calibration selection against independent references (CPython's random is io_pyrandom_test.ts,
 * reading the texts io_calib_texts_test.ts):
 * - selections: tests/fixtures/calib/references.json, written by make_references.py (beside it) on the
 *   device machine: AutoRound's get_local_dataset / filter_func / concat_dataset_element / num= / nsamples
 *   logic in plain Python with the real `random.Random(seed).shuffle` and Python `tokenizers` 0.23.2
 *   with truncation (Python 3.12). It also wrote docs.parquet with pyarrow.
 * Tests that need ../shared (Qwen3 tokenizer, c4-en-1000.jsonl, the c4-qwen3 safetensors) are skipped
 * with a printed reason when it is absent.
 */

import { concatSamples, keepSample, loadCalibration, lossMaskOf, parseDatasetSpec } from "../src/io/calib.ts";
import { readTexts } from "../src/io/calib_texts.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { UsageError } from "../src/errors.ts";
import { assert, assertEquals, assertEqualsInOrder, assertRejects } from "./assert.ts";

const FIX = new URL("./fixtures/calib", import.meta.url).pathname;
const STORIES = new URL("./fixtures/stories260K", import.meta.url).pathname;
const SHARED = new URL("../../shared", import.meta.url).pathname;
const QWEN3 = `${SHARED}/models/qwen3-tokenizer`;
const C4 = `${SHARED}/data/calib/c4-en-1000.jsonl`;
const C4_QWEN3_IDS = `${SHARED}/data/calib/c4-qwen3-128x2048.safetensors`;
const exists = (p: string) => {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
};
const haveShared = exists(`${QWEN3}/tokenizer.json`) && exists(C4) && exists(C4_QWEN3_IDS);
if (!haveShared) console.log(`skipping Qwen3/c4 calibration tests: ${SHARED} (models, data/calib) not found`);

interface Selection {
  indices?: number[];
  first_row?: number[];
  rows?: number[][];
}
const REF = JSON.parse(Deno.readTextFileSync(`${FIX}/references.json`)) as {
  stories: Record<string, Selection>;
  qwen3: Record<string, Selection>;
  parquet_texts: string[];
};

const stories = await Tokenizer.fromDir(STORIES);
let qwen3: Promise<Tokenizer> | undefined;
const getQwen3 = () => (qwen3 ??= Tokenizer.fromDir(QWEN3));

/**
 * Check that a selection holds exactly the documents `indices` (the Python reference's), in order:
 * row r must be the truncated encoding of texts[indices[r]]. (Rows are compared rather than mapped
 * back to indices because docs.jsonl has duplicate texts on purpose: rows 36-37 rstrip to rows 0-1.)
 */
function assertSelects(
  ids: Int32Array,
  seqlen: number,
  indices: number[] | undefined,
  texts: string[],
  tok: Tokenizer,
  render = (t: string) => t,
  msg = "",
) {
  assert(indices !== undefined, `${msg}: no reference indices`);
  assertEquals(ids.length, indices.length * seqlen, `${msg}: sample count`);
  indices.forEach((doc, r) => {
    const want = tok.encode(render(texts[doc]), { maxLength: seqlen });
    assertEquals(
      Array.from(ids.subarray(r * seqlen, (r + 1) * seqlen)),
      want,
      `${msg}: row ${r} (doc ${doc})`,
    );
  });
}

// ---- spec, filter, mask, concat ----

Deno.test("parseDatasetSpec reads AutoRound's num=, concat, apply_chat_template, system_prompt= options", () => {
  assertEqualsInOrder(parseDatasetSpec("data.jsonl:num=64:concat=true"), {
    name: "data.jsonl",
    concat: true,
    applyChatTemplate: false,
    systemPrompt: "You are a helpful assistant.",
    num: 64,
  });
  assertEquals(parseDatasetSpec("d.json:concat").concat, true);
  assertEquals(parseDatasetSpec("d.json:concat=False").concat, false);
  assertEquals(parseDatasetSpec(" d.json : apply_chat_template ").applyChatTemplate, true);
  const sys = parseDatasetSpec("d.json:system_prompt=Be brief.");
  assertEquals([sys.applyChatTemplate, sys.systemPrompt], [true, "Bebrief."]); // spaces go, as in calib()
  assertEquals(parseDatasetSpec("").name, "NeelNanda/pile-10k");
  for (const bad of ["a.json,b.json", "a.json:num=0", "a.json:bogus=1"]) {
    let threw = false;
    try {
      parseDatasetSpec(bad);
    } catch (e) {
      threw = e instanceof UsageError;
    }
    assert(threw, bad);
  }
});

Deno.test("keepSample is filter_func: too short, or last id more than seqlen/2 times, is dropped", () => {
  assert(keepSample([1, 2, 3, 4], 4));
  assert(!keepSample([1, 2, 3], 4));
  assert(keepSample([1, 2, 4, 4], 4)); // 2 of 4 is not more than half
  assert(!keepSample([1, 4, 4, 4], 4));
  assert(keepSample([1, 2, 3, 4, 4, 4, 4], 4)); // only the first seqlen ids count
  assert(keepSample([7, 7], 2)); // seqlen <= 2 skips the repeat test
});

Deno.test("lossMaskOf excludes pad ids when the tokenizer has one, else trailing repeats; always the last position", () => {
  assertEquals(Array.from(lossMaskOf([5, 6, 7, 8])), [1, 1, 1, 0]);
  assertEquals(Array.from(lossMaskOf([5, 9, 6, 9, 9, 9])), [1, 1, 1, 0, 0, 0]);
  assertEquals(Array.from(lossMaskOf([9, 9, 9])), [0, 0, 0]);
  assertEquals(Array.from(lossMaskOf([0, 5, 0, 6, 7], 0)), [0, 1, 0, 1, 0]);
  assertEquals(Array.from(lossMaskOf([5, 6, 6, 6], 0)), [1, 1, 1, 0]); // with a pad id, repeats count
});

Deno.test("concatSamples joins rows into seqlen pieces and keeps AutoRound's never-reset BOS/EOS count", () => {
  assertEquals([...concatSamples([[7, 8, 9], [10, 11, 12], [13, 14]], 4)], [[7, 8, 9, 10], [11, 12, 13, 14]]);
  // One BOS stripped: pieces are BOS + 3 ids.
  assertEquals([...concatSamples([[1, 7, 8, 9, 10, 11]], 4, 1)], [[1, 7, 8, 9]]);
  // Two stripped BOS (os_cnt = 2): the next piece holds BOS + 2 ids, one short of seqlen.
  assertEquals([...concatSamples([[1, 7, 8], [1, 9, 10, 11]], 4, 1)], [[1, 7, 8]]);
});

// ---- selections against the Python reference ----

async function timedLoad(spec: string, tok: Tokenizer, seqlen: number, nsamples: number, seed: number) {
  const t0 = performance.now();
  const set = await loadCalibration(spec, tok, { seqlen, nsamples, seed });
  return { set, ms: performance.now() - t0 };
}

Deno.test("stories260K selections on docs.jsonl equal the Python reference (seeds 42/0/7, seqlen 32-64, num=)", async () => {
  const texts = await readTexts(`${FIX}/docs.jsonl`);
  const cases: [string, string, number, number, number][] = [
    ["seed42_seqlen64_n8", "docs.jsonl", 64, 8, 42],
    ["seed0_seqlen32_n1000", "docs.jsonl", 32, 1000, 0],
    ["seed42_seqlen48_n6_num3", "docs.jsonl:num=3", 48, 6, 42],
    ["seed7_seqlen40_n100", "docs.jsonl", 40, 100, 7],
  ];
  for (const [key, spec, seqlen, n, seed] of cases) {
    const { set } = await timedLoad(`${FIX}/${spec}`, stories, seqlen, n, seed);
    assertSelects(set.ids, seqlen, REF.stories[key].indices, texts, stories, undefined, key);
    assertEquals(Array.from(set.ids.subarray(0, seqlen)), REF.stories[key].first_row, key);
    assertEquals(set.warnings.length, set.nsamples < n ? 1 : 0, key);
  }
});

Deno.test(".json dict and list selections equal the Python reference", async () => {
  for (
    const [key, file] of [["dict_json_seed1_seqlen16_n10", "docs_dict.json"], [
      "list_json_seed1_seqlen16_n10",
      "docs_list.json",
    ]]
  ) {
    const texts = await readTexts(`${FIX}/${file}`);
    const { set } = await timedLoad(`${FIX}/${file}`, stories, 16, 10, 1);
    assertSelects(set.ids, 16, REF.stories[key].indices, texts, stories, undefined, key);
  }
});

Deno.test("concat=true with a BOS tokenizer equals the Python port of concat_dataset_element", async () => {
  const set = await loadCalibration(`${FIX}/docs.jsonl:concat=true`, stories, {
    seqlen: 32,
    nsamples: 6,
    seed: 42,
  });
  const expected = REF.stories.concat_seed42_seqlen32_n6.rows!.map((r) => r.slice(0, 32)); // collate's [:seqlen]
  assertEquals(set.nsamples, expected.length);
  assertEquals(Array.from(set.ids), expected.flat());
});

Deno.test("the loss mask of a selection follows lossMaskOf per row (stories260K has no pad id)", async () => {
  const set = await loadCalibration(`${FIX}/docs.jsonl`, stories, { seqlen: 32, nsamples: 50, seed: 0 });
  for (let r = 0; r < set.nsamples; r++) {
    const row = set.ids.subarray(r * 32, (r + 1) * 32);
    assertEquals(set.lossMask.subarray(r * 32, (r + 1) * 32), lossMaskOf(row));
    assertEquals(set.lossMask[(r + 1) * 32 - 1], 0);
  }
});

Deno.test("too few long texts: what there is plus a warning; none: a UsageError suggesting a smaller --seqlen", async () => {
  const few = await loadCalibration(`${FIX}/docs_list.json`, stories, { seqlen: 16, nsamples: 10, seed: 1 });
  assertEquals(few.nsamples, 3);
  assert(few.warnings[0].includes("3 of 10"), few.warnings[0]);
  const err = await assertRejects(
    () => loadCalibration(`${FIX}/docs_list.json`, stories, { seqlen: 4096, nsamples: 10, seed: 1 }),
    UsageError,
  );
  assert(err.message.includes(">= 4096 tokens") && err.message.includes("smaller --seqlen"), err.message);
});

Deno.test("a data set name missing from the local HF cache is a one-line UsageError saying where it looked", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const env = { get: (k: string) => (k === "HF_HUB_CACHE" ? cache : undefined) };
    const err = await assertRejects(
      () => loadCalibration("NeelNanda/pile-10k", stories, { seqlen: 8, nsamples: 2, seed: 42, env }),
      UsageError,
    );
    assert(!err.message.includes("\n"));
    assert(err.message.includes("not in the local Hugging Face cache"), err.message);
    assert(err.message.includes(`${cache}/datasets--NeelNanda--pile-10k/snapshots/`), err.message);
    assert(err.message.includes("--dataset FILE"), err.message);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("NeelNanda/pile-10k resolves to the cached snapshot of refs/main (parquet of the train split)", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const hfHome = cache;
    const repo = `${hfHome}/hub/datasets--NeelNanda--pile-10k`;
    await Deno.mkdir(`${repo}/refs`, { recursive: true });
    await Deno.mkdir(`${repo}/snapshots/abc123/data`, { recursive: true });
    await Deno.writeTextFile(`${repo}/refs/main`, "abc123\n");
    await Deno.copyFile(`${FIX}/docs.parquet`, `${repo}/snapshots/abc123/data/train-00000-of-00001.parquet`);
    await Deno.writeTextFile(`${repo}/snapshots/abc123/README.md`, "card");
    const env = { get: (k: string) => (k === "HF_HOME" ? hfHome : undefined) };
    const set = await loadCalibration("pile-10k", stories, { seqlen: 16, nsamples: 4, seed: 42, env });
    assertEquals(set.nsamples, 4);
    assert(set.source.includes("train-00000-of-00001.parquet"), set.source);
    const direct = await loadCalibration(`${FIX}/docs.parquet`, stories, {
      seqlen: 16,
      nsamples: 4,
      seed: 42,
    });
    assertEquals(set.ids, direct.ids);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test(".safetensors input_ids rows are taken in file order, cut to seqlen, no shuffle or filter", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rows = [[5, 6, 7, 8, 9], [9, 9, 9, 9, 9], [1, 2, 3, 4, 5]];
    const header = JSON.stringify({ input_ids: { dtype: "I64", shape: [3, 5], data_offsets: [0, 120] } });
    const bytes = new Uint8Array(8 + header.length + 120);
    const view = new DataView(bytes.buffer);
    view.setBigUint64(0, BigInt(header.length), true);
    bytes.set(new TextEncoder().encode(header), 8);
    rows.flat().forEach((v, i) => view.setBigInt64(8 + header.length + 8 * i, BigInt(v), true));
    await Deno.writeFile(`${dir}/ids.safetensors`, bytes);
    const set = await loadCalibration(`${dir}/ids.safetensors`, stories, {
      seqlen: 4,
      nsamples: 8,
      seed: 42,
    });
    assertEquals(Array.from(set.ids), [5, 6, 7, 8, 9, 9, 9, 9, 1, 2, 3, 4]);
    assertEquals(Array.from(set.lossMask), [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0]);
    assert(set.warnings[0].includes("3 of 8"), set.warnings[0]);
    await assertRejects(
      () => loadCalibration(`${dir}/ids.safetensors`, stories, { seqlen: 6, nsamples: 2, seed: 42 }),
      UsageError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- Qwen3 and the shared c4 data ----

Deno.test({
  name: "Qwen3 selections on docs.jsonl equal the Python reference: plain, concat, apply_chat_template",
  ignore: !haveShared,
  fn: async () => {
    const tok = await getQwen3();
    const texts = await readTexts(`${FIX}/docs.jsonl`);
    const plain = await timedLoad(`${FIX}/docs.jsonl`, tok, 64, 8, 42);
    assertSelects(plain.set.ids, 64, REF.qwen3.seed42_seqlen64_n8.indices, texts, tok);
    assertEquals(plain.set.warnings.length, 1);
    const concat = await loadCalibration(`${FIX}/docs.jsonl:concat`, tok, {
      seqlen: 64,
      nsamples: 4,
      seed: 42,
    });
    assertEquals(Array.from(concat.ids), REF.qwen3.concat_seed42_seqlen64_n4.rows!.flat());
    const chat = await loadCalibration(`${FIX}/docs.jsonl:apply_chat_template`, tok, {
      seqlen: 64,
      nsamples: 8,
      seed: 42,
    });
    const render = (t: string) =>
      tok.applyChatTemplate([{ role: "system", content: "You are a helpful assistant." }, {
        role: "user",
        content: t,
      }]);
    assertSelects(chat.ids, 64, REF.qwen3.chat_seed42_seqlen64_n8.indices, texts, tok, render);
    // Qwen3 has a pad id (<|endoftext|>): the mask drops exactly those and the last position.
    for (let r = 0; r < chat.nsamples; r++) {
      assertEquals(
        chat.lossMask.subarray(r * 64, (r + 1) * 64),
        lossMaskOf(chat.ids.subarray(r * 64, (r + 1) * 64), 151643),
      );
    }
  },
});

Deno.test({
  name:
    "c4-en-1000.jsonl: Qwen3 seqlen 2048 and stories260K seqlen 512 selections equal the Python reference",
  ignore: !haveShared,
  fn: async () => {
    const texts = await readTexts(C4);
    const q = await getQwen3();
    const big = await timedLoad(C4, q, 2048, 128, 42);
    assertSelects(big.set.ids, 2048, REF.qwen3.c4_seed42_seqlen2048_n128.indices, texts, q);
    assertEquals(big.set.nsamples, 30); // only 30 of the 1000 documents reach 2048 Qwen3 tokens
    assertEquals(Array.from(big.set.ids.subarray(0, 2048)), REF.qwen3.c4_seed42_seqlen2048_n128.first_row);
    console.log(
      `  c4-en-1000, Qwen3, seqlen 2048: ${big.set.nsamples} samples, loadCalibration ${
        big.ms.toFixed(0)
      } ms`,
    );
    const small = await timedLoad(C4, stories, 512, 128, 42);
    assertSelects(small.set.ids, 512, REF.stories.c4_seed42_seqlen512_n128.indices, texts, stories);
    console.log(
      `  c4-en-1000, stories260K, seqlen 512: 128 samples, loadCalibration ${small.ms.toFixed(0)} ms`,
    );
    assertEquals(small.set.warnings, []);
  },
});

Deno.test({
  name: "c4-qwen3-128x2048.safetensors: 128 ready rows of 2048 ids, pad (<|endoftext|>) positions masked",
  ignore: !haveShared,
  fn: async () => {
    const tok = await getQwen3();
    const set = await loadCalibration(C4_QWEN3_IDS, tok, { seqlen: 2048, nsamples: 128, seed: 42 });
    assertEquals([set.nsamples, set.seqlen, set.ids.length], [128, 2048, 128 * 2048]);
    assertEquals(set.warnings, []);
    let pads = 0;
    for (let i = 0; i < set.ids.length; i++) {
      if (set.ids[i] === 151643) {
        pads++;
        assertEquals(set.lossMask[i], 0);
      }
    }
    assert(pads > 0);
  },
});
