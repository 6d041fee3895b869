/**
 * The WebGPU backend (issue #6): WGSL kernels for every Backend op, dispatched through Deno's
 * native WebGPU.
 *
 * @example
 * ```ts
 * import { WebGpuBackend } from "./src/backend/webgpu/mod.ts";
 * using be = await WebGpuBackend.create();
 * console.log(be.device, be.computeDType);
 * ```
 */
export { WebGpuBackend, type WebGpuOptions } from "./webgpu_backend.ts";
export { type MatmulTile, runMatmul } from "./matmul.ts";
export { GpuRuntime } from "./runtime.ts";
export { GpuTensor } from "./tensor.ts";
