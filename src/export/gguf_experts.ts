/**
 * Routed experts stacked into one 3-D GGUF tensor per projection and layer (spec/MODELS.md § 8.2):
 * the pipeline hands each expert's Linear separately (quantized separately, with its own importance),
 * and `blk.N.ffn_{gate,up,down}_exps.weight` is their byte blocks concatenated in expert order, ggml
 * shape `{k, n, E}`. All experts of one tensor must share one type (auto-round moe_adapter.py).
 */
import { FormatError } from "../errors.ts";
import type { GgmlTypeName } from "../qmath/gguf/types.ts";

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
