/**
 * The CUDA driver library itself: found and loaded (`AUTOROUND_LIBCUDA` or the usual paths),
 * initialized, and its result codes turned into CudaErrors. driver.ts builds the context, stream
 * and module classes on it.
 */
import { CU, DRIVER_SYMBOLS, type DriverLib } from "./driver_symbols.ts";
import { CudaError, CudaUnavailableError } from "./errors.ts";

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
