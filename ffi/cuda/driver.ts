/**
 * The CUDA driver API as a few small classes: the library (`CudaDriver`, library.ts), a device's
 * primary context (`CudaContext`, here: memory, streams, events, modules), a stream with its events
 * and instantiated graphs (stream.ts), modules and kernel functions (module.ts). Everything above
 * `ffi/` imports them from this file and never touches the symbol table.
 *
 * Device addresses are `bigint` (CUdeviceptr). All work goes to explicit non-blocking streams; the
 * only waits are `CudaStream.synchronize()` (an awaited event, the event loop keeps running) and
 * the copies back to host memory that follow it.
 */
import {
  CU,
  CU_DEVICE_ATTRIBUTE,
  CU_EVENT_DISABLE_TIMING,
  CU_JIT,
  CU_STREAM_NON_BLOCKING,
} from "./driver_symbols.ts";
import { CudaUnavailableError } from "./errors.ts";
import { KernelArgs } from "./kernel_args.ts";
import { CudaDriver } from "./library.ts";
import { CudaFunction, CudaModule } from "./module.ts";
import { CudaEvent, CudaGraphExec, CudaStream } from "./stream.ts";

export { CudaDriver, CudaEvent, CudaFunction, CudaGraphExec, CudaModule, CudaStream, KernelArgs };

function addressOf(buf: ArrayBufferView): bigint {
  const p = Deno.UnsafePointer.of(buf as BufferSource);
  return p ? Deno.UnsafePointer.value(p) : 0n;
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
