/**
 * Launchers of the elementwise, normalization, loss and training kernels (ffi/cuda/elementwise.cu,
 * norm.cu, loss.cu). Each checks shapes like the CPU backend, picks the output dtype the CPU backend
 * picks, and turns on the 16-byte vector path when the sizes and addresses allow it.
 */
import { BackendError } from "../../errors.ts";
import type { OpContext } from "./matmul.ts";
import { rejectPartialRotary, type RopeGeo } from "./attention.ts";
import { aligned16, type CudaTensor, DTYPE_BYTES, DTYPE_CODE } from "./tensor.ts";
import { symSearchGrid } from "../../qmath/int_quant.ts";

const code = (t: CudaTensor) => DTYPE_CODE[t.dtype];
const vecFlag = (...ts: CudaTensor[]) => (aligned16(...ts.map((t) => t.addr)) ? 1 : 0);

function sameSize(what: string, ...ts: CudaTensor[]): void {
  for (const t of ts) {
    if (t.size !== ts[0].size) {
      throw new BackendError(`${what}: sizes differ (${ts.map((x) => x.size).join(" vs ")})`);
    }
  }
}

function isFloat(t: CudaTensor): boolean {
  return t.dtype === "f32" || t.dtype === "bf16" || t.dtype === "f16";
}

/** out = a + b (out may alias a). */
export function add(op: OpContext, a: CudaTensor, b: CudaTensor, out?: CudaTensor): CudaTensor {
  const o = out ?? op.newTensor(a.shape, a.dtype);
  sameSize("add", a, b, o);
  if (o.size === 0) return o;
  op.rt.begin().ptr(o.addr).i32(code(o)).ptr(a.addr).i32(code(a)).ptr(b.addr).i32(code(b)).i64(o.size)
    .i32(vecFlag(o, a, b));
  op.rt.launch(op.rt.fn("ew_add"), [op.rt.gridFor(o.size, 8)], [256]);
  return o;
}

export function addRowVector(op: OpContext, x: CudaTensor, bias: CudaTensor): void {
  if (x.size === 0) return;
  const cols = bias.size;
  if (cols === 0 || x.size % cols !== 0) {
    throw new BackendError(`addRowVector: ${bias.size} does not divide ${x.size}`);
  }
  op.rt.begin().ptr(x.addr).i32(code(x)).ptr(bias.addr).i32(code(bias)).i64(x.size / cols).i64(cols);
  op.rt.launch(op.rt.fn("ew_add_row_vector"), [op.rt.gridFor(x.size)], [256]);
}

/** Rows the one-block-per-row RMSNorm kernels take: n/8 threads, a multiple of 32, ≤ 1024. */
function wholeRowBlocks(n: number): boolean {
  return n % 256 === 0 && n >= 1024 && n <= 8192;
}

function runs(x: CudaTensor, w: CudaTensor): number {
  if (w.size === 0 || x.size % w.size !== 0) {
    throw new BackendError(`rmsNorm: ${w.size} does not divide ${x.size}`);
  }
  return x.size / w.size;
}

export function rmsNorm(op: OpContext, x: CudaTensor, w: CudaTensor, eps: number): CudaTensor {
  const y = op.newTensor(x.shape, x.dtype);
  const rows = runs(x, w), n = w.size;
  if (rows === 0) return y;
  const vec = n % 8 === 0 ? vecFlag(y, x, w) : 0;
  if (vec && wholeRowBlocks(n)) {
    op.rt.begin().ptr(y.addr).i32(code(y)).ptr(x.addr).i32(code(x)).ptr(w.addr).i32(code(w)).i32(n).f32(eps);
    op.rt.launch(op.rt.fn("rms_norm_fwd_row"), [rows], [n / 8]);
    return y;
  }
  op.rt.begin().ptr(y.addr).i32(code(y)).ptr(x.addr).i32(code(x)).ptr(w.addr).i32(code(w)).i64(rows).i32(n)
    .f32(eps).i32(vec);
  op.rt.launch(op.rt.fn("rms_norm_fwd"), [Math.ceil(rows / 8)], [256]);
  return y;
}

