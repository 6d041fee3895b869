/**
 * Logits of a GGUF file under our forward (read back by our reader) and the row-wise comparison the
 * family GGUF tests assert on (tests/gguf_families_test.ts, gguf_families_kquant_test.ts).
 */
import { CpuBackend } from "../../src/backend/cpu/cpu_backend.ts";
import { openGgufModel } from "../../src/io/gguf_model.ts";
import { LoadedModel } from "../../src/model/transformer.ts";
import { argmax, kl } from "./logits.ts";

/** All-position logits of each sequence under our forward, `[3][T·V]`. */
export async function ourLogits(
  file: string,
  ids: Int32Array,
  T: number,
): Promise<Float32Array[]> {
  using be = new CpuBackend();
  using m = await openGgufModel(file);
  using model = await LoadedModel.load(be, m.spec, m.weights, {
    positions: 64,
  });
  const out: Float32Array[] = [];
  for (let s = 0; s * T < ids.length; s++) {
    using h = model.hidden(ids.subarray(s * T, (s + 1) * T), {
      batch: 1,
      seqLen: T,
    });
    using lg = model.logits(h);
    out.push(await be.read(lg));
  }
  return out;
}

export interface Cmp {
  /** Per position max|Δ|/max|logit|: the median and the worst. */
  median: number;
  rel: number;
  /** KL(b‖a) per position: the mean and the worst. */
  meanKl: number;
  kl: number;
  /** Share of positions with the same argmax. */
  top1: number;
}

/** Row-wise comparison of logits `a` with `b`, each `[positions · V]` per sequence. */
export function compare(
  a: ArrayLike<number>[],
  b: ArrayLike<number>[],
  V: number,
): Cmp {
  const rels: number[] = [], kls: number[] = [];
  let same = 0;
  for (let i = 0; i < a.length; i++) {
    for (let r = 0; r * V < a[i].length; r++) {
      const x = Array.prototype.slice.call(
        a[i],
        r * V,
        (r + 1) * V,
      ) as number[];
      const y = Array.prototype.slice.call(
        b[i],
        r * V,
        (r + 1) * V,
      ) as number[];
      let d = 0, s = 0;
      for (let j = 0; j < V; j++) {
        (d = Math.max(d, Math.abs(x[j] - y[j])), s = Math.max(s, Math.abs(y[j])));
      }
      rels.push(d / s);
      kls.push(kl(y, x));
      same += argmax(x) === argmax(y) ? 1 : 0;
    }
  }
  rels.sort((p, q) => p - q);
  return {
    median: rels[rels.length >> 1],
    rel: rels[rels.length - 1],
    meanKl: kls.reduce((p, q) => p + q, 0) / kls.length,
    kl: Math.max(...kls),
    top1: same / rels.length,
  };
}

const e2 = (x: number) => x.toExponential(1);
export const fmt = (c: Cmp) =>
  `${e2(c.median)} | ${e2(c.rel)} | ${e2(c.meanKl)} | ${e2(c.kl)} | ${(c.top1 * 100).toFixed(0)}%`;
