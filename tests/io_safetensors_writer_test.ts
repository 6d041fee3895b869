/**
 * The safetensors writer: shards, names, index and metadata round-trip through our reader and an
 * independent parse of the bytes; header reserve, compaction, abort; parseSize.
 */
import { FormatError, InputError, UsageError } from "../src/errors.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { parseSize, SafetensorsWriter } from "../src/io/safetensors/writer.ts";
import type { StDType } from "../src/tensor/dtype.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { assertStrictlyLoadable, list, randomBytes, rawParse, tempDir } from "./safetensors_oracle.ts";

// ---------------------------------------------------------------------------------------------------
// Writer → reader round trips
// ---------------------------------------------------------------------------------------------------

const ROUND_TRIP: { name: string; dtype: StDType; shape: number[] }[] = [
  { name: "model.embed_tokens.weight", dtype: "F32", shape: [40, 16] }, // 2560 B
  { name: "model.layers.0.self_attn.q_proj.qweight", dtype: "I32", shape: [16, 24] }, // 1536 B
  { name: "model.layers.0.self_attn.q_proj.scales", dtype: "F16", shape: [3, 24] }, // 144 B
  { name: "model.layers.0.self_attn.q_proj.qzeros", dtype: "U8", shape: [3, 24] }, // 72 B
  { name: "model.layers.0.mlp.down_proj.weight", dtype: "BF16", shape: [48, 32] }, // 3072 B
  { name: "model.layers.1.input_layernorm.weight", dtype: "F32", shape: [16] },
  { name: "scalar", dtype: "F32", shape: [] },
  { name: "empty", dtype: "F16", shape: [0, 3] },
  { name: "10", dtype: "U8", shape: [5] }, // integer-like: JS objects would move it first
  { name: "model.norm.weight", dtype: "BF16", shape: [1000] }, // 2000 B
];

