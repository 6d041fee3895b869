/**
 * The CUDA backend's memory ops: host ↔ device copies (rounding to bf16/f16 on the device), fills,
 * readbacks that wait for the stream and report device errors, and whole samples gathered from a
 * host list of indices. Ops that talk to the host refuse to run inside a graph capture.
 */
import type { Backend, DType } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { f32ToBf16, f32ToF16 } from "../../tensor/dtype.ts";
import type { OpContext } from "./matmul.ts";
import { asBackendError, type CudaRuntime } from "./runtime.ts";
import { CudaTensor, DTYPE_BYTES, sizeOf } from "./tensor.ts";

/** What these ops need of the backend. */
export type MemoryContext = OpContext & Backend;

/** Host work cannot be recorded into a CUDA graph. */
export function noCapture(rt: CudaRuntime, what: string): void {
  if (rt.memory.capturing) throw new BackendError(`${what} cannot run inside a CUDA graph capture`);
}

export function upload(
  be: MemoryContext,
  data: Float32Array | Float64Array,
  shape: readonly number[],
  dtype: DType,
): CudaTensor {
  if (dtype === "i32" || dtype === "u8") throw new BackendError(`upload() takes float data; use uploadInt`);
  noCapture(be.rt, "upload");
  const n = sizeOf(shape);
  if (data.length !== n) throw new BackendError(`upload: ${data.length} values for shape [${shape}]`);
  const src = data instanceof Float32Array ? data : Float32Array.from(data);
  const t = be.newTensor(shape, dtype);
  if (dtype === "f32") {
    be.rt.stream.copyToDevice(t.addr, src);
  } else {
    // Round on the device (same round-to-nearest-even as the host conversion, far faster than JS).
    using staged = be.newTensor(shape, "f32");
    be.rt.stream.copyToDevice(staged.addr, src);
    be.castInto(t, staged);
  }
  return t;
}

export function uploadBytes(
  be: MemoryContext,
  bytes: Uint8Array,
  src: "f32" | "f16" | "bf16",
  shape: readonly number[],
  dtype?: DType,
): CudaTensor {
  noCapture(be.rt, "uploadBytes");
  const n = sizeOf(shape);
  if (bytes.byteLength !== n * DTYPE_BYTES[src]) {
    throw new BackendError(`uploadBytes: ${bytes.byteLength} bytes for ${n} ${src} values`);
  }
  const raw = be.newTensor(shape, src);
  be.rt.stream.copyToDevice(raw.addr, bytes);
  if ((dtype ?? src) === src) return raw;
  const t = be.newTensor(shape, dtype!);
  be.castInto(t, raw);
  raw[Symbol.dispose]();
  return t;
}

export async function readBytes(be: MemoryContext, t: CudaTensor): Promise<Uint8Array> {
  if (t.dtype === "i32" || t.dtype === "u8") throw new BackendError(`readBytes: expected a float tensor`);
  noCapture(be.rt, "readBytes");
  return await copyOut(be, new Uint8Array(t.size * DTYPE_BYTES[t.dtype]), t.addr);
}

/** Wait for the stream, copy device memory at `addr` into `out`, report device errors. */
async function copyOut<A extends ArrayBufferView>(be: MemoryContext, out: A, addr: bigint): Promise<A> {
  try {
    await be.rt.stream.synchronize();
    be.rt.stream.copyToHost(out, addr);
  } catch (e) {
    asBackendError(e, "CUDA");
  }
  be.rt.checkDeviceErrors();
  return out;
}

export function writeBytes(be: MemoryContext, dst: CudaTensor, bytes: Uint8Array): void {
  noCapture(be.rt, "writeBytes");
  if (bytes.byteLength !== dst.size * DTYPE_BYTES[dst.dtype]) {
    throw new BackendError(`writeBytes: ${bytes.byteLength} bytes for ${dst.size} ${dst.dtype} values`);
  }
  // From pageable memory the driver has copied the source before the call returns.
  be.rt.stream.copyToDevice(dst.addr, bytes);
}

export function uploadInt(be: MemoryContext, data: Int32Array, shape: readonly number[]): CudaTensor {
  noCapture(be.rt, "uploadInt");
  if (data.length !== sizeOf(shape)) {
    throw new BackendError(`uploadInt: ${data.length} values for shape [${shape}]`);
  }
  const t = be.newTensor(shape, "i32");
  be.rt.stream.copyToDevice(t.addr, data);
  return t;
}

export function full(be: MemoryContext, shape: readonly number[], value: number, dtype: DType): CudaTensor {
  const t = be.newTensor(shape, dtype);
  const bits = dtype === "f32"
    ? new Uint32Array(new Float32Array([value]).buffer)[0]
    : dtype === "bf16"
    ? f32ToBf16(Math.fround(value))
    : dtype === "f16"
    ? f32ToF16(Math.fround(value))
    : dtype === "i32"
    ? value | 0
    : value & 0xff;
  be.rt.stream.fill(t.addr, bits, DTYPE_BYTES[dtype], t.size);
  return t;
}

export async function read(be: MemoryContext, t: CudaTensor): Promise<Float32Array> {
  if (t.dtype === "i32" || t.dtype === "u8") throw new BackendError(`expected a float tensor`);
  noCapture(be.rt, "read");
  const out = new Float32Array(t.size);
  const f = be.castTo(t, "f32");
  try {
    await be.rt.stream.synchronize();
    be.rt.stream.copyToHost(out, f.addr);
  } catch (e) {
    asBackendError(e, "CUDA");
  } finally {
    if (f !== t) f[Symbol.dispose]();
  }
  be.rt.checkDeviceErrors();
  return out;
}

export async function readInt(be: MemoryContext, t: CudaTensor): Promise<Int32Array> {
  if (t.dtype !== "i32") throw new BackendError(`readInt of a ${t.dtype} tensor`);
  noCapture(be.rt, "readInt");
  return await copyOut(be, new Int32Array(t.size), t.addr);
}

export function gatherSamples(
  be: MemoryContext,
  d: CudaTensor,
  s: CudaTensor,
  indices: readonly number[],
  rowsPerSample: number,
  firstSample?: number,
): void {
  const per = rowsPerSample * s.cols;
  if (d.size < indices.length * per) {
    throw new BackendError(`gatherSamples: destination holds ${d.size} elements`);
  }
  const first = firstSample ?? 0;
  for (let i = 0; i < indices.length; i++) {
    const idx = indices[i] - first;
    const inside = Number.isInteger(idx) && idx >= 0 && (idx + 1) * per <= s.size;
    if (!inside && firstSample !== undefined) continue; // another segment holds it
    if (!inside) {
      throw new BackendError(`gatherSamples: sample ${indices[i]} outside the source`);
    }
    const from = new CudaTensor(
      be,
      [per],
      s.dtype,
      s.block,
      s.byteOffset + idx * per * DTYPE_BYTES[s.dtype],
      null,
    );
    const to = new CudaTensor(
      be,
      [per],
      d.dtype,
      d.block,
      d.byteOffset + i * per * DTYPE_BYTES[d.dtype],
      null,
    );
    be.castInto(to, from);
  }
}
