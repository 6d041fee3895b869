/**
 * Start-up costs of the CUDA backend: opening the device (driver, context, cuBLASLt, the core PTX
 * module's JIT compile) and the first flash-attention call (the flash module's JIT compile), cold
 * and from the driver's compute cache, plus how the backend waits for the device.
 *
 *   deno run -A bench/cuda_startup.ts
 */
import { createCudaBackend } from "../src/backend/cuda/cuda_backend.ts";
import { createBackend } from "../src/backend/select.ts";
import { silentLog } from "../src/log.ts";

let t0 = performance.now();
using be = createCudaBackend();
const open = performance.now() - t0;
using q = be.full([64, 128], 0.1, "bf16");
t0 = performance.now();
const r = be.attention(q, q, q, { batch: 1, seqLen: 64, nHeads: 1, nKvHeads: 1, headDim: 128, scale: 0.1 });
await be.read(r.out);
const flash = performance.now() - t0;
t0 = performance.now();
for (let i = 0; i < 100; i++) await be.sync();
const wait = (performance.now() - t0) / 100;
console.log(`device: ${be.device}`);
console.log(`open (driver, context, cuBLASLt, core module JIT): ${open.toFixed(0)} ms`);
console.log(`first flash attention (flash module JIT): ${flash.toFixed(0)} ms`);
console.log(
  `sync() round trip on an idle stream: ${
    (wait * 1000).toFixed(0)
  } µs, worker-thread wait: ${be.rt.driver.nonblockingSync}`,
);
{
  using auto = await createBackend("auto", silentLog);
  console.log(`--device auto picks: ${auto.name} (${auto.device})`);
}
