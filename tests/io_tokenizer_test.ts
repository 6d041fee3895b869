/**
 * Tokenizer against independent references:
 * - stories260K: reference.json (ids from llama2.c's encoder, checked against Python `tokenizers`,
 *   see tests/fixtures/stories260K/README.md) and its eval protocol's first_ids;
 * - Qwen3: golden ids from Python `tokenizers` 0.23.2 and chat renderings from transformers 5.17.0
 *   (Jinja2), produced by tests/fixtures/calib/make_references.py on the device machine (Python 3.12;
 *   the dev machine has neither library). Those tests read ../shared/models/qwen3-tokenizer (5.3 MB,
 *   not copied into the repo) and are skipped, with a printed reason, when it is absent.
 */

import { Tokenizer } from "../src/io/tokenizer.ts";
import { InputError } from "../src/errors.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";

const STORIES = new URL("./fixtures/stories260K", import.meta.url).pathname;
const QWEN3 = new URL("../../shared/models/qwen3-tokenizer", import.meta.url).pathname;
const haveQwen3 = (() => {
  try {
    return Deno.statSync(`${QWEN3}/tokenizer.json`).isFile;
  } catch {
    return false;
  }
})();
let qwen3: Promise<Tokenizer> | undefined;
/** Loaded once for all Qwen3 tests (about a second). */
const getQwen3 = () => (qwen3 ??= Tokenizer.fromDir(QWEN3));
if (!haveQwen3) {
  console.log(`skipping Qwen3 tokenizer tests: ${QWEN3}/tokenizer.json not found (../shared absent)`);
}

const reference = JSON.parse(Deno.readTextFileSync(`${STORIES}/reference.json`)) as {
  prompts: { text: string; ids: number[] }[];
  eval: { first_ids: number[]; tokens: number; documents: number };
};

Deno.test("stories260K: prompt ids equal reference.json (BOS first)", async () => {
  const tok = await Tokenizer.fromDir(STORIES);
  for (const p of reference.prompts) assertEquals(tok.encode(p.text), p.ids, p.text);
});

Deno.test("stories260K: eval.txt protocol ([BOS] + encode(line) per line) gives first_ids and the token count", async () => {
  const tok = await Tokenizer.fromDir(STORIES);
  const lines = Deno.readTextFileSync(`${STORIES}/eval.txt`).split("\n").filter((l) => l !== "");
  assertEquals(lines.length, reference.eval.documents);
  const stream = lines.flatMap((l) => tok.encode(l));
  assertEquals(stream.slice(0, reference.eval.first_ids.length), reference.eval.first_ids);
  assertEquals(stream.length, reference.eval.tokens);
});

