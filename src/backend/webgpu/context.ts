/**
 * What every op module needs: the runtime and a way to allocate result tensors owned by the
 * backend. Keeps the op files free of the backend class (no import cycle).
 */
import type { DType } from "../backend.ts";
import type { GpuRuntime } from "./runtime.ts";
import type { GpuTensor } from "./tensor.ts";

/** Runtime plus tensor allocation. */
export interface GpuContext {
  readonly rt: GpuRuntime;
  /** A new tensor with undefined contents. */
  alloc(shape: readonly number[], dtype: DType): GpuTensor;
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
