/**
 * A pool of worker threads that run named range tasks over shared memory, for host work that splits
 * into independent pieces (rows of a matrix, heads of attention, groups of a quantizer, GGUF blocks).
 *
 * A task is a plain function `(args, start, end)` that handles units `[start, end)` of some count; it is
 * defined once at the top level of a module with `defineTask(import.meta.url, name, fn)`, so the main
 * thread and every worker (which imports that module on first use) hold the same function. `run` cuts
 * `[0, count)` into a few contiguous ranges per thread (`map` takes explicit ranges), wakes the
 * workers, and the calling thread and the workers take ranges from a shared counter until none is
 * left, so a thread slowed by other load takes fewer; the call blocks (Atomics.wait) until all are
 * done: callers stay synchronous. Arguments are structured-cloned, so every typed array in them must
 * live on a SharedArrayBuffer (checked; the workers then write results in place); numbers, strings
 * and plain objects are copied.
 *
 * A task must give the same result however the count is cut (each unit's arithmetic independent of
 * the others), so `threads: 1` and `threads: N` agree bit for bit. `WorkerPool.serial()` has no
 * workers and runs every task inline: the single-threaded reference uses the very same code.
 *
 * The workers run this module: `new Worker(import.meta.url)` is this file when running from source
 * (`deno run main.ts`, `deno test`, `deno compile`) and the bundle itself in `dist/autoround.js`, where
 * every module, tasks included, is already inside; `inPoolWorker()` tells a module's top-level code
 * that it is being evaluated in a worker (main.ts uses it not to start the CLI there).
 *
 * @example
 * ```ts
 * // scale.ts
 * export const scaleTask = defineTask(import.meta.url, "scale", (a: { x: Float32Array; k: number }, s, e) => {
 *   for (let i = s; i < e; i++) a.x[i] *= a.k;
 * });
 * // caller
 * using pool = await WorkerPool.start(4);
 * const x = new Float32Array(new SharedArrayBuffer(4 * 1_000_000));
 * pool.run(scaleTask, x.length, { x, k: 2 }, 65536); // ranges of at least 65536 elements
 * ```
 */

/** Handles units `[start, end)`; must not depend on how the whole count was cut. */
export type RangeFn<A> = (args: A, start: number, end: number) => void;

/** A task defined with defineTask. */
export interface Task<A> {
  readonly id: string;
  readonly moduleUrl: string;
  readonly fn: RangeFn<A>;
}

/** A task failed in a worker (its message), or the pool could not start. */
export class PoolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PoolError";
  }
}

// deno-lint-ignore no-explicit-any
const registry = new Map<string, RangeFn<any>>();

/** Register `fn` under `name` for the module at `moduleUrl` (pass `import.meta.url`). */
export function defineTask<A>(moduleUrl: string, name: string, fn: RangeFn<A>): Task<A> {
  const id = `${moduleUrl}#${name}`;
  if (registry.has(id) && registry.get(id) !== fn) throw new PoolError(`task ${id} defined twice`);
  registry.set(id, fn);
  return { id, moduleUrl, fn };
}

/** Whether this code runs inside a pool worker (or any Web Worker). */
export function inPoolWorker(): boolean {
  return typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined";
}

/** Cut `[0, count)` into at most `parts` contiguous ranges of at least `grain` units (none when count is 0). */
export function splitRange(count: number, parts: number, grain = 1): [number, number][] {
  const n = Math.max(1, Math.min(parts, Math.floor(count / Math.max(1, grain))));
  const out: [number, number][] = [];
  for (let i = 0; i < n && count > 0; i++) {
    out.push([Math.floor((count * i) / n), Math.floor((count * (i + 1)) / n)]);
  }
  return out;
}

type Message =
  | { kind: "ping" }
  | { kind: "load"; url: string }
  | { kind: "run"; ctl: SharedArrayBuffer; id: string; ranges: [number, number][]; args: unknown };

/**
 * Control block: workers still running, the first error's text length (−1 while it is written, or
 * when the calling thread failed), the index of the next range to take; then the error's text.
 */
