/**
 * Kernel parameter packing for cuLaunchKernel's `void** kernelParams`: each argument lives in its
 * own 16-byte slot of one long-lived buffer and the pointer table points at the slots, so a launch
 * allocates nothing (cuLaunchKernel copies the values before it returns). Structs passed by value
 * (keepBest's pair table) go to a separate region.
 */
const SLOTS = 48;
const SLOT_BYTES = 16;
const STRUCT_REGION = SLOTS * SLOT_BYTES;
const TOTAL_BYTES = STRUCT_REGION + 4096;

/** Arguments of one launch, written in the kernel's parameter order. Reuse one instance. */
export class KernelArgs {
  private readonly bytes = new Uint8Array(TOTAL_BYTES);
  private readonly view = new DataView(this.bytes.buffer);
  private readonly table = new BigUint64Array(SLOTS);
  private readonly slotAddress: bigint[] = [];
  private readonly base: bigint;
  private count = 0;
  private structOffset = STRUCT_REGION;
  private structSlots: number[] = [];

  constructor() {
    const p = Deno.UnsafePointer.of(this.bytes as BufferSource);
    if (!p) throw new Error("KernelArgs: cannot take the address of the argument buffer");
    this.base = Deno.UnsafePointer.value(p);
    for (let i = 0; i < SLOTS; i++) {
      this.slotAddress.push(this.base + BigInt(i * SLOT_BYTES));
      this.table[i] = this.slotAddress[i];
    }
  }

  /** Start a new argument list. */
  reset(): this {
    for (const i of this.structSlots) this.table[i] = this.slotAddress[i];
    this.structSlots = [];
    this.count = 0;
    this.structOffset = STRUCT_REGION;
    return this;
  }

  private next(): number {
    if (this.count >= SLOTS) throw new Error(`KernelArgs: more than ${SLOTS} arguments`);
    return this.count++ * SLOT_BYTES;
  }

  /** A device address (u64). */
  ptr(v: bigint): this {
    this.view.setBigUint64(this.next(), v, true);
    return this;
  }
  i32(v: number): this {
    this.view.setInt32(this.next(), v, true);
    return this;
  }
  i64(v: number): this {
    this.view.setBigInt64(this.next(), BigInt(v), true);
    return this;
  }
  f32(v: number): this {
    this.view.setFloat32(this.next(), v, true);
    return this;
  }
  f64(v: number): this {
    this.view.setFloat64(this.next(), v, true);
    return this;
  }
  /** A struct passed by value: its bytes exactly as the kernel's C layout has them. */
  struct(b: Uint8Array): this {
    const slot = this.count;
    this.next();
    const off = Math.ceil(this.structOffset / 16) * 16;
    if (off + b.length > TOTAL_BYTES) throw new Error("KernelArgs: struct arguments too large");
    this.bytes.set(b, off);
    this.table[slot] = this.base + BigInt(off);
    this.structSlots.push(slot);
    this.structOffset = off + b.length;
    return this;
  }

  /** The `void**` table to pass as kernelParams. */
  get pointerTable(): BigUint64Array {
    return this.table;
  }
}
