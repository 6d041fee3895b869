/**
 * Logits of GGUF files under llama.cpp (node-llama-cpp) next to our own forward over the same file
 * read back by our reader: the comparison the GGUF consumer tests assert on.
 */
import { inspectGguf } from "../../src/formats/gguf/summary.ts";
import { openGgufModel } from "../../src/io/gguf_model.ts";
import type { Tokenizer } from "../../src/io/tokenizer.ts";
import { lastLogits, type LlamaRequest, runLlamaCpp } from "./helpers.ts";

/** KL(p‖q) of two logit vectors, in nats. */
export function kl(p: ArrayLike<number>, q: ArrayLike<number>): number {
  const lse = (x: ArrayLike<number>) => {
    let m = -Infinity;
    for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]);
    let s = 0;
    for (let i = 0; i < x.length; i++) s += Math.exp(x[i] - m);
    return m + Math.log(s);
  };
  const lp = lse(p), lq = lse(q);
  let d = 0;
  for (let i = 0; i < p.length; i++) {
    const a = p[i] - lp;
    d += Math.exp(a) * (a - (q[i] - lq));
  }
  return d;
}
export const argmax = (x: ArrayLike<number>) => {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[b]) b = i;
  return b;
};

/** One row of the comparison table printed by the tests (and quoted in the report). */
export interface Row {
  file: string;
  types: string;
  maxDiff: number;
  relDiff: number;
  kl: number;
  top1: boolean;
}

/** Compare llama.cpp's last-position logits with ours on `prompts` for each GGUF file. */
export async function compareLogits(
  files: string[],
  tok: Tokenizer,
  prompts: string[],
  extra: Partial<LlamaRequest> = {},
) {
  const ids = prompts.map((p) => tok.encode(p));
  const res = await runLlamaCpp(files.map((model) => ({ model, sequences: ids, lastOnly: true, ...extra })));
  const rows: Row[] = [];
  for (const [i, file] of files.entries()) {
    using m = await openGgufModel(file);
    let maxDiff = 0, scale = 0, worstKl = 0, top1 = true;
    for (const [j, seq] of ids.entries()) {
      const ours = await lastLogits(m.spec, m.weights, seq);
      const theirs = res[i].logits![j][0];
      for (let v = 0; v < ours.length; v++) {
        maxDiff = Math.max(maxDiff, Math.abs(ours[v] - theirs[v]));
        scale = Math.max(scale, Math.abs(ours[v]));
      }
      worstKl = Math.max(worstKl, kl(ours, theirs));
      top1 &&= argmax(ours) === argmax(theirs);
    }
    const s = await inspectGguf(file);
    rows.push({
      file: file.split("/").pop()!,
      types: Object.keys(s.byType).join("/"),
      maxDiff,
      relDiff: maxDiff / scale,
      kl: worstKl,
      top1,
    });
  }
  return { rows, res };
}

export function printRows(title: string, rows: Row[]) {
  console.log(`\n${title}\n| file | types | max |Δlogit| | rel | KL | top-1 |\n|---|---|---|---|---|---|`);
  for (const r of rows) {
    console.log(
      `| ${r.file} | ${r.types} | ${r.maxDiff.toExponential(2)} | ${(r.relDiff * 100).toFixed(2)}% | ${
        r.kl.toExponential(2)
      } | ${r.top1 ? "same" : "DIFFERENT"} |`,
    );
  }
}