Deno.test("stories260K: special ids, vocab in id order, merges, model type", async () => {
  const tok = await Tokenizer.fromDir(STORIES);
  assertEquals(tok.bosTokenId, 1);
  assertEquals(tok.eosTokenId, 2);
  assertEquals(tok.eosTokenIds, [2]);
  assertEquals(tok.padTokenId, undefined);
  assertEquals(tok.unkTokenId, 0);
  assertEquals(tok.vocabSize, 512);
  assertEquals(tok.modelType, "BPE");
  const vocab = tok.vocab();
  assertEquals(vocab.length, 512);
  assertEquals(vocab.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
  assertEquals(vocab[258], "<0xFF>");
  assertEquals(tok.tokenToString(403), "▁Once");
  assertEquals(tok.idToPiece(403), "▁Once");
  assertEquals(tok.tokenToId("▁Once"), 403);
  // README: 165 merges, "every split of a piece into two vocab pieces".
  const merges = tok.merges();
  assertEquals(merges.length, 165);
  for (const m of merges) {
    const [a, b] = m.split(" ");
    assert(
      tok.tokenToId(a) !== undefined && tok.tokenToId(b) !== undefined && tok.tokenToId(a + b) !== undefined,
      m,
    );
  }
  assertEquals(tok.scores(), undefined);
  assert(tok.isSpecial(1) && !tok.isSpecial(403));
  assertEquals(tok.addedTokens().map((t) => t.content), ["<unk>", "<s>", "</s>"]);
});

Deno.test("stories260K: decode round-trips text and skips specials on request", async () => {
  const tok = await Tokenizer.fromDir(STORIES);
  const text = "Lily and Ben are friends. They like to play in the park.";
  const ids = tok.encode(text);
  assertEquals(tok.decode(ids, { skipSpecialTokens: true }), text);
  assertEquals(tok.decode(ids), "<s> " + text);
  assertEquals(tok.decode([]), "");
});

Deno.test("encode with maxLength keeps special tokens like truncation=True, max_length=n", async () => {
  const tok = await Tokenizer.fromDir(STORIES);
  const full = tok.encode("Once upon a time there was a dog");
  assertEquals(tok.encode("Once upon a time there was a dog", { maxLength: 4 }), full.slice(0, 4));
  assertEquals(tok.encode("Once upon a time", { maxLength: 100 }), [1, 403, 407, 261, 378]);
  assertEquals(tok.encode("Once upon a time", { maxLength: 2, addSpecialTokens: false }), [403, 407]);
});

Deno.test("stories260K has no chat template: applyChatTemplate throws InputError naming the folder", async () => {
  const tok = await Tokenizer.fromDir(STORIES);
  assertEquals(tok.chatTemplate, undefined);
  const err = assertThrows(() => tok.applyChatTemplate([{ role: "user", content: "hi" }]), InputError);
  assertEquals(err.file, STORIES);
});

Deno.test("a folder without tokenizer.json is an InputError naming the folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const err = await assertRejects(() => Tokenizer.fromDir(dir), InputError);
    assertEquals(err.file, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generation_config eos ids (one or a list) are merged after the tokenizer's eos", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
      await Deno.copyFile(`${STORIES}/${f}`, `${dir}/${f}`);
    }
    await Deno.writeTextFile(`${dir}/generation_config.json`, JSON.stringify({ eos_token_id: [2, 1] }));
    assertEquals((await Tokenizer.fromDir(dir)).eosTokenIds, [2, 1]);
    await Deno.writeTextFile(`${dir}/generation_config.json`, JSON.stringify({ eos_token_id: 0 }));
    assertEquals((await Tokenizer.fromDir(dir)).eosTokenIds, [2, 0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LlamaTokenizerFast's add_eos_token flag rebuilds the post-processor as transformers does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(`${STORIES}/tokenizer.json`, `${dir}/tokenizer.json`);
    const cfg = JSON.parse(Deno.readTextFileSync(`${STORIES}/tokenizer_config.json`));
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ ...cfg, add_eos_token: true }));
    const tok = await Tokenizer.fromDir(dir);
    assertEquals(tok.encode("Once upon a time"), [1, 403, 407, 261, 378, 2]);
    assertEquals(tok.encode("Once upon a time", { maxLength: 4 }), [1, 403, 407, 2]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// Golden ids: Python tokenizers 0.23.2, Tokenizer.from_file(qwen3 tokenizer.json).encode(text).ids
// (transformers 5.17 AutoTokenizer gave the same ids for all of them).
const QWEN3_IDS: [string, number[]][] = [
  ["Hello world!", [9707, 1879, 0]],
  ["  leading and trailing spaces  ", [220, 6388, 323, 27748, 12621, 256]],
  [
    "I'm sure they'll say we've done it; don't you?",
    [40, 2776, 2704, 807, 3278, 1977, 582, 3003, 2814, 432, 26, 1513, 944, 498, 30],
  ],
  ["def f(x):\n    return x ** 2\n\n\n# done", [
    750,
    282,
    2075,
    982,
    262,
    470,
    856,
    3070,
    220,
    17,
    1406,
    2,
    2814,
  ]],
  [
    "Numbers 12345 and 3.14159, 1,000,000.",
    [
      27237,
      220,
      16,
      17,
      18,
      19,
      20,
      323,
      220,
      18,
      13,
      16,
      19,
      16,
      20,
      24,
      11,
      220,
      16,
      11,
      15,
      15,
      15,
      11,
      15,
      15,
      15,
      13,
    ],
  ],
  ["你好，世界！こんにちは 안녕하세요", [108386, 3837, 99489, 6313, 89015, 95170, 144370, 91145]],
  ["emoji 🦙🔥 and accents café naïve", [37523, 11162, 99, 247, 144670, 323, 58470, 51950, 94880, 586]],
  ["<|im_start|>user\nhi<|im_end|>\n<|endoftext|>", [151644, 872, 198, 6023, 151645, 198, 151643]],
  ["<think>\nok\n</think>", [151667, 198, 562, 198, 151668]],
  ["", []],
];

Deno.test({
  name: "Qwen3: encode equals Python tokenizers on English, code, digits, CJK, emoji and special tokens",
  ignore: !haveQwen3,
  fn: async () => {
    const tok = await getQwen3();
    for (const [text, ids] of QWEN3_IDS) {
      assertEquals(tok.encode(text), ids, JSON.stringify(text));
      assertEquals(tok.encode(text, { addSpecialTokens: false }), ids, JSON.stringify(text));
    }
  },
});

Deno.test({
  name: "Qwen3: decode keeps or skips special tokens like Python tokenizers",
  ignore: !haveQwen3,
  fn: async () => {
    const tok = await getQwen3();
    const ids = [151644, 872, 198, 6023, 151645, 198, 151643];
    assertEquals(tok.decode(ids), "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>");
    assertEquals(tok.decode(ids, { skipSpecialTokens: true }), "user\nhi\n");
  },
});

Deno.test({
  name: "Qwen3: special ids, vocab size with added tokens, byte-level merges",
  ignore: !haveQwen3,
  fn: async () => {
    const tok = await getQwen3();
    // README: 151,643 vocab entries, 151,387 merges, 26 added tokens; eos <|im_end|>, pad <|endoftext|>, no BOS.
    assertEquals(tok.bosTokenId, undefined);
    assertEquals(tok.eosTokenIds, [151645]);
    assertEquals(tok.padTokenId, 151643);
    assertEquals(tok.vocabSize, 151643 + 26);
    assertEquals(tok.vocab().length, tok.vocabSize);
    assertEquals(tok.tokenToString(151644), "<|im_start|>");
    assertEquals(tok.merges().length, 151387);
    assertEquals(tok.merges()[0], "Ġ Ġ");
    assertEquals(tok.modelType, "BPE");
  },
});

// Golden renderings: transformers 5.17.0 AutoTokenizer(qwen3).apply_chat_template(..., tokenize=False).
Deno.test({
  name: "Qwen3: chat template renders as transformers' apply_chat_template",
  ignore: !haveQwen3,
  fn: async () => {
    const tok = await getQwen3();
    const ask = [{ role: "system", content: "You are a helpful assistant." }, {
      role: "user",
      content: "Hi there",
    }];
    assertEquals(
      tok.applyChatTemplate(ask),
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    );
    assertEquals(
      tok.applyChatTemplate(ask, { extra: { enable_thinking: false } }),
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n" +
        "<|im_start|>assistant\n<think>\n\n</think>\n\n",
    );
    const conv = [{ role: "user", content: "What is 2+2?" }, { role: "assistant", content: "4." }];
    assertEquals(
      tok.applyChatTemplate(conv, { addGenerationPrompt: false }),
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n4.<|im_end|>\n",
    );
  },
});
