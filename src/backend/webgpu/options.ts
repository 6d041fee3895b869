/**
 * How the WebGPU backend is configured: the options of `WebGpuBackend.create`, the environment
 * variables `--device webgpu` reads (AUTOROUND_WEBGPU_DTYPE, AUTOROUND_WEBGPU_LIMITS), and the f16
 * self-check at startup that decides whether f16 becomes the compute dtype.
 */
import { BackendError, UsageError } from "../../errors.ts";
import type { Backend } from "../backend.ts";
import type { RuntimeOptions } from "./adapter.ts";

/** Options of `WebGpuBackend.create`. */
export interface WebGpuOptions extends RuntimeOptions {
  /** Force the compute dtype (default: f16 when available and accurate, else f32). */
  computeDType?: "f16" | "f32";
  /** Fill every new tensor with NaN (integers: −1) so tests catch outputs a kernel forgot. */
  poison?: boolean;
  /**
   * Opt-in faster f16 products: f16 × f16 matmuls form each K tile's products as f16 partial sums
   * (wgsl/matmul.wgsl ACC16). Relative error ≈ 1e-3 instead of ≈ 3e-4, partial sums limited to
   * ±65504. Off by default.
   */
  matmulF16Partials?: boolean;
}

/** Relative error an f16 matmul must stay under at startup to be chosen as the compute dtype. */
const F16_SELF_CHECK_BOUND = 1e-2;

/** `AUTOROUND_WEBGPU_DTYPE=f32|f16` picks the compute dtype of `--device webgpu` (read only if granted). */
export function dtypeFromEnv(): "f16" | "f32" | undefined {
  const variable = "AUTOROUND_WEBGPU_DTYPE";
  if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") return undefined;
  const v = Deno.env.get(variable);
  if (v === undefined || v === "") return undefined;
  if (v !== "f16" && v !== "f32") throw new BackendError(`${variable} must be f16 or f32 (got "${v}")`);
  return v;
}

/**
 * `AUTOROUND_WEBGPU_LIMITS=maxBufferSize=N,maxStorageBufferBindingSize=M` lowers the device limits
 * the backend plans with (how CI drives, on a software adapter, the splitting a real GPU's limits
 * force at 8B scale). Read only if granted.
 */
export function limitsFromEnv(): Pick<RuntimeOptions, "maxBufferBytes" | "maxBindingBytes"> {
  const variable = "AUTOROUND_WEBGPU_LIMITS";
  if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") return {};
  const v = Deno.env.get(variable);
  if (!v) return {};
  const out: Pick<RuntimeOptions, "maxBufferBytes" | "maxBindingBytes"> = {};
  for (const part of v.split(",")) {
    const m = part.trim().match(/^(maxBufferSize|maxStorageBufferBindingSize)=(\d+)$/);
    if (!m || +m[2] < 1024) {
      throw new UsageError(
        `${variable}: "${part}" is not maxBufferSize=N or maxStorageBufferBindingSize=N (N ≥ 1024 bytes)`,
      );
    }
    if (m[1] === "maxBufferSize") out.maxBufferBytes = +m[2];
    else out.maxBindingBytes = +m[2];
  }
  return out;
}

/** Startup check that f16 operands give a sane product (guards against broken f16 drivers). */
export async function f16Accurate(be: Backend): Promise<boolean> {
  const M = 37, K = 70, N = 29;
  const a = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37));
  const b = Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.11));
  using A = be.upload(a, [M, K], "f16");
  using B = be.upload(b, [K, N], "f16");
  using C = be.matmul(A, B);
  const got = await be.read(C);
  let num = 0, den = 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k] * b[k * N + j];
      num += (got[i * N + j] - s) ** 2;
      den += s * s;
    }
  }
  return Math.sqrt(num / den) < F16_SELF_CHECK_BOUND;
}
