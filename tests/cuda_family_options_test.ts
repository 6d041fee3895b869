/**
 * The CUDA backend has no kernels for the options of issue 18 yet: attention with a soft cap or a
 * sliding window and partial rotary must throw UnsupportedError naming the option and `--device cpu`
 * (never run plain causal attention or full rope instead). The checks run without a device; with a
 * CUDA device the backend's own attention, attentionBackward and rope are checked too.
 */
import type { AttentionShape } from "../src/backend/backend.ts";
import { rejectPartialRotary, rejectUnimplemented } from "../src/backend/cuda/attention.ts";
import { UnsupportedError } from "../src/errors.ts";
import { assertThrows } from "./assert.ts";
import { cuda, cudaTest } from "./cuda_helpers.ts";

const shape: AttentionShape = { batch: 1, seqLen: 4, nHeads: 2, nKvHeads: 1, headDim: 8, scale: 0.35 };
const geo = { batch: 1, seqLen: 4, nHeads: 2, headDim: 8 };

Deno.test("cuda: softcap, window and partial rotary are UnsupportedError naming the option and --device cpu", () => {
  assertThrows(() => rejectUnimplemented({ ...shape, softcap: 50 }), UnsupportedError, "softcap (50)");
  assertThrows(() => rejectUnimplemented({ ...shape, window: 2 }), UnsupportedError, "window 2");
  const e = assertThrows(
    () => rejectPartialRotary({ ...geo, rotaryDim: 4 }),
    UnsupportedError,
    "rotaryDim 4",
  );
  if (!e.message.includes("--device cpu")) throw new Error(`no way out in: ${e.message}`);
  // Without the options (or with rotaryDim = headDim) nothing is rejected.
  rejectUnimplemented(shape);
  rejectPartialRotary(geo);
  rejectPartialRotary({ ...geo, rotaryDim: 8 });
});

cudaTest("the backend's attention, attentionBackward and rope throw UnsupportedError for the options", () => {
  const be = cuda("f32");
  const q = be.upload(new Float32Array(64), [4, 16]), kv = be.upload(new Float32Array(32), [4, 8]);
  for (const s of [{ ...shape, softcap: 50 }, { ...shape, window: 2 }]) {
    assertThrows(() => be.attention(q, kv, kv, s), UnsupportedError, "--device cpu");
    assertThrows(() => be.attentionBackward(q, kv, kv, q, kv, q, s), UnsupportedError, "--device cpu");
  }
  const cs = be.upload(new Float32Array(8), [4, 2]);
  assertThrows(() => be.rope(q, cs, cs, { ...geo, rotaryDim: 4 }), UnsupportedError, "partial rotary");
});
