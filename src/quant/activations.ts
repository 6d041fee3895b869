/**
 * Calibration activations `[nsamples·seqlen, hidden]` of one stream (fp inputs, quantized inputs,
 * targets). They live in the backend's memory, or — when it is short (AutoRound's
 * `low_gpu_mem_usage`) — in host memory, with batches uploaded as the tuning loop needs them.
 *
 * A device store larger than the backend's largest tensor (`Backend.maxTensorBytes`; WebGPU's
 * maxBufferSize is 4 GiB on most GPUs, and 128 × 2048 × 4096 f32 activations are exactly 4 GiB) is
 * split into segments of whole samples. Batches that fall inside one segment are views; a batch
 * across a boundary is assembled by copies; a gather by device-side indices runs once per segment,
 * each copying the samples it holds.
 */
import type { Backend, Tensor } from "../backend/backend.ts";
import { DeviceError } from "../errors.ts";

/** One activation stream. */
export interface ActivationStore extends Disposable {
  readonly samples: number;
  readonly seqLen: number;
  readonly hidden: number;
  /** Copy whole samples `indices` into `dst` `[indices.length·seqLen, hidden]`. */
  gather(dst: Tensor, indices: readonly number[]): Promise<void>;
  /** Rows of samples `[start, start+count)` as a backend tensor; dispose it after use. */
  read(start: number, count: number): Promise<Tensor>;
  /** Overwrite samples `[start, start + src.rows/seqLen)` with `src`. */
  write(start: number, src: Tensor): Promise<void>;
}

/** Samples `[first, first + count)` of a device store, in one tensor. */
interface Segment {
  first: number;
  count: number;
  data: Tensor;
}

/** Bytes one element of the backend's compute dtype takes (what a device store holds). */
export function computeBytes(be: Backend): number {
  return be.computeDType === "f32" ? 4 : 2;
}

/**
 * Whole samples per tensor of `bytesPerSample` that fit the backend's largest tensor (all of them
 * when it has no such limit). Throws a DeviceError when not even one fits.
 */
export function samplesPerTensor(be: Backend, bytesPerSample: number, samples: number, what: string): number {
  if (be.maxTensorBytes === undefined) return samples;
  const per = Math.floor(be.maxTensorBytes / bytesPerSample);
  if (per < 1) {
    throw new DeviceError(
      `one sample of ${what} needs ${bytesPerSample} bytes, over the device's largest buffer (${be.maxTensorBytes} bytes${
        be.name === "webgpu" ? ", its maxBufferSize" : ""
      })`,
      "try a smaller --seqlen",
    );
  }
  return Math.min(per, samples);
}

/** Activations kept in the backend's memory, in one or more segments of whole samples. */
export class DeviceActivations implements ActivationStore {
  readonly segments: readonly Segment[];
  constructor(
    private readonly be: Backend,
    readonly samples: number,
    readonly seqLen: number,
    readonly hidden: number,
  ) {
    const per = samplesPerTensor(be, seqLen * hidden * computeBytes(be), samples, "calibration activations");
    const segs: Segment[] = [];
    try {
      for (let first = 0; first < samples; first += per) {
        const count = Math.min(per, samples - first);
        segs.push({ first, count, data: be.full([count * seqLen, hidden], 0, be.computeDType) });
      }
    } catch (e) {
      for (const s of segs) s.data[Symbol.dispose]();
      throw e;
    }
    this.segments = segs;
  }

  /** The segment holding sample `s`. */
  private segmentOf(s: number): Segment {
    return this.segments[Math.min(this.segments.length - 1, Math.floor(s / this.segments[0].count))];
  }

  /** Parts of samples `[start, start+count)`: [segment, first sample inside it, samples]. */
  private parts(start: number, count: number): [Segment, number, number][] {
    const out: [Segment, number, number][] = [];
    for (let s = start; s < start + count;) {
      const seg = this.segmentOf(s);
      const n = Math.min(seg.first + seg.count, start + count) - s;
      out.push([seg, s - seg.first, n]);
      s += n;
    }
    return out;
  }

  gather(dst: Tensor, indices: readonly number[]): Promise<void> {
    if (this.segments.length === 1) this.be.gatherSamples(dst, this.segments[0].data, indices, this.seqLen);
    else {
      for (const seg of this.segments) {
        if (indices.some((i) => i >= seg.first && i < seg.first + seg.count)) {
          this.be.gatherSamples(dst, seg.data, indices, this.seqLen, seg.first);
        }
      }
    }
    return Promise.resolve();
  }

  /**
   * Gather by an i32 index tensor read on the device (a captured iteration): one gather per
   * segment, each copying the samples it holds.
   */
  gatherByTensor(dst: Tensor, indices: Tensor): void {
    if (this.segments.length === 1) {
      this.be.gatherSamples(dst, this.segments[0].data, indices, this.seqLen);
      return;
    }
    for (const seg of this.segments) this.be.gatherSamples(dst, seg.data, indices, this.seqLen, seg.first);
  }

  read(start: number, count: number): Promise<Tensor> {
    const parts = this.parts(start, count);
    const T = this.seqLen;
    if (parts.length === 1) {
      const [seg, at, n] = parts[0];
      return Promise.resolve(this.be.rows(seg.data, at * T, n * T));
    }
    const out = this.be.full([count * T, this.hidden], 0, this.be.computeDType);
    let row = 0;
    for (const [seg, at, n] of parts) {
      using src = this.be.rows(seg.data, at * T, n * T);
      using dst = this.be.rows(out, row, n * T);
      this.be.copy(dst, src);
      row += n * T;
    }
    return Promise.resolve(out);
  }

