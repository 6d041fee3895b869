/**
 * The device side of the WebGPU backend: command batching, per-dispatch uniforms, uploads,
 * readback and captured (replayable) work, over a device opened by adapter.ts.
 *
 * Ops record dispatches into one open compute pass; the batch is submitted when it reaches
 * `BATCH_DISPATCHES`, before an upload, or when the host waits (`read`, `sync`). Each dispatch's
 * parameters go into a host-side arena that is written to one uniform buffer just before its batch
 * is submitted (queue writes are ordered after earlier submits, so the buffer is safely reused).
 *
 * Errors: WebGPU reports them asynchronously. Every batch, upload and buffer creation runs inside
 * error scopes (device_errors.ts) that remember which Backend ops it held, so the first error is
 * thrown at the next `read` or `sync` as one DeviceError naming the operation, the sizes and the
 * device limits. GPU timing for the benchmarks is timing.ts.
 */
import { BackendError, DeviceError } from "../../errors.ts";
import { BufferPool, CaptureBuffers } from "./buffer_pool.ts";
import { requestDevice, type RuntimeOptions } from "./adapter.ts";
import { type BatchEntry, bytesText, describeBatch, DeviceErrors } from "./device_errors.ts";
import { type Kernel, KernelCache, type KernelSpec } from "./kernels.ts";
import { PARAM_BYTES, type Params } from "./params.ts";

/** Dispatches recorded before a batch is submitted to keep the GPU fed without a long queue. */
const BATCH_DISPATCHES = 64;
const ARENA_SLOTS = 256;

/** A storage binding: a byte range of a buffer. */
export interface BufferWindow {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

/** One recorded dispatch of a capture. */
interface Recorded {
  k: Kernel;
  params: Uint8Array<ArrayBuffer>;
  bindings: readonly BufferWindow[];
  groups: [number, number, number];
}

/** Dispatches recorded once by `GpuRuntime.capture`, re-encoded by `replay()`. */
export interface Captured extends Disposable {
  replay(): void;
  /**
   * Encode the recorded dispatches (or only dispatch `only`) into `pass` (no batching: the caller
   * owns the pass).
   */
  encodeInto(pass: GPUComputePassEncoder, only?: number): void;
  /** Pipeline label (`family.entry`) of each recorded dispatch. */
  readonly labels: readonly string[];
}

/** Device, queue, pools and the command batch. */
export class GpuRuntime implements Disposable {
  readonly pool: BufferPool;
  readonly kernels: KernelCache;
  /** Largest byte range one storage binding may cover (after the optional test override). */
  readonly maxBinding: number;
  readonly maxBufferSize: number;
  readonly offsetAlign: number;
  readonly maxWorkgroupStorage: number;
  readonly maxInvocations: number;
  readonly description: string;
  /** Whether the device has `timestamp-query` (asked for with `timestamps: true`). */
  readonly timestamps: boolean;
  private encoder?: GPUCommandEncoder;
  private pass?: GPUComputePassEncoder;
  private queued = 0;
  private readonly arena: Uint8Array<ArrayBuffer>;
  private readonly uniformBuf: GPUBuffer;
  private readonly slot: number;
  private slots = 0;
  private readonly errors: DeviceErrors;
  private recording?: Recorded[];
  /** The Backend op being recorded (set by the backend), for error messages. */
  op = "";
  /** Op and kernel of every dispatch in the open batch, for error messages. */
  private batchOps: BatchEntry[] = [];
  private batchScoped = false;

