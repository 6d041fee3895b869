/**
 * What a device GGUF quantizer decides on the host before it launches (shared by webgpu/gguf.ts and
 * cuda/gguf.ts): the type's geometry, which of the host searches applies (src/qmath/gguf/quantize.ts
 * searchParams, quantizeAtExport), the importance-matrix flags that hold for the whole tensor, and
 * the searches' candidate grids, which the Python code forms in float64 (`0.1 * is + nmax`) — here
 * too, so the kernels need no float64.
 */
import type { GgufBlockType } from "./backend.ts";
import { BackendError } from "../errors.ts";
import { GGML_TYPES } from "../qmath/gguf/types.ts";
import { symSearchGrid } from "../qmath/int_quant.ts";

/** Kernel family of a type: the 32-wide types, the asymmetric and the symmetric K-quants. */
export type GgufFamily = "legacy" | "kasym" | "ksym";

/** Type index the kernels switch on (TYPE in wgsl/gguf_*.wgsl, `type` in ffi/cuda/gguf_*.cu). */
export const GGUF_TYPE_CODE: Readonly<Record<GgufBlockType, number>> = {
  Q4_0: 0,
  Q4_1: 1,
  Q5_0: 2,
  Q5_1: 3,
  Q8_0: 4,
  Q2_K: 5,
  Q3_K: 6,
  Q4_K: 7,
  Q5_K: 8,
  Q6_K: 9,
};

/** Bits, group size and groups per super-block (quantize.ts TYPE_QUANT). */
const GEOMETRY: Readonly<Record<GgufBlockType, { bits: number; gs: number; sgs: number }>> = {
  Q4_0: { bits: 4, gs: 32, sgs: 1 },
  Q4_1: { bits: 4, gs: 32, sgs: 1 },
  Q5_0: { bits: 5, gs: 32, sgs: 1 },
  Q5_1: { bits: 5, gs: 32, sgs: 1 },
  Q8_0: { bits: 8, gs: 32, sgs: 1 },
  Q2_K: { bits: 2, gs: 16, sgs: 16 },
  Q3_K: { bits: 3, gs: 16, sgs: 16 },
  Q4_K: { bits: 4, gs: 32, sgs: 8 },
  Q5_K: { bits: 5, gs: 32, sgs: 8 },
  Q6_K: { bits: 6, gs: 16, sgs: 16 },
};

/** One tensor's quantization plan. */
export interface GgufPlan {
  type: GgufBlockType;
  code: number;
  family: GgufFamily;
  bits: number;
  /** Weights per group, groups per super-block (1 for the 32-wide types), weights per block. */
  gs: number;
  sgs: number;
  bs: number;
  /** Bytes per block. */
  ts: number;
  /** Bits of the double-quantized sub-block scales (K-quants). */
  superBits: number;
  /** Blocks, groups and packed bytes of the tensor. */
  nb: number;
  groups: number;
  bytes: number;
  /** Q4_0/Q5_0/Q8_0: the opt-RTN scale search (else absmax RTN). */
  optRtn: boolean;
  /** 32-wide types: packWithoutScales' rules (quantizeAtExport). */
  atExport: boolean;
  /** The importance matrix is used (opt-RTN and not all zero), and has an exact zero somewhere. */
  imatrix: boolean;
  hasZero: boolean;
  /** Q2_K without an imatrix: the WLS search minimises the absolute error. */
  mad: boolean;
  /** The group search's candidate factors, in the host's order. */
  grid: Float32Array;
  /** make_qp_quants' candidate divisors (K-quants with an imatrix). */
  superGrid: Float32Array;
}

/** search_scales' grid (search_sym.ts searchScaleSym): −(nmax − step·is), is = −searchMin..searchMin, is ≠ 0. */
function symGrid(bits: number): Float32Array {
  const { nmax, searchMin, step } = symSearchGrid(bits);
  const out: number[] = [];
  for (let is = -searchMin; is <= searchMin; is++) if (is !== 0) out.push(-(nmax - step * is));
  return Float32Array.from(out);
}

