/**
 * The CUDA driver API as a few small classes: the library (`CudaDriver`), a device's primary
 * context (`CudaContext`: memory, modules), a stream (copies, memsets, launches, graph capture),
 * events, modules and kernel functions, and instantiated graphs. Everything above `ffi/` uses these
 * and never touches the symbol table.
 *
 * Device addresses are `bigint` (CUdeviceptr). All work goes to explicit non-blocking streams; the
 * only waits are `CudaStream.synchronize()` (an awaited event, the event loop keeps running) and
 * the copies back to host memory that follow it.
 */
import {
  CU,
  CU_DEVICE_ATTRIBUTE,
  CU_EVENT_DISABLE_TIMING,
  CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
  CU_JIT,
  CU_STREAM_CAPTURE_MODE_RELAXED,
  CU_STREAM_NON_BLOCKING,
  DRIVER_SYMBOLS,
  type DriverLib,
} from "./driver_symbols.ts";
import { CudaError, CudaUnavailableError } from "./errors.ts";
import { KernelArgs } from "./kernel_args.ts";

export { KernelArgs };

const LIBCUDA_CANDIDATES = [
  "libcuda.so.1",
  "/usr/local/nvidia/lib64/libcuda.so.1",
  "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
  "/usr/lib64/libcuda.so.1",
  "/usr/lib/wsl/lib/libcuda.so.1",
];

/** The dynamic loader's reason, once (Deno repeats its "Could not open library:" prefix). */
export function loaderMessage(message: string): string {
  return message.split("\n")[0].replace(/^(Could not open library: )+/, "");
}

function cString(ptrValue: bigint): string {
  if (ptrValue === 0n) return "";
  const p = Deno.UnsafePointer.create(ptrValue);
  return p ? new Deno.UnsafePointerView(p).getCString() : "";
}

function addressOf(buf: ArrayBufferView): bigint {
  const p = Deno.UnsafePointer.of(buf as BufferSource);
  return p ? Deno.UnsafePointer.value(p) : 0n;
}

/** The loaded driver library, initialized. One per process is enough; `open()` returns it. */
export class CudaDriver {
  private static instance?: CudaDriver;
  /** Whether awaiting cuEventSynchronize on a worker thread works (unknown until tried). */
  nonblockingSync: boolean | undefined;

  private constructor(readonly lib: DriverLib, readonly path: string) {}

  /** Load libcuda and call cuInit, or throw CudaUnavailableError saying why. */
  static open(): CudaDriver {
    if (CudaDriver.instance) return CudaDriver.instance;
    const override = Deno.env.get("AUTOROUND_LIBCUDA");
    const candidates = override ? [override] : LIBCUDA_CANDIDATES;
    let lib: DriverLib | undefined, path = "", firstError = "";
    for (const c of candidates) {
      try {
        lib = Deno.dlopen(c, DRIVER_SYMBOLS);
        path = c;
        break;
      } catch (e) {
        firstError ||= (e as Error).message;
      }
    }
    if (!lib) {
      throw new CudaUnavailableError(
        `the NVIDIA driver library libcuda.so.1 could not be loaded (${loaderMessage(firstError)})`,
      );
    }
    const drv = new CudaDriver(lib, path);
    const rc = lib.symbols.cuInit(0);
    if (rc !== CU.SUCCESS) {
      const why = rc === CU.ERROR_NO_DEVICE ? "no CUDA-capable device is present" : drv.describe(rc);
      lib.close();
      throw new CudaUnavailableError(`cuInit failed: ${why}`);
    }
    CudaDriver.instance = drv;
    return drv;
  }

  /** "CUDA_ERROR_X: text" for a CUresult. */
  describe(rc: number): string {
    const out = new BigUint64Array(1);
    this.lib.symbols.cuGetErrorName(rc, out);
    const name = cString(out[0]) || `CUresult ${rc}`;
    out[0] = 0n;
    this.lib.symbols.cuGetErrorString(rc, out);
    return `${name}: ${cString(out[0])}`;
  }

