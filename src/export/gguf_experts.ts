/**
 * Routed experts stacked into one 3-D GGUF tensor per projection and layer (spec/MODELS.md § 8.2):
 * the pipeline hands each expert's Linear separately (quantized separately, with its own importance),
 * and `blk.N.ffn_{gate,up,down}_exps.weight` is their byte blocks concatenated in expert order, ggml
 * shape `{k, n, E}`. All experts of one tensor must share one type (auto-round moe_adapter.py).
 * And the other tensor written in pieces: the embedding / lm_head quantized on the device in chunks
 * of rows ({@link deviceRowChunks}).
 */
import { FormatError } from "../errors.ts";
import type { GgmlTypeName } from "../qmath/gguf/types.ts";
import type { QuantGgmlType } from "../qmath/gguf/params.ts";
import { decodeFloats, type FloatDType, ST_DTYPE_BYTES } from "../tensor/dtype.ts";
import type { GgufDeviceQuantizer, RawSource } from "./exporter.ts";

/** A stacked tensor, complete. */
export interface StackedTensor {
  name: string;
  type: GgmlTypeName;
  ne: number[];
  bytes: Uint8Array;
}

interface Pending {
  type: GgmlTypeName;
  ne: number[];
  parts: (Uint8Array | undefined)[];
  got: number;
}

/** Collects expert tensors until a stacked tensor has all its experts. */
export class ExpertStacker {
  readonly #pending = new Map<string, Pending>();

  constructor(readonly nExperts: number) {}

  /**
   * Add expert `e`'s bytes (ggml shape `ne` = `{k, n}`) to `stacked`; returns the whole tensor when
   * this was its last expert.
   */
  add(
    stacked: string,
    e: number,
    type: GgmlTypeName,
    ne: number[],
    bytes: Uint8Array,
  ): StackedTensor | undefined {
    let p = this.#pending.get(stacked);
    if (!p) {
      p = { type, ne, parts: new Array(this.nExperts).fill(undefined), got: 0 };
      this.#pending.set(stacked, p);
    }
    if (e < 0 || e >= this.nExperts || p.parts[e]) {
      throw new FormatError(`${stacked}: expert ${e} is out of range or given twice`);
    }
    if (p.type !== type || p.ne.join() !== ne.join()) {
      throw new FormatError(
        `${stacked}: expert ${e} is ${type} [${ne}], expert tensors must share one type and shape ` +
          `(${p.type} [${p.ne}]); give every expert of a projection the same bits`,
      );
    }
    p.parts[e] = bytes;
    if (++p.got < this.nExperts) return undefined;
    this.#pending.delete(stacked);
    const out = new Uint8Array(p.parts.reduce((a, b) => a + b!.length, 0));
    let at = 0;
    for (const b of p.parts) (out.set(b!, at), at += b!.length);
    return { name: stacked, type: p.type, ne: [...p.ne, this.nExperts], bytes: out };
  }

  /** Throws when a stacked tensor still misses experts (called before the file is closed). */
  checkComplete(): void {
    for (const [name, p] of this.#pending) {
      throw new FormatError(`${name}: only ${p.got} of ${this.nExperts} experts were written`);
    }
  }
}

/**
 * The embedding or lm_head through the device quantizer, 256 MiB of f32 rows at a time, read from
 * the checkpoint piece by piece: a 151936 × 8192 table is never whole on the host, neither as
 * stored nor as f32 (GGML blocks never cross rows, so the pieces' bytes concatenate to the whole's).
 */
export async function deviceRowChunks(
  device: GgufDeviceQuantizer,
  type: GgmlTypeName,
  dtype: FloatDType | "F64",
  src: RawSource,
  n: number,
  k: number,
  opts: Parameters<GgufDeviceQuantizer>[4],
): Promise<Uint8Array> {
  const size = ST_DTYPE_BYTES[dtype] * k;
  // AUTOROUND_GGUF_ROW_CHUNK_BYTES: smaller pieces, so that tests cut a small table into several.
  const chunk = Number(Deno.env.get("AUTOROUND_GGUF_ROW_CHUNK_BYTES") ?? 2 ** 28);
  const step = Math.max(1, Math.floor((chunk > 0 ? chunk : 2 ** 28) / (4 * k)));
  const parts: Uint8Array[] = [];
  for (let r = 0; r < n; r += step) {
    const m = Math.min(step, n - r);
    const w = decodeFloats(await src.read(r * size, m * size), dtype);
    parts.push(await device(type as QuantGgmlType, w, m, k, opts));
  }
  const bytes = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) (bytes.set(p, at), at += p.length);
  return bytes;
}
