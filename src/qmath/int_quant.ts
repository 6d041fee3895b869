/**
 * Integer weight quantizers of AutoRound, as plain array math: the reference every backend's
 * fake-quant kernel is tested against, and the code the CPU backend runs.
 *
 * A Linear weight W `[N, K]` is cut into groups of `g` consecutive input features per output row
 * (G = ceil(K / g) groups per row; a short last group behaves like AutoRound's zero padding, which
 * changes neither the clamped min/max nor the quantized values). Spec: ALGORITHM.md § Integer
 * quantizers; source: auto_round/data_type/int.py (`quant_tensor_sym`, `quant_tensor_asym`,
 * `search_scales`).
 */
import { roundHalfEven } from "../tensor/dtype.ts";

/** Float array types the quantizers accept. */
export type FArr = Float32Array | Float64Array;

/** Group layout of one weight. */
export interface GroupLayout {
  n: number;
  k: number;
  /** Group size, already resolved: -1 and g > K both mean g = K. */
  g: number;
}

/** Resolve AutoRound's group_size for a weight with K input features (-1 or K < g → per row). */
export function resolveGroupSize(groupSize: number, k: number): number {
  return groupSize <= 0 || groupSize > k ? k : groupSize;
}

/** Number of groups per row. */
export function groupsPerRow(l: GroupLayout): number {
  return Math.ceil(l.k / l.g);
}

/** Settings shared by the quantizer functions. */
export interface QuantMath {
  bits: number;
  sym: boolean;
  /** Rounds a scale to its storage dtype (identity for f32 compute precision). */
  roundScale: (x: number) => number;
  /**
   * Rounds an intermediate to the compute precision: Math.fround on the f32 backend, so W/scale + V
   * is formed exactly as torch does in float32 (which decides the integer code at near-ties); the
   * identity on the f64 reference used for gradient checks.
   */
  roundCompute?: (x: number) => number;
  /** Smallest scale magnitude: 1e-5 for 16-bit scales, 1e-8 for f32 (AutoRound `q_scale_thresh`). */
  scaleThresh: number;
  /**
   * SignRoundV2 (`--enable_alg_ext`): α and β are clamped into [0, maxScaleBound] (2 instead of 1,
   * sign_roundv2/quantizer.py:102), and an initScale is tuned: scale = fp16(initScale·β), thresholded,
   * and the codes divide by that rounded scale (quant_tensor_sym with init_scale, int.py:200-214).
   */
  tunedInitScale?: { maxScaleBound: number };
}

/** Tunable state, one entry per group (v per element). Absent arrays mean V = 0, α = β = 1. */
export interface QuantTunables {
  v?: FArr;
  minScale?: FArr;
  maxScale?: FArr;
  /** Per-group weight min (≤ 0) and max (≥ 0) of the unquantized weight. */
  wMin: FArr;
  wMax: FArr;
  /**
   * Searched scale per group (opt-RTN). auto-round's `quant_tensor_opt_rtn_sym` rounds W with this
   * float32 scale and the export stores it as fp16; the codes follow the former, Ŵ the latter, so
   * the exported model is what we compute in memory.
   */
  initScale?: FArr;
}

