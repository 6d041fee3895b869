/**
 * GGUF quantization on the worker pool gives quantizeToBytes' bytes exactly (rows are independent),
 * for every type, with and without an importance matrix, for searched and export-time tensors, over
 * several shared chunks.
 */
import { quantizeToBytesOn } from "../src/qmath/gguf/parallel.ts";
import { quantizeToBytes } from "../src/qmath/gguf/quantize.ts";
import { WorkerPool } from "../src/parallel/pool.ts";
import { assertEquals } from "./assert.ts";
import { QUANT_GGML_TYPES } from "../src/qmath/gguf/params.ts";

const TYPES = QUANT_GGML_TYPES;

Deno.test({
  name: "GGUF rows on 3 threads, in chunks of 5 rows, equal the single-thread bytes for every type",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    using pool = await WorkerPool.start(3);
    const n = 13, k = 512;
    let s = 12345;
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
    const w = Float32Array.from({ length: n * k }, () => rnd() * (1 + 3 * Math.abs(rnd())));
    const imatrix = Float64Array.from({ length: k }, (_, i) => (i % 17 === 0 ? 0 : Math.abs(rnd()) + 0.01));
    const rows = (r0: number, r1: number) => w.slice(r0 * k, r1 * k);
    for (const type of TYPES) {
      for (
        const opts of [{ optRtn: true, imatrix }, { optRtn: true }, { optRtn: false }, "export"] as const
      ) {
        const want = quantizeToBytes(type, n, k, rows, opts);
        const got = quantizeToBytesOn(pool, type, n, k, rows, opts, 5 * k);
        const what = `${type} ${
          typeof opts === "string" ? opts : `optRtn ${opts.optRtn} imatrix ${!!("imatrix" in opts)}`
        }`;
        assertEquals(got.length, want.length, what);
        let diff = 0;
        for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) diff++;
        assertEquals(diff, 0, `${what}: ${diff} bytes differ`);
      }
    }
  },
});
