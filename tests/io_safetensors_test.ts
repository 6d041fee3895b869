/**
 * The safetensors reader on the stories260K fixture, against an independent parse of its bytes.
 * The writer is io_safetensors_writer_test.ts, broken files io_safetensors_bad_input_test.ts.
 */
import { FormatError } from "../src/errors.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { rawParse } from "./safetensors_oracle.ts";

const FIXTURE = new URL("./fixtures/stories260K/model.safetensors", import.meta.url).pathname;

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
