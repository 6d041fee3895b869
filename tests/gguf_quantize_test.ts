/**
 * The GGUF quantizer (src/qmath/gguf/quantize.ts, search.ts) and the per-tensor type rules
 * (src/formats/gguf/presets.ts): what the bytes hold is the W̃ AutoRound's quantizer produced, the
 * searches beat plain min/max rounding, the importance matrix steers the error, given codes pass through unchanged, and
 * the Q*_K_M mixes reproduce llama.cpp's layer pattern.
 */
import { assert, assertEquals } from "./assert.ts";
import { paramsFromQuantized } from "../src/export/gguf.ts";
import { fitToInput, ggufFormat, GgufTypeSelector, typeForBits } from "../src/formats/gguf/presets.ts";
import {
  fakeQuant,
  packParams,
  type QuantGgmlType,
  quantizeTensor,
  searchParams,
  TYPE_QUANT,
} from "../src/qmath/gguf/quantize.ts";
import {
  doubleQuant,
  handleZeroImportance,
  iterativeWlsSearch,
  makeQpQuants,
  wlsGrid,
  wlsResult,
} from "../src/qmath/gguf/search.ts";
import { dequantizeBlocks, packBlocks, unpackBlocks } from "../src/qmath/gguf/blocks.ts";
import { GGML_TYPES } from "../src/qmath/gguf/types.ts";
import type { QuantizedLinear } from "../src/qmath/quantized.ts";
import { QUANT_GGML_TYPES } from "../src/qmath/gguf/params.ts";

const QTYPES = QUANT_GGML_TYPES;

function weights(n: number, k: number, seed = 3): Float32Array {
  let s = seed;
  const u = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296);
  // Heavy-ish tails like trained weights: a normal-ish bulk plus a few outliers per row.
  return new Float32Array(n * k).map((_, i) =>
    (u() + u() + u() - 1.5) * 0.05 + (i % 97 === 0 ? 0.2 * (u() - 0.5) : 0)
  );
}

const mse = (a: ArrayLike<number>, b: ArrayLike<number>, w?: ArrayLike<number>, k = 1) => {
  let e = 0;
  for (let i = 0; i < a.length; i++) e += (a[i] - b[i]) ** 2 * (w ? w[i % k] : 1);
  return e / a.length;
};

Deno.test("every type: the packed blocks dequantize to AutoRound's W̃ (up to fp16 storage of d, m)", () => {
  // Q4_1/Q5_1 are the exception AutoRound has: W̃ uses a float zero point, the packer rounds
  // (W̃ − m)/d + 0.5 down, so the stored weight can sit up to half a step away.
  const n = 8, k = 512, w = weights(n, k);
  for (const t of QTYPES) {
    const p = searchParams(t, w, n, k, { optRtn: true });
    const wq = fakeQuant(t, w, n, k, p);
    const back = dequantizeBlocks(unpackBlocks(t, packBlocks(packParams(t, wq, n, k, p))));
    // d and dmin are stored as fp16: relative error ≤ 2^-11 on each scale, times |q| ≤ 2^b.
    let worst = 0, amax = 0;
    for (let i = 0; i < wq.length; i++) {
      worst = Math.max(worst, Math.abs(back[i] - wq[i]));
      amax = Math.max(amax, Math.abs(wq[i]));
    }
    const halfStep = p.kind === "asym" ? Math.max(...p.scale) / 2 : 0;
    assert(worst <= amax * 2 ** -9 + halfStep * 1.001, `${t}: |deq − W̃| ${worst} vs max |W̃| ${amax}`);
  }
});