  private constructor(
    readonly device: GPUDevice,
    readonly nativeF16: boolean,
    info: GPUAdapterInfo,
    opts: RuntimeOptions,
  ) {
    const l = device.limits;
    this.errors = new DeviceErrors(device, () => this.limitsText());
    this.maxBinding = Math.min(l.maxStorageBufferBindingSize, opts.maxBindingBytes ?? Infinity);
    this.maxBufferSize = Math.min(l.maxBufferSize, opts.maxBufferBytes ?? Infinity);
    this.offsetAlign = l.minStorageBufferOffsetAlignment;
    this.maxWorkgroupStorage = l.maxComputeWorkgroupStorageSize;
    this.maxInvocations = l.maxComputeInvocationsPerWorkgroup;
    this.description = [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(
      " ",
    );
    this.slot = Math.max(PARAM_BYTES, l.minUniformBufferOffsetAlignment);
    this.arena = new Uint8Array(this.slot * ARENA_SLOTS);
    this.uniformBuf = device.createBuffer({
      size: this.arena.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.timestamps = device.features.has("timestamp-query");
    this.pool = new BufferPool(
      device,
      opts.poolBytes ?? 2 ** 31,
      Math.floor(this.maxBufferSize / 4) * 4,
      (what, create) => this.guarded(what, create),
    );
    this.kernels = new KernelCache(device, nativeF16);
    device.addEventListener("uncapturederror", (e) => {
      this.errors.fail((e as GPUUncapturedErrorEvent).error, "WebGPU work outside any tracked operation");
    });
    device.lost.then((i) => {
      if (i.reason !== "destroyed") this.errors.fail(undefined, `the GPU device was lost (${i.message})`);
    });
  }

  /** The device limits an error message quotes. */
  limitsText(): string {
    return `device limits: maxBufferSize ${bytesText(this.maxBufferSize)}, maxStorageBufferBindingSize ${
      bytesText(this.maxBinding)
    }; this program's GPU buffers: ${bytesText(this.pool.deviceBytes)}`;
  }

  /** Run `fn` (a buffer creation or upload) inside validation and out-of-memory error scopes. */
  guarded<T>(what: string, fn: () => T): T {
    this.errors.pushScopes();
    try {
      return fn();
    } finally {
      this.errors.popScopes(`${what}${this.op ? ` (${this.op})` : ""}`);
    }
  }

  /**
   * Request an adapter and a device with the adapter's full limits (large bindings, more workgroup
   * memory) and `shader-f16` when present.
   *
   * @example
   * ```ts
   * using rt = await GpuRuntime.open();
   * console.log(rt.description);
   * ```
   */
  static async open(opts: RuntimeOptions = {}): Promise<GpuRuntime> {
    const { device, f16, info } = await requestDevice(opts);
    return new GpuRuntime(device, f16, info, opts);
  }

  /** Compile (or fetch) the pipeline for a kernel spec. */
  kernel(spec: KernelSpec): Kernel {
    return this.kernels.get(spec);
  }

  /**
   * Record one dispatch. `groups` is a workgroup count (spread over x and y when above the
   * 65535-per-dimension limit; kernels recover the linear index with `group_index`) or an
   * explicit [x, y, z].
   */
  dispatch(
    k: Kernel,
    params: Params,
    bindings: readonly BufferWindow[],
    groups: number | [number, number, number],
  ): void {
    if (this.recording) {
      const g: [number, number, number] = typeof groups === "number" ? grid(groups) : groups;
      this.recording.push({ k, params: params.bytes().slice(), bindings, groups: g });
      return;
    }
    if (this.slots === ARENA_SLOTS) this.flush();
    this.openBatch();
    this.batchOps.push({ op: this.op, kernel: k.pipeline.label, bindings });
    const bytes = params.bytes();
    const off = this.slots++ * this.slot;
    this.arena.set(bytes, off);
    const bindGroup = this.device.createBindGroup({
      label: `${this.op}:${k.pipeline.label}`,
      layout: k.layout,
      entries: [
        { binding: 0, resource: { buffer: this.uniformBuf, offset: off, size: bytes.byteLength } },
        ...bindings.map((w, i) => ({
          binding: i + 1,
          resource: { buffer: w.buffer, offset: w.offset, size: w.size },
        })),
      ],
    });
    this.encode(k.pipeline, bindGroup, typeof groups === "number" ? grid(groups) : groups);
  }

  /** Open the error scopes of a new batch (closed by flush). */
  private openBatch(): void {
    if (this.batchScoped) return;
    this.errors.pushScopes();
    this.batchScoped = true;
  }

  private encode(
    pipeline: GPUComputePipeline,
    bindGroup: GPUBindGroup,
    [x, y, z]: [number, number, number],
  ): void {
    if (x === 0 || y === 0 || z === 0) return;
    this.openBatch();
    this.encoder ??= this.device.createCommandEncoder();
    this.pass ??= this.encoder.beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    if (++this.queued >= BATCH_DISPATCHES) this.flush();
  }

  /**
   * Record the dispatches `fn` makes (running nothing) so that `replay()` re-encodes them with their
   * parameters and bind groups built once — the per-op host work of a tuning iteration is paid once.
   * Buffers allocated while recording stay owned by the capture until it is disposed (a replay may
   * still write them); uploads and reads inside `fn` are refused.
   */
  capture(fn: () => void): Captured {
    if (this.recording) throw new BackendError("capture() inside a capture");
    this.flush();
    const list: Recorded[] = [];
    const buffers = new CaptureBuffers();
    this.recording = list;
    this.pool.recording = buffers;
    try {
      fn();
    } catch (e) {
      this.pool.endCapture(buffers);
      throw e;
    } finally {
      this.recording = undefined;
      this.pool.recording = undefined;
      buffers.recording = false;
    }
    const uniforms = this.device.createBuffer({
      size: Math.max(this.slot, list.length * this.slot),
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    const host = new Uint8Array(Math.max(this.slot, list.length * this.slot));
    list.forEach((r, i) => host.set(r.params, i * this.slot));
    this.device.queue.writeBuffer(uniforms, 0, host);
    const cmds = list.map((r, i) => ({
      pipeline: r.k.pipeline,
      groups: r.groups,
      bindGroup: this.device.createBindGroup({
        layout: r.k.layout,
        entries: [
          { binding: 0, resource: { buffer: uniforms, offset: i * this.slot, size: r.params.byteLength } },
          ...r.bindings.map((w, j) => ({
            binding: j + 1,
            resource: { buffer: w.buffer, offset: w.offset, size: w.size },
          })),
        ],
      }),
    }));
    let disposed = false;
    return {
      replay: () => {
        if (disposed) throw new BackendError("replay of a disposed capture");
        for (const c of cmds) this.encode(c.pipeline, c.bindGroup, c.groups);
      },
      labels: list.map((r) => r.k.pipeline.label),
      encodeInto: (pass, only) => {
        if (disposed) throw new BackendError("replay of a disposed capture");
        for (const c of only === undefined ? cmds : [cmds[only]]) {
          if (c.groups.some((g) => g === 0)) continue;
          pass.setPipeline(c.pipeline);
          pass.setBindGroup(0, c.bindGroup);
          pass.dispatchWorkgroups(...c.groups);
        }
      },
      [Symbol.dispose]: () => {
        if (disposed) return;
        disposed = true;
        this.flush();
        uniforms.destroy();
        this.pool.endCapture(buffers);
      },
    };
  }

  /** Submit the recorded batch. */
  flush(): void {
    if (this.slots > 0) {
      this.device.queue.writeBuffer(this.uniformBuf, 0, this.arena, 0, this.slots * this.slot);
    }
    this.pass?.end();
    if (this.encoder) this.device.queue.submit([this.encoder.finish()]);
    this.pass = undefined;
    this.encoder = undefined;
    this.queued = 0;
    this.slots = 0;
    if (this.batchScoped) {
      this.batchScoped = false;
      const ops = this.batchOps;
      this.batchOps = [];
      this.errors.popScopes(() => describeBatch(ops));
    }
    this.pool.collect();
  }

  /** Write host bytes into a buffer after everything recorded so far. */
  write(buffer: GPUBuffer, offset: number, bytes: Uint8Array<ArrayBuffer>): void {
    if (this.recording) throw new BackendError("an upload inside capture(): a replay could not repeat it");
    this.flush();
    const n = bytes.byteLength & ~3;
    this.guarded(`an upload of ${bytesText(bytes.byteLength)}`, () => {
      // Pieces of at most 64 MiB: the queue stages each write in host memory, so one large write
      // would briefly hold a second copy of the whole tensor.
      for (let s = 0; s < n; s += WRITE_PIECE) {
        this.device.queue.writeBuffer(buffer, offset + s, bytes, s, Math.min(WRITE_PIECE, n - s));
      }
      if (n < bytes.byteLength) {
        // writeBuffer needs a multiple of 4 bytes: pad the tail (the buffer is allocated in 256-byte classes).
        const tail = new Uint8Array(4);
        tail.set(bytes.subarray(n));
        this.device.queue.writeBuffer(buffer, offset + n, tail);
      }
    });
  }

  /** Copy a byte range back to the host after all queued work. */
  async read(buffer: GPUBuffer, offset: number, size: number): Promise<ArrayBuffer> {
    if (this.recording) throw new BackendError("a read inside capture()");
    const start = offset & ~3, end = Math.ceil((offset + size) / 4) * 4;
    this.flush();
    const what = `a readback of ${bytesText(size)}${this.op ? ` (${this.op})` : ""}`;
    const staging = this.guarded(what, () =>
      this.device.createBuffer({
        size: Math.max(4, end - start),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      }));
    try {
      this.guarded(what, () => {
        const enc = this.device.createCommandEncoder();
        if (end > start) enc.copyBufferToBuffer(buffer, start, staging, 0, end - start);
        this.device.queue.submit([enc.finish()]);
      });
      try {
        await staging.mapAsync(GPUMapMode.READ);
      } catch (e) {
        // The mapping fails when an earlier error left the staging buffer or the device unusable:
        // report that error, which names its operation, rather than the mapping's own message.
        await this.errors.settle();
        throw new DeviceError(`${what} failed: ${(e as Error).message} (${this.limitsText()})`);
      }
      await this.errors.settle();
      return staging.getMappedRange().slice(offset - start, offset - start + size);
    } finally {
      staging.destroy();
    }
  }

  /** Wait for all queued work; throws the first device error seen. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.errors.settle();
  }

  /** Throw the first recorded device error, if any. */
  check(): void {
    this.errors.check();
  }

  [Symbol.dispose](): void {
    this.flush();
    this.pool[Symbol.dispose]();
    this.uniformBuf.destroy();
    this.device.destroy();
  }
}

/** Bytes written to the queue per writeBuffer call. */
const WRITE_PIECE = 64 << 20;

/** Spread a workgroup count over x and y (each at most 65535). */
export function grid(groups: number): [number, number, number] {
  if (groups <= 65535) return [groups, 1, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y, 1];
}