const PENDING = 0, ERR_LEN = 1, NEXT = 2, CTL_INTS = 3, ERR_BYTES = 4096;

/** Ranges per thread `run` cuts the work into, so that threads that finish early take more. */
const CHUNKS_PER_THREAD = 4;

/** Take and run ranges until none is left or some thread has failed. */
function runRanges<A>(ctl: Int32Array, fn: RangeFn<A>, args: A, ranges: [number, number][]): void {
  for (;;) {
    if (Atomics.load(ctl, ERR_LEN) !== 0) return;
    const i = Atomics.add(ctl, NEXT, 1);
    if (i >= ranges.length) return;
    fn(args, ranges[i][0], ranges[i][1]);
  }
}

/** Threads that run tasks: the calling thread plus `threads − 1` workers. */
export class WorkerPool implements Disposable {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(4 * CTL_INTS + ERR_BYTES));
  private readonly loaded: Set<string>[];
  private busy = false;

  private constructor(private readonly workers: Worker[]) {
    this.loaded = workers.map(() => new Set<string>());
  }

  /** Threads a task is split over (1 for the serial pool). */
  get threads(): number {
    return this.workers.length + 1;
  }

  /** A pool without workers: every task runs inline on the calling thread. */
  static serial(): WorkerPool {
    return new WorkerPool([]);
  }

  /**
   * Start `threads − 1` workers and wait until each answers. Throws PoolError when a worker cannot
   * start (e.g. this module cannot be loaded as a worker); callers may fall back to `serial()`.
   */
  static async start(threads: number): Promise<WorkerPool> {
    const workers: Worker[] = [];
    try {
      for (let i = 1; i < threads; i++) {
        workers.push(new Worker(import.meta.url, { type: "module", name: `autoround-pool-${i}` }));
      }
      await Promise.all(workers.map((w) => handshake(w)));
    } catch (e) {
      for (const w of workers) w.terminate();
      throw new PoolError(`cannot start ${threads - 1} worker threads: ${(e as Error).message ?? e}`);
    }
    return new WorkerPool(workers);
  }

  /**
   * Run `task` over `[0, count)`, cut into up to CHUNKS_PER_THREAD ranges per thread of at least
   * `grain` units each, handed out as threads become free.
   */
  run<A>(task: Task<A>, count: number, args: A, grain = 1): void {
    this.map(task, splitRange(count, this.threads * CHUNKS_PER_THREAD, grain), args);
  }

  /**
   * Run `task` on each of `ranges` and return when all are done. The calling thread and the workers
   * take the next undone range until none is left, so a thread slowed by other load on the machine
   * takes fewer. The first error stops further ranges and is thrown once all threads have stopped:
   * the calling thread's own error as it is, a worker's as a PoolError with its message.
   */
  map<A>(task: Task<A>, ranges: readonly (readonly [number, number])[], args: A): void {
    if (ranges.length <= 1 || this.threads === 1 || this.busy) {
      // One range, no workers, or a task that itself calls the pool: run inline.
      for (const [s, e] of ranges) task.fn(args, s, e);
      return;
    }
    checkShared(args, task.id);
    this.busy = true;
    const ctl = this.ctl, helpers = Math.min(this.workers.length, ranges.length - 1);
    Atomics.store(ctl, PENDING, 0);
    Atomics.store(ctl, ERR_LEN, 0);
    Atomics.store(ctl, NEXT, 0);
    const list = ranges.map(([s, e]) => [s, e] as [number, number]);
    let own: unknown;
    try {
      for (let i = 0; i < helpers; i++) {
        if (!this.loaded[i].has(task.moduleUrl)) {
          this.workers[i].postMessage({ kind: "load", url: task.moduleUrl } satisfies Message);
          this.loaded[i].add(task.moduleUrl);
        }
        const msg: Message = {
          kind: "run",
          ctl: ctl.buffer as SharedArrayBuffer,
          id: task.id,
          ranges: list,
          args,
        };
        // Counted before it is sent (the worker may finish first), uncounted if it cannot be sent.
        Atomics.add(ctl, PENDING, 1);
        try {
          this.workers[i].postMessage(msg);
        } catch (e) {
          Atomics.sub(ctl, PENDING, 1);
          throw e;
        }
      }
      runRanges(ctl, task.fn, args, list);
    } catch (e) {
      own = e;
      Atomics.compareExchange(ctl, ERR_LEN, 0, -1); // stop the others taking ranges
    } finally {
      for (let p = Atomics.load(ctl, PENDING); p !== 0; p = Atomics.load(ctl, PENDING)) {
        Atomics.wait(ctl, PENDING, p);
      }
      this.busy = false;
    }
    if (own !== undefined) throw own;
    const errLen = Atomics.load(ctl, ERR_LEN);
    if (errLen > 0) {
      const bytes = new Uint8Array(ctl.buffer, 4 * CTL_INTS, errLen).slice();
      throw new PoolError(new TextDecoder().decode(bytes));
    }
  }

  [Symbol.dispose](): void {
    for (const w of this.workers) w.terminate();
    this.workers.length = 0;
  }
}

