import { FormatError, InputError, UsageError } from "../src/errors.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { parseSize, SafetensorsWriter } from "../src/io/safetensors/writer.ts";
import type { StDType } from "../src/tensor/dtype.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";

const FIXTURE = new URL("./fixtures/stories260K/model.safetensors", import.meta.url).pathname;

// ---------------------------------------------------------------------------------------------------
// An independent parse of the raw bytes, written from the format description, used as the oracle.
// ---------------------------------------------------------------------------------------------------

interface RawEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function rawParse(bytes: Uint8Array) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  const json = JSON.parse(text) as Record<string, RawEntry | Record<string, string>>;
  const tensors = Object.entries(json).filter(([k]) => k !== "__metadata__") as [string, RawEntry][];
  return {
    n,
    text,
    keys: topLevelKeys(text),
    tensors,
    metadata: json.__metadata__ as Record<string, string>,
  };
}

/** Keys of the outer JSON object in the order written (Object.keys would put "10" before "a"). */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && /^\s*:/.test(text.slice(j + 1))) keys.push(JSON.parse(text.slice(i, j + 1)));
      i = j;
    }
  }
  return keys;
}

/** What safetensors' Rust loader insists on: `{` first, ranges contiguous from 0 to the end of file. */
function assertStrictlyLoadable(bytes: Uint8Array, file: string) {
  const { n, text, tensors } = rawParse(bytes);
  assertEquals(text[0], "{", `${file}: header starts with {`);
  assertEquals((8 + n) % 8, 0, `${file}: data area 8-byte aligned`);
  assert(/^[^]*\}\x20*$/.test(text), `${file}: header padded only with spaces`);
  const ranges = tensors.map(([, e]) => e.data_offsets).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let at = 0;
  for (const [b, e] of ranges) {
    assertEquals(b, at, `${file}: ranges contiguous`);
    at = e;
  }
  assertEquals(8 + n + at, bytes.byteLength, `${file}: data area ends at end of file`);
}

const list = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "autoround-io-test-" });
}

/** Write a file from a header (object or raw JSON text) and a data area of `dataLen` bytes. */
async function craft(path: string, header: unknown, dataLen: number, headerLenOverride?: bigint) {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + dataLen);
  new DataView(out.buffer).setBigUint64(0, headerLenOverride ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  await Deno.writeFile(path, out);
  return path;
}

async function assertFormatErrorFor(path: string, open: string, messagePart: string) {
  const e = await assertRejects(() => SafetensorsReader.open(open), FormatError);
  assertEquals(e.file, path, `error names the file (${e.message})`);
  assert(e.oneLine().includes(path), "one-line message names the file");
  assert(e.message.includes(messagePart), `"${e.message}" mentions "${messagePart}"`);
}

// ---------------------------------------------------------------------------------------------------
// The real fixture
// ---------------------------------------------------------------------------------------------------

/** Shapes from tests/fixtures/stories260K/README.md. */
function readmeShape(name: string): number[] {
  if (name === "model.embed_tokens.weight") return [512, 64];
  if (name === "model.norm.weight" || name.endsWith("layernorm.weight")) return [64];
  if (/q_proj|o_proj/.test(name)) return [64, 64];
  if (/k_proj|v_proj/.test(name)) return [32, 64];
  if (/gate_proj|up_proj/.test(name)) return [172, 64];
  if (/down_proj/.test(name)) return [64, 172];
  throw new Error(`unexpected tensor ${name}`);
}

Deno.test("stories260K: 47 F32 tensors with the README's shapes and 260,032 parameters", async () => {
  using st = await SafetensorsReader.open(FIXTURE);
  const names = st.names();
  assertEquals(names.length, 47);
  assert(!st.has("lm_head.weight"), "tied embeddings: no lm_head.weight");
  let params = 0;
  for (const name of names) {
    const info = st.info(name);
    assertEquals(info.dtype, "F32", name);
    assertEquals(info.shape, readmeShape(name), name);
    params += info.shape.reduce((a, b) => a * b, 1);
  }
  assertEquals(params, 260_032);
});

Deno.test("stories260K: byte ranges equal 8 + header length + data_offsets of the raw header", async () => {
  const bytes = await Deno.readFile(FIXTURE);
  const raw = rawParse(bytes);
  using st = await SafetensorsReader.open(FIXTURE);
  assertEquals(raw.tensors.length, 47);
  for (const [name, e] of raw.tensors) {
    const info = st.info(name);
    assertEquals(
      [info.start, info.end],
      [8 + raw.n + e.data_offsets[0], 8 + raw.n + e.data_offsets[1]],
      name,
    );
    assertEquals(info.file, FIXTURE);
  }
  assertEquals(st.metadata(), raw.metadata ?? {});
});