  /** Throw a CudaError when `rc` is not CUDA_SUCCESS. */
  check(rc: number, call: string, detail = ""): void {
    if (rc === CU.SUCCESS) return;
    const out = new BigUint64Array(1);
    this.lib.symbols.cuGetErrorName(rc, out);
    const name = cString(out[0]) || `CUresult ${rc}`;
    out[0] = 0n;
    this.lib.symbols.cuGetErrorString(rc, out);
    const text = cString(out[0]);
    throw new CudaError(call, rc, name, [text, detail].filter(Boolean).join("; "));
  }

  /** Driver version as an integer, e.g. 13000 for 13.0. */
  version(): number {
    const v = new Int32Array(1);
    this.check(this.lib.symbols.cuDriverGetVersion(v), "cuDriverGetVersion");
    return v[0];
  }

  deviceCount(): number {
    const n = new Int32Array(1);
    this.check(this.lib.symbols.cuDeviceGetCount(n), "cuDeviceGetCount");
    return n[0];
  }
}

/** What a device offers, read once when its context opens. */
export interface DeviceInfo {
  ordinal: number;
  name: string;
  computeCapability: [number, number];
  multiprocessors: number;
  l2Bytes: number;
  totalBytes: number;
  maxSharedPerBlockOptin: number;
}

/** The primary context of one device, current on the calling (main) thread. */
export class CudaContext implements Disposable {
  readonly info: DeviceInfo;
  private readonly ctx: bigint;
  private released = false;

