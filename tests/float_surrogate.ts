/**
 * The "frozen straight-through surrogate" of auto-round's float quantizers, in float64, written
 * independently of src/qmath (it only borrows the rounding functions for the frozen offsets): at the
 * base point every STE op (floor, ceil, round, fp8 / fp4 casts) records c = f(x0) − x0 and every
 * clamp / where / sign / argmax records its branch; replays then evaluate x + c and the recorded
 * branches, so the surrogate is smooth and its central differences are the straight-through gradient.
 */
import { castToFp4, roundE4M3 } from "../src/qmath/float_quant.ts";

/** Records offsets and branches on the first evaluation, replays them afterwards. */
export class Frozen {
  private tape: number[] = [];
  private i = 0;
  private recording = true;
  /** Switch to replay (call before each further evaluation). */
  replay(): void {
    this.recording = false;
    this.i = 0;
  }
  private take(f: () => number): number {
    if (this.recording) this.tape.push(f());
    return this.tape[this.i++];
  }
  ste(x: number, f: (y: number) => number): number {
    return x + this.take(() => f(x) - x);
  }
  /** A piecewise-constant value (sign, comparison mask, argmax index), frozen. */
  konst(f: () => number): number {
    return this.take(f);
  }
  clamp(x: number, lo: number, hi: number): number {
    const b = this.take(() => (x < lo ? 0 : x > hi ? 2 : 1));
    return b === 0 ? lo : b === 2 ? hi : x;
  }
}

export interface MxFmt {
  ebits: number;
  mbits: number;
  emax: number;
  maxNorm: number;
}

/** mxfp.py quant_mx / quant_mx_rceil on one group (surrogate). */
export function sMx(F: Frozen, fmt: MxFmt, rceil: boolean, x: number[], v: number[], vec: number): number[] {
  const zero = F.konst(() => (vec === 0 ? 1 : 0));
  let e = zero
    ? (rceil ? 1 : 1 - fmt.emax)
    : rceil
    ? F.ste(Math.log2(vec / fmt.maxNorm), Math.ceil)
    : F.ste(Math.log2(vec), Math.floor) - fmt.emax;
  e = F.clamp(e, -127, 127);
  const scale = 2 ** e, m = 2 ** (fmt.mbits - 2), mn = fmt.maxNorm;
  return x.map((xi, j) => {
    const t = F.clamp(xi / scale + v[j], -mn, mn);
    let pe = 0;
    if (fmt.ebits !== 0) {
      const sg = F.konst(() => Math.sign(t)), isZero = F.konst(() => (t === 0 ? 1 : 0));
      pe = F.ste(Math.log2(sg * t + isZero), Math.floor);
      pe = F.clamp(pe, -(2 ** (fmt.ebits - 1)) + 2, Infinity);
    }
    const s = (t / 2 ** pe) * m;
    const ss = F.konst(() => Math.sign(s)), a = ss * s;
    const mask = F.konst(() => ((a - 0.5) % 2 === 0 ? 1 : 0));
    const r = ss * (F.ste(a + 0.5, Math.floor) - mask);
    return F.clamp((r / m) * 2 ** pe, -mn, mn) * scale;
  });
}

/** nvfp.py ref_nvfp4_quant on one group (surrogate). */
export function sNv(F: Frozen, gs: number, x: number[], v: number[], vec: number): number[] {
  const s = F.clamp((gs * vec) / 6, -448, 448);
  const s8 = F.ste(s, roundE4M3);
  const rec = (y: number) => (F.konst(() => (y === 0 ? 1 : 0)) ? 0 : 1 / y);
  const os = rec(s8 * rec(gs));
  return x.map((xi, j) => {
    const y = F.clamp(xi * os + v[j], -6, 6);
    const sg = F.konst(() => Math.sign(y));
    const q = F.clamp(F.ste(sg * y, (a) => castToFp4(a)), -6, 6) * sg;
    return q * rec(os);
  });
}

/** fp8.py quant_fp8_sym on one group (surrogate). */
export function sFp8(F: Frozen, x: number[], v: number[], vec: number): number[] {
  const scale = F.clamp(vec / 448, 1 / (448 * 512), Infinity);
  return x.map((xi, j) => F.ste(F.clamp(xi / scale + v[j], -448, 448), roundE4M3) * scale);
}

/** max|x| of a group through a frozen first-argmax index and frozen sign (torch.max(dim) + abs). */
export function sAbsMax(F: Frozen, x: number[]): number {
  const j = F.konst(() => {
    let b = 0;
    for (let i = 1; i < x.length; i++) if (Math.abs(x[i]) > Math.abs(x[b])) b = i;
    return b;
  });
  return F.konst(() => Math.sign(x[j])) * x[j];
}

/**
 * Max |analytic − central difference| over the coordinates, relative to max |central difference|
 * (the gradient's ∞-norm). `f` evaluates the scalar loss of the replayed surrogate.
 */
export function fdRelErr(
  analytic: ArrayLike<number>,
  x0: number[],
  f: (x: number[]) => number,
  h: number,
): { rel: number; norm: number } {
  let worst = 0, norm = 0;
  const fd = x0.map((_, i) => {
    const p = x0.slice(), m = x0.slice();
    p[i] += h;
    m[i] -= h;
    return (f(p) - f(m)) / (2 * h);
  });
  for (let i = 0; i < fd.length; i++) {
    worst = Math.max(worst, Math.abs(analytic[i] - fd[i]));
    norm = Math.max(norm, Math.abs(fd[i]));
  }
  return { rel: norm === 0 ? worst : worst / norm, norm };
}