Deno.test("writer: 3+ shards round-trip bytes, names, index and metadata for F32/F16/BF16/I32/U8", async () => {
  const dir = await tempDir();
  try {
    const data = new Map(
      ROUND_TRIP.map((t) => [t.name, randomBytes(t.shape.reduce((a, b) => a * b, 1) * bytesOf(t.dtype))]),
    );
    const max = 3000;
    const w = new SafetensorsWriter(dir, { maxShardSize: max });
    for (const t of ROUND_TRIP) await w.add(t.name, t.dtype, t.shape, data.get(t.name)!);
    const files = await w.finish({ quantization: "auto-round" });

    // Expected shards by the greedy rule, computed independently of the writer.
    const expectShards: string[][] = [];
    let size = Infinity;
    for (const t of ROUND_TRIP) {
      const b = data.get(t.name)!.byteLength;
      if (size + b > max) {
        expectShards.push([]);
        size = 0;
      }
      expectShards.at(-1)!.push(t.name);
      size += b;
    }
    assert(expectShards.length >= 3, "test forces at least 3 shards");
    const n = expectShards.length;
    const shardName = (i: number) =>
      `model-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`;
    assertEquals(files, [...expectShards.map((_, i) => shardName(i)), "model.safetensors.index.json"]);
    assertEquals(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      [...files].sort(),
      "no temporary files left",
    );

    const index = JSON.parse(await Deno.readTextFile(`${dir}/model.safetensors.index.json`));
    const total = [...data.values()].reduce((a, b) => a + b.byteLength, 0);
    assertEquals(index.metadata, { total_size: total });
    const expectedMap: [string, string][] = expectShards.flatMap((names, i) =>
      names.map((nm): [string, string] => [nm, shardName(i)])
    );
    expectedMap.sort(([a], [b]) => (a < b ? -1 : 1));
    const rawIndex = await Deno.readTextFile(`${dir}/model.safetensors.index.json`);
    const keyOrder = [...rawIndex.matchAll(/^ {4}"([^"]+)": "[^"]+\.safetensors"/gm)].map((m) => m[1]);
    assertEquals(keyOrder, expectedMap.map(([k]) => k), "weight_map keys sorted by name, as HF writes them");
    assertEquals(Object.keys(index.weight_map).sort(), expectedMap.map(([k]) => k).sort());
    for (const [k, v] of expectedMap) assertEquals(index.weight_map[k], v, k);

    for (const [i, names] of expectShards.entries()) {
      const bytes = await Deno.readFile(`${dir}/${shardName(i)}`);
      assertStrictlyLoadable(bytes, shardName(i));
      const raw = rawParse(bytes);
      assertEquals(raw.keys, ["__metadata__", ...names], "__metadata__ first, then insertion order");
      assertEquals(raw.metadata, { format: "pt", quantization: "auto-round" });
    }

    using st = await SafetensorsReader.open(dir);
    assertEquals(st.names(), ROUND_TRIP.map((t) => t.name));
    assertEquals(st.metadata(), { format: "pt", quantization: "auto-round" });
    for (const t of ROUND_TRIP) {
      const info = st.info(t.name);
      assertEquals([info.dtype, info.shape], [t.dtype, t.shape], t.name);
      assertEquals(await st.readBytes(t.name), data.get(t.name), t.name);
    }
    const f32 = await st.readF32("model.embed_tokens.weight");
    assertEquals(f32, new Float32Array(data.get("model.embed_tokens.weight")!.slice().buffer));
    const i32 = await st.readInt32("model.layers.0.self_attn.q_proj.qweight");
    assertEquals(i32, new Int32Array(data.get("model.layers.0.self_attn.q_proj.qweight")!.slice().buffer));
    const bf16Bits = new Uint16Array(data.get("model.norm.weight")!.slice().buffer);
    const bf16 = await st.readF32("model.norm.weight");
    for (let i = 0; i < bf16Bits.length; i++) {
      const u = new Uint32Array([bf16Bits[i] << 16]);
      assert(Object.is(bf16[i], new Float32Array(u.buffer)[0]) || (isNaN(bf16[i])), "bf16 = top half of f32");
    }
    const f16Bits = new Uint16Array(data.get("model.layers.0.self_attn.q_proj.scales")!.slice().buffer);
    const f16 = await st.readF32("model.layers.0.self_attn.q_proj.scales");
    for (let i = 0; i < f16Bits.length; i++) {
      assert(Object.is(f16[i], halfToNumber(f16Bits[i])) || isNaN(f16[i]));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** IEEE half → number, from the bit layout (1 sign, 5 exponent, 10 fraction). */
function halfToNumber(h: number): number {
  const s = h >> 15 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1024 + f) * 2 ** (e - 25);
}

function bytesOf(dtype: StDType): number {
  return ({ F32: 4, F16: 2, BF16: 2, I32: 4, U8: 1 } as Record<string, number>)[dtype];
}

Deno.test("writer: one shard is model.safetensors with no index; an empty writer still writes one", async () => {
  const dir = await tempDir();
  try {
    const w = new SafetensorsWriter(`${dir}/a/b`, { maxShardSize: parseSize("5GB") });
    await w.add("x", "F32", [2, 2], randomBytes(16));
    assertEquals(await w.finish(), ["model.safetensors"]);
    assertEquals([...Deno.readDirSync(`${dir}/a/b`)].map((e) => e.name), ["model.safetensors"]);
    assertStrictlyLoadable(await Deno.readFile(`${dir}/a/b/model.safetensors`), "model.safetensors");

    const empty = new SafetensorsWriter(`${dir}/e`, { maxShardSize: 100, prefix: "adapter_model" });
    assertEquals(await empty.finish(), ["adapter_model.safetensors"]);
    using st = await SafetensorsReader.open(`${dir}/e/adapter_model.safetensors`);
    assertEquals(st.names(), []);
    assertEquals(st.metadata(), { format: "pt" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writer: a tensor larger than maxShardSize gets a shard of its own", async () => {
  const dir = await tempDir();
  try {
    const w = new SafetensorsWriter(dir, { maxShardSize: 100 });
    await w.add("a", "U8", [40], randomBytes(40));
    await w.add("big", "U8", [250], randomBytes(250));
    await w.add("b", "U8", [60], randomBytes(60));
    await w.add("c", "U8", [40], randomBytes(40)); // 60 + 40 = 100: exactly fits
    await w.add("d", "U8", [1], randomBytes(1));
    const files = await w.finish();
    assertEquals(files.length, 5);
    using st = await SafetensorsReader.open(dir);
    const shardOf = (n: string) => st.info(n).file.split("/").pop();
    assertEquals(["a", "big", "b", "c", "d"].map(shardOf), [
      files[0],
      files[1],
      files[2],
      files[2],
      files[3],
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writer: headers fit the reserve in place (space-padded), or the shard is rewritten compactly", async () => {
  const dir = await tempDir();
  try {
    // Large data, small header: header written into the 1024-byte reserve, padded with spaces.
    const w1 = new SafetensorsWriter(`${dir}/inplace`, { maxShardSize: 1 << 30, headerReserve: 1000 });
    const big = randomBytes(70_000);
    await w1.add("w", "U8", [70_000], big);
    await w1.finish();
    const b1 = await Deno.readFile(`${dir}/inplace/model.safetensors`);
    assertEquals(rawParse(b1).n, 1000, "header length is the whole reserve");
    assertStrictlyLoadable(b1, "in place");
    assertEquals(b1.subarray(8 + 1000), big);

    // Header larger than the reserve: rewritten with a header of its own length (rounded to 8).
    const w2 = new SafetensorsWriter(`${dir}/overflow`, { maxShardSize: 1 << 30, headerReserve: 64 });
    for (let i = 0; i < 20; i++) await w2.add(`layer.${i}.weight`, "U8", [300], randomBytes(300));
    await w2.finish();
    const b2 = await Deno.readFile(`${dir}/overflow/model.safetensors`);
    const r2 = rawParse(b2);
    assert(r2.n > 64 && r2.n - r2.text.trimEnd().length < 8, "header not longer than needed + alignment");
    assertStrictlyLoadable(b2, "overflow");

    // Small data: compacted even though the header fits, so no file carries a mostly-blank header.
    const w3 = new SafetensorsWriter(`${dir}/small`, { maxShardSize: 1 << 30 });
    await w3.add("w", "U8", [10], randomBytes(10));
    await w3.finish();
    const b3 = await Deno.readFile(`${dir}/small/model.safetensors`);
    assert(b3.byteLength < 200, `small file stays small (${b3.byteLength} bytes)`);
    assertStrictlyLoadable(b3, "small");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writer: abort and dispose-without-finish leave no files; bad tensors are rejected", async () => {
  const dir = await tempDir();
  try {
    {
      await using w = new SafetensorsWriter(dir, { maxShardSize: 10 });
      await w.add("a", "U8", [8], randomBytes(8));
      await w.add("b", "U8", [8], randomBytes(8));
      assertEquals([...Deno.readDirSync(dir)].length, 2, "two temporary shards exist while writing");
    }
    assertEquals([...Deno.readDirSync(dir)], [], "dispose removed them");

    const w = new SafetensorsWriter(dir, { maxShardSize: 10 });
    await assertRejects(() => w.add("a", "F32", [3], new Uint8Array(8)), FormatError, "needs 12");
    await w.add("a", "U8", [1], new Uint8Array(1));
    await assertRejects(() => w.add("a", "U8", [1], new Uint8Array(1)), FormatError, "already written");
    await w.abort();
    assertEquals([...Deno.readDirSync(dir)], []);
    assertThrows(() => new SafetensorsWriter(dir, { maxShardSize: 0 }), UsageError);

    // Shards deleted under the writer: finish reports an InputError and writes no partial checkpoint.
    const gone = new SafetensorsWriter(`${dir}/gone`, { maxShardSize: 4 });
    for (const n of ["a", "b", "c"]) await gone.add(n, "U8", [4], randomBytes(4));
    await Deno.remove(`${dir}/gone/${[...Deno.readDirSync(`${dir}/gone`)].map((e) => e.name).sort()[1]}`);
    await assertRejects(() => gone.finish(), InputError, "cannot write shards");
    assertEquals(list(`${dir}/gone`), [], "shards renamed before the failure are removed too");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseSize: GB = 1e9, GiB = 2^30, MB, KiB, plain bytes, lowercase b = bits; junk rejected", () => {
  assertEquals(parseSize("5GB"), 5_000_000_000);
  assertEquals(parseSize("500MB"), 500_000_000);
  assertEquals(parseSize("2GiB"), 2 * 2 ** 30);
  assertEquals(parseSize("10KiB"), 10_240);
  assertEquals(parseSize("1.5GB"), 1_500_000_000);
  assertEquals(parseSize("5Gb"), 625_000_000);
  assertEquals(parseSize("4096"), 4096);
  assertEquals(parseSize(12345), 12345);
  for (const bad of ["", "GB", "5 parsecs", "-1GB", "0", 0, 1.5, -3]) {
    assertThrows(() => parseSize(bad), UsageError);
  }
});

Deno.test("writer: addFrom streams a tensor in pieces to the same bytes as add, reading each byte once", async () => {
  const dir = await tempDir();
  try {
    const big = randomBytes(1000 * 4), small = randomBytes(12);
    const reads: [number, number][] = [];
    const src = {
      byteLength: big.byteLength,
      read: (o: number, l: number) => (reads.push([o, l]), Promise.resolve(big.slice(o, o + l))),
    };
    const a = new SafetensorsWriter(`${dir}/a`, { maxShardSize: parseSize("5GB") });
    await a.add("s", "F32", [3], small);
    await a.add("w", "F32", [10, 100], big);
    await a.finish();
    const b = new SafetensorsWriter(`${dir}/b`, { maxShardSize: parseSize("5GB") });
    await b.add("s", "F32", [3], small);
    await b.addFrom("w", "F32", [10, 100], src, 384);
    await b.finish();
    assertEquals(
      await Deno.readFile(`${dir}/b/model.safetensors`),
      await Deno.readFile(`${dir}/a/model.safetensors`),
    );
    assertEquals(reads.length, Math.ceil(4000 / 384));
    assertEquals(reads.reduce((n, [, l]) => n + l, 0), 4000, "every byte read once");
    assert(reads.every(([, l]) => l <= 384), "no piece over the limit");
    // A source whose size contradicts the shape is refused before anything is read.
    const c = new SafetensorsWriter(`${dir}/c`, { maxShardSize: 1e9 });
    await assertRejects(() => c.addFrom("w", "F32", [10, 99], src, 384), FormatError, "bytes given");
    assertEquals(reads.length, Math.ceil(4000 / 384));
    await c.abort();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
