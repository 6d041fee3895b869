/**
 * Pick the compute backend for `--device`: `auto` takes the fastest one this machine has,
 * an explicit name either works or stops with one clear line saying why.
 */
import type { Backend } from "./backend.ts";
import { CpuBackend } from "./cpu/cpu_backend.ts";
import { createCudaBackend } from "./cuda/cuda_backend.ts";
import { probeCuda } from "./cuda/runtime.ts";
import { WebGpuBackend } from "./webgpu/webgpu_backend.ts";
import { ensureRuntimeDir } from "./webgpu/adapter.ts";
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

/** How a backend is set up beyond its device name. */
export interface BackendOptions {
  /** CPU threads (kernels and BLAS); default every core. */
  threads?: number;
  /**
   * `--deterministic`: where a device has a faster variant whose bits could depend on more than the
   * inputs, take the other one. Only CUDA has such a choice (cuBLASLt's split-K algorithms and the
   * alignment-dependent algorithm choice, src/backend/cuda/matmul.ts); the CPU and WebGPU backends give
   * the same bits run to run as they are (README § Determinism).
   */
  deterministic?: boolean;
}

/** Create the backend for a device name. */
export async function createBackend(
  device: DeviceName,
  log: Log,
  opts: BackendOptions = {},
): Promise<Backend> {
  if (device === "webgpu") {
    // Deno's WebGPU: any Vulkan/Metal/DX12 GPU; a BackendError names the cause when none is found.
    const be = await WebGpuBackend.create();
    log.debug(`webgpu: ${be.device}, compute ${be.computeDType}`);
    return be;
  }
  if (device === "cuda") {
    // CUDA driver API + cuBLASLt through FFI; a BackendError names the missing library or device.
    const be = createCudaBackend({ deterministic: opts.deterministic });
    log.debug(`cuda: ${be.device}`);
    return be;
  }
  if (device === "auto") {
    // CUDA when libcuda.so.1 loads and a device exists, else a hardware WebGPU adapter (any vendor),
    // else the CPU; any failure falls back quietly (--debug says why).
    const probe = probeCuda();
    if (probe.ok) {
      try {
        const be = createCudaBackend({ deterministic: opts.deterministic });
        log.debug(`auto: cuda, ${be.device}`);
        return be;
      } catch (e) {
        log.debug(`auto: CUDA unusable (${(e as Error).message}); falling back`);
      }
    } else log.debug(`auto: no CUDA (${probe.reason})`);
    const gpu = await probeWebGpu();
    if (gpu.ok) {
      try {
        const be = await WebGpuBackend.create();
        log.debug(`auto: webgpu, ${be.device}, compute ${be.computeDType}`);
        return be;
      } catch (e) {
        log.debug(`auto: WebGPU unusable (${(e as Error).message}); falling back`);
      }
    } else log.debug(`auto: no WebGPU (${gpu.reason})`);
    log.debug("auto: using the CPU");
  }
  const be = await CpuBackend.create({ threads: opts.threads, log });
  log.debug(`cpu: ${be.device}`);
  return be;
}

/**
 * Whether WebGPU offers a hardware adapter. Software rasterizers (llvmpipe/lavapipe, SwiftShader:
 * the adapter says `isFallbackAdapter`, or its description names them) run at about 1 GFLOP/s,
 * slower than the CPU backend, so `auto` passes them over; `--device webgpu` still takes them.
 */
export async function probeWebGpu(): Promise<{ ok: true } | { ok: false; reason: string }> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) return { ok: false, reason: "WebGPU not enabled in this runtime (--unstable-webgpu)" };
  let adapter: GPUAdapter | null;
  ensureRuntimeDir();
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
  if (!adapter) return { ok: false, reason: "no adapter" };
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const name = `${info.description} ${info.device} ${info.architecture}`.trim();
  if (info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader|softpipe/i.test(name)) {
    return { ok: false, reason: `software adapter (${name})` };
  }
  return { ok: true };
}
