/**
 * Structure-aware GGUF mutations. A walk over a valid file (layout: src/formats/gguf/writer.ts) lists
 * every length, count, type id, dimension and offset with its byte position; a mutation sets one or
 * two of them to an edge value (0, off by one, 2^32, 2^40, 2^64 − 1, an unknown type), edits a
 * metadata number the model is built from (block_count, embedding_length, alignment, ...), or damages
 * bytes of the header or the tensor data.
 */
import { mutateBytes, type Mutated } from "./bytes.ts";
import type { Rng } from "./rng.ts";

/** What a field of the header holds. */
export type GgufFieldKind =
  | "version"
  | "tensor count"
  | "kv count"
  | "string length"
  | "value type"
  | "array item type"
  | "array length"
  | "value"
  | "dims"
  | "dim"
  | "tensor type"
  | "tensor offset";

/** One field of the header: its byte position, width, value and what it is. */
export interface GgufField {
  at: number;
  width: 4 | 8 | 1 | 2;
  kind: GgufFieldKind;
  value: bigint;
  label: string;
}

const SCALAR_WIDTH: Record<number, 1 | 2 | 4 | 8> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};

/** The fields of a valid GGUF file's header, and where its header ends. */
export function ggufFields(bytes: Uint8Array): { fields: GgufField[]; headerEnd: number } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: GgufField[] = [];
  let pos = 4;
  const field = (width: 1 | 2 | 4 | 8, kind: GgufFieldKind, label: string): bigint => {
    const value = width === 8
      ? v.getBigUint64(pos, true)
      : BigInt(width === 4 ? v.getUint32(pos, true) : width === 2 ? v.getUint16(pos, true) : v.getUint8(pos));
    fields.push({ at: pos, width, kind, value, label });
    pos += width;
    return value;
  };
  const str = (label: string): string => {
    const n = Number(field(8, "string length", label));
    const s = new TextDecoder().decode(bytes.subarray(pos, pos + n));
    pos += n;
    return s;
  };
  field(4, "version", "version");
  const nTensors = Number(field(8, "tensor count", "tensor count"));
  const nKv = Number(field(8, "kv count", "kv count"));
  for (let i = 0; i < nKv; i++) {
    const key = str(`key ${i}`);
    const t = Number(field(4, "value type", `${key} type`));
    if (t === 9) {
      const it = Number(field(4, "array item type", `${key} item type`));
      const n = Number(field(8, "array length", `${key} length`));
      for (let j = 0; j < n; j++) {
        if (it === 8) {
          const len = Number(v.getBigUint64(pos, true));
          if (j < 4) field(8, "string length", `${key}[${j}] length`);
          else pos += 8;
          pos += len;
        } else pos += SCALAR_WIDTH[it];
      }
    } else if (t === 8) str(`${key} value`);
    else field(SCALAR_WIDTH[t] as 1 | 2 | 4 | 8, "value", key);
  }
  for (let i = 0; i < nTensors; i++) {
    const name = str(`tensor ${i} name`);
    const nd = Number(field(4, "dims", `${name} n_dims`));
    for (let d = 0; d < nd; d++) field(8, "dim", `${name} ne[${d}]`);
    field(4, "tensor type", `${name} type`);
    field(8, "tensor offset", `${name} offset`);
  }
  return { fields, headerEnd: pos };
}

function edgeValue(rng: Rng, f: GgufField, fields: GgufField[]): bigint {
  const max = f.width === 8 ? (1n << 64n) - 1n : (1n << BigInt(8 * f.width)) - 1n;
  const common = [0n, 1n, f.value + 1n, f.value - 1n, f.value * 2n, max, max >> 1n];
  const byKind: Partial<Record<GgufFieldKind, bigint[]>> = {
    "version": [1n, 2n, 4n, 0xffffffffn],
    "tensor count": [f.value + 100n, 1n << 32n, 1n << 40n, (1n << 53n) + 1n],
    "kv count": [f.value + 1n, 1n << 32n, 1n << 40n],
    "string length": [1n << 32n, 1n << 40n, (1n << 53n) + 1n],
    "value type": [9n, 8n, 13n, 255n, 0x80000000n, BigInt(rng.int(13))],
    "array item type": [9n, 8n, 13n, BigInt(rng.int(13))],
    "array length": [1n << 32n, 1n << 40n, 100_000_000n, (1n << 53n) + 1n],
    "value": [0n, 3n, 7n, 1n << 31n, 1n << 40n, 1000n, 0x7fc00000n, 0x7f800000n, 0xff800000n],
    "dims": [0n, 3n, 4n, 5n, 0xffffffffn],
    "dim": [0n, 3n, 33n, 1n << 31n, 1n << 32n, 1n << 40n, (1n << 53n) + 1n],
    "tensor type": [BigInt(rng.int(40)), 4n, 5n, 6n, 14n, 30n, 31n, 100n, 0xffffffffn],
    "tensor offset": [
      f.value + 1n,
      f.value + 32n,
      1n << 40n,
      ...fields.filter((g) => g.kind === "tensor offset").map((g) => g.value),
    ],
  };
  const v = rng.chance(0.7) ? rng.pick(byKind[f.kind] ?? common) : rng.pick(common);
  return v < 0n ? max : v & max;
}

function setField(out: Uint8Array, f: GgufField, value: bigint): void {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  if (f.width === 8) v.setBigUint64(f.at, value, true);
  else if (f.width === 4) v.setUint32(f.at, Number(value), true);
  else if (f.width === 2) v.setUint16(f.at, Number(value), true);
  else v.setUint8(f.at, Number(value));
}

/** Field kinds and how often a mutation picks one of them. */
const KIND_WEIGHTS: [GgufFieldKind, number][] = [
  ["version", 1],
  ["tensor count", 2],
  ["kv count", 2],
  ["string length", 3],
  ["value type", 3],
  ["array item type", 1],
  ["array length", 3],
  ["value", 4],
  ["dims", 2],
  ["dim", 4],
  ["tensor type", 4],
  ["tensor offset", 3],
];

/** A mutated GGUF file: header fields set to edge values, or byte damage to the header or data. */
export function mutateGguf(rng: Rng, bytes: Uint8Array): Mutated {
  const { fields, headerEnd } = ggufFields(bytes);
  const r = rng.weighted([7, 2, 1]);
  if (r === 1) return mutateBytes(rng, bytes, [0, headerEnd]);
  if (r === 2) return mutateBytes(rng, bytes, [headerEnd, bytes.length]);
  const out = bytes.slice();
  const steps: string[] = [];
  for (let k = rng.range(1, 2); k > 0; k--) {
    const kind = KIND_WEIGHTS[rng.weighted(KIND_WEIGHTS.map((w) => w[1]))][0];
    const of = fields.filter((f) => f.kind === kind);
    if (!of.length) continue;
    const f = rng.pick(of);
    const value = edgeValue(rng, f, fields);
    setField(out, f, value);
    steps.push(`${f.label} = ${value} (was ${f.value})`);
  }
  return { bytes: out, steps };
}
