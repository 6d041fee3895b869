/**
 * Shared by the device GGUF quantizer tests (webgpu_gguf_test.ts, cuda_gguf_test.ts): the inputs
 * (random weights with the awkward groups the searches branch on, importance matrices with zeros,
 * and stories260K's real weights) and the comparison with the host reference.
 *
 * The oracle is the host reference (src/qmath/gguf/quantize.ts, byte-identical with auto-round) run
 * through the CPU backend's ggufQuantize. A device's bytes must equal it block by block except at
 * float32 near-ties, which are counted: at most 1 in 10⁴ blocks may differ (so none in a tensor of
 * fewer blocks), and a differing block's importance-weighted squared error must lie within 1e-6
 * (relative) of the reference block's.
 */
import type { Backend, GgufBlockType, GgufQuantizeOptions } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { dequantizeBytes } from "../src/qmath/gguf/blocks.ts";
import { GGML_TYPES } from "../src/qmath/gguf/types.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { QUANT_GGML_TYPES } from "../src/qmath/gguf/params.ts";

export const GGUF_TYPES = QUANT_GGML_TYPES;

/** The quantizer settings every type is tried with. */
export const MODES: { name: string; opts: Omit<GgufQuantizeOptions, "imatrix">; imatrix: boolean }[] = [
  { name: "opt-RTN", opts: { optRtn: true }, imatrix: false },
  { name: "opt-RTN + imatrix", opts: { optRtn: true }, imatrix: true },
  { name: "plain RTN", opts: { optRtn: false }, imatrix: false },
  { name: "at export", opts: { optRtn: false, atExport: true }, imatrix: false },
];

/** Seeded uniform numbers (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Random weights `[n, k]`: normal-ish with outliers, plus rows that hit the searches' special cases —
 * all-zero groups, constant groups, all-positive and all-negative groups, a group of one non-zero,
 * tiny magnitudes (1e-6) and exact ties between |max| and |min|.
 */
export function randomWeights(n: number, k: number, seed: number): Float32Array {
  const u = rng(seed);
  const w = new Float32Array(n * k);
  for (let i = 0; i < w.length; i++) {
    const g = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
    w[i] = 0.02 * g + (u() < 0.01 ? 0.3 * (u() - 0.5) : 0);
  }
  const special = (row: number, c0: number, len: number, f: (i: number) => number) => {
    if (row >= n) return;
    for (let i = 0; i < len && c0 + i < k; i++) w[row * k + c0 + i] = Math.fround(f(i));
  };
  special(1, 0, 64, () => 0);
  special(1, 64, 32, () => 0.0125);
  special(2, 0, 256, (i) => 0.01 + 0.02 * u() + (i % 7) * 1e-3);
  special(2, 256, 256, () => -0.005 - 0.03 * u());
  special(3, 0, 32, (i) => (i === 5 ? 0.04 : 0));
  special(3, 32, 64, () => 1e-6 * (u() - 0.5));
  special(3, 96, 32, (i) => (i === 0 ? 0.05 : i === 1 ? -0.05 : 0.01 * (u() - 0.5)));
  return w;
}

/** Importance per column: squares of normals, with a group more than half zero and a few zeros. */
export function randomImatrix(k: number, seed: number): Float32Array {
  const u = rng(seed);
  const im = Float32Array.from({ length: k }, () => (u() + 0.05) ** 2 * 3);
  for (let c = 0; c < 20 && c < k; c++) im[c] = 0;
  for (let c = 40; c < 43 && c < k; c++) im[c] = 0;
  if (k > 300) im[300] = 0;
  return im;
}

/**
 * stories260K's attention and MLP weights (all layers), flattened and cut into rows of 256 so that
 * every type's blocks fit (its own rows are 64 and 172 wide).
 */
