/**
 * The device side of the WebGPU backend: adapter and device, command batching, per-dispatch
 * uniforms, readback, and error capture.
 *
 * Ops record dispatches into one open compute pass; the batch is submitted when it reaches
 * `BATCH_DISPATCHES`, before an upload, or when the host waits (`read`, `sync`). Each dispatch's
 * parameters go into a host-side arena that is written to one uniform buffer just before its batch
 * is submitted (queue writes are ordered after earlier submits, so the buffer is safely reused).
 *
 * Errors: WebGPU reports them asynchronously. Every batch, upload and buffer creation runs inside
 * error scopes (validation, out-of-memory) that remember which Backend ops it held, so the first
 * error is thrown at the next `read` or `sync` as one DeviceError naming the operation, the sizes
 * and the device limits — never the bare "validation error occurred" of a failed readback.
 */
import { tmpdir } from "node:os";
import { BackendError, DeviceError } from "../../errors.ts";
import { BufferPool, CaptureBuffers } from "./buffer_pool.ts";
import { type Kernel, KernelCache, type KernelSpec } from "./kernels.ts";

/** Dispatches recorded before a batch is submitted to keep the GPU fed without a long queue. */
const BATCH_DISPATCHES = 64;
/** Bytes reserved per dispatch in the uniform arena (the largest Params struct is far smaller). */
const PARAM_BYTES = 128;
const ARENA_SLOTS = 256;

/** A storage binding: a byte range of a buffer. */
export interface BufferWindow {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

/** Options of `GpuRuntime.open`. */
export interface RuntimeOptions {
  /** Ask for `shader-f16` when the adapter has it (default true). */
  f16?: boolean;
  /** Lower `maxStorageBufferBindingSize` artificially (tests of tensor splitting). */
  maxBindingBytes?: number;
  /** Lower `maxBufferSize` artificially (tests of the splitting a small device forces). */
  maxBufferBytes?: number;
  /** Adapter request options (power preference). */
  powerPreference?: GPUPowerPreference;
  /** Idle bytes the buffer pool keeps for reuse (default 2 GiB). */
  poolBytes?: number;
  /** Ask for `timestamp-query` when the adapter has it, for `gpuTimes` (default false). */
  timestamps?: boolean;
}

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
  private error?: DeviceError;
  private recording?: Recorded[];
  /** The Backend op being recorded (set by the backend), for error messages. */
  op = "";
  /** Op and kernel of every dispatch in the open batch, for error messages. */
  private batchOps: string[] = [];
  private batchScoped = false;
  /** Error scopes popped but not yet resolved. */
  private pending: Promise<void>[] = [];

