/**
 * The WebGPU pipeline under a small device's limits, driven on whatever adapter CI has (llvmpipe):
 * maxBufferSize and maxStorageBufferBindingSize are lowered so that, at stories260K scale, the
 * calibration stores split into segments, batches run as several passes and every kernel binds its
 * tensors in chunks — the paths an 8B model takes on a real GPU (128 × 2048 × 4096 f32 activations
 * are 4 GiB, one buffer past a typical maxBufferSize). Also: device errors become one DeviceError
 * that names the operation, the sizes and the limits.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { Backend } from "../src/backend/backend.ts";
import { DeviceError } from "../src/errors.ts";
import type { QuantizeOptions } from "../src/quant/quantize.ts";
import { assert, assertEquals, assertRejects, assertSameNumbers, fixture } from "./assert.ts";
import { gpuTest, openGpu } from "./webgpu_helpers.ts";
import { quantizeStoriesReports } from "./stories_quantize.ts";

// stories260K at 64 tokens: one sample's hidden states are 16 KiB (f32), its widest activation
// (172 columns) 44 KiB. 135 KiB buffers: stores in segments of 8 samples, batches of 8 in passes of
// 3 + 3 + 2; 32 KiB bindings: every op in chunks (one sample's q rows still fit, as attention needs).
const CAP = 135 * 1024;
const small = await openGpu({ maxBufferBytes: CAP, maxBindingBytes: 32 * 1024 });
// 96 KiB buffers with batches of 2: stores split (6 samples a segment), passes whole.
const segOnly = await openGpu({ maxBufferBytes: 96 * 1024 });
const plain = await openGpu();

const run = (be: Backend, opts: Partial<QuantizeOptions> = {}) => quantizeStoriesReports(be, opts);

gpuTest(
  "where the activations live changes no number: segmented stores and --low_gpu_mem_usage equal one store",
  segOnly,
  async (be) => {
    const a = await run(plain!, { batchSize: 2 });
    const b = await run(be, { batchSize: 2 });
    const c = await run(be, { batchSize: 2, lowGpuMemUsage: true }); // host-spilled stores
    const losses = (r: typeof a) => r.blocks.map((x) => [x.lossStart, x.lossBest, x.bestIter]);
    assertEquals(losses(b), losses(a));
    assertEquals(losses(c), losses(a));
    for (const [n, v] of a.fake) {
      assertSameNumbers(b.fake.get(n)!, v, n);
      assertSameNumbers(c.fake.get(n)!, v, n);
    }
  },
);

gpuTest(
  "SignRound under 135 KiB buffers and 32 KiB bindings tunes like the CPU under the same cap",
  small,
  async (be) => {
    using cpu = new CpuBackend({ maxTensorBytes: CAP });
    const g = await run(be);
    const c = await run(cpu);
    assertEquals(g.blocks.length, 5);
    // Block 0 starts from the same inputs and RTN weights: f32 summation order only.
    const rel0 = Math.abs(g.blocks[0].lossStart! - c.blocks[0].lossStart!) / c.blocks[0].lossStart!;
    assert(rel0 < 1e-5, `block 0 initial loss ${g.blocks[0].lossStart} vs CPU ${c.blocks[0].lossStart}`);
    for (const [i, x] of g.blocks.entries()) {
      assert(x.lossBest! < 0.7 * x.lossStart!, `block ${i}: ${x.lossStart} -> ${x.lossBest}`);
      // Sign-SGD trajectories part where a gradient is near zero; the tuned losses stay close.
      const rel = Math.abs(x.lossBest! - c.blocks[i].lossBest!) / c.blocks[i].lossBest!;
      console.log(
        `  block ${i}: WebGPU ${x.lossBest!.toExponential(4)} CPU ${c.blocks[i].lossBest!.toExponential(4)}`,
      );
      assert(rel < 0.05, `block ${i}: ${x.lossBest} vs CPU ${c.blocks[i].lossBest}`);
    }
  },
);

gpuTest(
  "a failed buffer creation is reported at the next read as one DeviceError with the limits",
  plain,
  async (be) => {
    const rt = be.rt;
    // Past the adapter's real maxBufferSize: WebGPU records a validation error asynchronously.
    const tooBig = rt.device.limits.maxBufferSize + 4096;
    rt.op = "test";
    const buf = rt.pool.acquire(tooBig);
    rt.op = "";
    using x = be.upload(new Float32Array([1, 2, 3]), [3]);
    const e = await assertRejects(() => be.read(x), DeviceError);
    assert(e.message.includes(`creating a ${buf.size}-byte buffer (test)`), e.message);
    assert(
      e.message.includes("maxBufferSize") && e.message.includes("maxStorageBufferBindingSize"),
      e.message,
    );
    assert(e.oneLine().includes("--low_gpu_mem_usage") && e.oneLine().includes("--batch_size"), e.oneLine());
  },
);

gpuTest(
  "CLI: a sample over the device's maxBufferSize is one error line, exit 1, no output",
  plain,
  async () => {
    const tmp = await Deno.makeTempDir();
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../main.ts", import.meta.url).pathname,
          "quantize",
          "--model",
          fixture("stories260K"),
          "--iters",
          "2",
          "--group_size",
          "32",
          "--dataset",
          fixture("tinystories-calib.jsonl"),
          "--seqlen",
          "64",
          "--nsamples",
          "8",
          "--device",
          "webgpu",
          "--quiet",
          "--output_dir",
          `${tmp}/q`,
        ],
        env: { AUTOROUND_WEBGPU_LIMITS: "maxBufferSize=8192" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
      assertEquals(out.code, 1, lines.join("\n"));
      assertEquals(lines.length, 1, lines.join("\n"));
      for (
        const part of [
          "error: one sample of ",
          "bytes, over the device's largest buffer (8192 bytes, its maxBufferSize)",
          "try a smaller --seqlen",
        ]
      ) {
        assert(lines[0].includes(part), `"${lines[0]}" lacks "${part}"`);
      }
      assertEquals([...Deno.readDirSync(tmp)].length, 0);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);
