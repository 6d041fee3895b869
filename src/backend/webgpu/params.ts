/**
 * The per-dispatch parameters of a WGSL kernel: a uniform struct of 4-byte fields, built on the host
 * and written into the runtime's uniform arena (runtime.ts) just before its batch is submitted.
 */

/** Bytes reserved per dispatch in the uniform arena (the largest Params struct is far smaller). */
export const PARAM_BYTES = 128;

/** Builder of a uniform Params struct whose fields are all 4-byte u32, i32 or f32, in order. */
export class Params {
  private view = new DataView(new ArrayBuffer(PARAM_BYTES));
  private n = 0;
  /** Append a u32 field. */
  u(x: number): this {
    this.view.setUint32(this.n, x >>> 0, true);
    this.n += 4;
    return this;
  }
  /** Append an f32 field. */
  f(x: number): this {
    this.view.setFloat32(this.n, x, true);
    this.n += 4;
    return this;
  }
  /** The encoded bytes (padded to 16 as uniform structs require). */
  bytes(): Uint8Array {
    return new Uint8Array(this.view.buffer, 0, Math.max(16, Math.ceil(this.n / 16) * 16));
  }
}
