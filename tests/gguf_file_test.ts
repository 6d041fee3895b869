/**
 * The GGUF container (src/formats/gguf/writer.ts, file.ts): our reader and @huggingface/gguf agree
 * on what our writer wrote (metadata with exact value types, tensor infos, offsets, alignment); broken
 * files fail with one clear line; the stories260K export carries the metadata llama.cpp needs; names
 * and the q/k permutation invert; inspect summarises.
 */
import { gguf } from "@huggingface/gguf";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { FormatError, InputError } from "../src/errors.ts";
import { type GgufExporter } from "../src/export/gguf.ts";
import { scoresFromMerges } from "../src/formats/gguf/metadata.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { formatGgufSummary, inspectGguf } from "../src/formats/gguf/summary.ts";
import { openGgufModel } from "../src/io/gguf_model.ts";
import {
  ggufToHfName,
  hfToGgufName,
  permuteRowsGgufToHf,
  permuteRowsHfToGguf,
} from "../src/formats/gguf/names.ts";
import { GGML_TYPES } from "../src/qmath/gguf/types.ts";
import { GGUF_MAGIC } from "../src/formats/gguf/constants.ts";
import { GgufWriter, meta } from "../src/formats/gguf/writer.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { exportModel, STORIES } from "./consumers/helpers.ts";
import { join } from "./consumers/path.ts";