  private constructor(
    readonly device: GPUDevice,
    readonly nativeF16: boolean,
    info: GPUAdapterInfo,
    opts: RuntimeOptions,
  ) {
    const l = device.limits;
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
      this.fail((e as GPUUncapturedErrorEvent).error, "WebGPU work outside any tracked operation");
    });
    device.lost.then((i) => {
      if (i.reason !== "destroyed") this.fail(undefined, `the GPU device was lost (${i.message})`);
    });
  }

  /** The device limits an error message quotes. */
  limitsText(): string {
    return `device limits: maxBufferSize ${bytesText(this.maxBufferSize)}, maxStorageBufferBindingSize ${
      bytesText(this.maxBinding)
    }; this program's GPU buffers: ${bytesText(this.pool.deviceBytes)}`;
  }

  /** Keep the first error (as a DeviceError naming `where`). */
  private fail(e: GPUError | undefined, where: string): void {
    if (this.error) return;
    const oom = e instanceof GPUOutOfMemoryError;
    const what = e === undefined ? "" : oom ? "out of GPU memory" : "WebGPU validation error";
    const msg = e?.message.split("\n").map((l) => l.trim()).filter((l) => l).join(" ") ?? "";
    this.error = new DeviceError(
      `${what ? `${what} in ${where}` : where}${msg ? `: ${msg}` : ""} (${this.limitsText()})`,
    );
  }

  /** Run `fn` (a buffer creation or upload) inside validation and out-of-memory error scopes. */
  guarded<T>(what: string, fn: () => T): T {
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    try {
      return fn();
    } finally {
      this.popScopes(`${what}${this.op ? ` (${this.op})` : ""}`);
    }
  }

  private popScopes(where: string | (() => string)): void {
    const v = this.device.popErrorScope(), o = this.device.popErrorScope();
    const name = () => (typeof where === "string" ? where : where());
    this.pending.push(
      Promise.all([v, o]).then(([ve, oe]) => {
        const e = oe ?? ve;
        if (e) this.fail(e, name());
      }, (err) => this.fail(undefined, `${name()}: ${(err as Error).message}`)),
    );
  }

  /** Wait for the error scopes popped so far; throw the first error seen. */
  private async settle(): Promise<void> {
    while (this.pending.length > 0) {
      const p = this.pending;
      this.pending = [];
      await Promise.all(p);
    }
    this.check();
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
    if (!navigator.gpu) {
      throw new BackendError("WebGPU is not available in this Deno (run with --unstable-webgpu)");
    }
    ensureRuntimeDir();
    const adapter = await navigator.gpu.requestAdapter({
      powerPreference: opts.powerPreference ?? "high-performance",
    });
    if (!adapter) {
      throw new BackendError(
        "no WebGPU adapter found (no Vulkan/Metal/DX12 driver; on Linux install mesa-vulkan-drivers or the GPU's Vulkan driver)",
      );
    }
    const f16 = (opts.f16 ?? true) && adapter.features.has("shader-f16");
    const al = adapter.limits;
    const requiredLimits: Record<string, number> = {
      maxStorageBufferBindingSize: al.maxStorageBufferBindingSize,
      maxBufferSize: al.maxBufferSize,
      maxComputeWorkgroupStorageSize: al.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: al.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: al.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: Math.min(al.maxStorageBuffersPerShaderStage, 16),
      // Finer binding offsets waste less when views and chunks are bound.
      minStorageBufferOffsetAlignment: al.minStorageBufferOffsetAlignment,
      minUniformBufferOffsetAlignment: al.minUniformBufferOffsetAlignment,
    };
    const features: GPUFeatureName[] = f16 ? ["shader-f16"] : [];
    if (opts.timestamps && adapter.features.has("timestamp-query")) features.push("timestamp-query");
    const device = await adapter.requestDevice({
      requiredFeatures: features,
      requiredLimits,
    });
    return new GpuRuntime(device, f16, adapter.info, opts);
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
    this.batchOps.push(`${this.op || "?"}:${k.pipeline.label}[${bindings.map((w) => w.size).join(",")}]`);
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
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
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

  /**
   * GPU time of the dispatches `work` makes, by timestamp queries: `work` (a function, captured here,
   * or an existing capture) is replayed `reps` times, each replay in its own compute pass between two
   * timestamps, all in one submission after the work queued so far. Returns milliseconds per replay (needs `timestamps`).
   *
   * @example
   * ```ts
   * const ms = await rt.gpuTimes(() => runMatmul(rt, a, b, c, {}), 5);
   * ```
   */
  async gpuTimes(work: (() => void) | Captured, reps: number): Promise<number[]> {
    const own = typeof work === "function" ? this.capture(work) : undefined;
    try {
      return await this.timePasses(own ?? work as Captured, Array(reps).fill(undefined));
    } finally {
      own?.[Symbol.dispose]();
    }
  }

  /**
   * GPU milliseconds of each dispatch of a capture, each in its own timestamped pass (one replay):
   * where the time of a captured iteration goes, by the `labels` of the capture.
   */
  profile(cap: Captured): Promise<number[]> {
    return this.timePasses(cap, cap.labels.map((_, i) => i));
  }

  /** One timestamped compute pass per entry of `passes` (undefined: all of `cap`, else dispatch i). */
  private async timePasses(cap: Captured, passes: (number | undefined)[]): Promise<number[]> {
    if (!this.timestamps) throw new BackendError("timing needs a device with timestamp-query");
    if (passes.length > 2048) {
      // A query set holds at most 4096 timestamps.
      const head = await this.timePasses(cap, passes.slice(0, 2048));
      return [...head, ...await this.timePasses(cap, passes.slice(2048))];
    }
    const reps = passes.length;
    this.flush();
    const n = 2 * reps;
    const qs = this.device.createQuerySet({ type: "timestamp", count: n });
    const resolve = this.device.createBuffer({
      size: 8 * n,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const staging = this.device.createBuffer({
      size: 8 * n,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      const enc = this.device.createCommandEncoder();
      for (let r = 0; r < reps; r++) {
        const pass = enc.beginComputePass({
          timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * r, endOfPassWriteIndex: 2 * r + 1 },
        });
        cap.encodeInto(pass, passes[r]);
        pass.end();
      }
      enc.resolveQuerySet(qs, 0, n, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, staging, 0, 8 * n);
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      this.check();
      const t = new BigUint64Array(staging.getMappedRange().slice(0));
      return [...Array(reps).keys()].map((r) => Number(t[2 * r + 1] - t[2 * r]) / 1e6);
    } finally {
      staging.destroy();
      resolve.destroy();
      qs.destroy();
    }
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
      this.popScopes(() => describeBatch(ops));
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
        await this.settle();
        throw new DeviceError(`${what} failed: ${(e as Error).message} (${this.limitsText()})`);
      }
      await this.settle();
      return staging.getMappedRange().slice(offset - start, offset - start + size);
    } finally {
      staging.destroy();
    }
  }

  /** Wait for all queued work; throws the first device error seen. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.settle();
  }

  /** Throw the first recorded device error, if any. */
  check(): void {
    if (this.error) throw this.error;
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

/** Bytes as a short human figure (exact below 1 KiB). */
export function bytesText(b: number): string {
  if (b < 1024) return `${b} B`;
  const [v, u] = b >= 2 ** 30
    ? [b / 2 ** 30, "GiB"]
    : b >= 2 ** 20
    ? [b / 2 ** 20, "MiB"]
    : [b / 1024, "KiB"];
  return `${v.toFixed(2)} ${u} (${b} B)`;
}

/** The ops of a failed batch, in order, repeats counted: "matmul:matmul.main[...]×3, ...". */
function describeBatch(ops: string[]): string {
  if (ops.length === 0) return "a submission";
  const runs: [string, number][] = [];
  for (const o of ops) {
    const last = runs[runs.length - 1];
    if (last && last[0] === o) last[1]++;
    else runs.push([o, 1]);
  }
  const shown = runs.slice(0, 6).map(([o, n]) => (n > 1 ? `${o}×${n}` : o)).join(", ");
  return `a batch of ${ops.length} dispatches (op:kernel[binding bytes]: ${shown}${
    runs.length > 6 ? ", …" : ""
  })`;
}

/** Spread a workgroup count over x and y (each at most 65535). */
export function grid(groups: number): [number, number, number] {
  if (groups <= 65535) return [groups, 1, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y, 1];
}

/**
 * Give the Vulkan loader an `XDG_RUNTIME_DIR` when the environment has none (containers, cron, sudo):
 * without one, Mesa's window-system layer prints "XDG_RUNTIME_DIR is invalid or not set" on stderr at
 * every adapter request, although compute never uses it. A private folder under the temp dir is made
 * (mode 0700, as the XDG spec asks) and set for this process only.
 */
export function ensureRuntimeDir(): void {
  if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")) return;
  try {
    const dir = `${tmpdir()}/autoround-runtime-${Deno.uid() ?? "user"}`;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch {
    // Only a cosmetic message is at stake; the adapter request goes on without it.
  }
}
