/**
 * Broken safetensors files and folders: each failure is one typed error naming the file.
 */
import { FormatError, InputError } from "../src/errors.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { SafetensorsWriter } from "../src/io/safetensors/writer.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { randomBytes, tempDir } from "./safetensors_oracle.ts";

const FIXTURE = new URL("./fixtures/stories260K/model.safetensors", import.meta.url).pathname;

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
