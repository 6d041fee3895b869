/**
 * The CLI as a user meets it, run as a subprocess: the demo quantize + eval, inspect, and bad
 * input — each bad input must give one clear `error:` line naming the problem and the file, a
 * non-zero exit code, and no output folder (nor a half-written temporary one).
 */
import { join } from "../src/std/path.ts";
import { assert, assertEquals, fixture } from "./assert.ts";
import { assertNoOutput, assertOneErrorLine, cli, copyModel } from "./cli_helpers.ts";

Deno.test("quantize then eval through the CLI: RTN W4G32 output evaluates and inspects", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const q = await cli([
      "quantize",
      "--model",
      fixture("stories260K"),
      "--scheme",
      "W4A16",
      "--group_size",
      "32",
      "--iters",
      "0",
      "--dataset",
      fixture("tinystories-calib.jsonl"),
      "--seqlen",
      "256",
      "--nsamples",
      "8",
      "--output_dir",
      `${tmp}/out`,
    ]);
    assertEquals(q.code, 0, q.stderr);
    assert(q.stderr.includes("block 5/5"), "progress per block on stderr");
    assert(q.stderr.includes("ETA"), "ETA on stderr");
    assert(q.stderr.includes("kept in 16-bit"), "skipped layers are listed");
    const e = await cli([
      "eval",
      "--model",
      `${tmp}/out`,
      "--text",
      fixture("stories260K/eval.txt"),
      "--seqlen",
      "256",
      "--json",
    ]);
    assertEquals(e.code, 0, e.stderr);
    const r = JSON.parse(e.stdout);
    assertEquals(r.quant_method, "auto-round");
    assert(r.ppl > 4.1654 && r.ppl < 4.4, `ppl ${r.ppl}`);
    const i = await cli(["inspect", `${tmp}/out`]);
    assertEquals(i.code, 0, i.stderr);
    assert(i.stdout.includes("quantized layers (20)"), i.stdout);
    assert(i.stdout.includes(`"packing_format":"auto_round:auto_gptq"`), i.stdout);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("bad input: each case prints one error line naming the problem and file, exits non-zero, writes nothing", async (t) => {
  const tmp = await Deno.makeTempDir();
  const out = `${tmp}/out`;
  const base = ["quantize", "--iters", "0", "--disable_opt_rtn", "--output_dir", out];
  try {
    await t.step("missing model folder", async () => {
      const r = await cli([...base, "--model", `${tmp}/nope`]);
      assertEquals(r.code, 1);
      assertOneErrorLine(r.stderr, "not found", `${tmp}/nope`);
      await assertNoOutput(out);
    });
    await t.step("truncated shard", async () => {
      const m = await copyModel(`${tmp}/trunc`);
      const f = join(m, "model.safetensors");
      const bytes = await Deno.readFile(f);
      await Deno.writeFile(f, bytes.subarray(0, bytes.length - 1000));
      const r = await cli([...base, "--model", m]);
      assertEquals(r.code, 1);
      assertOneErrorLine(r.stderr, f);
      await assertNoOutput(out);
    });
    await t.step("header offsets past the end of the data", async () => {
      const m = await copyModel(`${tmp}/offsets`);
      const f = join(m, "model.safetensors");
      const bytes = await Deno.readFile(f);
      const hlen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
      const name = Object.keys(header).find((k) => k !== "__metadata__")!;
      const [a, b] = header[name].data_offsets;
      header[name].data_offsets = [a + 10_000_000, b + 10_000_000];
      const h = new TextEncoder().encode(JSON.stringify(header));
      const file = new Uint8Array(8 + h.length + bytes.length - 8 - hlen);
      new DataView(file.buffer).setBigUint64(0, BigInt(h.length), true);
      file.set(h, 8);
      file.set(bytes.subarray(8 + hlen), 8 + h.length);
      await Deno.writeFile(f, file);
      const r = await cli([...base, "--model", m]);
      assertEquals(r.code, 1);
      assertOneErrorLine(r.stderr, f);
      await assertNoOutput(out);
    });
    await t.step("unknown architecture", async () => {
      const m = await copyModel(`${tmp}/arch`);
      const cfg = JSON.parse(await Deno.readTextFile(join(m, "config.json")));
      await Deno.writeTextFile(join(m, "config.json"), JSON.stringify({ ...cfg, model_type: "gpt2" }));
      const r = await cli([...base, "--model", m]);
      assertEquals(r.code, 1);
      assertOneErrorLine(r.stderr, `unsupported architecture model_type "gpt2"`, join(m, "config.json"));
      await assertNoOutput(out);
    });
    await t.step("invalid scheme", async () => {
      const r = await cli([...base, "--model", fixture("stories260K"), "--scheme", "W7A16"]);
      assertEquals(r.code, 2);
      assertOneErrorLine(r.stderr, `unknown scheme "W7A16"`);
      await assertNoOutput(out);
    });
    await t.step("invalid group size", async () => {
      const r = await cli([...base, "--model", fixture("stories260K"), "--group_size", "0"]);
      assert(r.code !== 0);
      assertOneErrorLine(r.stderr, "group_size 0 is invalid");
      await assertNoOutput(out);
    });
    await t.step("invalid bits", async () => {
      const r = await cli([...base, "--model", fixture("stories260K"), "--bits", "7"]);
      assert(r.code !== 0);
      assertOneErrorLine(r.stderr, "bits 7 is not supported");
    });
    await t.step("unwritable output folder (its parent is a file)", async () => {
      await Deno.writeTextFile(`${tmp}/afile`, "x");
      const r = await cli([
        "quantize",
        "--iters",
        "0",
        "--model",
        fixture("stories260K"),
        "--output_dir",
        `${tmp}/afile/out`,
      ]);
      assertEquals(r.code, 1);
      assertOneErrorLine(r.stderr, "cannot write output folder", `${tmp}/afile/out`);
    });
    await t.step("invalid thread count", async () => {
      const r = await cli([...base, "--model", fixture("stories260K"), "--device", "cpu", "--threads", "0"]);
      assertEquals(r.code, 2);
      assertOneErrorLine(r.stderr, "--threads must be >= 1");
      await assertNoOutput(out);
    });
    await t.step("a named BLAS library that cannot be loaded", async () => {
      const lib = `${tmp}/libnope.so`;
      const r = await cli([...base, "--model", fixture("stories260K"), "--device", "cpu"], {
        AUTOROUND_BLAS: lib,
      });
      assertEquals(r.code, 1);
      assertOneErrorLine(r.stderr, "cannot use the BLAS library", lib);
      await assertNoOutput(out);
    });
    await t.step("unknown flag", async () => {
      const r = await cli([...base, "--model", fixture("stories260K"), "--bitz", "4"]);
      assertEquals(r.code, 2);
      assertOneErrorLine(r.stderr, "--bitz");
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("eval: a missing text file is one error line naming it", async () => {
  const r = await cli(["eval", "--model", fixture("stories260K"), "--text", "/no/such.txt"]);
  assertEquals(r.code, 1);
  assertOneErrorLine(r.stderr, "/no/such.txt");
});