export function rmsNormBackward(
  op: OpContext,
  x: CudaTensor,
  w: CudaTensor,
  dy: CudaTensor,
  eps: number,
): CudaTensor {
  sameSize("rmsNormBackward", x, dy);
  const dx = op.newTensor(x.shape, dy.dtype);
  const rows = runs(x, w), n = w.size;
  if (rows === 0) return dx;
  const vec = n % 8 === 0 ? vecFlag(dx, x, w, dy) : 0;
  if (vec && wholeRowBlocks(n)) {
    op.rt.begin().ptr(dx.addr).i32(code(dx)).ptr(x.addr).i32(code(x)).ptr(w.addr).i32(code(w)).ptr(dy.addr)
      .i32(code(dy)).i32(n).f32(eps);
    op.rt.launch(op.rt.fn("rms_norm_bwd_row"), [rows], [n / 8]);
    return dx;
  }
  op.rt.begin().ptr(dx.addr).i32(code(dx)).ptr(x.addr).i32(code(x)).ptr(w.addr).i32(code(w)).ptr(dy.addr)
    .i32(code(dy)).i64(rows).i32(n).f32(eps).i32(vec);
  op.rt.launch(op.rt.fn("rms_norm_bwd"), [Math.ceil(rows / 8)], [256]);
  return dx;
}

export function rope(
  op: OpContext,
  x: CudaTensor,
  cos: CudaTensor,
  sin: CudaTensor,
  geo: RopeGeo,
  inverse: boolean,
): void {
  rejectPartialRotary(geo);
  const rows = geo.batch * geo.seqLen, half = geo.headDim / 2;
  if (x.size !== rows * geo.nHeads * geo.headDim) {
    throw new BackendError(`rope: x has ${x.size} elements, need ${rows}·${geo.nHeads}·${geo.headDim}`);
  }
  const maxPos = (geo.posOffset ?? 0) + geo.seqLen;
  if (cos.size < maxPos * half || sin.size < maxPos * half) {
    throw new BackendError(`rope: tables cover ${cos.size / half} positions, need ${maxPos}`);
  }
  const n = rows * geo.nHeads * half;
  if (n === 0) return;
  const vec = half % 8 === 0 && aligned16(x.addr, cos.addr, sin.addr) ? 1 : 0;
  op.rt.begin().ptr(x.addr).i32(code(x)).ptr(cos.addr).i32(code(cos)).ptr(sin.addr).i32(code(sin)).i64(rows)
    .i32(geo.seqLen).i32(geo.nHeads).i32(geo.headDim).i32(geo.posOffset ?? 0).i32(inverse ? 1 : 0).i32(vec);
  op.rt.launch(op.rt.fn("ew_rope"), [op.rt.gridFor(vec ? n / 8 : n)], [256]);
}

export function siluMul(op: OpContext, g: CudaTensor, u: CudaTensor): CudaTensor {
  const h = op.newTensor(g.shape, g.dtype);
  sameSize("siluMul", g, u);
  if (h.size === 0) return h;
  op.rt.begin().ptr(h.addr).i32(code(h)).ptr(g.addr).i32(code(g)).ptr(u.addr).i32(code(u)).i64(h.size)
    .i32(vecFlag(h, g, u));
  op.rt.launch(op.rt.fn("ew_silu_mul"), [op.rt.gridFor(h.size, 8)], [256]);
  return h;
}

export function siluMulBackward(
  op: OpContext,
  g: CudaTensor,
  u: CudaTensor,
  dh: CudaTensor,
  overwrite = false,
): { dg: CudaTensor; du: CudaTensor } {
  sameSize("siluMulBackward", g, u, dh);
  // In place: each thread loads g, u and dh of its elements before it stores dg and du there.
  const inPlace = overwrite && g.dtype === dh.dtype && u.dtype === dh.dtype;
  const dg = inPlace ? g : op.newTensor(g.shape, dh.dtype),
    du = inPlace ? u : op.newTensor(u.shape, dh.dtype);
  if (g.size === 0) return { dg, du };
  op.rt.begin().ptr(dg.addr).ptr(du.addr).i32(code(dg)).ptr(g.addr).i32(code(g)).ptr(u.addr).i32(code(u))
    .ptr(dh.addr).i32(code(dh)).i64(g.size).i32(vecFlag(dg, du, g, u, dh));
  op.rt.launch(op.rt.fn("ew_silu_mul_bwd"), [op.rt.gridFor(g.size, 8)], [256]);
  return { dg, du };
}