export async function storiesWeights(): Promise<{ w: Float32Array; n: number; k: number }> {
  using st = await SafetensorsReader.open(new URL("./fixtures/stories260K", import.meta.url).pathname);
  const parts: Float32Array[] = [];
  for (let l = 0; l < 5; l++) {
    for (
      const name of [
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.down_proj",
      ]
    ) {
      parts.push(await st.readF32(`model.layers.${l}.${name}.weight`));
    }
  }
  const total = parts.reduce((a, p) => a + p.length, 0), k = 256, n = Math.floor(total / k);
  const w = new Float32Array(n * k);
  let at = 0;
  for (const p of parts) {
    w.set(p.subarray(0, Math.min(p.length, w.length - at)), at);
    at += p.length;
    if (at >= w.length) break;
  }
  return { w, n, k };
}

/** What a comparison found. */
export interface BlockDiff {
  blocks: number;
  differ: number;
  /** Largest |e_dev − e_ref| / e_ref over the differing blocks (importance-weighted squared error). */
  worstRel: number;
  firstAt: number;
}

/** Compare packed blocks of a `[n, k]` weight block by block (see the file comment). */
export function compareBlocks(
  type: GgufBlockType,
  got: Uint8Array,
  ref: Uint8Array,
  w: Float32Array,
  k: number,
  imatrix?: Float32Array,
): BlockDiff {
  const { blockSize: bs, typeSize: ts } = GGML_TYPES[type];
  if (got.length !== ref.length) throw new Error(`${type}: ${got.length} bytes vs ${ref.length}`);
  const blocks = ref.length / ts;
  let differ = 0, worstRel = 0, firstAt = -1;
  for (let b = 0; b < blocks; b++) {
    let same = true;
    for (let i = b * ts; i < (b + 1) * ts; i++) if (got[i] !== ref[i]) same = false;
    if (same) continue;
    differ++;
    if (firstAt < 0) firstAt = b;
    const err = (bytes: Uint8Array) => {
      const deq = dequantizeBytes(type, bytes.subarray(b * ts, (b + 1) * ts));
      let e = 0;
      for (let j = 0; j < bs; j++) {
        const at = b * bs + j;
        e += (imatrix ? imatrix[at % k] : 1) * (deq[j] - w[at]) ** 2;
      }
      return e;
    };
    const eg = err(got), er = err(ref);
    worstRel = Math.max(worstRel, er === 0 ? (eg === 0 ? 0 : Infinity) : Math.abs(eg - er) / er);
  }
  return { blocks, differ, worstRel, firstAt };
}

/** Throw unless the device bytes meet the bound of the file comment; returns the diff for the table. */
export function expectBlocks(label: string, d: BlockDiff): BlockDiff {
  const allowed = Math.floor(d.blocks / 1e4);
  if (d.differ > allowed || !(d.worstRel <= 1e-6)) {
    throw new Error(
      `${label}: ${d.differ} of ${d.blocks} blocks differ (allowed ${allowed}), first at block ${d.firstAt}, ` +
        `worst weighted-error change ${d.worstRel.toExponential(2)} (bound 1e-6)`,
    );
  }
  return d;
}

const cpu = new CpuBackend();

/**
 * Quantize `w` on `be` and on the CPU reference with the same settings and compare.
 *
 * @example
 * ```ts
 * expectBlocks("Q4_K", await deviceVsHost(be, "Q4_K", w, n, k, { optRtn: true }));
 * ```
 */
export async function deviceVsHost(
  be: Backend,
  type: GgufBlockType,
  w: Float32Array,
  n: number,
  k: number,
  opts: Omit<GgufQuantizeOptions, "imatrix">,
  imatrix?: Float32Array,
  dtype: "f32" | "bf16" | "f16" = "f32",
): Promise<BlockDiff> {
  // Weights stored in a 16-bit dtype: both sides quantize the same rounded values.
  if (dtype !== "f32") w = await cpu.read(cpu.upload(w, [n, k], dtype));
  using dw = be.upload(w, [n, k], dtype);
  using di = imatrix ? be.upload(imatrix, [k]) : undefined;
  using cw = cpu.upload(w, [n, k]);
  using ci = imatrix ? cpu.upload(imatrix, [k]) : undefined;
  const got = await be.ggufQuantize!(dw, type, { ...opts, imatrix: di });
  const ref = await cpu.ggufQuantize(cw, type, { ...opts, imatrix: ci });
  return compareBlocks(type, got, ref, w, k, imatrix);
}