Deno.test("every type: quantization error shrinks with bits, and searched K-quants beat plain min/max rounding", () => {
  const n = 16, k = 256, w = weights(n, k, 9);
  const err = (t: QuantGgmlType) => mse(dequantizeBlocks(quantizeTensor(t, w, n, k, { optRtn: true })), w);
  const e: Record<string, number> = {};
  for (const t of QTYPES) e[t] = err(t);
  for (
    const [lo, hi] of [["Q2_K", "Q3_K"], ["Q3_K", "Q4_K"], ["Q4_K", "Q5_K"], ["Q5_K", "Q6_K"], [
      "Q6_K",
      "Q8_0",
    ], ["Q4_0", "Q5_0"]]
  ) {
    assert(e[hi] < e[lo], `${hi} (${e[hi]}) should beat ${lo} (${e[lo]})`);
  }
  // Plain asymmetric min/max per 32 with 6-bit double quantization, Q4_K's grid without the search.
  const { group: gs } = TYPE_QUANT.Q4_K;
  let naive = 0;
  for (let g = 0; g < (n * k) / gs; g++) {
    const x = w.subarray(g * gs, (g + 1) * gs);
    const lo = Math.min(0, ...x), hi = Math.max(0, ...x), s = (hi - lo) / 15;
    for (const v of x) naive += (Math.min(15, Math.max(0, Math.round((v - lo) / s))) * s + lo - v) ** 2;
  }
  naive /= n * k;
  assert(e.Q4_K < naive, `Q4_K search ${e.Q4_K} should beat plain min/max ${naive}`);
});

Deno.test("the importance matrix moves the error onto unimportant columns", () => {
  const n = 16, k = 256, w = weights(n, k, 21);
  const imp = new Float64Array(k).map((_, c) => (c % 2 === 0 ? 100 : 0.01));
  for (const t of ["Q4_K", "Q6_K", "Q2_K", "Q4_0"] as QuantGgmlType[]) {
    const plain = dequantizeBlocks(quantizeTensor(t, w, n, k, { optRtn: true }));
    const weighted = dequantizeBlocks(quantizeTensor(t, w, n, k, { optRtn: true, imatrix: imp }));
    assert(
      mse(weighted, w, imp, k) < mse(plain, w, imp, k),
      `${t}: weighted error should drop with the imatrix`,
    );
  }
});

Deno.test("search pieces: make_qp_quants, double quantization, zero handling, all-zero groups", () => {
  const L = new Int16Array(4);
  const d = makeQpQuants(63, Float32Array.from([0.5, 1, 2, 3.15]), 0, 4, [1, 1, 1, 1], L);
  assert(d > 0 && Math.max(...L) <= 63, `d ${d}, L ${L}`);
  const err = [0.5, 1, 2, 3.15].reduce((a, x, i) => a + (Math.fround(x) - d * L[i]) ** 2, 0);
  assert(err < 1e-3, `qp fit error ${err}`);
  const dd = doubleQuant(Float32Array.from([0, 1, 2, 4]), 0, 4, 6, L);
  assertEquals(dd, Math.fround(4 / 63));
  assertEquals([...L], [0, 16, 32, 63]);
  // More than half zeros → |w| + sqrt(Σw²/32); fewer → zeros replaced by the mean of the rest.
  const x = Float32Array.from({ length: 32 }, (_, i) => (i - 16) / 16);
  const many = new Float64Array(32);
  handleZeroImportance(many, x, 0, 32, 16, 4);
  // (float32 arithmetic, as AutoRound's torch code: within 2 ulps of the float64 value)
  assert(Math.abs(many[0] - (1 + Math.sqrt(x.reduce((a, v) => a + v * v, 0) / 32))) < 2 ** -22);
  const few = Float64Array.from({ length: 32 }, (_, i) => (i < 4 ? 0 : 2));
  handleZeroImportance(few, x, 0, 32, 16, 4);
  assertEquals(few[0], (28 * 2) / 28);
  // An all-zero group quantizes to zero scales without NaN.
  const grid = wlsGrid({ rmin: -1, rdelta: 0.1, nstep: 20, useMad: false }, 15);
  iterativeWlsSearch(new Float32Array(32), 0, 32, new Float32Array(32), grid);
  assert(wlsResult.scale === 0 && wlsResult.wmin === 0, `scale ${wlsResult.scale}, min ${wlsResult.wmin}`);
  const z = dequantizeBlocks(quantizeTensor("Q4_K", new Float32Array(256), 1, 256, { optRtn: true }));
  assert(z.every((v) => v === 0), "zeros stay zeros");
});

