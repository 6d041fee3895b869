/**
 * Refuses absurd allocations inside a fuzz worker: every typed array and ArrayBuffer constructor is
 * replaced by a subclass that throws {@link HugeAllocation} when asked for more than the limit, so a
 * parser that would allocate terabytes because a header said so is reported ("oom") instead of
 * taking the machine down, and a parser that checks sizes first is not. Import it before anything
 * else; `instanceof` keeps working against the original classes.
 */

/** Thrown instead of allocating more than the guard's limit. */
export class HugeAllocation extends Error {
  override name = "HugeAllocation";
}

/** Bytes one allocation may take in a fuzz case: the seeds are ~1 MB, so 256 MiB is absurd. */
export const ALLOCATION_LIMIT = 256 * 1024 * 1024;

type Ctor = { new (...args: unknown[]): object; BYTES_PER_ELEMENT?: number; name: string };

function guard(name: string, C: Ctor, bytesOf: (args: unknown[]) => number): void {
  const Guarded = class extends C {
    constructor(...args: unknown[]) {
      const bytes = bytesOf(args);
      if (bytes > ALLOCATION_LIMIT) {
        throw new HugeAllocation(`new ${name}(${String(args[0])}) would allocate ${bytes} bytes`);
      }
      super(...args);
    }
    static override [Symbol.hasInstance](x: unknown): boolean {
      return x instanceof C;
    }
  };
  Object.defineProperty(Guarded, "name", { value: name });
  (globalThis as Record<string, unknown>)[name] = Guarded;
}

let installed = false;

/** Install the guard (idempotent). */
export function installAllocationGuard(): void {
  if (installed) return;
  installed = true;
  const g = globalThis as unknown as Record<string, Ctor>;
  for (
    const name of [
      "Int8Array",
      "Uint8Array",
      "Uint8ClampedArray",
      "Int16Array",
      "Uint16Array",
      "Int32Array",
      "Uint32Array",
      "Float16Array",
      "Float32Array",
      "Float64Array",
      "BigInt64Array",
      "BigUint64Array",
    ]
  ) {
    const C = g[name];
    if (!C) continue;
    const width = C.BYTES_PER_ELEMENT ?? 1;
    guard(name, C, (args) => (typeof args[0] === "number" ? args[0] * width : 0));
  }
  for (const name of ["ArrayBuffer", "SharedArrayBuffer"]) {
    guard(name, g[name], (args) => (typeof args[0] === "number" ? args[0] : 0));
  }
}
