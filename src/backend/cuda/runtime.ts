/**
 * Everything one CUDA backend holds on the device side: the primary context, its stream, the
 * caching allocator, the kernel modules, the cuBLASLt handle and its workspace, the launch argument
 * buffer and a small error word kernels use to report bad inputs (checked at the next read/sync).
 */
import {
  CudaContext,
  CudaDriver,
  type CudaFunction,
  type CudaModule,
  type CudaStream,
  KernelArgs,
} from "../../../ffi/cuda/driver.ts";
import { CublasLt } from "../../../ffi/cuda/cublaslt.ts";
import { CudaError, CudaUnavailableError } from "../../../ffi/cuda/errors.ts";
import { type KernelModuleName, ptxFor } from "../../../ffi/cuda/ptx.ts";
import { BackendError, DeviceError } from "../../errors.ts";
import { type DeviceBlock, DeviceMemory } from "./allocator.ts";

/** Options of the CUDA backend. */
export interface CudaOptions {
  /** Device ordinal (default 0). */
  device?: number;
  /** Activation/weight compute dtype: bf16 (default, AutoRound's autocast) or f32 for exactness tests. */
  computeDType?: "bf16" | "f16" | "f32";
  /** Let f32 products use TF32 tensor cores (off: the reference-accuracy path). */
  allowTf32?: boolean;
  /** cuBLASLt workspace (default 32 MiB, what cuBLAS recommends on Hopper). */
  workspaceBytes?: number;
  /**
   * `--deterministic`: products take no split-K algorithm and choose theirs by shape and dtype alone
   * (matmul.ts). Every other kernel is deterministic by construction (ffi/cuda/NOTES.md § Determinism).
   */
  deterministic?: boolean;
}

/** Turn a failure of the bindings into the one-line BackendError the CLI prints. */
export function asBackendError(e: unknown, what: string): never {
  if (e instanceof BackendError) throw e;
  if (e instanceof CudaUnavailableError) throw new BackendError(`${what}: ${e.message}`);
  // A failed launch or copy: the device refused work (out of memory, a fault); say what to try.
  if (e instanceof CudaError) throw new DeviceError(`${what}: ${e.message}`);
  throw e;
}

export class CudaRuntime implements Disposable {
  readonly args = new KernelArgs();
  readonly memory: DeviceMemory;
  readonly workspace: DeviceBlock;
  readonly workspaceBytes: number;
  /** err[0] = code (1: token id outside the vocabulary, 2: sample index outside the source), err[1] = the value. */
  readonly errorWord: DeviceBlock;
  /** Set when a kernel that can report through errorWord was launched since the last check. */
  errorArmed = false;
  private readonly modules = new Map<KernelModuleName, CudaModule>();
  private disposed = false;

  private constructor(
    readonly driver: CudaDriver,
    readonly ctx: CudaContext,
    readonly stream: CudaStream,
    readonly blas: CublasLt,
    workspaceBytes: number,
    /** CudaOptions.deterministic. */
    readonly deterministic: boolean,
  ) {
    this.memory = new DeviceMemory(ctx, stream);
    this.workspaceBytes = workspaceBytes;
    this.workspace = this.memory.alloc(workspaceBytes);
    this.errorWord = this.memory.alloc(16);
    stream.fill(this.errorWord.addr, 0, 4, 4);
    this.module("core");
  }

  /** Open device `opts.device`, or throw a BackendError saying in one line why not. */
  static create(opts: CudaOptions = {}): CudaRuntime {
    let driver: CudaDriver | undefined, ctx: CudaContext | undefined, stream: CudaStream | undefined;
    let blas: CublasLt | undefined;
    try {
      driver = CudaDriver.open();
      ctx = new CudaContext(driver, opts.device ?? 0);
      const cc = ctx.info.computeCapability;
      if (!ptxFor(cc, "core")) {
        throw new CudaUnavailableError(
          `${ctx.info.name} has compute capability ${cc.join(".")}; the CUDA backend needs 8.0 or newer`,
        );
      }
      stream = ctx.createStream();
      blas = CublasLt.open();
      const workspace = opts.workspaceBytes ?? 32 * 2 ** 20;
      return new CudaRuntime(driver, ctx, stream, blas, workspace, opts.deterministic ?? false);
    } catch (e) {
      blas?.[Symbol.dispose]();
      stream?.[Symbol.dispose]();
      ctx?.[Symbol.dispose]();
      asBackendError(e, "--device cuda");
    }
  }

  /** A module, loaded (JIT-compiled by the driver) on first use. */
  module(name: KernelModuleName): CudaModule {
    let m = this.modules.get(name);
    if (!m) {
      const ptx = ptxFor(this.ctx.info.computeCapability, name)!;
      m = this.ctx.loadModule(ptx, `${name} kernels`);
      this.modules.set(name, m);
    }
    return m;
  }

  fn(name: string, module: KernelModuleName = "core"): CudaFunction {
    return this.module(module).fn(name);
  }

  /** Start an argument list for the next launch. */
  begin(): KernelArgs {
    return this.args.reset();
  }

  /** Launch `fn` with the arguments written since `begin()`. */
  launch(
    fn: CudaFunction,
    grid: readonly [number, number?, number?],
    block: readonly [number, number?, number?],
    sharedBytes = 0,
  ): void {
    this.stream.launch(fn, grid, block, sharedBytes, this.args);
  }

  /** Blocks for a grid-stride loop over n items, `perThread` items per thread, 256 threads. */
  gridFor(n: number, perThread = 1): number {
    const want = Math.ceil(n / (256 * perThread));
    return Math.max(1, Math.min(want, this.ctx.info.multiprocessors * 16));
  }

  /** Throw (once) what a kernel reported through the error word; the stream must be idle. */
  checkDeviceErrors(): void {
    if (!this.errorArmed) return;
    this.errorArmed = false;
    const w = new Int32Array(2);
    this.stream.copyToHost(w, this.errorWord.addr);
    if (w[0] === 0) return;
    this.stream.fill(this.errorWord.addr, 0, 4, 4);
    if (w[0] === 1) throw new BackendError(`token id ${w[1]} outside the vocabulary`);
    if (w[0] === 2) throw new BackendError(`gatherSamples: sample index ${w[1]} outside the source`);
    throw new BackendError(`a CUDA kernel reported error code ${w[0]}`);
  }

  [Symbol.dispose](): void {
    if (this.disposed) return;
    this.disposed = true;
    try {
      this.stream.synchronizeBlocking();
    } catch { /* a faulted context still releases below */ }
    this.memory.release(this.workspace);
    this.memory.release(this.errorWord);
    this.memory.trim();
    for (const m of this.modules.values()) m[Symbol.dispose]();
    this.blas[Symbol.dispose]();
    this.stream[Symbol.dispose]();
    this.ctx[Symbol.dispose]();
  }
}

/** Whether a CUDA device can be opened here, and if not why (cheap: loads the driver only). */
export function probeCuda(): { ok: true; devices: number } | { ok: false; reason: string } {
  try {
    return { ok: true, devices: probeDevices() };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

function probeDevices(): number {
  const n = CudaDriver.open().deviceCount();
  if (n < 1) throw new Error("no CUDA device found");
  return n;
}