export function embedding(op: OpContext, table: CudaTensor, ids: CudaTensor): CudaTensor {
  if (ids.dtype !== "i32") throw new BackendError(`embedding: ids must be i32, got ${ids.dtype}`);
  const V = table.rows, H = table.cols, n = ids.size;
  const out = op.newTensor([n, H], table.dtype);
  if (n * H === 0) return out;
  const vec = H % 8 === 0 ? vecFlag(out, table) : 0;
  op.rt.begin().ptr(out.addr).i32(code(out)).ptr(table.addr).i32(code(table)).ptr(ids.addr).i64(n).i64(H).i64(
    V,
  )
    .ptr(op.rt.errorWord.addr).i32(vec);
  op.rt.launch(op.rt.fn("ew_embedding"), [op.rt.gridFor(n * H, 8)], [256]);
  op.rt.errorArmed = true;
  return out;
}

export function crossEntropy(op: OpContext, logits: CudaTensor, targets: CudaTensor): CudaTensor {
  if (targets.dtype !== "i32") throw new BackendError(`crossEntropy: targets must be i32`);
  const n = targets.size;
  const out = op.newTensor([n], "f32");
  if (n === 0) return out;
  if (logits.size % n !== 0) throw new BackendError(`crossEntropy: ${n} targets for ${logits.size} logits`);
  op.rt.begin().ptr(out.addr).ptr(logits.addr).i32(code(logits)).ptr(targets.addr).i64(n).i64(
    logits.size / n,
  );
  op.rt.launch(op.rt.fn("cross_entropy"), [n], [256]);
  return out;
}

export function argmaxRows(op: OpContext, x: CudaTensor): CudaTensor {
  const rows = x.rows;
  const out = op.newTensor([rows], "i32");
  if (rows === 0) return out;
  op.rt.begin().ptr(out.addr).ptr(x.addr).i32(code(x)).i64(rows).i64(x.cols);
  op.rt.launch(op.rt.fn("argmax_rows"), [rows], [256]);
  return out;
}

/** Blocks of the MSE reduction: a function of the size only, so the summation order is fixed. */
function mseBlocks(n: number): number {
  return Math.max(1, Math.min(Math.ceil(n / (256 * 8)), 1024));
}

export function mseLoss(
  op: OpContext,
  y: CudaTensor,
  target: CudaTensor,
  mask: CudaTensor | undefined,
  scale: number,
): { loss: CudaTensor; dy: CudaTensor } {
  sameSize("mseLoss", y, target);
  const rows = y.rows, cols = y.cols, n = y.size;
  if (mask && mask.size !== rows) {
    throw new BackendError(`mseLoss: mask has ${mask.size} entries for ${rows} rows`);
  }
  // dy has y's dtype, as autograd gives the gradient of a bf16 activation under autocast: the whole
  // backward then stays in the compute dtype (no casts before the GEMMs; flash attention applies).
  const dy = op.newTensor(y.shape, isFloat(y) ? y.dtype : "f32");
  const loss = op.newTensor([1], "f32");
  const m = mask ? op.castTo(mask, "f32") : undefined;
  const nb = mseBlocks(n);
  using partial = op.newTensor([nb * 2], "f32"); // nb f64 values
  const vec = cols % 8 === 0 ? vecFlag(dy, y, target) : 0;
  op.rt.begin().ptr(dy.addr).i32(code(dy)).ptr(y.addr).i32(code(y)).ptr(target.addr).i32(code(target)).ptr(
    m?.addr ?? 0n,
  )
    .i64(rows).i64(cols).f64((scale * 2) / n).ptr(partial.addr).i32(vec);
  op.rt.launch(op.rt.fn("mse_loss"), [nb], [256]);
  op.rt.begin().ptr(loss.addr).ptr(partial.addr).i32(nb).f64(n);
  op.rt.launch(op.rt.fn("mse_loss_finish"), [1], [256]);
  if (m && m !== mask) m[Symbol.dispose]();
  return { loss, dy };
}

/** p ← clamp(p − lr·sign(g)); an lr tensor (one float element) is read by the kernel on the device. */
export function signSgdStep(
  op: OpContext,
  p: CudaTensor,
  g: CudaTensor,
  lr: number | CudaTensor,
  clamp?: { lo: number; hi: number },
): void {
  sameSize("signSgdStep", p, g);
  const lrT = typeof lr === "number" ? undefined : lr;
  if (lrT && (lrT.size !== 1 || !isFloat(lrT))) {
    throw new BackendError(`signSgdStep: lr tensor must hold one float, got ${lrT.dtype} [${lrT.shape}]`);
  }
  if (p.size === 0) return;
  op.rt.begin().ptr(p.addr).i32(code(p)).ptr(g.addr).i32(code(g)).i64(p.size).f64(lrT ? 0 : lr as number)
    .ptr(lrT?.addr ?? 0n).i32(lrT ? code(lrT) : 0).i32(clamp ? 1 : 0).f64(clamp?.lo ?? 0).f64(clamp?.hi ?? 0)
    .i32(vecFlag(p, g));
  op.rt.launch(op.rt.fn("ew_sign_sgd"), [op.rt.gridFor(p.size, 8)], [256]);
}

