/**
 * `--format gguf:mxfp4`: a run's MXFP4 weights stored as ggml MXFP4 blocks without re-quantizing
 * (spec/SCHEMES.md § 10.9). The file read back by our GGUF reader holds the run's fake-quantized
 * weights bit for bit; llama.cpp's gguf-py decodes the blocks to the same values (an independent
 * codec); llama.cpp itself (node-llama-cpp) loads the file and its logits agree with our forward over
 * it within the tolerance tests/gguf_llamacpp_test.ts explains (llama.cpp quantizes activations to
 * Q8_0 for the MXFP4 dot products). Without `--scheme MXFP4` the format is a usage error.
 */
import { assert, assertEquals, fixture } from "./assert.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { openGgufModel } from "../src/io/gguf_model.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { packMxfp4Blocks } from "../src/qmath/gguf/mxfp4.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { quantizeStories } from "./stories_quantize.ts";
import { ggufPy, llamaCppUnavailable } from "./consumers/helpers.ts";
import { compareLogits, printRows } from "./consumers/logits.ts";
import { join } from "./consumers/path.ts";
import { cli } from "./cli_helpers.ts";

const PROMPTS = ["Once upon a time", "The little dog was very happy because"];

Deno.test("packMxfp4Blocks: E8M0 byte = exponent + 127, weight j low nibble, j + 16 high nibble", () => {
  const el = new Float32Array(32);
  el[0] = 6, el[16] = -0.5, el[1] = -0, el[17] = 1.5, el[15] = 3, el[31] = -6;
  const b = packMxfp4Blocks(el, Float32Array.of(-7), 1, 32);
  assertEquals(b.length, 17);
  assertEquals(b[0], 120); // 2^−7 → 120
  assertEquals(b[1], 0x7 | (0x9 << 4)); // 6 → code 7; −0.5 → 8 + 1
  assertEquals(b[2], 0x8 | (0x3 << 4)); // −0 keeps its sign bit; 1.5 → 3
  assertEquals(b[16], 0x5 | (0xf << 4)); // 3 → 5; −6 → 15
});

Deno.test("gguf:mxfp4: the run's MXFP4 weights in ggml blocks, decoded by us and by gguf-py, loaded by llama.cpp", async () => {
  using be = new CpuBackend();
  const run = await quantizeStories(be, {
    scheme: resolveScheme("MXFP4"),
    iters: 0,
    formats: ["gguf:mxfp4"],
  });
  try {
    const file = join(run.dir, "stories260K-MXFP4_MOE.gguf");
    // Our reader (q/k rows permuted back to Hugging Face order): the fake-quantized weights exactly.
    {
      using m = await openGgufModel(file);
      // Numerically equal (ggml's code 8 decodes to +0 where the fake quant has −0: the same value).
      for (const [name, want] of run.fake) {
        const got = await m.weights.readF32(name);
        assert(got.length === want.length && got.every((x, i) => x === want[i]), name);
      }
      assert(run.fake.size === 30, `${run.fake.size} MXFP4 Linears (down_proj's 172 inputs stay F32)`);
    }
    // gguf-py (llama.cpp's own numpy codec) on the stored blocks of every MXFP4 tensor.
    using g = await GgufFile.open(file);
    const mx = g.tensors.filter((t) => t.type === "MXFP4");
    const req = { dequantize: [] as { type: string; bytes: string }[] };
    for (const t of mx) req.dequantize.push({ type: "MXFP4", bytes: b64(await g.readBytes(t.name)) });
    const py = await ggufPy(req);
    if (py) {
      const { dequantizeBytes } = await import("../src/qmath/gguf/blocks.ts");
      for (const [i, t] of mx.entries()) {
        const theirs = new Float32Array(unb64(py.dequantize[i]).buffer);
        const ours = dequantizeBytes("MXFP4", await g.readBytes(t.name));
        const bad = ours.findIndex((x, j) => !Object.is(x, theirs[j]));
        assert(
          ours.length === theirs.length && bad < 0,
          `${t.name}: gguf-py differs at ${bad}: ${ours[bad]} vs ${
            theirs[bad]
          } (${ours.length}/${theirs.length})`,
        );
      }
      console.log(`  gguf-py decodes all ${mx.length} MXFP4 tensors to our values`);
    }
    const unavailable = await llamaCppUnavailable();
    if (unavailable) return console.log(`skipped llama.cpp: ${unavailable}`);
    const tok = await Tokenizer.fromDir(fixture("stories260K"));
    const { rows } = await compareLogits([file], tok, PROMPTS);
    printRows("stories260K MXFP4 (RTN) in ggml MXFP4 blocks", rows);
    assert(rows[0].relDiff <= 0.04, `max |Δlogit| ${(rows[0].relDiff * 100).toFixed(2)}% of the largest`);
    assert(rows[0].kl <= 0.01 && rows[0].top1, `KL ${rows[0].kl}, top-1 ${rows[0].top1}`);
  } finally {
    await run.cleanup();
  }
});

Deno.test("gguf:mxfp4 needs --scheme MXFP4 and refuses other schemes with one line", async () => {
  const base = [
    "quantize",
    "--model",
    fixture("stories260K"),
    "--iters",
    "0",
    "--output_dir",
    "/nonexistent/x",
  ];
  const a = await cli([...base, "--format", "gguf:mxfp4"]);
  assertEquals(a.code, 2, a.stderr);
  assert(a.stderr.includes("add --scheme MXFP4"), a.stderr);
  const b = await cli([...base, "--format", "gguf:mxfp4", "--scheme", "NVFP4"]);
  assertEquals(b.code, 2, b.stderr);
  assert(b.stderr.includes("cannot store"), b.stderr);
});

const b64 = (u: Uint8Array) => {
  let s = "";
  for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode(...u.subarray(i, i + 8192));
  return btoa(s);
};
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