Deno.test("given codes: a W4 group-32 sym Linear is stored in Q4_0 with exactly its codes and scales", () => {
  const n = 4, k = 64, G = k / 32;
  const codes = Uint8Array.from({ length: n * k }, (_, i) => (i * 7) % 16);
  const scales = Float32Array.from(
    { length: n * G },
    (_, i) => Math.f16round((i % 2 ? -1 : 1) * 0.01 * (i + 1)),
  );
  const l: QuantizedLinear = {
    name: "x",
    n,
    k,
    bits: 4,
    groupSize: 32,
    sym: true,
    q: { codes, scales, zeros: new Int32Array(n * G).fill(8) },
  };
  const given = paramsFromQuantized(l, "Q4_0")!;
  const blocks = unpackBlocks("Q4_0", packBlocks(packParams("Q4_0", given.wq, n, k, given.params)));
  assertEquals([...blocks.q], [...codes]);
  assertEquals([...blocks.d], [...scales]);
  assertEquals(paramsFromQuantized(l, "Q4_K"), undefined);
  assertEquals(paramsFromQuantized({ ...l, groupSize: 128, k: 128 }, "Q4_0"), undefined);
  // Asymmetric 4-bit with integer zero points is Q4_1 with m = −zp·d.
  const asym: QuantizedLinear = {
    ...l,
    sym: false,
    q: { codes, scales: scales.map(Math.abs), zeros: new Int32Array(n * G).fill(3) },
  };
  const ga = paramsFromQuantized(asym, "Q4_1")!;
  const ba = unpackBlocks("Q4_1", packBlocks(packParams("Q4_1", ga.wq, n, k, ga.params)));
  assertEquals([...ba.q], [...codes]);
});

Deno.test("type mix: Q4_K_M on a 32-block GQA model follows llama.cpp's use_more_bits pattern", () => {
  const sel = new GgufTypeSelector(ggufFormat("q4_k_m")!, {
    nLayers: 32,
    nHeads: 32,
    nKvHeads: 8,
    tied: false,
  });
  const v: string[] = [], down: string[] = [];
  for (let i = 0; i < 32; i++) {
    v.push(sel.linear(`blk.${i}.attn_v.weight`, i, 4096));
    down.push(sel.linear(`blk.${i}.ffn_down.weight`, i, 14336));
    assertEquals(sel.linear(`blk.${i}.attn_q.weight`, i, 4096), "Q4_K");
  }
  // use_more_bits: i < 4, i ≥ 28, or (i − 4) % 3 == 2 → Q6_K.
  const more = Array.from({ length: 32 }, (_, i) => i < 4 || i >= 28 || (i - 4) % 3 === 2);
  assertEquals(v, more.map((m) => (m ? "Q6_K" : "Q4_K")));
  assertEquals(down, more.map((m) => (m ? "Q6_K" : "Q4_K")));
  assertEquals(sel.lmHead(4096), "Q6_K");
  assertEquals(sel.embedding(4096), "Q4_K");
});

Deno.test("type mix: other mixes, fallbacks for inputs that are not multiples of 256 or 32, bits overrides", () => {
  const m = { nLayers: 8, nHeads: 32, nKvHeads: 8, tied: true };
  const q3m = new GgufTypeSelector(ggufFormat("q3_k_m")!, m);
  assertEquals(q3m.linear("blk.0.attn_v.weight", 0, 4096), "Q5_K"); // first two attn_v
  assertEquals(q3m.linear("blk.0.attn_output.weight", 0, 4096), "Q4_K");
  assertEquals(q3m.linear("blk.0.ffn_down.weight", 0, 4096), "Q4_K");
  const q2 = new GgufTypeSelector(ggufFormat("q2_k_s")!, m);
  assertEquals(q2.linear("blk.0.attn_v.weight", 0, 4096), "Q4_K"); // n_gqa 4
  assertEquals(q2.linear("blk.0.ffn_down.weight", 0, 4096), "Q4_K"); // layer < n/8
  assertEquals(q2.linear("blk.3.ffn_down.weight", 3, 4096), "Q2_K");
  assertEquals(q2.embedding(4096), "Q6_K"); // tied: the output head's type
  // stories260K: 64 inputs take the K-quant fallback (Q5_0 / Q8_0), 172 inputs fit no block: F16.
  assertEquals(fitToInput("Q4_K", 64), "Q5_0");
  assertEquals(fitToInput("Q6_K", 64), "Q8_0");
  assertEquals(fitToInput("Q4_K", 172), "F16");
  assertEquals(fitToInput("Q4_0", 172), "F16");
  assertEquals(typeForBits("Q4_K", 6), "Q6_K");
  assertEquals(typeForBits("Q4_0", 8), "Q8_0");
  assertEquals(typeForBits("Q4_K", 8), "Q8_0");
  assertEquals(q2.linear("blk.1.attn_q.weight", 1, 4096, 16), "F16");
});

