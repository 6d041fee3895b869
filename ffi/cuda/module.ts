/**
 * A loaded PTX module and its kernel functions (launch limits, dynamic shared memory).
 */
import { CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES } from "./driver_symbols.ts";
import type { CudaDriver } from "./library.ts";

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
