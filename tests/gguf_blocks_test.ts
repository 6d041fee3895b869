/**
 * GGML block layouts (src/qmath/gguf/blocks.ts): integer round trips for every type, hand-checked
 * blocks, and agreement with llama.cpp's own Python codec (gguf-py `quants`, numpy) on dequantized
 * values and on the reference quantizers auto-round uses for tensors quantized at export.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  allocBlocks,
  dequantizeBlocks,
  dequantizeBytes,
  packBlocks,
  subBlocks,
  unpackBlocks,
} from "../src/qmath/gguf/blocks.ts";
import { GGML_TYPES, type GgmlTypeName } from "../src/qmath/gguf/types.ts";
import { type QuantGgmlType, quantizeAtExport } from "../src/qmath/gguf/quantize.ts";
import { QUANT_GGML_TYPES } from "../src/qmath/gguf/params.ts";
import { ggufPy } from "./consumers/helpers.ts";

const QTYPES = QUANT_GGML_TYPES;

/** Code and scale ranges each type stores. */
const RANGES: Record<QuantGgmlType, { q: [number, number]; sc?: [number, number]; mn?: [number, number] }> = {
  Q4_0: { q: [0, 15] },
  Q4_1: { q: [0, 15] },
  Q5_0: { q: [0, 31] },
  Q5_1: { q: [0, 31] },
  Q8_0: { q: [-128, 127] },
  Q2_K: { q: [0, 3], sc: [0, 15], mn: [0, 15] },
  Q3_K: { q: [0, 7], sc: [-32, 31] },
  Q4_K: { q: [0, 15], sc: [0, 63], mn: [0, 63] },
  Q5_K: { q: [0, 31], sc: [0, 63], mn: [0, 63] },
  Q6_K: { q: [0, 63], sc: [-128, 127] },
};

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
}

function randomBlocks(type: QuantGgmlType, nb: number, seed: number) {
  const r = rng(seed), b = allocBlocks(type, nb), R = RANGES[type];
  const int = ([lo, hi]: [number, number]) => lo + Math.floor(r() * (hi - lo + 1));
  for (let i = 0; i < b.q.length; i++) b.q[i] = int(R.q);
  for (let i = 0; i < nb; i++) {
    b.d[i] = Math.f16round((r() - 0.3) * 0.02);
    if (b.m) b.m[i] = Math.f16round((r() - 0.5) * 0.01);
  }
  if (b.sc) { for (let i = 0; i < b.sc.length; i++) b.sc[i] = int(R.sc!); }
  if (b.mn) { for (let i = 0; i < b.mn.length; i++) b.mn[i] = int(R.mn!); }
  return b;
}

Deno.test("every block type: pack → unpack gives back the same codes, scales and fp16 d/m", () => {
  for (const t of QTYPES) {
    const b = randomBlocks(t, 6, 7);
    const bytes = packBlocks(b);
    assertEquals(bytes.length, 6 * GGML_TYPES[t].typeSize, t);
    const u = unpackBlocks(t, bytes);
    assertEquals([...u.q], [...b.q], `${t} codes`);
    assertEquals([...u.d], [...b.d], `${t} d`);
    if (b.m) assertEquals([...u.m!], [...b.m], `${t} m`);
    if (b.sc) assertEquals([...u.sc!], [...b.sc], `${t} sub-block scales`);
    if (b.mn) assertEquals([...u.mn!], [...b.mn], `${t} sub-block mins`);
  }
});

Deno.test("Q4_0 block by hand: d = 0.5 (fp16 0x3800), nibble j holds weights j and j+16", () => {
  const b = allocBlocks("Q4_0", 1);
  b.d[0] = 0.5;
  for (let j = 0; j < 32; j++) b.q[j] = j % 16;
  const bytes = packBlocks(b);
  assertEquals([bytes[0], bytes[1]], [0x00, 0x38]);
  assertEquals(bytes[2], 0 | (0 << 4)); // weight 0 (code 0) and weight 16 (code 0)
  assertEquals(bytes[3], 1 | (1 << 4));
  const w = dequantizeBlocks(unpackBlocks("Q4_0", bytes));
  assertEquals(w[0], -4); // (0 − 8)·0.5
  assertEquals(w[31], 3.5); // (15 − 8)·0.5
});

Deno.test("Q4_K scale packing matches get_scale_min_k4 for 6-bit scales and mins above 15", () => {
  const b = allocBlocks("Q4_K", 1);
  b.d[0] = 1;
  b.m![0] = 1;
  for (let j = 0; j < 8; j++) {
    b.sc![j] = 63 - j * 7;
    b.mn![j] = j * 9;
  }
  b.q.fill(1);
  const w = dequantizeBlocks(unpackBlocks("Q4_K", packBlocks(b)));
  for (let j = 0; j < 8; j++) assertEquals(w[j * 32], (63 - j * 7) - j * 9, `sub-block ${j}`);
  assertEquals(subBlocks("Q4_K"), { count: 8, size: 32 });
});

const b64 = (u: Uint8Array) => btoa(String.fromCharCode(...u));
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

Deno.test("dequantization equals llama.cpp's gguf-py on every block type (random blocks)", async () => {
  const types: GgmlTypeName[] = [...QTYPES, "F16", "BF16"];
  const inputs = types.map((t, i) => {
    if (t === "F16" || t === "BF16") {
      const v = new Float32Array(64).map((_, j) => Math.sin(j + i) * 3);
      return t === "F16"
        ? new Uint8Array(Float16Array.from(v).buffer)
        : new Uint8Array(new Uint16Array(v.length).map((_, j) => new Uint32Array(v.buffer)[j] >>> 16).buffer);
    }
    return packBlocks(randomBlocks(t as QuantGgmlType, 8, 100 + i));
  });
  const res = await ggufPy({ dequantize: types.map((t, i) => ({ type: t, bytes: b64(inputs[i]) })) });
  if (!res) return;
  types.forEach((t, i) => {
    const theirs = new Float32Array(unb64(res.dequantize[i]).buffer);
    const ours = dequantizeBytes(t, inputs[i]);
    assertEquals(ours.length, theirs.length, t);
    let worst = 0;
    for (let j = 0; j < ours.length; j++) {
      worst = Math.max(worst, Math.abs(ours[j] - theirs[j]) / Math.max(1e-6, Math.abs(theirs[j])));
    }
    // gguf-py computes in float32 with numpy's order of operations: equal to ≤ 2 ulp.
    assert(worst <= 2.5e-7, `${t}: relative difference ${worst}`);
  });
});

Deno.test("export-time quantizers (token_embd) give gguf-py's quantize bytes for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0", async () => {
  const types: QuantGgmlType[] = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"];
  const r = rng(5);
  const w = new Float32Array(32 * 64).map(() => (r() - 0.45) * 0.2);
  const res = await ggufPy({
    quantize: types.map((t) => ({ type: t, floats: b64(new Uint8Array(w.buffer)) })),
  });
  if (!res) return;
  types.forEach((t, i) => {
    const theirs = unb64(res.quantize[i]);
    const ours = packBlocks(quantizeAtExport(t, w, 32, 64));
    let diff = 0;
    for (let j = 0; j < ours.length; j++) if (ours[j] !== theirs[j]) diff++;
    assertEquals(diff, 0, `${t}: ${diff} of ${ours.length} bytes differ`);
  });
});
