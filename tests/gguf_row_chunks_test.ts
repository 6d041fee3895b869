/**
 * GGUF through a device quantizer: the embedding and lm_head are read and quantized a piece of rows
 * at a time (src/export/gguf.ts #deviceRowChunks), and the file is byte-identical to the one written
 * from the whole table — checked with pieces of 16 rows against the default (one piece for
 * stories260K's 512-row table), on WebGPU (llvmpipe in CI; skipped with the reason where no adapter).
 */
import { assert, assertEquals } from "./assert.ts";
import { quantizeCli, storiesArgs } from "./determinism_helpers.ts";
import { gpuTest, openGpu } from "./webgpu_helpers.ts";

const probe = await openGpu();
probe?.[Symbol.dispose]();

gpuTest(
  "gguf: embedding and lm_head quantized on the device in pieces of rows give the whole table's bytes",
  probe,
  async () => {
    const args = storiesArgs("--device", "webgpu", "--iters", "0", "--format", "gguf:q4_k_m");
    const whole = await quantizeCli(args);
    // 64 columns × 4 B × 16 rows: 32 pieces for the 512-row tables.
    const pieces = await quantizeCli(args, { AUTOROUND_GGUF_ROW_CHUNK_BYTES: String(64 * 4 * 16) });
    assertEquals([...pieces.files.keys()], [...whole.files.keys()]);
    for (const [name, bytes] of whole.files) {
      const got = pieces.files.get(name)!;
      const at = bytes.findIndex((b, i) => got[i] !== b);
      assert(
        got.length === bytes.length && at < 0,
        `${name}: differs at byte ${at} (${got.length} vs ${bytes.length} bytes)`,
      );
    }
  },
);
