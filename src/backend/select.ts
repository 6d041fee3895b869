/**
 * Pick the compute backend for `--device`: `auto` takes the fastest one this machine has,
 * an explicit name either works or stops with one clear line saying why.
 */
import type { Backend } from "./backend.ts";
import { CpuBackend } from "./cpu/cpu_backend.ts";
import { createCudaBackend, probeCuda } from "./cuda/cuda_backend.ts";
import { WebGpuBackend } from "./webgpu/webgpu_backend.ts";
import { UsageError } from "../errors.ts";
import type { Log } from "../log.ts";

/** Values `--device` accepts. */
export const DEVICES = ["auto", "cpu", "cuda", "webgpu"] as const;
export type DeviceName = typeof DEVICES[number];

/** Normalize AutoRound-style device strings ("0", "cuda:0", "cpu"). */
export function parseDevice(value: string): DeviceName {
  const v = value.toLowerCase();
  if (v === "auto" || v === "cpu" || v === "webgpu") return v;
  if (v === "cuda" || v.startsWith("cuda:") || /^\d+(,\d+)*$/.test(v)) return "cuda";
  throw new UsageError(`--device must be one of ${DEVICES.join(", ")} (got "${value}")`);
}

/** Create the backend for a device name. */
export async function createBackend(device: DeviceName, log: Log): Promise<Backend> {
  if (device === "webgpu") {
    // Deno's WebGPU: any Vulkan/Metal/DX12 GPU; a BackendError names the cause when none is found.
    const be = await WebGpuBackend.create();
    log.debug(`webgpu: ${be.device}, compute ${be.computeDType}`);
    return be;
  }
  if (device === "cuda") {
    // CUDA driver API + cuBLASLt through FFI; a BackendError names the missing library or device.
    const be = createCudaBackend();
    log.debug(`cuda: ${be.device}`);
    return be;
  }
  if (device === "auto") {
    // Prefer CUDA when libcuda.so.1 loads and a device exists; any failure falls back quietly.
    const probe = probeCuda();
    if (probe.ok) {
      try {
        const be = createCudaBackend();
        log.debug(`auto: cuda, ${be.device}`);
        return be;
      } catch (e) {
        log.debug(`auto: CUDA unusable (${(e as Error).message}); falling back`);
      }
    } else log.debug(`auto: no CUDA (${probe.reason})`);
  }
  if (device === "auto") log.debug("no GPU backend in this build: using the CPU");
  return await Promise.resolve(new CpuBackend());
}