/** Per-group min (clamped ≤ 0) and max (clamped ≥ 0), as AutoRound's WrapperLinear takes them. */
export function groupMinMax(w: FArr, l: GroupLayout): { wMin: Float64Array; wMax: Float64Array } {
  const G = groupsPerRow(l);
  const wMin = new Float64Array(l.n * G), wMax = new Float64Array(l.n * G);
  for (let r = 0; r < l.n; r++) {
    for (let gi = 0; gi < G; gi++) {
      let lo = 0, hi = 0;
      const end = Math.min((gi + 1) * l.g, l.k);
      for (let c = gi * l.g; c < end; c++) {
        const x = w[r * l.k + c];
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
      wMin[r * G + gi] = lo;
      wMax[r * G + gi] = hi;
    }
  }
  return { wMin, wMax };
}

/** The scale (and zero point) of one group plus what the backward pass needs to know. */
export interface GroupScale {
  /** The stored scale (rounded to the scale dtype): Ŵ = scale·(q − zp). */
  scale: number;
  /** The scale W is divided by to form the codes (differs from `scale` only for opt-RTN). */
  divScale: number;
  /** Zero point (asym) or 2^(bits−1) (sym, for export). */
  zp: number;
  /** Whether the threshold clamp was inactive (gradient flows to the scale inputs). */
  scalePasses: boolean;
  /** sym: +1 when the negative side is larger (scale > 0), −1 otherwise. */
  sign: number;
  /** sym: which side set the scale ("max" = β's side, "min" = α's side, "tie"). */
  side: "min" | "max" | "tie";
  /** asym: clamped min/max after α/β. */
  lo: number;
  hi: number;
}

/** Compute one group's scale as AutoRound does (α, β clamped into [0, 1] first). */
export function groupScale(m: QuantMath, t: QuantTunables, idx: number): GroupScale {
  const hiBound = m.tunedInitScale?.maxScaleBound ?? 1;
  const clampScale = (x: number) => (x < 0 ? 0 : x > hiBound ? hiBound : x);
  const alpha = t.minScale ? clampScale(t.minScale[idx]) : 1;
  const beta = t.maxScale ? clampScale(t.maxScale[idx]) : 1;
  const thr = m.roundScale(m.scaleThresh);
  if (m.sym) {
    const maxq = 2 ** (m.bits - 1);
    let raw: number, sign = 1, side: GroupScale["side"] = "max";
    if (t.initScale && m.tunedInitScale) {
      // scale = (init_scale · max_scale).to(fp16), then the ±q_scale_thresh clamp; codes use it.
      const r = m.roundScale(t.initScale[idx] * beta);
      const passes = r < 0 ? r <= -thr : r >= thr;
      const scale = passes ? r : r < 0 ? -thr : thr;
      return { scale, divScale: scale, zp: maxq, scalePasses: passes, sign, side, lo: 0, hi: 0 };
    }
    if (t.initScale) {
      // Already clamped to ±thresh by the search; the codes use it unrounded (see QuantTunables).
      const exact = t.initScale[idx] * beta;
      return {
        scale: m.roundScale(exact),
        divScale: exact,
        zp: maxq,
        scalePasses: true,
        sign,
        side,
        lo: 0,
        hi: 0,
      };
    } else {
      const minAbs = -(t.wMin[idx] * alpha), maxAbs = t.wMax[idx] * beta;
      // scale is negative when the positive side dominates, so the largest positive weight maps
      // onto −2^(b−1) exactly (full-range symmetric quantizer, int.py quant_tensor_sym).
      sign = maxAbs < minAbs ? 1 : -1;
      side = maxAbs > minAbs ? "max" : maxAbs < minAbs ? "min" : "tie";
      raw = m.roundScale((sign * Math.max(maxAbs, minAbs)) / maxq);
    }
    let scale = raw, passes = true;
    if (raw < 0 ? raw > -thr : raw < thr) {
      scale = raw < 0 ? -thr : thr;
      passes = false;
    }
    return { scale, divScale: scale, zp: maxq, scalePasses: passes, sign, side, lo: 0, hi: 0 };
  }
  const maxq = 2 ** m.bits - 1;
  const lo = t.wMin[idx] * alpha, hi = t.wMax[idx] * beta;
  const raw = m.roundScale((hi - lo) / maxq);
  const scale = raw < thr ? thr : raw;
  const zp = roundHalfEven(-lo / scale);
  return { scale, divScale: scale, zp, scalePasses: raw >= thr, sign: 1, side: "max", lo, hi };
}

/** Integer code range: sym codes are signed before the zero point is added. */
function codeRange(m: QuantMath): [number, number] {
  return m.sym ? [-(2 ** (m.bits - 1)), 2 ** (m.bits - 1) - 1] : [0, 2 ** m.bits - 1];
}

/**
 * Fake-quantize: Ŵ = scale·q (sym) or scale·(q − zp) (asym), q = clamp(round(W/scale + V) [+ zp]).
 * Optionally also writes the export codes (q + zp for sym, q for asym), scales and zeros.
 */
export function fakeQuantize(
  w: FArr,
  l: GroupLayout,
  m: QuantMath,
  t: QuantTunables,
  out: FArr,
  exportTo?: { codes: Uint8Array; scales: Float32Array; zeros: Int32Array },
): void {
  const G = groupsPerRow(l);
  const [qlo, qhi] = codeRange(m);
  const rc = m.roundCompute ?? ((x: number) => x);
  for (let r = 0; r < l.n; r++) {
    for (let gi = 0; gi < G; gi++) {
      const gs = groupScale(m, t, r * G + gi);
      const end = Math.min((gi + 1) * l.g, l.k);
      for (let c = gi * l.g; c < end; c++) {
        const i = r * l.k + c;
        const z = rc(rc(w[i] / gs.divScale) + (t.v ? t.v[i] : 0));
        if (m.sym) {
          const q = Math.min(Math.max(roundHalfEven(z), qlo), qhi);
          out[i] = gs.scale * q;
          if (exportTo) exportTo.codes[i] = q + gs.zp;
        } else {
          const q = Math.min(Math.max(roundHalfEven(z) + gs.zp, qlo), qhi);
          out[i] = gs.scale * (q - gs.zp);
          if (exportTo) exportTo.codes[i] = q;
        }
      }
      if (exportTo) {
        exportTo.scales[r * G + gi] = gs.scale;
        exportTo.zeros[r * G + gi] = gs.zp;
      }
    }
  }
}

/**
 * Straight-through gradients of fakeQuantize for dŴ, matching autograd through AutoRound's graph:
 * round_ste has gradient 1, clamp passes gradient where its input lies within [lo, hi] (inclusive),
 * the scale-dtype cast passes gradient unchanged, max() sends it to the larger side (split evenly on
 * a tie, like torch.maximum), and the threshold clamp blocks it when active.
 */
export function fakeQuantizeBackward(
  w: FArr,
  l: GroupLayout,
  m: QuantMath,
  t: QuantTunables,
  dWq: FArr,
  dv: FArr,
  dMin: FArr,
  dMax: FArr,
): void {
  const G = groupsPerRow(l);
  const [qlo, qhi] = codeRange(m);
  const rc = m.roundCompute ?? ((x: number) => x);
  for (let row = 0; row < l.n; row++) {
    for (let gi = 0; gi < G; gi++) {
      const idx = row * G + gi;
      const r0 = row * l.k;
      const gs = groupScale(m, t, idx);
      const s = gs.scale;
      // The scale's gradient arrives in pieces, one per use of the scale in AutoRound's graph; the
      // scale is a 16-bit tensor there, so autograd rounds each piece to the scale dtype and sums
      // them in it. Emulated with m.roundScale (verified against torch autograd to ~1e-8).
      const r = m.roundScale;
      let gFromProduct = 0, gFromQuotient = 0, gZp = 0;
      const end = Math.min((gi + 1) * l.g, l.k);
      for (let c = gi * l.g; c < end; c++) {
        const i = r0 + c;
        const z = rc(rc(w[i] / s) + (t.v ? t.v[i] : 0));
        const rz = roundHalfEven(z) + (m.sym ? 0 : gs.zp);
        const inRange = rz >= qlo && rz <= qhi ? 1 : 0;
        const q = Math.min(Math.max(rz, qlo), qhi);
        const g = dWq[i];
        dv[i] = g * s * inRange;
        // Ŵ = s·(q − zp) with q depending on W/s: ∂/∂s = (q − zp) [product] − inRange·W/s [quotient].
        gFromProduct += g * (m.sym ? q : q - gs.zp);
        gFromQuotient -= g * inRange * w[i] / s;
        if (!m.sym) gZp += g * s * (inRange - 1);
      }
      let gScale = r(r(gFromProduct) + r(gFromQuotient));
      let a = 0, b = 0;
      if (gs.scalePasses) {
        if (m.sym) {
          if (t.initScale) {
            b = gScale * t.initScale[idx];
          } else {
            const maxq = 2 ** (m.bits - 1);
            const gMaxV = gs.sign * gScale / maxq;
            const wMaxShare = gs.side === "max" ? 1 : gs.side === "tie" ? 0.5 : 0;
            b = gMaxV * wMaxShare * t.wMax[idx];
            a = gMaxV * (1 - wMaxShare) * -t.wMin[idx];
          }
        } else {
          const maxq = 2 ** m.bits - 1;
          // zp = round_ste(−lo/s): ∂zp/∂lo = −1/s, ∂zp/∂s = lo/s² (its piece is the third use of s).
          gScale = r(gScale + r(gZp * gs.lo / (s * s)));
          const gHi = gScale / maxq;
          const gLo = -gScale / maxq - gZp / s;
          b = gHi * t.wMax[idx];
          a = gLo * t.wMin[idx];
        }
      } else if (!m.sym) {
        // Scale clamped: only the zero point still depends on lo.
        a = (-gZp / s) * t.wMin[idx];
      }
      // α, β are clamped into [0, 1] ([0, 2] for SignRoundV2) before use; clamp passes gradient
      // inside the closed range.
      const hi = m.tunedInitScale?.maxScaleBound ?? 1;
      const alpha = t.minScale ? t.minScale[idx] : 1, beta = t.maxScale ? t.maxScale[idx] : 1;
      dMin[idx] = alpha >= 0 && alpha <= hi ? a : 0;
      dMax[idx] = beta >= 0 && beta <= hi ? b : 0;
    }
  }
}

/**
 * Optimized-RTN scale search for symmetric int (auto_round `search_scales`): per group, try scales
 * −(nmax − step·i)/wmax_signed around the absmax rule and keep the one with the least (importance-
 * weighted) squared error. Returns the scale per group `[N·G]`, clamped to ±thresh like
 * `_resolve_optimized_dtype_funcs` does. `importance` is per element `[N, K]` (importanceForWeight) or absent.
 */
/**
 * The candidate grid of auto-round's `search_scales`: scales −(nmax − step·is)/gmax for
 * is = −searchMin..searchMin (is = 0 is the RTN start), within ±75% of nmax
 * (AR_SEARCH_SCALE_RATIO's default); 2 bits use a fixed finer grid of ±0.9 in steps of 0.01.
 */
export function symSearchGrid(bits: number): { nmax: number; searchMin: number; step: number } {
  const nmax = 2 ** (bits - 1);
  if (bits === 2) return { nmax, searchMin: 18 * 5, step: 0.01 };
  const span = nmax * 0.75;
  const step = span / 200 * 2;
  return { nmax, searchMin: Math.trunc(span / step), step };
}

export function searchScalesSym(
  w: FArr,
  l: GroupLayout,
  bits: number,
  importance: FArr | undefined,
  scaleThresh: number,
  /** Compute-precision rounding (Math.fround: float32 candidates and codes, as torch forms them). */
  rc: (x: number) => number = (x) => x,
): Float64Array {
  const G = groupsPerRow(l);
  const { nmax, searchMin, step } = symSearchGrid(bits);
  const recip = (x: number) => (Math.abs(x) >= 1e-30 ? rc(1 / x) : 0);
  const scales = new Float64Array(l.n * G);
  for (let r = 0; r < l.n; r++) {
    for (let gi = 0; gi < G; gi++) {
      const start = r * l.k + gi * l.g, end = r * l.k + Math.min((gi + 1) * l.g, l.k);
      let gmax = 0, best = -1;
      for (let i = start; i < end; i++) {
        if (Math.abs(w[i]) > best) {
          best = Math.abs(w[i]);
          gmax = w[i];
        }
      }
      const lossFor = (iscale: number): number => {
        const sc = recip(iscale);
        let loss = 0;
        for (let i = start; i < end; i++) {
          const q = Math.min(Math.max(roundHalfEven(rc(iscale * w[i])), -nmax), nmax - 1);
          const e = rc(sc * q) - w[i];
          loss += e * e * (importance ? importance[i] : 1);
        }
        return loss;
      };
      let bestIscale = rc(-nmax * recip(gmax));
      let bestLoss = lossFor(bestIscale);
      for (let is = -searchMin; is <= searchMin; is++) {
        if (is === 0) continue;
        const iscale = rc(-(nmax - step * is) * recip(gmax));
        const loss = lossFor(iscale);
        if (loss < bestLoss) {
          bestLoss = loss;
          bestIscale = iscale;
        }
      }
      const sc = recip(bestIscale);
      scales[r * G + gi] = sc < 0 ? Math.min(sc, -scaleThresh) : Math.max(sc, scaleThresh);
    }
  }
  return scales;
}

/**
 * AutoRound's imatrix zero handling (`_imatrix_handle_zero`, data_type/gguf.py), applied per group
 * as `quant_tensor_opt_rtn_sym` calls it on the group-reshaped weight: a group whose importance has
 * more than g/2 zeros falls back to |W| (≤ 3 bits) or |W| + sqrt(Σ_group W²/32); a group with fewer
 * zeros gets them replaced by the mean of its non-zero entries. Returns per-element importance
 * `[N, K]`.
 */
export function importanceForWeight(imatrix: FArr, w: FArr, l: GroupLayout, bits: number): Float64Array {
  const G = groupsPerRow(l);
  const out = new Float64Array(l.n * l.k);
  for (let r = 0; r < l.n; r++) {
    for (let gi = 0; gi < G; gi++) {
      const c0 = gi * l.g, c1 = Math.min((gi + 1) * l.g, l.k), len = c1 - c0;
      let zeroCnt = 0, sum = 0, sigma2 = 0;
      for (let c = c0; c < c1; c++) {
        if (imatrix[c] <= 1e-30) zeroCnt++;
        sum += imatrix[c];
        sigma2 += w[r * l.k + c] ** 2;
      }
      const avX = Math.sqrt(sigma2 / 32); // "32 is different from QK_K" (AutoRound's comment)
      for (let c = c0; c < c1; c++) {
        const i = r * l.k + c;
        let val = imatrix[c];
        if (zeroCnt > Math.trunc(l.g / 2)) val = bits <= 3 ? Math.abs(w[i]) : Math.abs(w[i]) + avX;
        else if (zeroCnt > 0 && val === 0) val = sum / (len - zeroCnt);
        out[i] = val;
      }
    }
  }
  return out;
}