/**
 * dst sample i ← src sample idx[i] for an i32 index tensor read on the device (graph-safe: a replay
 * gathers whatever indices the host copied in last). Samples are `per` consecutive elements.
 */
export function gatherSamplesByTensor(
  op: OpContext,
  dst: CudaTensor,
  src: CudaTensor,
  idx: CudaTensor,
  rowsPerSample: number,
  /** Set for one segment of a split store: src holds samples from here; other indices are skipped. */
  firstSample?: number,
): void {
  if (idx.dtype !== "i32") throw new BackendError(`gatherSamples: indices must be i32, got ${idx.dtype}`);
  const per = rowsPerSample * src.cols;
  const count = idx.size;
  if (dst.size < count * per) {
    throw new BackendError(`gatherSamples: destination holds ${dst.size} elements, need ${count}·${per}`);
  }
  if (count > 65535) throw new BackendError(`gatherSamples: ${count} samples in one call (max 65535)`);
  if (count === 0 || per === 0) return;
  const bpe = DTYPE_BYTES[dst.dtype];
  const mode = dst.dtype === src.dtype && (per * bpe) % 16 === 0 && aligned16(dst.addr, src.addr)
    ? 2
    : per % 8 === 0 && isFloat(dst) && isFloat(src) && aligned16(dst.addr, src.addr)
    ? 1
    : 0;
  const work = mode === 2 ? (per * bpe) / 16 : mode === 1 ? per / 8 : per;
  const blocks = Math.max(
    1,
    Math.min(Math.ceil(work / 256), Math.ceil((op.rt.ctx.info.multiprocessors * 16) / count)),
  );
  op.rt.begin().ptr(dst.addr).i32(code(dst)).ptr(src.addr).i32(code(src)).ptr(idx.addr).i64(per)
    .i64(Math.floor(src.size / per)).i32(bpe).ptr(op.rt.errorWord.addr).i32(mode).i64(firstSample ?? 0)
    .i32(firstSample === undefined ? 0 : 1);
  op.rt.launch(op.rt.fn("gather_samples"), [blocks, count], [256]);
  op.rt.errorArmed = true;
}

export function accumulate(op: OpContext, acc: CudaTensor, x: CudaTensor, alpha: number): void {
  sameSize("accumulate", acc, x);
  if (acc.size === 0) return;
  op.rt.begin().ptr(acc.addr).i32(code(acc)).ptr(x.addr).i32(code(x)).i64(acc.size).f64(alpha)
    .i32(vecFlag(acc, x));
  op.rt.launch(op.rt.fn("ew_accumulate"), [op.rt.gridFor(acc.size, 8)], [256]);
}

export function accumulateColumnSquares(op: OpContext, acc: CudaTensor, x: CudaTensor): void {
  if (acc.dtype !== "f32") throw new BackendError(`accumulateColumnSquares: acc must be f32`);
  const cols = acc.size;
  if (cols === 0 || x.size % cols !== 0) {
    throw new BackendError(`accumulateColumnSquares: ${cols} does not divide ${x.size}`);
  }
  op.rt.begin().ptr(acc.addr).ptr(x.addr).i32(code(x)).i64(x.size / cols).i64(cols);
  op.rt.launch(op.rt.fn("col_sq_accum"), [Math.ceil(cols / 32)], [256]);
}

/** Pairs per keep_best_copy launch (KEEP_BEST_MAX_PAIRS in elementwise.cu). */
const KEEP_BEST_MAX_PAIRS = 24;
/** Byte layout of struct KeepBestPairs (elementwise.cu): u64 src[24], u64 dst[24], i64 n[24], int dts[24], int dtd[24], int raw16[24], int count. */
const KB = { src: 0, dst: 192, n: 384, dts: 576, dtd: 672, raw16: 768, count: 864, bytes: 872 } as const;