  write(start: number, src: Tensor): Promise<void> {
    const T = this.seqLen;
    let row = 0;
    for (const [seg, at, n] of this.parts(start, src.shape[0] / T)) {
      using dst = this.be.rows(seg.data, at * T, n * T);
      using from = this.be.rows(src, row, n * T);
      this.be.copy(dst, from);
      row += n * T;
    }
    return Promise.resolve();
  }

  [Symbol.dispose](): void {
    for (const s of this.segments) s.data[Symbol.dispose]();
  }
}

/**
 * Activations kept in host memory, uploaded batch by batch. Where the backend moves raw bytes
 * (Backend.readBytes/writeBytes: CUDA), they are kept in the compute dtype as stored on the device
 * (bf16: 2 bytes a value, half the host memory of f32) and each sample goes straight into its rows
 * of the batch: no conversion and no staging copy on the host. Otherwise as f32 values.
 */
export class HostActivations implements ActivationStore {
  private readonly data: Float32Array | Uint8Array;
  /** Bytes per value when raw; 0 for f32 values. */
  private readonly raw: number;
  constructor(
    private readonly be: Backend,
    readonly samples: number,
    readonly seqLen: number,
    readonly hidden: number,
  ) {
    this.raw = be.readBytes && be.writeBytes && be.uploadBytes ? computeBytes(be) : 0;
    const n = samples * seqLen * hidden;
    this.data = this.raw ? new Uint8Array(n * this.raw) : new Float32Array(n);
  }
  private get per(): number {
    return this.seqLen * this.hidden;
  }
  gather(dst: Tensor, indices: readonly number[]): Promise<void> {
    const per = this.per, T = this.seqLen;
    if (this.raw && dst.dtype === this.be.computeDType) {
      const bytes = this.data as Uint8Array, w = per * this.raw;
      indices.forEach((s, i) => {
        using rows = this.be.rows(dst, i * T, T);
        this.be.writeBytes!(rows, bytes.subarray(s * w, (s + 1) * w));
      });
      return Promise.resolve();
    }
    using t = this.read1(indices);
    this.be.copy(dst, t);
    return Promise.resolve();
  }
  /** The samples `indices` as one tensor of the compute dtype. */
  private read1(indices: readonly number[]): Tensor {
    const per = this.per, shape = [indices.length * this.seqLen, this.hidden];
    if (this.raw) {
      const w = per * this.raw, bytes = this.data as Uint8Array;
      const buf = new Uint8Array(indices.length * w);
      indices.forEach((s, i) => buf.set(bytes.subarray(s * w, (s + 1) * w), i * w));
      return this.be.uploadBytes!(buf, this.be.computeDType, shape);
    }
    const f = this.data as Float32Array;
    const buf = new Float32Array(indices.length * per);
    indices.forEach((s, i) => buf.set(f.subarray(s * per, (s + 1) * per), i * per));
    return this.be.upload(buf, shape, this.be.computeDType);
  }
  read(start: number, count: number): Promise<Tensor> {
    const per = this.per, shape = [count * this.seqLen, this.hidden];
    if (this.raw) {
      const w = per * this.raw;
      const bytes = (this.data as Uint8Array).subarray(start * w, (start + count) * w);
      return Promise.resolve(this.be.uploadBytes!(bytes, this.be.computeDType, shape));
    }
    const f = (this.data as Float32Array).subarray(start * per, (start + count) * per);
    return Promise.resolve(this.be.upload(f, shape, this.be.computeDType));
  }
  async write(start: number, src: Tensor): Promise<void> {
    if (!this.raw) {
      (this.data as Float32Array).set(await this.be.read(src), start * this.per);
      return;
    }
    let bytes: Uint8Array;
    if (src.dtype === this.be.computeDType) bytes = await this.be.readBytes!(src);
    else {
      using t = this.be.full(src.shape, 0, this.be.computeDType);
      this.be.copy(t, src);
      bytes = await this.be.readBytes!(t);
    }
    (this.data as Uint8Array).set(bytes, start * this.per * this.raw);
  }
  [Symbol.dispose](): void {}
}

/** A store of the given kind. */
export function activationStore(
  be: Backend,
  where: "device" | "host",
  samples: number,
  seqLen: number,
  hidden: number,
): ActivationStore {
  return where === "device"
    ? new DeviceActivations(be, samples, seqLen, hidden)
    : new HostActivations(be, samples, seqLen, hidden);
}

/**
 * Samples one forward/backward pass of a block may take at once so that its widest activation
 * (`[samples·seqLen, max(hidden, intermediate, q width)]`, counted as f32 like the gradients that
 * may be kept in it) fits the backend's largest tensor: at most `batch`.
 */
export function samplesPerPass(
  be: Backend,
  spec: { hidden: number; intermediate: number; nHeads: number; headDim: number },
  seqLen: number,
  batch: number,
): number {
  const width = Math.max(spec.hidden, spec.intermediate, spec.nHeads * spec.headDim);
  return samplesPerTensor(be, seqLen * width * 4, batch, "a block's activations");
}
