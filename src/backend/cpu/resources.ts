/**
 * The threads of a CPU backend: its worker pool, and the CBLAS library it multiplies with, set to the
 * same thread count. `AUTOROUND_BLAS=none|auto|<path>` or the `blas` option picks the library; "auto"
 * takes the first one ffi/blas/cblas.ts finds and falls back to the TypeScript kernel quietly (--debug
 * says why); an explicit path that cannot be loaded is an error.
 */
import { Cblas, CblasUnavailableError } from "../../../ffi/blas/cblas.ts";
import { BackendError } from "../../errors.ts";
import type { Log } from "../../log.ts";
import { WorkerPool } from "../../parallel/pool.ts";
import type { HostMemory } from "./cpu_tensor.ts";

/** What the CPU backend's op modules (quant_ops.ts, attention_ops.ts) need from it. */
export interface OpsContext {
  pool: WorkerPool;
  mem: HostMemory;
  precision: "f32" | "f64";
  blas?: Cblas;
}

/** Options of CpuBackend.create. */
export interface CpuBackendOptions {
  precision?: "f32" | "f64";
  /** Threads for the kernels and the BLAS library (default: every core; 1 = the reference). */
  threads?: number;
  /**
   * "auto" (default: `$AUTOROUND_BLAS`, else the first CBLAS library found, else TypeScript), "none"
   * (TypeScript products), or the path of a CBLAS library (an error when it cannot be loaded).
   */
  blas?: string;
  log?: Log;
}

/** Start `threads − 1` workers (none when they cannot start: one thread) and open the BLAS library. */
export async function startThreads(opts: CpuBackendOptions): Promise<{ pool?: WorkerPool; blas?: Cblas }> {
  const threads = Math.max(1, opts.threads ?? navigator.hardwareConcurrency);
  const log = opts.log;
  // The library first: a named one that cannot be loaded throws before any worker exists.
  const blas = openBlas(opts.blas ?? blasFromEnv() ?? "auto", log);
  blas?.setThreads(threads);
  let pool: WorkerPool | undefined;
  if (threads > 1) {
    try {
      pool = await WorkerPool.start(threads);
    } catch (e) {
      log?.debug(`cpu: ${(e as Error).message}; running on one thread`);
    }
  }
  return { pool, blas };
}

/** `AUTOROUND_BLAS=none|auto|<path>` (read only if granted). */
function blasFromEnv(): string | undefined {
  const variable = "AUTOROUND_BLAS";
  if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") return undefined;
  return Deno.env.get(variable) || undefined;
}

/** Open the CBLAS library `choice` names; "auto" falls back to TypeScript quietly (--debug says why). */
function openBlas(choice: string, log?: Log): Cblas | undefined {
  if (choice === "none") return undefined;
  const auto = choice === "auto";
  if (auto && Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    log?.debug("cpu: no FFI permission; TypeScript matmul");
    return undefined;
  }
  try {
    const blas = Cblas.open(auto ? undefined : choice);
    log?.debug(`cpu: ${blas.description} (${blas.path})`);
    return blas;
  } catch (e) {
    if (!(e instanceof CblasUnavailableError) && !(e instanceof Deno.errors.NotCapable)) throw e;
    if (!auto) throw new BackendError(`cannot use the BLAS library ${choice}: ${e.message}`);
    log?.debug(`cpu: ${e.message}; TypeScript matmul`);
    return undefined;
  }
}

/** "OpenBLAS 0.3.21", "oneMKL 2024.2", or the library's file name. */
export function blasName(b: Cblas): string {
  const d = b.description;
  const openblas = /^OpenBLAS\s+\S+/.exec(d);
  if (openblas) return openblas[0];
  const mkl = /Math Kernel Library Version (\S+)/.exec(d);
  if (mkl) return `oneMKL ${mkl[1]}`;
  return b.path.split("/").pop()!;
}
