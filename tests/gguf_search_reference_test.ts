/**
 * The fast host GGUF quantizers (src/qmath/gguf/, issue 12) against the plain implementation they
 * replaced (tests/gguf_reference/, frozen at commit 63184aa, itself byte-identical to auto-round's
 * goldens): on random tensors of several shapes of distribution, every type, with and without
 * opt-RTN and importance matrices (some with zeros, one with a negative entry), the searched
 * parameters, W̃ and the packed bytes are bit for bit the same; and quantizing row ranges
 * separately gives the same blocks as the whole tensor.
 */
import { assertEquals } from "./assert.ts";
import * as fast from "../src/qmath/gguf/quantize.ts";
import * as ref from "./gguf_reference/quantize.ts";
import { allocBlocks, packBlocks } from "../src/qmath/gguf/blocks.ts";
import { QUANT_GGML_TYPES } from "../src/qmath/gguf/params.ts";

const TYPES = QUANT_GGML_TYPES;

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
}

/** Weights of one of five kinds: normal-ish, uniform, outliers, zero super-blocks, few distinct values. */
function weights(len: number, kind: number, u: () => number): Float32Array {
  return new Float32Array(len).map((_, i) => {
    const g = u() + u() + u() - 1.5;
    switch (kind) {
      case 0:
        return g * 0.05;
      case 1:
        return (u() - 0.5) * 0.04;
      case 2:
        return g * 0.02 + (u() < 0.01 ? u() - 0.5 : 0);
      case 3:
        return Math.floor(i / 256) % 3 === 0 ? 0 : g * (i % 512 < 256 ? 1e-3 : 3);
      default:
        return (Math.round(g * 8) / 8) * 0.1; // ties between grid points
    }
  });
}

/** The bits of two float arrays equal (Object.is: NaN = NaN, +0 ≠ −0). */
function sameBits(what: string, a: ArrayLike<number>, b: ArrayLike<number>): void {
  assertEquals(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) throw new Error(`${what}[${i}]: ${a[i]} vs reference ${b[i]}`);
  }
}

function sameParams(what: string, a: fast.GgufParams, b: fast.GgufParams): void {
  assertEquals(a.kind, b.kind, what);
  const arrays = (x: fast.GgufParams) =>
    Object.entries(x).filter(([key]) => key !== "kind") as [string, Float32Array][];
  const mine = new Map(arrays(a));
  for (const [key, v] of arrays(b)) sameBits(`${what} ${key}`, mine.get(key)!, v);
}

Deno.test("fast GGUF search, W̃ and packing equal the reference implementation bit for bit (random tensors)", () => {
  const u = lcg(2024), n = 6, k = 512;
  const imatrices: (Float64Array | undefined)[] = [
    undefined,
    Float64Array.from({ length: k }, () => u() * 3),
    Float64Array.from({ length: k }, (_, i) => (i % 5 === 0 ? 0 : u())), // some zeros per group
    Float64Array.from({ length: k }, (_, i) => (i % 32 < 20 ? 0 : u())), // mostly zeros: fallbacks
    Float64Array.from({ length: k }, (_, i) => (i === 7 ? -0.5 : 1 + (i % 7))), // a negative weight
  ];
  let cases = 0;
  for (let kind = 0; kind < 5; kind++) {
    const w = weights(n * k, kind, u);
    const v = new Float32Array(n * k).map(() => u() - 0.5);
    for (const t of TYPES) {
      for (const optRtn of [true, false]) {
        for (const [j, imatrix] of imatrices.entries()) {
          if (!optRtn && imatrix) continue;
          const what = `${t} kind ${kind} optRtn ${optRtn} imatrix ${j}`;
          const o = { optRtn, imatrix };
          const p = fast.searchParams(t, w, n, k, o), pr = ref.searchParams(t, w, n, k, o);
          sameParams(what, p, pr);
          sameBits(`${what} W̃`, fast.fakeQuant(t, w, n, k, p), ref.fakeQuant(t, w, n, k, pr));
          sameBits(`${what} W̃ with V`, fast.fakeQuant(t, w, n, k, p, v), ref.fakeQuant(t, w, n, k, pr, v));
          const wq = ref.fakeQuant(t, w, n, k, pr);
          sameBits(
            `${what} packParams`,
            packBlocks(fast.packParams(t, wq, n, k, p)),
            packBlocks(ref.packParams(t, wq, n, k, pr)),
          );
          sameBits(
            `${what} bytes`,
            packBlocks(fast.quantizeTensor(t, w, n, k, o)),
            packBlocks(ref.quantizeTensor(t, w, n, k, o)),
          );
          cases++;
        }
      }
      sameBits(
        `${t} kind ${kind} at export`,
        packBlocks(fast.quantizeAtExport(t, w, n, k)),
        packBlocks(ref.quantizeAtExport(t, w, n, k)),
      );
    }
  }
  assertEquals(cases, 5 * 10 * 6);
});

Deno.test("quantizing row ranges into views of one output gives the whole tensor's blocks", () => {
  const u = lcg(7), n = 5, k = 768, w = weights(n * k, 0, u);
  const imatrix = Float64Array.from({ length: k }, () => u());
  for (const t of TYPES) {
    const o = { optRtn: true, imatrix };
    const whole = packBlocks(fast.quantizeTensor(t, w, n, k, o));
    const perRow = k / (t.endsWith("_K") ? 256 : 32), b = allocBlocks(t, n * perRow);
    for (const [r0, r1] of [[0, 2], [2, 3], [3, 5]]) {
      fast.quantizeInto(
        t,
        w.subarray(r0 * k, r1 * k),
        r1 - r0,
        k,
        o,
        fast.blocksView(b, r0 * perRow, r1 * perRow),
      );
    }
    sameBits(`${t} split rows`, packBlocks(b), whole);
  }
});

Deno.test("quantizeToBytes: chunks of rows (2100 rows cross the 1M-weight chunk) give the whole tensor's bytes", () => {
  const u = lcg(11), n = 2100, k = 512, w = weights(n * k, 2, u);
  const imatrix = Float64Array.from({ length: k }, () => u());
  const rows = (r0: number, r1: number) => w.slice(r0 * k, r1 * k);
  for (const t of ["Q4_K", "Q6_K", "Q4_0"] as const) {
    const o = { optRtn: true, imatrix };
    sameBits(
      `${t} linear`,
      fast.quantizeToBytes(t, n, k, rows, o),
      packBlocks(fast.quantizeTensor(t, w, n, k, o)),
    );
  }
  for (const t of ["Q2_K", "Q4_1", "Q8_0"] as const) {
    sameBits(
      `${t} export`,
      fast.quantizeToBytes(t, n, k, rows, "export"),
      packBlocks(fast.quantizeAtExport(t, w, n, k)),
    );
  }
});