/** iterative_wls_quant_search_chunk's factors rmin + rdelta·step + maxq (quantize.ts searchKAsym). */
function wlsGrid(bits: number, imatrix: boolean): { grid: Float32Array; mad: boolean } {
  const p = imatrix
    ? { rmin: -0.9, rdelta: 0.05, nstep: 36, mad: false }
    : bits === 2
    ? { rmin: -0.5, rdelta: 0.1, nstep: 15, mad: true }
    : bits === 4
    ? { rmin: -1, rdelta: 0.1, nstep: 20, mad: false }
    : { rmin: -0.5, rdelta: 0.1, nstep: 15, mad: false };
  const maxq = 2 ** bits - 1;
  return {
    grid: Float32Array.from({ length: p.nstep }, (_, step) => p.rmin + p.rdelta * step + maxq),
    mad: p.mad,
  };
}

/** make_qx_quants' grid (search_sym.ts makeQxQuants): −(nmax + −0.1·is), is = −9..9, is ≠ 0. */
function qxGrid(bits: number): Float32Array {
  const nmax = 2 ** (bits - 1), out: number[] = [];
  for (let is = -9; is <= 9; is++) if (is !== 0) out.push(-(nmax + -0.1 * is));
  return Float32Array.from(out);
}

/** make_qp_quants' divisors (search.ts makeQpQuants): 0.1·is + nmax, is = −4..4, is ≠ 0. */
function qpGrid(nmax: number): Float32Array {
  const out: number[] = [];
  for (let is = -4; is <= 4; is++) if (is !== 0) out.push(0.1 * is + nmax);
  return Float32Array.from(out);
}

/**
 * The plan for quantizing a `[n, k]` weight to `type`. `imatrix` is the host copy of the importance
 * (its all-zero and has-a-zero tests hold for the whole tensor, quantize.ts searchParams).
 *
 * @example
 * ```ts
 * const plan = ggufPlan("Q4_K", 4096, 4096, { optRtn: true }, imatrixValues);
 * ```
 */
export function ggufPlan(
  type: GgufBlockType,
  n: number,
  k: number,
  opts: { optRtn: boolean; atExport?: boolean },
  imatrix?: Float32Array,
): GgufPlan {
  const geo = GEOMETRY[type];
  if (!geo) throw new BackendError(`ggufQuantize: ${type} is not a block-quantized GGML type`);
  const { blockSize: bs, typeSize: ts } = GGML_TYPES[type];
  if (!(k > 0 && k % bs === 0) || !(n >= 0)) {
    throw new BackendError(`ggufQuantize: a [${n}, ${k}] weight does not split into ${type} blocks of ${bs}`);
  }
  if (imatrix && imatrix.length !== k) {
    throw new BackendError(`ggufQuantize: imatrix has ${imatrix.length} entries, the weight ${k} columns`);
  }
  const family: GgufFamily = geo.sgs === 1 ? "legacy" : type === "Q3_K" || type === "Q6_K" ? "ksym" : "kasym";
  // quantizeAtExport: the 32-wide types pack straight from W; the K-quants search with optRtn off.
  const atExport = family === "legacy" && (opts.atExport ?? false);
  const optRtn = opts.optRtn && !(opts.atExport ?? false);
  const im = optRtn && imatrix !== undefined && imatrix.some((v) => v !== 0);
  const hasZero = im && imatrix!.some((v) => v === 0);
  const superBits = family === "kasym"
    ? (geo.bits === 2 ? 4 : 6)
    : family === "ksym"
    ? (geo.bits === 3 ? 6 : 8)
    : 0;
  let grid: Float32Array = new Float32Array(0), mad = false;
  if (family === "legacy" && optRtn) grid = symGrid(geo.bits);
  if (family === "kasym") ({ grid, mad } = wlsGrid(geo.bits, im));
  if (family === "ksym") grid = qxGrid(geo.bits);
  const nb = (n * k) / bs;
  return {
    type,
    code: GGUF_TYPE_CODE[type],
    family,
    bits: geo.bits,
    gs: geo.gs,
    sgs: geo.sgs,
    bs,
    ts,
    superBits,
    nb,
    groups: (n * k) / geo.gs,
    bytes: nb * ts,
    optRtn,
    atExport,
    imatrix: im,
    hasZero,
    mad,
    grid,
    superGrid: family === "kasym" && im ? qpGrid(2 ** superBits - 1) : new Float32Array(0),
  };
}
