/**
 * Byte-level mutators: bit flips, bytes and words set to edge values, truncation, chunk duplication,
 * deletion and splicing, garbage appended. Each returns a new array and says what it did, so a finding
 * reads "bytes: truncate at 1234; flip bit 3 of byte 17".
 */
import type { Rng } from "./rng.ts";

/** A mutated byte string and the steps that made it. */
export interface Mutated {
  bytes: Uint8Array;
  steps: string[];
}

const EDGE_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x2c, 0x3a, 0x30];

/** Little-endian words that break length and count fields: 0, 1, sign bits, all ones, 2^40. */
const EDGE_WORDS: bigint[] = [
  0n,
  1n,
  0x7fn,
  0xffn,
  0x7fffn,
  0xffffn,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  1n << 40n,
  (1n << 53n) + 1n,
  0x7fffffffffffffffn,
  0xffffffffffffffffn,
];

type ByteOp = (rng: Rng, b: Uint8Array) => Mutated;

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const OPS: [string, number, ByteOp][] = [
  ["flip", 4, (rng, b) => {
    const out = b.slice();
    const steps = [];
    for (let n = rng.smallSize(8); n > 0 && out.length; n--) {
      const at = rng.int(out.length), bit = rng.int(8);
      out[at] ^= 1 << bit;
      steps.push(`flip bit ${bit} of byte ${at}`);
    }
    return { bytes: out, steps };
  }],
  ["edge byte", 3, (rng, b) => {
    const out = b.slice();
    if (!out.length) return { bytes: out, steps: [] };
    const at = rng.int(out.length), v = rng.pick(EDGE_BYTES);
    out[at] = v;
    return { bytes: out, steps: [`byte ${at} = 0x${v.toString(16)}`] };
  }],
  ["edge word", 2, (rng, b) => {
    const out = b.slice();
    const width = rng.pick([2, 4, 8]);
    if (out.length < width) return { bytes: out, steps: [] };
    const at = rng.int(out.length - width + 1), v = rng.pick(EDGE_WORDS);
    for (let i = 0; i < width; i++) out[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
    return { bytes: out, steps: [`u${8 * width} at ${at} = ${v}`] };
  }],
  ["truncate", 2, (rng, b) => {
    const at = rng.chance(0.3) ? rng.int(Math.min(b.length, 64) + 1) : rng.int(b.length + 1);
    return { bytes: b.slice(0, at), steps: [`truncate at ${at} of ${b.length}`] };
  }],
  ["delete chunk", 1, (rng, b) => {
    const at = rng.int(b.length + 1), n = Math.min(rng.smallSize(4096), b.length - at);
    return { bytes: concat(b.subarray(0, at), b.subarray(at + n)), steps: [`delete ${n} bytes at ${at}`] };
  }],
  ["duplicate chunk", 1, (rng, b) => {
    const at = rng.int(b.length + 1), n = Math.min(rng.smallSize(4096), b.length - at);
    const chunk = b.subarray(at, at + n);
    return {
      bytes: concat(b.subarray(0, at + n), chunk, b.subarray(at + n)),
      steps: [`duplicate ${n} bytes at ${at}`],
    };
  }],
  ["splice", 1, (rng, b) => {
    const from = rng.int(b.length + 1), n = Math.min(rng.smallSize(1024), b.length - from);
    const to = rng.int(b.length + 1);
    const chunk = b.slice(from, from + n);
    const out = b.slice();
    out.set(chunk.subarray(0, Math.max(0, out.length - to)), to);
    return { bytes: out, steps: [`copy ${n} bytes from ${from} over ${to}`] };
  }],
  ["append garbage", 1, (rng, b) => {
    const n = rng.smallSize(4096);
    const junk = new Uint8Array(n);
    for (let i = 0; i < n; i++) junk[i] = rng.chance(0.5) ? rng.pick(EDGE_BYTES) : rng.int(256);
    return { bytes: concat(b, junk), steps: [`append ${n} garbage bytes`] };
  }],
  ["insert garbage", 1, (rng, b) => {
    const at = rng.int(b.length + 1), n = rng.smallSize(64);
    const junk = Uint8Array.from({ length: n }, () => rng.int(256));
    return { bytes: concat(b.subarray(0, at), junk, b.subarray(at)), steps: [`insert ${n} bytes at ${at}`] };
  }],
];

/**
 * One to three byte-level mutations of `b`; `region` (a byte range) concentrates them there, e.g. on a
 * file's header, where they matter, rather than on weights, where almost every change is accepted.
 */
export function mutateBytes(rng: Rng, b: Uint8Array, region?: [number, number]): Mutated {
  let bytes = b;
  const steps: string[] = [];
  for (let n = rng.range(1, 3); n > 0; n--) {
    const i = rng.weighted(OPS.map((o) => o[1]));
    const [name, , op] = OPS[i];
    if (region && name !== "truncate" && name !== "append garbage" && rng.chance(0.8)) {
      const [lo, hi] = [Math.min(region[0], bytes.length), Math.min(region[1], bytes.length)];
      const r = op(rng, bytes.slice(lo, hi));
      bytes = concat(bytes.subarray(0, lo), r.bytes, bytes.subarray(hi));
      steps.push(...r.steps.map((s) => `${s} (of bytes ${lo}..${hi})`));
    } else {
      const r = op(rng, bytes);
      bytes = r.bytes;
      steps.push(...r.steps);
    }
  }
  return { bytes, steps };
}

/** Byte mutations of a text, decoded back leniently (invalid UTF-8 becomes U+FFFD only when read). */
export function mutateTextBytes(rng: Rng, text: string): Mutated {
  return mutateBytes(rng, new TextEncoder().encode(text));
}