export function keepBest(
  op: OpContext,
  loss: CudaTensor,
  best: CudaTensor,
  pairs: readonly (readonly [CudaTensor, CudaTensor])[],
): void {
  if (loss.dtype !== "f32" || best.dtype !== "f32") {
    throw new BackendError(`keepBest: loss and best must be f32`);
  }
  const rt = op.rt;
  const struct = new Uint8Array(KB.bytes);
  const dv = new DataView(struct.buffer);
  for (let start = 0; start < pairs.length; start += KEEP_BEST_MAX_PAIRS) {
    const chunk = pairs.slice(start, start + KEEP_BEST_MAX_PAIRS);
    struct.fill(0);
    let maxWork = 1;
    chunk.forEach(([src, dst], i) => {
      if (src.size !== dst.size) throw new BackendError(`keepBest: pair ${start + i} sizes differ`);
      if (!isFloat(src) && src.dtype !== dst.dtype) {
        throw new BackendError(`keepBest: pair ${start + i} mixes integer dtypes`);
      }
      const raw16 = src.dtype === dst.dtype && aligned16(src.addr, dst.addr) && (src.bytes % 16 === 0);
      dv.setBigUint64(KB.src + 8 * i, src.addr, true);
      dv.setBigUint64(KB.dst + 8 * i, dst.addr, true);
      dv.setBigInt64(KB.n + 8 * i, BigInt(src.size), true);
      dv.setInt32(KB.dts + 4 * i, code(src), true);
      dv.setInt32(KB.dtd + 4 * i, code(dst), true);
      dv.setInt32(KB.raw16 + 4 * i, raw16 ? 1 : 0, true);
      maxWork = Math.max(maxWork, raw16 ? src.bytes / 16 : src.size);
    });
    dv.setInt32(KB.count, chunk.length, true);
    if (chunk.length === 0) continue;
    rt.begin().ptr(loss.addr).ptr(best.addr).struct(struct);
    rt.launch(rt.fn("keep_best_copy"), [rt.gridFor(maxWork), chunk.length], [256]);
  }
  rt.begin().ptr(loss.addr).ptr(best.addr);
  rt.launch(rt.fn("keep_best_update"), [1], [1]);
}

export { DTYPE_BYTES };

/** AutoRound's per-group weight_min (≤ 0) / weight_max (≥ 0): one warp per group. */
export function groupMinMax(
  op: OpContext,
  w: CudaTensor,
  groupSize: number,
  wMin: CudaTensor,
  wMax: CudaTensor,
): void {
  const rows = w.shape[0], k = w.size / rows;
  const g = groupSize <= 0 || groupSize > k ? k : groupSize;
  const groups = rows * Math.ceil(k / g);
  if (wMin.size !== groups || wMax.size !== groups || wMin.dtype !== "f32" || wMax.dtype !== "f32") {
    throw new BackendError(`groupMinMax: outputs must be f32 [${groups}]`);
  }
  if (groups === 0) return;
  op.rt.begin().ptr(w.addr).i32(code(w)).i64(rows).i64(k).i64(g).i64(Math.ceil(k / g)).ptr(wMin.addr)
    .ptr(wMax.addr);
  op.rt.launch(op.rt.fn("group_minmax"), [Math.ceil(groups / 8)], [256]);
}

/** Optimized-RTN scale search (int_quant.ts searchScalesSym): one warp per group. */
export function optRtnScales(
  op: OpContext,
  w: CudaTensor,
  imatrix: CudaTensor | undefined,
  groupSize: number,
  bits: number,
  out: CudaTensor,
): void {
  const rows = w.shape[0], k = w.size / rows;
  const g = groupSize <= 0 || groupSize > k ? k : groupSize;
  const groups = rows * Math.ceil(k / g);
  if (out.size !== groups || out.dtype !== "f32") {
    throw new BackendError(`optRtnScales: out must be f32 [${groups}]`);
  }
  if (imatrix && (imatrix.size !== k || imatrix.dtype !== "f32")) {
    throw new BackendError(`optRtnScales: imatrix must be f32 [${k}]`);
  }
  if (groups === 0) return;
  // The candidate grid of auto-round's search_scales (the host reference's numbers).
  const { searchMin, step } = symSearchGrid(bits);
  op.rt.begin().ptr(w.addr).i32(code(w)).ptr(imatrix ? imatrix.addr : 0n).i64(rows).i64(k).i64(g)
    .i64(Math.ceil(k / g)).i32(bits).i32(searchMin).f64(step).f64(1e-5).ptr(out.addr);
  op.rt.launch(op.rt.fn("opt_rtn_search"), [Math.ceil(groups / 8)], [256]);
}
