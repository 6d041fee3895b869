/**
 * Mixture-of-experts row ops on CUDA (src/backend/family_ops.ts; kernels in ffi/cuda/moe.cu), and
 * `readSync`: the router's logits copied back with a blocking stream synchronisation inside the
 * synchronous block forward (never inside a captured graph). The CUDA backend attaches these in its
 * constructor.
 */
import type { Tensor } from "../backend.ts";
import type { FamilyOps } from "../family_ops.ts";
import { BackendError } from "../../errors.ts";
import type { OpContext } from "./matmul.ts";
import { noCapture } from "./memory.ts";
import { type CudaTensor, DTYPE_CODE } from "./tensor.ts";

type MoeOps = Required<Pick<FamilyOps<Tensor>, "gatherRows" | "scatterAddRows" | "rowDots" | "readSync">>;

const code = (t: CudaTensor) => DTYPE_CODE[t.dtype];

function checkRows(what: string, rows: CudaTensor, scale: CudaTensor | undefined, n: number): void {
  if (rows.dtype !== "i32" || rows.size !== n) throw new BackendError(`${what}: rows must be i32 [${n}]`);
  if (scale && (scale.dtype !== "f32" || scale.size !== n)) {
    throw new BackendError(`${what}: scale must be f32 [${n}]`);
  }
}

/** The four ops over a CUDA backend context (`t` checks a tensor belongs to it). */
export function cudaMoeOps(op: OpContext, t: (x: Tensor) => CudaTensor): MoeOps {
  return {
    gatherRows(x, rows, scale) {
      const X = t(x), R = t(rows), S = scale ? t(scale) : undefined;
      const n = R.size, cols = X.size / X.shape[0];
      checkRows("gatherRows", R, S, n);
      const out = op.newTensor([n, cols], X.dtype);
      if (n * cols === 0) return out;
      op.rt.begin().ptr(out.addr).i32(code(out)).ptr(X.addr).i32(code(X)).ptr(R.addr).ptr(S?.addr ?? 0n)
        .i64(n).i64(cols);
      op.rt.launch(op.rt.fn("moe_gather_rows"), [op.rt.gridFor(n * cols)], [256]);
      return out;
    },
    scatterAddRows(out, src, rows, scale, unique) {
      const O = t(out), X = t(src), R = t(rows), S = scale ? t(scale) : undefined;
      const n = R.size, cols = O.size / O.shape[0];
      checkRows("scatterAddRows", R, S, n);
      if (X.size !== n * cols) {
        throw new BackendError(`scatterAddRows: src has ${X.size} elements, not ${n}×${cols}`);
      }
      if (n * cols === 0) return;
      op.rt.begin().ptr(O.addr).i32(code(O)).ptr(X.addr).i32(code(X)).ptr(R.addr).ptr(S?.addr ?? 0n)
        .i64(n).i64(cols).i32(unique ? 1 : 0);
      op.rt.launch(op.rt.fn("moe_scatter_add_rows"), [op.rt.gridFor(unique ? n * cols : cols)], [256]);
    },
    rowDots(a, b) {
      const A = t(a), B = t(b);
      if (A.size !== B.size) throw new BackendError(`rowDots: sizes differ (${A.size} vs ${B.size})`);
      const n = A.shape[0], cols = A.size / Math.max(1, n);
      const out = op.newTensor([n], "f32");
      if (n === 0) return out;
      op.rt.begin().ptr(out.addr).ptr(A.addr).i32(code(A)).ptr(B.addr).i32(code(B)).i64(n).i64(cols);
      op.rt.launch(op.rt.fn("moe_row_dots"), [Math.min(n, 65535)], [256]);
      return out;
    },
    readSync(x) {
      const X = t(x);
      noCapture(op.rt, "readSync");
      const out = new Float32Array(X.size);
      const f = op.castTo(X, "f32");
      try {
        op.rt.stream.copyToHost(out, f.addr);
        op.rt.stream.synchronizeBlocking();
      } finally {
        if (f !== X) f[Symbol.dispose]();
      }
      op.rt.checkDeviceErrors();
      return out;
    },
  };
}