Deno.test("writer → our reader and @huggingface/gguf: every metadata type, tensor infos, aligned data", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "t.gguf");
  const w = await GgufWriter.create(path);
  w.setMeta("general.architecture", meta.str("llama"));
  w.setMeta("a.u8", { type: "uint8", value: 200 });
  w.setMeta("a.i8", { type: "int8", value: -5 });
  w.setMeta("a.u16", { type: "uint16", value: 60000 });
  w.setMeta("a.i16", { type: "int16", value: -30000 });
  w.setMeta("a.u32", meta.u32(4000000000));
  w.setMeta("a.i32", meta.i32(-2000000000));
  w.setMeta("a.f32", meta.f32(0.5));
  w.setMeta("a.bool", meta.bool(true));
  w.setMeta("a.u64", { type: "uint64", value: 2n ** 40n });
  w.setMeta("a.i64", { type: "int64", value: -(2n ** 40n) });
  w.setMeta("a.f64", { type: "float64", value: Math.PI });
  w.setMeta("a.strs", meta.strs(["▁a", "中文", ""]));
  w.setMeta("a.f32s", meta.f32s([1.5, -2]));
  const f32 = new Float32Array([1, 2, 3, 4, 5]);
  await w.addTensor("x.weight", "F32", [5], new Uint8Array(f32.buffer));
  const q8 = new Uint8Array(GGML_TYPES.Q8_0.typeSize * 2).map((_, i) => i);
  await w.addTensor("y.weight", "Q8_0", [32, 2], q8);
  await w.finish();

  using f = await GgufFile.open(path);
  assertEquals(f.version, 3);
  assertEquals(f.num("a.u32"), 4000000000);
  assertEquals(f.metadata.get("a.i8"), { type: "int8", value: -5 });
  assertEquals(f.metadata.get("a.f64"), { type: "float64", value: Math.PI });
  assertEquals(f.array("a.strs"), ["▁a", "中文", ""]);
  assertEquals([...await f.readF32("x.weight")], [1, 2, 3, 4, 5]);
  assertEquals([...await f.readBytes("y.weight")], [...q8]);
  // Concurrent reads share the file position: each must still get its own tensor's bytes.
  const both = await Promise.all([f.readBytes("y.weight"), f.readF32("x.weight"), f.readBytes("y.weight")]);
  assertEquals([[...both[0]], [...both[1]], [...both[2]]], [[...q8], [1, 2, 3, 4, 5], [...q8]]);
  for (const t of f.tensors) assertEquals((t.offset - f.dataOffset) % 32, 0, `${t.name} aligned`);

  const hf = await gguf(path, { allowLocalFile: true });
  const md = hf.metadata as Record<string, unknown>;
  assertEquals(md["general.architecture"], "llama");
  assertEquals(md["a.u16"], 60000);
  assertEquals(md["a.i64"], -(2n ** 40n));
  assertEquals(md["a.strs"], ["▁a", "中文", ""]);
  assertEquals(hf.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype]), [["x.weight", [5], 0], [
    "y.weight",
    [32, 2],
    8,
  ]]);
  assertEquals(Number(hf.tensorDataOffset), f.dataOffset);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("broken GGUF files fail with one clear FormatError / InputError", async () => {
  const dir = await Deno.makeTempDir();
  const good = join(dir, "g.gguf");
  const w = await GgufWriter.create(good);
  w.setMeta("general.architecture", meta.str("llama"));
  await w.addTensor("x.weight", "F32", [64], new Uint8Array(256));
  await w.finish();
  const bytes = await Deno.readFile(good);
  await Deno.writeFile(join(dir, "trunc.gguf"), bytes.subarray(0, bytes.length - 10));
  await assertRejects(() => GgufFile.open(join(dir, "trunc.gguf")), FormatError, "runs past the end");
  await Deno.writeFile(join(dir, "hdr.gguf"), bytes.subarray(0, 30));
  await assertRejects(() => GgufFile.open(join(dir, "hdr.gguf")), FormatError, "header runs past");
  const bad = new Uint8Array(bytes);
  new DataView(bad.buffer).setUint32(0, GGUF_MAGIC ^ 1, true);
  await Deno.writeFile(join(dir, "magic.gguf"), bad);
  await assertRejects(() => GgufFile.open(join(dir, "magic.gguf")), FormatError, "bad magic");
  await assertRejects(() => GgufFile.open(join(dir, "none.gguf")), InputError, "no such file");
  const w2 = await GgufWriter.create(join(dir, "x.gguf"));
  await assertRejects(() => w2.addTensor("t", "Q4_0", [33], new Uint8Array(18)), FormatError, "do not hold");
  await w2.abort();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("names map both ways; the q/k row permutation is convert_hf_to_gguf's and inverts", () => {
  assertEquals(hfToGgufName("model.layers.12.self_attn.o_proj.weight"), "blk.12.attn_output.weight");
  assertEquals(hfToGgufName("model.layers.0.self_attn.k_norm.weight"), "blk.0.attn_k_norm.weight");
  assertEquals(hfToGgufName("lm_head.weight"), "output.weight");
  assertEquals(ggufToHfName("blk.3.ffn_gate.weight"), "model.layers.3.mlp.gate_proj.weight");
  assertEquals(hfToGgufName("model.layers.0.mlp.act"), undefined);
  // One head of 8 rows: HF order [0..3 | 4..7] (halves) → GGUF [0,4,1,5,2,6,3,7] (pairs).
  const w = Float32Array.from({ length: 16 }, (_, i) => Math.floor(i / 2)); // 8 rows × 2 cols
  const p = permuteRowsHfToGguf(w, 8, 2, 1);
  assertEquals([...p].filter((_, i) => i % 2 === 0), [0, 4, 1, 5, 2, 6, 3, 7]);
  assertEquals([...permuteRowsGgufToHf(p, 8, 2, 1)], [...w]);
});

Deno.test("'llama' vocabulary scores replay the BPE merge order", () => {
  const vocab = ["a", "b", "c", "ab", "bc", "abc"];
  const s = scoresFromMerges(vocab, ["a b", "b c", "ab c"]);
  assertEquals(s, [-1000, -1000, -1000, -0, -1, -2]);
});

Deno.test("stories260K gguf:q4_k_m: metadata llama.cpp needs, tensors, read back equal to our quantization", async () => {
  const out = await Deno.makeTempDir();
  try {
    const run = await exportModel({
      model: STORIES,
      formats: "gguf:q4_k_m",
      out,
      scheme: { bits: 4, groupSize: 32, sym: true, dataType: "int" },
    });
    const path = (run.exporters[0] as GgufExporter).path;
    assertEquals(path.split("/").pop(), "stories260K-Q4_K_M.gguf");
    using f = await GgufFile.open(path);
    const expect: Record<string, unknown> = {
      "general.architecture": "llama",
      "general.file_type": 15,
      "general.quantization_version": 2,
      "llama.block_count": 5,
      "llama.context_length": 512,
      "llama.embedding_length": 64,
      "llama.feed_forward_length": 172,
      "llama.attention.head_count": 8,
      "llama.attention.head_count_kv": 4,
      "llama.rope.dimension_count": 8,
      "llama.vocab_size": 512,
      "tokenizer.ggml.model": "llama",
      "tokenizer.ggml.bos_token_id": 1,
      "tokenizer.ggml.eos_token_id": 2,
      "tokenizer.ggml.unknown_token_id": 0,
      "tokenizer.ggml.add_bos_token": true,
      "tokenizer.ggml.add_eos_token": false,
    };
    for (const [k, v] of Object.entries(expect)) assertEquals(f.get(k), v, k);
    assertEquals(f.metadata.get("llama.block_count")?.type, "uint32");
    assertEquals(f.metadata.get("llama.attention.layer_norm_rms_epsilon"), {
      type: "float32",
      value: Math.fround(1e-5),
    });
    assertEquals(f.metadata.get("llama.rope.freq_base")?.type, "float32");
    const tokens = f.array("tokenizer.ggml.tokens")!, types = f.array("tokenizer.ggml.token_type")!;
    assertEquals([tokens.length, types.length, f.array("tokenizer.ggml.scores")!.length], [512, 512, 512]);
    assertEquals([tokens[1], types[1], tokens[3], types[3], types[0], types[300]], [
      "<s>",
      3,
      "<0x00>",
      6,
      2,
      1,
    ]);
    assertEquals(f.metadata.get("tokenizer.ggml.token_type")?.type, "array");
    // 5 blocks × 9 tensors + token_embd + output_norm; tied output head is not written.
    assertEquals(f.tensors.length, 47);
    assert(!f.tensors.some((t) => t.name === "output.weight"));
    assertEquals(f.tensor("blk.0.ffn_down.weight").type, "F16"); // 172 inputs fit no block
    assertEquals(f.tensor("token_embd.weight").type, "Q8_0"); // tied: Q6_K → 64 inputs → Q8_0
    // use_more_bits(i, 5): i ≥ 4 or (i − 0) % 3 == 2 → Q6_K → (64 inputs) Q8_0; else Q4_K → Q5_0.
    assertEquals(["0", "1", "2", "3", "4"].map((i) => f.tensor(`blk.${i}.attn_v.weight`).type), [
      "Q5_0",
      "Q5_0",
      "Q8_0",
      "Q5_0",
      "Q8_0",
    ]);
    assertEquals(f.tensor("blk.1.attn_v.weight").type, "Q5_0"); // Q4_K → Q5_0
    assertEquals(f.tensor("blk.0.attn_norm.weight").type, "F32");
    assertEquals(f.tensor("blk.0.attn_q.weight").ne, [64, 64]);
    // The tokenizer files sit next to the .gguf for our own tools.
    await Deno.stat(join(out, "tokenizer.json"));

    // Read back with HF names: norms exact, embeddings close to the float model, q rows un-permuted.
    using m = await openGgufModel(path);
    using fp = await openCheckpoint(STORIES);
    assertEquals(m.spec.hidden, 64);
    assertEquals(m.spec.tieEmbeddings, true);
    assertEquals([...await m.weights.readF32("model.norm.weight")], [
      ...await fp.weights.readF32("model.norm.weight"),
    ]);
    for (
      const name of [
        "model.layers.2.self_attn.q_proj.weight",
        "model.layers.2.self_attn.k_proj.weight",
        "model.embed_tokens.weight",
      ]
    ) {
      const a = await m.weights.readF32(name), b = await fp.weights.readF32(name);
      let err = 0, norm = 0;
      for (let i = 0; i < a.length; i++) {
        err += (a[i] - b[i]) ** 2;
        norm += b[i] ** 2;
      }
      assert(Math.sqrt(err / norm) < 0.08, `${name}: relative error ${Math.sqrt(err / norm)}`);
    }
    const s = await inspectGguf(path, true);
    assertEquals(s.fileType, "Q4_K_M");
    assertEquals(s.tensors, 47);
    const text = formatGgufSummary(s);
    assert(text.includes("file type Q4_K_M") && text.includes("token_embd.weight  Q8_0  [64, 512]"), text);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("Qwen3 tokenizer → 'gpt2' vocabulary: qwen2 pre-tokenizer, merges, control tokens, [PAD] rows", async () => {
  const { QWEN3_TOKENIZER, tinyQwen } = await import("./consumers/models.ts");
  try {
    await Deno.stat(join(QWEN3_TOKENIZER, "tokenizer.json"));
  } catch {
    return console.log(`skipped: no Qwen3 tokenizer at ${QWEN3_TOKENIZER}`);
  }
  const tmp = await Deno.makeTempDir();
  try {
    const dir = await tinyQwen(join(tmp, "m"), "qwen3");
    const run = await exportModel({
      model: dir,
      formats: "gguf:q8_0",
      out: join(tmp, "o"),
      nsamples: 2,
      seqlen: 16,
    });
    using f = await GgufFile.open((run.exporters[0] as GgufExporter).path);
    const tok = await Tokenizer.fromDir(dir);
    assertEquals(f.str("general.architecture"), "qwen3");
    assertEquals(f.str("tokenizer.ggml.model"), "gpt2");
    assertEquals(f.str("tokenizer.ggml.pre"), "qwen2");
    const tokens = f.array("tokenizer.ggml.tokens")!, types = f.array("tokenizer.ggml.token_type")!;
    assertEquals(tokens.length, 151936);
    assertEquals(tokens[151935], "[PAD151935]");
    assertEquals(types[151935], 4);
    assertEquals(types[151643], 3); // <|endoftext|>: special → CONTROL
    assertEquals(f.array("tokenizer.ggml.merges")!.length, tok.merges().length);
    assertEquals(f.num("tokenizer.ggml.eos_token_id"), tok.eosTokenId);
    assert(f.str("tokenizer.chat_template")!.includes("<|im_start|>"));
    assertEquals(f.num("qwen3.attention.key_length"), 16);
    assert(f.tensors.some((t) => t.name === "blk.0.attn_q_norm.weight"));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