Deno.test("auto-round's own GGUF quantizers (goldens from tests/consumers/gguf_oracle.py): same bytes", async () => {
  const path = new URL("./consumers/goldens/gguf_autoround.json", import.meta.url);
  let goldens: {
    cases: { type: QuantGgmlType; imatrix: string | null; n: number; k: number; w: string; bytes: string }[];
  };
  try {
    goldens = JSON.parse(await Deno.readTextFile(path));
  } catch {
    return console.log(
      "skipped: no goldens yet (run tests/consumers/run_gpu.sh, copy gguf_autoround.json there)",
    );
  }
  const f32 = (s: string) => new Float32Array(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)).buffer);
  for (const c of goldens.cases) {
    const w = f32(c.w), imatrix = c.imatrix ? Float64Array.from(f32(c.imatrix)) : undefined;
    const q = quantizeTensor(c.type, w, c.n, c.k, { optRtn: c.type !== "Q8_0", imatrix });
    const ours = packBlocks(q);
    if (c.type === "Q5_K") withAutoRoundQ5KPackingBug(ours, q.q);
    const theirs = Uint8Array.from(atob(c.bytes), (ch) => ch.charCodeAt(0));
    assertEquals(ours.length, theirs.length, c.type);
    const ts = GGML_TYPES[c.type].typeSize;
    let same = 0, blocks = 0;
    for (let b = 0; b < ours.length; b += ts) {
      blocks++;
      if (ours.subarray(b, b + ts).every((x, i) => x === theirs[b + i])) same++;
    }
    const note = c.type === "Q5_K" ? " (with auto-round's Q5_K packing bug applied to ours)" : "";
    console.log(`${c.type}${imatrix ? " +imatrix" : ""}: ${same}/${blocks} blocks byte-identical${note}`);
    // Our searches emulate torch's float32 CPU arithmetic and its summation order (search.ts), so
    // every block matches, near-ties included.
    assertEquals(same, blocks, `${c.type}: only ${same}/${blocks} blocks identical`);
  }
});

/**
 * auto-round's q5_k_quant_block (export_to_gguf/packing.py, v0.15 and intel/auto-round main as of
 * 2026-08) packs the low nibbles as `all_L[:, ::2] | (all_L[:, 1::2] << 4)` without masking the even
 * sub-block's code to 4 bits, so its bit 4 lands in bit 0 of the odd sub-block's nibble
 * (llama.cpp's quantize_row_q5_K_ref masks both). Our product packs correctly; to show that our
 * codes, scales and mins are exactly auto-round's and that the byte difference is only that bug,
 * the comparison applies the same unmasked OR to our bytes.
 */
function withAutoRoundQ5KPackingBug(bytes: Uint8Array, codes: Int16Array): void {
  const ts = GGML_TYPES.Q5_K.typeSize, qs = 48; // [d, dmin, scales(12), qh(32), qs(128)]
  for (let b = 0; b * ts < bytes.length; b++) {
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) bytes[b * ts + qs + 32 * c + l] |= codes[b * 256 + 64 * c + l] & 16;
    }
  }
}
