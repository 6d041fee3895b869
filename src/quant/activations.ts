/**
 * Calibration activations `[nsamples·seqlen, hidden]` of one stream (fp inputs, quantized inputs,
 * targets). They live in the backend's memory, or — when it is short (AutoRound's
 * `low_gpu_mem_usage`) — in host memory, with batches uploaded as the tuning loop needs them.
 */
import type { Backend, Tensor } from "../backend/backend.ts";

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

/** Activations kept in the backend's memory. */
export class DeviceActivations implements ActivationStore {
  readonly data: Tensor;
  constructor(
    private readonly be: Backend,
    readonly samples: number,
    readonly seqLen: number,
    readonly hidden: number,
  ) {
    this.data = be.full([samples * seqLen, hidden], 0, be.computeDType);
  }
  gather(dst: Tensor, indices: readonly number[]): Promise<void> {
    this.be.gatherSamples(dst, this.data, indices, this.seqLen);
    return Promise.resolve();
  }
  read(start: number, count: number): Promise<Tensor> {
    return Promise.resolve(this.be.rows(this.data, start * this.seqLen, count * this.seqLen));
  }
  write(start: number, src: Tensor): Promise<void> {
    using dst = this.be.rows(this.data, start * this.seqLen, src.shape[0]);
    this.be.copy(dst, src);
    return Promise.resolve();
  }
  [Symbol.dispose](): void {
    this.data[Symbol.dispose]();
  }
}

/** Activations kept in host memory (f32), uploaded batch by batch. */
export class HostActivations implements ActivationStore {
  private readonly data: Float32Array;
  constructor(
    private readonly be: Backend,
    readonly samples: number,
    readonly seqLen: number,
    readonly hidden: number,
  ) {
    this.data = new Float32Array(samples * seqLen * hidden);
  }
  private get per(): number {
    return this.seqLen * this.hidden;
  }
  gather(dst: Tensor, indices: readonly number[]): Promise<void> {
    const buf = new Float32Array(indices.length * this.per);
    indices.forEach((s, i) => buf.set(this.data.subarray(s * this.per, (s + 1) * this.per), i * this.per));
    using t = this.be.upload(buf, dst.shape, dst.dtype);
    this.be.copy(dst, t);
    return Promise.resolve();
  }
  read(start: number, count: number): Promise<Tensor> {
    const rows = count * this.seqLen;
    return Promise.resolve(
      this.be.upload(
        this.data.subarray(start * this.per, (start + count) * this.per),
        [rows, this.hidden],
        this.be.computeDType,
      ),
    );
  }
  async write(start: number, src: Tensor): Promise<void> {
    this.data.set(await this.be.read(src), start * this.per);
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