Deno.test("stories260K: readF32 equals little-endian f32 read straight from the file bytes", async () => {
  const bytes = await Deno.readFile(FIXTURE);
  const view = new DataView(bytes.buffer);
  using st = await SafetensorsReader.open(FIXTURE);
  for (
    const name of ["model.norm.weight", "model.layers.2.self_attn.k_proj.weight", "model.embed_tokens.weight"]
  ) {
    const { start, end } = st.info(name);
    const got = await st.readF32(name);
    assertEquals(got.length, (end - start) / 4);
    for (const i of [0, 1, 7, got.length - 1]) {
      assertEquals(got[i], view.getFloat32(start + 4 * i, true), name);
    }
    assertEquals(await st.readBytes(name), bytes.subarray(start, end));
  }
});

Deno.test("stories260K: names() lists tensors in the order of their bytes in the file", async () => {
  using st = await SafetensorsReader.open(FIXTURE);
  const starts = st.names().map((n) => st.info(n).start);
  assertEquals(starts, [...starts].sort((a, b) => a - b));
});

Deno.test("stories260K: concurrent reads on one handle each get their own tensor's bytes", async () => {
  const bytes = await Deno.readFile(FIXTURE);
  using st = await SafetensorsReader.open(FIXTURE);
  const names = st.names();
  const all = await Promise.all(names.map((n) => st.readBytes(n)));
  names.forEach((n, i) => assertEquals(all[i], bytes.subarray(st.info(n).start, st.info(n).end), n));
});

Deno.test("open(folder) picks model.safetensors; readF32 rejects non-float dtypes naming the dtype", async () => {
  using st = await SafetensorsReader.open(FIXTURE.replace(/\/model\.safetensors$/, ""));
  assertEquals(st.names().length, 47);
  const e = await assertRejects(() => st.readInt32("model.norm.weight"), FormatError);
  assert(e.message.includes("F32"), e.message);
  await assertRejects(() => st.readF32("no.such.tensor"), FormatError, "no.such.tensor");
});

// ---------------------------------------------------------------------------------------------------
// Writer → reader round trips
// ---------------------------------------------------------------------------------------------------

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  }
  return out;
}

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

// ---------------------------------------------------------------------------------------------------
// Bad input: each failure a typed error naming the file
// ---------------------------------------------------------------------------------------------------

const GOOD = {
  a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
  b: { dtype: "U8", shape: [4], data_offsets: [8, 12] },
};