  constructor(readonly driver: CudaDriver, ordinal = 0) {
    const s = driver.lib.symbols;
    const count = driver.deviceCount();
    if (ordinal >= count) {
      throw new CudaUnavailableError(`CUDA device ${ordinal} requested, ${count} present`);
    }
    const dev = new Int32Array(1);
    driver.check(s.cuDeviceGet(dev, ordinal), "cuDeviceGet");
    const attr = (a: number) => {
      const v = new Int32Array(1);
      driver.check(s.cuDeviceGetAttribute(v, a, dev[0]), "cuDeviceGetAttribute");
      return v[0];
    };
    const nameBuf = new Uint8Array(256);
    driver.check(s.cuDeviceGetName(nameBuf, nameBuf.length, dev[0]), "cuDeviceGetName");
    const total = new BigUint64Array(1);
    driver.check(s.cuDeviceTotalMem_v2(total, dev[0]), "cuDeviceTotalMem");
    this.info = {
      ordinal,
      name: new TextDecoder().decode(nameBuf.subarray(0, nameBuf.indexOf(0))),
      computeCapability: [
        attr(CU_DEVICE_ATTRIBUTE.COMPUTE_CAPABILITY_MAJOR),
        attr(CU_DEVICE_ATTRIBUTE.COMPUTE_CAPABILITY_MINOR),
      ],
      multiprocessors: attr(CU_DEVICE_ATTRIBUTE.MULTIPROCESSOR_COUNT),
      l2Bytes: attr(CU_DEVICE_ATTRIBUTE.L2_CACHE_SIZE),
      totalBytes: Number(total[0]),
      maxSharedPerBlockOptin: attr(CU_DEVICE_ATTRIBUTE.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
    };
    const ctx = new BigUint64Array(1);
    driver.check(s.cuDevicePrimaryCtxRetain(ctx, dev[0]), "cuDevicePrimaryCtxRetain");
    this.ctx = ctx[0];
    this.makeCurrent();
  }

  /** Make this context current on the calling thread (the constructor already did, for the main thread). */
  makeCurrent(): void {
    this.driver.check(this.driver.lib.symbols.cuCtxSetCurrent(this.ctx), "cuCtxSetCurrent");
  }

  /** cuMemAlloc; returns null when the device is out of memory (the caller may free cache and retry). */
  tryAlloc(bytes: number): bigint | null {
    const out = new BigUint64Array(1);
    const rc = this.driver.lib.symbols.cuMemAlloc_v2(out, BigInt(Math.max(bytes, 1)));
    if (rc === CU.ERROR_OUT_OF_MEMORY) return null;
    this.driver.check(rc, "cuMemAlloc_v2", `${bytes} bytes`);
    return out[0];
  }

  free(addr: bigint): void {
    this.driver.check(this.driver.lib.symbols.cuMemFree_v2(addr), "cuMemFree_v2");
  }

  memInfo(): { free: number; total: number } {
    const f = new BigUint64Array(1), t = new BigUint64Array(1);
    this.driver.check(this.driver.lib.symbols.cuMemGetInfo_v2(f, t), "cuMemGetInfo_v2");
    return { free: Number(f[0]), total: Number(t[0]) };
  }

  createStream(): CudaStream {
    const out = new BigUint64Array(1);
    this.driver.check(this.driver.lib.symbols.cuStreamCreate(out, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    return new CudaStream(this.driver, out[0]);
  }

  createEvent(timing = false): CudaEvent {
    const out = new BigUint64Array(1);
    const flags = timing ? 0 : CU_EVENT_DISABLE_TIMING;
    this.driver.check(this.driver.lib.symbols.cuEventCreate(out, flags), "cuEventCreate");
    return new CudaEvent(this.driver, out[0]);
  }

  /** Load a PTX (or cubin/fatbin) image; JIT errors come back with the compiler's log. */
  loadModule(image: string | Uint8Array, label: string): CudaModule {
    const bytes = typeof image === "string" ? new TextEncoder().encode(image + "\0") : image;
    const log = new Uint8Array(16384);
    const opts = new Uint32Array([CU_JIT.ERROR_LOG_BUFFER, CU_JIT.ERROR_LOG_BUFFER_SIZE_BYTES]);
    const vals = new BigUint64Array([addressOf(log), BigInt(log.length)]);
    const out = new BigUint64Array(1);
    const rc = this.driver.lib.symbols.cuModuleLoadDataEx(out, bytes, opts.length, opts, vals);
    if (rc !== CU.SUCCESS) {
      const text = new TextDecoder().decode(log.subarray(0, Math.max(0, log.indexOf(0)))).trim();
      this.driver.check(rc, "cuModuleLoadDataEx", `${label}${text ? `: ${text.split("\n")[0]}` : ""}`);
    }
    return new CudaModule(this.driver, out[0]);
  }

  [Symbol.dispose](): void {
    if (this.released) return;
    this.released = true;
    const dev = new Int32Array(1);
    if (this.driver.lib.symbols.cuDeviceGet(dev, this.info.ordinal) === CU.SUCCESS) {
      this.driver.lib.symbols.cuDevicePrimaryCtxRelease_v2(dev[0]);
    }
  }
}

/** A non-blocking stream: every operation is enqueued and returns at once. */
export class CudaStream implements Disposable {
  private readonly syncEvent: CudaEvent;
  private destroyed = false;

  constructor(private readonly driver: CudaDriver, readonly handle: bigint) {
    const out = new BigUint64Array(1);
    driver.check(driver.lib.symbols.cuEventCreate(out, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
    this.syncEvent = new CudaEvent(driver, out[0]);
  }

  /** Host → device copy, ordered on this stream (pageable source: staged before this returns). */
  copyToDevice(dst: bigint, src: ArrayBufferView): void {
    if (src.byteLength === 0) return;
    this.driver.check(
      this.driver.lib.symbols.cuMemcpyHtoDAsync_v2(
        dst,
        src as BufferSource,
        BigInt(src.byteLength),
        this.handle,
      ),
      "cuMemcpyHtoDAsync_v2",
    );
  }

  /** Device → host copy; blocks until the stream reaches it, so call it after `synchronize()`. */
  copyToHost(dst: ArrayBufferView, src: bigint): void {
    if (dst.byteLength === 0) return;
    this.driver.check(
      this.driver.lib.symbols.cuMemcpyDtoHAsync_v2(
        dst as BufferSource,
        src,
        BigInt(dst.byteLength),
        this.handle,
      ),
      "cuMemcpyDtoHAsync_v2",
    );
  }

  copyDevice(dst: bigint, src: bigint, bytes: number): void {
    if (bytes === 0) return;
    this.driver.check(
      this.driver.lib.symbols.cuMemcpyDtoDAsync_v2(dst, src, BigInt(bytes), this.handle),
      "cuMemcpyDtoDAsync_v2",
    );
  }

  /** Fill `count` elements of `bytesPerElement` (1, 2 or 4) with a bit pattern. */
  fill(dst: bigint, bits: number, bytesPerElement: 1 | 2 | 4, count: number): void {
    if (count === 0) return;
    const s = this.driver.lib.symbols, n = BigInt(count);
    if (bytesPerElement === 4) {
      this.driver.check(s.cuMemsetD32Async(dst, bits >>> 0, n, this.handle), "cuMemsetD32Async");
    } else if (bytesPerElement === 2) {
      this.driver.check(s.cuMemsetD16Async(dst, bits & 0xffff, n, this.handle), "cuMemsetD16Async");
    } else this.driver.check(s.cuMemsetD8Async(dst, bits & 0xff, n, this.handle), "cuMemsetD8Async");
  }

  /** Launch `fn` with the arguments packed in `args`. */
  launch(
    fn: CudaFunction,
    grid: readonly [number, number?, number?],
    block: readonly [number, number?, number?],
    sharedBytes: number,
    args: KernelArgs,
  ): void {
    const rc = this.driver.lib.symbols.cuLaunchKernel(
      fn.handle,
      grid[0],
      grid[1] ?? 1,
      grid[2] ?? 1,
      block[0],
      block[1] ?? 1,
      block[2] ?? 1,
      sharedBytes,
      this.handle,
      args.pointerTable,
      0n,
    );
    if (rc !== CU.SUCCESS) {
      this.driver.check(rc, "cuLaunchKernel", `${fn.name} grid [${grid}] block [${block}]`);
    }
  }

  /** Wait for everything queued so far without blocking the event loop. */
  async synchronize(): Promise<void> {
    const s = this.driver.lib.symbols;
    const ev = this.syncEvent.handle;
    this.driver.check(s.cuEventRecord(ev, this.handle), "cuEventRecord");
    if (this.driver.nonblockingSync !== false) {
      const rc = await s.cuEventSynchronizeNonblocking(ev);
      if (rc === CU.SUCCESS) {
        this.driver.nonblockingSync = true;
        return;
      }
      // The worker thread may have no current context: fall back to polling, which also reports
      // a genuine failure with its own error.
      if (this.driver.nonblockingSync === undefined) this.driver.nonblockingSync = false;
      else this.driver.check(rc, "cuEventSynchronize");
    }
    for (;;) {
      const rc = s.cuEventQuery(ev);
      if (rc === CU.SUCCESS) return;
      if (rc !== CU.ERROR_NOT_READY) this.driver.check(rc, "cuEventQuery");
      await new Promise((r) => setTimeout(r, 0));
    }
  }

  /** Block the calling thread until the stream is idle (benchmarks, teardown). */
  synchronizeBlocking(): void {
    this.driver.check(this.driver.lib.symbols.cuStreamSynchronize(this.handle), "cuStreamSynchronize");
  }

  /** Start capturing this stream's work into a graph (relaxed mode: allocation stays legal). */
  beginCapture(): void {
    this.driver.check(
      this.driver.lib.symbols.cuStreamBeginCapture_v2(this.handle, CU_STREAM_CAPTURE_MODE_RELAXED),
      "cuStreamBeginCapture_v2",
    );
  }

  /** Stop capturing and instantiate what was captured. */
  endCapture(): CudaGraphExec {
    const s = this.driver.lib.symbols;
    const g = new BigUint64Array(1);
    this.driver.check(s.cuStreamEndCapture(this.handle, g), "cuStreamEndCapture");
    const exec = new BigUint64Array(1);
    try {
      this.driver.check(s.cuGraphInstantiateWithFlags(exec, g[0], 0n), "cuGraphInstantiateWithFlags");
    } finally {
      s.cuGraphDestroy(g[0]);
    }
    return new CudaGraphExec(this.driver, exec[0]);
  }

  [Symbol.dispose](): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.syncEvent[Symbol.dispose]();
    this.driver.lib.symbols.cuStreamDestroy_v2(this.handle);
  }
}

/** An event (timing events for benchmarks; the streams use untimed ones to wait). */
export class CudaEvent implements Disposable {
  private destroyed = false;
  constructor(private readonly driver: CudaDriver, readonly handle: bigint) {}

  record(stream: CudaStream): void {
    this.driver.check(this.driver.lib.symbols.cuEventRecord(this.handle, stream.handle), "cuEventRecord");
  }

  /** Milliseconds from `start` to this event (both recorded, both with timing; waits for this one). */
  elapsedSince(start: CudaEvent): number {
    const s = this.driver.lib.symbols;
    this.driver.check(s.cuEventSynchronize(this.handle), "cuEventSynchronize");
    const ms = new Float32Array(1);
    const fn = s.cuEventElapsedTime_v2 ?? s.cuEventElapsedTime;
    if (!fn) throw new CudaError("cuEventElapsedTime", -1, "missing", "not exported by this driver");
    this.driver.check(fn(ms, start.handle, this.handle), "cuEventElapsedTime");
    return ms[0];
  }

  [Symbol.dispose](): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.driver.lib.symbols.cuEventDestroy_v2(this.handle);
  }
}

/** A loaded module; kernel functions are looked up once by name. */
export class CudaModule implements Disposable {
  private readonly fns = new Map<string, CudaFunction>();
  private unloaded = false;
  constructor(private readonly driver: CudaDriver, readonly handle: bigint) {}

  fn(name: string): CudaFunction {
    let f = this.fns.get(name);
    if (!f) {
      const out = new BigUint64Array(1);
      this.driver.check(
        this.driver.lib.symbols.cuModuleGetFunction(out, this.handle, new TextEncoder().encode(name + "\0")),
        "cuModuleGetFunction",
        name,
      );
      f = new CudaFunction(this.driver, out[0], name);
      this.fns.set(name, f);
    }
    return f;
  }

  [Symbol.dispose](): void {
    if (this.unloaded) return;
    this.unloaded = true;
    this.driver.lib.symbols.cuModuleUnload(this.handle);
  }
}

/** A kernel entry point of a module. */
export class CudaFunction {
  private dynamicSmem = 48 * 1024;
  constructor(private readonly driver: CudaDriver, readonly handle: bigint, readonly name: string) {}

  /** Allow `bytes` of dynamic shared memory (needed above 48 KB). */
  reserveSharedMemory(bytes: number): void {
    if (bytes <= this.dynamicSmem) return;
    this.driver.check(
      this.driver.lib.symbols.cuFuncSetAttribute(
        this.handle,
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        bytes,
      ),
      "cuFuncSetAttribute",
      `${this.name}: ${bytes} bytes of shared memory`,
    );
    this.dynamicSmem = bytes;
  }
}

/** An instantiated graph: replays the captured launch sequence with one call. */
export class CudaGraphExec implements Disposable {
  private destroyed = false;
  constructor(private readonly driver: CudaDriver, readonly handle: bigint) {}

  launch(stream: CudaStream): void {
    this.driver.check(this.driver.lib.symbols.cuGraphLaunch(this.handle, stream.handle), "cuGraphLaunch");
  }

  [Symbol.dispose](): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.driver.lib.symbols.cuGraphExecDestroy(this.handle);
  }
}
