/**
 * Opening a WebGPU device for the runtime: the adapter request with the adapter's full limits and
 * `shader-f16`, the options that shape the runtime, and the XDG_RUNTIME_DIR the Vulkan loader wants.
 */
import { tmpdir } from "node:os";
import { BackendError } from "../../errors.ts";

/** Options of `GpuRuntime.open`. */
export interface RuntimeOptions {
  /** Ask for `shader-f16` when the adapter has it (default true). */
  f16?: boolean;
  /** Lower `maxStorageBufferBindingSize` artificially (tests of tensor splitting). */
  maxBindingBytes?: number;
  /** Lower `maxBufferSize` artificially (tests of the splitting a small device forces). */
  maxBufferBytes?: number;
  /** Adapter request options (power preference). */
  powerPreference?: GPUPowerPreference;
  /** Idle bytes the buffer pool keeps for reuse (default 2 GiB). */
  poolBytes?: number;
  /** Ask for `timestamp-query` when the adapter has it, for timing.ts (default false). */
  timestamps?: boolean;
}

/**
 * Request an adapter and a device with the adapter's full limits (large bindings, more workgroup
 * memory), `shader-f16` when present (and asked for), `timestamp-query` when asked for.
 */
export async function requestDevice(
  opts: RuntimeOptions,
): Promise<{ device: GPUDevice; f16: boolean; info: GPUAdapterInfo }> {
  if (!navigator.gpu) {
    throw new BackendError("WebGPU is not available in this Deno (run with --unstable-webgpu)");
  }
  ensureRuntimeDir();
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: opts.powerPreference ?? "high-performance",
  });
  if (!adapter) {
    throw new BackendError(
      "no WebGPU adapter found (no Vulkan/Metal/DX12 driver; on Linux install mesa-vulkan-drivers or the GPU's Vulkan driver)",
    );
  }
  const f16 = (opts.f16 ?? true) && adapter.features.has("shader-f16");
  const al = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: al.maxStorageBufferBindingSize,
    maxBufferSize: al.maxBufferSize,
    maxComputeWorkgroupStorageSize: al.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: al.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: al.maxComputeWorkgroupSizeX,
    maxStorageBuffersPerShaderStage: Math.min(al.maxStorageBuffersPerShaderStage, 16),
    // Finer binding offsets waste less when views and chunks are bound.
    minStorageBufferOffsetAlignment: al.minStorageBufferOffsetAlignment,
    minUniformBufferOffsetAlignment: al.minUniformBufferOffsetAlignment,
  };
  const features: GPUFeatureName[] = f16 ? ["shader-f16"] : [];
  if (opts.timestamps && adapter.features.has("timestamp-query")) features.push("timestamp-query");
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits,
  });
  return { device, f16, info: adapter.info };
}

/**
 * Give the Vulkan loader an `XDG_RUNTIME_DIR` when the environment has none (containers, cron, sudo):
 * without one, Mesa's window-system layer prints "XDG_RUNTIME_DIR is invalid or not set" on stderr at
 * every adapter request, although compute never uses it. A private folder under the temp dir is made
 * (mode 0700, as the XDG spec asks) and set for this process only.
 */
export function ensureRuntimeDir(): void {
  if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")) return;
  try {
    const dir = `${tmpdir()}/autoround-runtime-${Deno.uid() ?? "user"}`;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch {
    // Only a cosmetic message is at stake; the adapter request goes on without it.
  }
}