Deno.test("bad input: a truncated file (last bytes cut) is a FormatError about the data area", async () => {
  const dir = await tempDir();
  try {
    const bytes = await Deno.readFile(FIXTURE);
    const path = `${dir}/model.safetensors`;
    await Deno.writeFile(path, bytes.subarray(0, bytes.byteLength - 5));
    await assertFormatErrorFor(path, path, "past the end of the data area");
    await Deno.writeFile(path, bytes.subarray(0, 5));
    await assertFormatErrorFor(path, path, "shorter than the 8-byte");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: a truncated shard of a sharded checkpoint is named in the error", async () => {
  const dir = await tempDir();
  try {
    const w = new SafetensorsWriter(dir, { maxShardSize: 64 });
    for (const n of ["a", "b", "c"]) await w.add(n, "F32", [16], randomBytes(64));
    const files = await w.finish();
    const victim = `${dir}/${files[1]}`;
    const bytes = await Deno.readFile(victim);
    await Deno.writeFile(victim, bytes.subarray(0, bytes.byteLength - 1));
    await assertFormatErrorFor(victim, dir, "past the end");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: header length past the end of the file, or over 100 MB", async () => {
  const dir = await tempDir();
  try {
    const p = `${dir}/x.safetensors`;
    await craft(p, GOOD, 12, 10_000n);
    await assertFormatErrorFor(p, p, "header length 10000");
    await craft(p, GOOD, 12, 200_000_000n);
    await assertFormatErrorFor(p, p, "100000000-byte limit");
    await craft(p, GOOD, 12, 2n ** 64n - 1n);
    await assertFormatErrorFor(p, p, "header length");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: header JSON errors (syntax, not an object, invalid UTF-8) are FormatErrors", async () => {
  const dir = await tempDir();
  try {
    const p = `${dir}/x.safetensors`;
    await craft(p, '{"a": {"dtype": "F32",', 0);
    await assertFormatErrorFor(p, p, "not valid JSON");
    await craft(p, "[1, 2]", 0);
    await assertFormatErrorFor(p, p, "not a JSON object");
    const bad = new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d, 0x20]);
    await Deno.writeFile(p, bad);
    await assertFormatErrorFor(p, p, "not valid JSON");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: entry errors — unknown dtype, bad shape, bad offsets, size mismatch, past end, overlap", async () => {
  const dir = await tempDir();
  try {
    const p = `${dir}/x.safetensors`;
    const cases: [Record<string, unknown>, number, string][] = [
      [{ a: { dtype: "F7", shape: [2], data_offsets: [0, 8] } }, 8, 'unknown or unsupported dtype "F7"'],
      [{ a: { dtype: "F32", shape: [2, -1], data_offsets: [0, 8] } }, 8, "non-negative integers"],
      [{ a: { dtype: "F32", shape: "2", data_offsets: [0, 8] } }, 8, "non-negative integers"],
      [{ a: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, 8, "begin <= end"],
      [{ a: { dtype: "F32", shape: [2], data_offsets: [0, 8, 9] } }, 8, "begin <= end"],
      [{ a: { dtype: "F32", shape: [2], data_offsets: [0.5, 8] } }, 8, "begin <= end"],
      [{ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 12, "needs 12"],
      [{ a: { dtype: "F32", shape: [2], data_offsets: [8, 16] } }, 12, "past the end of the data area"],
      [{ ...GOOD, c: { dtype: "U8", shape: [4], data_offsets: [6, 10] } }, 12, "overlapping"],
      [{ __metadata__: { format: 1 }, ...GOOD }, 12, "__metadata__.format is not a string"],
      [{ a: [1] }, 12, "not an object"],
    ];
    for (const [header, dataLen, msg] of cases) {
      await craft(p, header, dataLen);
      await assertFormatErrorFor(p, p, msg);
    }
    // The same file with valid entries opens, so each failure above is the entry's fault.
    await craft(p, { __metadata__: { format: "pt" }, ...GOOD }, 12);
    using st = await SafetensorsReader.open(p);
    assertEquals(st.names(), ["a", "b"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: index errors — bad JSON, no weight_map, missing shard, tensor absent from its shard", async () => {
  const dir = await tempDir();
  try {
    const index = `${dir}/model.safetensors.index.json`;
    await craft(`${dir}/s1.safetensors`, GOOD, 12);
    await Deno.writeTextFile(index, "{ nope");
    await assertFormatErrorFor(index, dir, "not valid JSON");
    await Deno.writeTextFile(index, JSON.stringify({ metadata: {} }));
    await assertFormatErrorFor(index, dir, "weight_map");
    await Deno.writeTextFile(
      index,
      JSON.stringify({ weight_map: { a: "s1.safetensors", b: "s2.safetensors" } }),
    );
    const e = await assertRejects(() => SafetensorsReader.open(dir), InputError);
    assert(e.message.includes("s2.safetensors") && e.file === index, e.oneLine());
    await Deno.writeTextFile(
      index,
      JSON.stringify({ weight_map: { a: "s1.safetensors", z: "s1.safetensors" } }),
    );
    await assertFormatErrorFor(index, dir, '"z"');
    await Deno.writeTextFile(index, JSON.stringify({ weight_map: { a: "../s1.safetensors" } }));
    await assertFormatErrorFor(index, dir, "not a file name");
    // The index is authoritative: a tensor in the shard but not in weight_map is not exposed.
    await Deno.writeTextFile(index, JSON.stringify({ weight_map: { b: "s1.safetensors" } }));
    using st = await SafetensorsReader.open(index);
    assertEquals(st.names(), ["b"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: missing path and a folder without safetensors files are InputErrors", async () => {
  const dir = await tempDir();
  try {
    await assertRejects(() => SafetensorsReader.open(`${dir}/nope`), InputError, "no such file");
    await assertRejects(() => SafetensorsReader.open(dir), InputError, "no .safetensors files");
    // Without an index or model.safetensors, every *.safetensors is read; duplicates are an error.
    await craft(`${dir}/one.safetensors`, { a: GOOD.a }, 8);
    await craft(`${dir}/two.safetensors`, { b: { ...GOOD.b, data_offsets: [0, 4] } }, 4);
    {
      using st = await SafetensorsReader.open(dir);
      assertEquals(st.names(), ["a", "b"]);
    }
    await craft(`${dir}/two.safetensors`, { a: GOOD.a }, 8);
    await assertFormatErrorFor(`${dir}/two.safetensors`, dir, "also appears");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
