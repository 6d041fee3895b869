/**
 * The WebGPU backend's error capture. WebGPU reports errors asynchronously: every batch, upload and
 * buffer creation runs inside error scopes (validation, out-of-memory) that remember what they held,
 * and the first error is kept, to be thrown at the next `read` or `sync` as one DeviceError naming
 * the operation, the sizes and the device limits — never the bare "validation error occurred" of a
 * failed readback.
 */
import { DeviceError } from "../../errors.ts";

/** The first device error of a runtime and the error scopes still being resolved. */
export class DeviceErrors {
  private error?: DeviceError;
  /** Error scopes popped but not yet resolved. */
  private pending: Promise<void>[] = [];

  constructor(private readonly device: GPUDevice, private readonly limitsText: () => string) {}

  /** Keep the first error (as a DeviceError naming `where`). */
  fail(e: GPUError | undefined, where: string): void {
    if (this.error) return;
    const oom = e instanceof GPUOutOfMemoryError;
    const what = e === undefined ? "" : oom ? "out of GPU memory" : "WebGPU validation error";
    const msg = e?.message.split("\n").map((l) => l.trim()).filter((l) => l).join(" ") ?? "";
    this.error = new DeviceError(
      `${what ? `${what} in ${where}` : where}${msg ? `: ${msg}` : ""} (${this.limitsText()})`,
    );
  }

  /** Open a validation and an out-of-memory scope around the work that follows. */
  pushScopes(): void {
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
  }

  /** Close the scopes of {@link pushScopes}; an error in them is kept as happening in `where`. */
  popScopes(where: string | (() => string)): void {
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
  async settle(): Promise<void> {
    while (this.pending.length > 0) {
      const p = this.pending;
      this.pending = [];
      await Promise.all(p);
    }
    this.check();
  }

  /** Throw the first recorded device error, if any. */
  check(): void {
    if (this.error) throw this.error;
  }
}

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

/** One dispatch of a batch, kept as it is and formatted only if the batch fails. */
export interface BatchEntry {
  op: string;
  kernel: string;
  bindings: readonly { size: number }[];
}

/** The ops of a failed batch, in order, repeats counted: "matmul:matmul.main[...]×3, ...". */
export function describeBatch(entries: readonly BatchEntry[]): string {
  if (entries.length === 0) return "a submission";
  const ops = entries.map((e) => `${e.op || "?"}:${e.kernel}[${e.bindings.map((w) => w.size).join(",")}]`);
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