/** Resolve when the worker has loaded and answered a ping; reject on its load error. */
function handshake(w: Worker): Promise<void> {
  return new Promise((resolve, reject) => {
    w.onmessage = (e) => e.data === "ready" ? resolve() : reject(new Error(String(e.data)));
    w.onerror = (e) => {
      e.preventDefault();
      reject(new Error(e.message));
    };
    w.postMessage({ kind: "ping" } satisfies Message);
  });
}

/** Every typed array in args (top level or one array deep) must be on shared memory. */
function checkShared(args: unknown, id: string): void {
  if (typeof args !== "object" || args === null) return;
  for (const [key, v] of Object.entries(args)) {
    for (const x of Array.isArray(v) ? v : [v]) {
      if (ArrayBuffer.isView(x) && !(x.buffer instanceof SharedArrayBuffer)) {
        throw new PoolError(`task ${id}: argument ${key} is not on a SharedArrayBuffer`);
      }
    }
  }
}

// ---- worker side ----------------------------------------------------------------------------

/** Messages are handled strictly in order, a module load finishing before the next task starts. */
function serveTasks(): void {
  const scope = globalThis as unknown as {
    onmessage: ((e: MessageEvent<Message>) => void) | null;
    postMessage(m: unknown): void;
  };
  const loadErrors = new Map<string, string>();
  let queue = Promise.resolve();
  scope.onmessage = (e) => {
    queue = queue.then(() => handle(e.data));
  };
  async function handle(m: Message): Promise<void> {
    if (m.kind === "ping") return scope.postMessage("ready");
    if (m.kind === "load") {
      try {
        await import(m.url);
      } catch (e) {
        loadErrors.set(m.url, `cannot load ${m.url} in a worker: ${(e as Error).message ?? e}`);
      }
      return;
    }
    const ctl = new Int32Array(m.ctl);
    try {
      const fn = registry.get(m.id);
      if (!fn) {
        throw new PoolError(
          loadErrors.get(m.id.split("#")[0]) ?? `task ${m.id} is not defined in the worker`,
        );
      }
      runRanges(ctl, fn, m.args, m.ranges);
    } catch (e) {
      reportError(ctl, `${(e as Error).message ?? e}` || "error");
    } finally {
      Atomics.sub(ctl, PENDING, 1);
      Atomics.notify(ctl, PENDING);
    }
  }
}

function reportError(ctl: Int32Array, message: string): void {
  const bytes = new TextEncoder().encode(message).subarray(0, ERR_BYTES);
  // The first error wins; later ones are dropped.
  if (Atomics.compareExchange(ctl, ERR_LEN, 0, -1) !== 0) return;
  new Uint8Array(ctl.buffer, 4 * CTL_INTS, bytes.length).set(bytes);
  Atomics.store(ctl, ERR_LEN, bytes.length);
}

if (inPoolWorker()) serveTasks();
