/**
 * Structure-aware safetensors mutations: the 8-byte header length, the header JSON (dtype, shape and
 * data_offsets of an entry; overlapping, reversed and out-of-range offsets; shapes claiming terabytes
 * with offsets to match; entries dropped, renamed, duplicated; `__metadata__`), and the data area
 * (byte damage, truncation). The format is src/io/safetensors/format.ts.
 */
import { mutateBytes, type Mutated } from "./bytes.ts";
import { type JsonTree, mutateJsonTree, Raw, writeJson } from "./json.ts";
import type { Rng } from "./rng.ts";

interface Entry {
  dtype: JsonTree;
  shape: JsonTree;
  data_offsets: JsonTree;
}

/** A safetensors file split into its header object and data area. */
export interface SafetensorsParts {
  header: Record<string, JsonTree>;
  data: Uint8Array;
}

/** Split a (valid) safetensors file. */
export function splitSafetensors(bytes: Uint8Array): SafetensorsParts {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return { header, data: bytes.subarray(8 + n) };
}

/** Join a header (its JSON text) and data area; `lengthField` overrides the header length written. */
export function joinSafetensors(headerText: string, data: Uint8Array, lengthField?: bigint): Uint8Array {
  let json = new TextEncoder().encode(headerText);
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = new TextEncoder().encode(headerText + " ".repeat(pad));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const DTYPES = [
  "F64",
  "F32",
  "F16",
  "BF16",
  "I64",
  "I32",
  "I16",
  "I8",
  "U8",
  "BOOL",
  "F8_E4M3",
  "U16",
  "U32",
  "F7",
  "f32",
  "",
];
const HUGE_DIMS = [2 ** 20, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53 - 1];

function tensorNames(h: Record<string, JsonTree>, prefer: (name: string) => boolean): string[] {
  const all = Object.keys(h).filter((k) => k !== "__metadata__");
  const preferred = all.filter(prefer);
  return preferred.length ? preferred : all;
}

/** One structural edit of an entry; returns the step's description. */
function editEntry(rng: Rng, h: Record<string, JsonTree>, name: string): string {
  const e = h[name] as unknown as Entry;
  if (typeof e !== "object" || e === null || Array.isArray(e) || e instanceof Raw) {
    return `${name} is no entry`;
  }
  const shape = Array.isArray(e.shape) ? e.shape as number[] : [];
  const [b, end] = Array.isArray(e.data_offsets) ? e.data_offsets as number[] : [0, 0];
  const others = Object.keys(h).filter((k) => {
    const o = h[k];
    return k !== name && k !== "__metadata__" && typeof o === "object" && o !== null && !Array.isArray(o);
  });
  switch (rng.int(12)) {
    case 0:
      e.dtype = rng.pick(DTYPES);
      return `${name}.dtype = ${e.dtype}`;
    case 1: {
      const s = [...shape];
      if (s.length && rng.chance(0.5)) s.pop();
      else s.push(rng.pick([1, 2, 0]));
      e.shape = s;
      return `${name}.shape = [${s}]`;
    }
    case 2: {
      const s = [...shape];
      const i = rng.int(Math.max(1, s.length));
      s[i] = rng.pick([0, -1, 0.5, (s[i] ?? 1) * 2, (s[i] ?? 1) + 1, Math.max(0, (s[i] ?? 1) - 1)]);
      e.shape = s;
      return `${name}.shape = [${s}]`;
    }
    case 3: { // a shape of terabytes, with offsets that agree with it
      const s = shape.length ? shape.map(() => rng.pick(HUGE_DIMS)) : [rng.pick(HUGE_DIMS)];
      e.shape = s;
      if (rng.chance(0.5)) {
        const bytes = s.reduce((p, d) => p * d, 1) * 4;
        e.data_offsets = [b, b + bytes];
      }
      return `${name}.shape = [${s}] (huge)`;
    }
    case 4: { // [huge, 0]: zero bytes, absurd dims
      e.shape = [rng.pick(HUGE_DIMS), 0];
      e.data_offsets = [b, b];
      return `${name}.shape = [huge, 0]`;
    }
    case 5: {
      const v = rng.pick([
        [end, b],
        [b, end + 1],
        [b + 1, end],
        [b, b],
        [0, end - b],
        [b, 2 ** 53],
        [-1, end],
        [b, end, end],
      ]);
      e.data_offsets = v;
      return `${name}.data_offsets = [${v}]`;
    }
    case 6: { // overlap another tensor
      if (!others.length) return "no other tensor";
      const o = h[rng.pick(others)] as unknown as Entry;
      const ob = Array.isArray(o.data_offsets) ? Number(o.data_offsets[0]) : 0;
      e.data_offsets = [ob, ob + (end - b)];
      return `${name}.data_offsets moved over another tensor`;
    }
    case 7:
      delete h[name];
      return `delete ${name}`;
    case 8: {
      const to = rng.pick([`${name}.copy`, name.replace(/\d+/, "99"), name.toUpperCase(), "", ...others]);
      delete h[name];
      h[to] = e as unknown as JsonTree;
      return `rename ${name} -> ${to}`;
    }
    case 9:
      h.__metadata__ = rng.pick<JsonTree>([{ format: 1 }, [], "pt", { format: "pt", x: { y: 1 } }, {
        ["k".repeat(10_000)]: "v",
      }]);
      return `__metadata__ edited`;
    case 10:
      e.dtype = rng.pick(["I32", "F32", "F16", "U8", "I64"]);
      e.shape = rng.pick([[...shape].reverse(), [shape.reduce((p, d) => p * d, 1)], [...shape, 1]]);
      return `${name} reinterpreted as ${e.dtype} [${e.shape}]`;
    default:
      h[name] = rng.pick<JsonTree>([null, [], "x", 1, { dtype: e.dtype }, new Raw("{}")]);
      return `${name} entry replaced`;
  }
}

/**
 * A mutated safetensors file. `prefer` picks the tensors the structural edits favour (e.g. packed
 * `.qweight` ones in a quantized folder).
 */
export function mutateSafetensors(
  rng: Rng,
  bytes: Uint8Array,
  prefer: (name: string) => boolean = () => true,
): Mutated {
  const { header, data } = splitSafetensors(bytes);
  const headerEnd = bytes.length - data.length;
  switch (rng.weighted([6, 2, 2, 1, 2])) {
    case 0: { // entry edits
      const h = structuredClone(header);
      const steps = [];
      for (let k = rng.range(1, 2); k > 0; k--) {
        const names = tensorNames(h, prefer);
        if (!names.length) break;
        steps.push(editEntry(rng, h, rng.pick(names)));
      }
      return { bytes: joinSafetensors(writeJson(h), data), steps };
    }
    case 1: { // generic JSON mutation of the header
      const { tree, steps } = mutateJsonTree(rng, header, ["dtype", "shape", "data_offsets", "__metadata__"]);
      return { bytes: joinSafetensors(writeJson(tree), data), steps: steps.map((s) => `header ${s}`) };
    }
    case 2: { // the length field
      const n = BigInt(headerEnd - 8);
      const v = rng.pick([
        0n,
        1n,
        2n,
        7n,
        n - 1n,
        n + 1n,
        n + 8n,
        BigInt(bytes.length),
        BigInt(bytes.length - 7),
        100_000_001n,
        1n << 40n,
        (1n << 64n) - 1n,
      ]);
      const out = bytes.slice();
      new DataView(out.buffer).setBigUint64(0, v, true);
      return { bytes: out, steps: [`header length = ${v} (was ${n})`] };
    }
    case 3: // data area: byte damage (mostly accepted: the values change)
      return mutateBytes(rng, bytes, [headerEnd, bytes.length]);
    default: // header bytes: syntax damage, invalid UTF-8
      return mutateBytes(rng, bytes, [0, headerEnd]);
  }
}
