/**
 * Pick the compute backend for `--device`: `auto` takes the fastest one this machine has,
 * an explicit name either works or stops with one clear line saying why.
 */
import type { Backend } from "./backend.ts";
import { CpuBackend } from "./cpu/cpu_backend.ts";
import { BackendError, UsageError } from "../errors.ts";
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
  if (device === "cuda" || device === "webgpu") {
    throw new BackendError(`--device ${device}: this build has no ${device} backend yet; use --device cpu`);
  }
  if (device === "auto") log.debug("no GPU backend in this build: using the CPU");
  return await Promise.resolve(new CpuBackend());
}
