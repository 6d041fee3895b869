/**
 * AutoScheme's scoring pass (spec/AUTOSCHEME.md § 3.1-3.3, § 5.3): for each option, every scored
 * Linear RTN-quantized with it at once (v = 0, unit scales, § 3.2), the causal-LM cross entropy on
 * the scoring batches, and per layer S = Σ_batches Σ|∂L/∂Ŵ ⊙ (W − Ŵ)|. Weight-only options only in
 * this build (no activation term; run.ts refuses the others).
 *
 * Block streaming (§ 5.3): per (option, batch) the blocks run forward one resident at a time,
 * keeping each block's input h_i on the backend (batch × seqlen × hidden per boundary); the final
 * norm, lm_head and loss backward run in row chunks; then the blocks replay in reverse, each
 * reloaded from the WeightSource, its forward recomputed from h_i and its backward run with
 * weight gradients reduced to the score as they come (blockBackward's onGrad) and dL/dh_i handed
 * to the next block down (onInputGrad). Host memory beyond the saved inputs is one block's weights.
 */
import type { Backend, Tensor } from "../../backend/backend.ts";
import { QuantizeError, UnsupportedError } from "../../errors.ts";
import { blockBackward, blockForward, type BlockWeights, disposeSaved } from "../../model/block.ts";
import { blockLinears } from "../../model/block_layout.ts";
import { blockPrefix, type LinearName, type ModelSpec } from "../../model/config.ts";
import { embedName, finalNormName } from "../../model/multimodal.ts";
import {
  loadBlockWeights,
  loadNorm,
  scaleEmbeddings,
  uploadRope,
  type WeightSource,
} from "../../model/transformer.ts";
import { initialStateOf, quantParams } from "../linear_state.ts";
import { fakeQuantOf } from "../weight_quant.ts";
import type { AutoOption } from "./options.ts";

/** Ŵ of one Linear under option `o` (a new tensor): the scoring quantizer, replaceable in tests. */
export type ScoreQuantizer = (layer: string, o: AutoOption, w: Tensor) => Promise<Tensor>;

/** § 3.2: RTN at SignRound's initial point (V = 0, α = β = 1), scales stored as fp16. */
export const rtnQuantizer: ScoreQuantizer = async (_layer, o, w) => {
  if (!o.scheme) throw new QuantizeError(`AutoScheme option ${o.name} has no scheme to score`);
  const be = w.backend;
  using st = await initialStateOf(be, w, o.scheme);
  return fakeQuantOf(be, w, st, quantParams(o.scheme, w.shape[1]));
};

/** What the scoring pass reads. */
export interface ScoreInput {
  be: Backend;
  spec: ModelSpec;
  weights: WeightSource;
  options: readonly AutoOption[];
  /** Full names of the Linears scored (the non-fixed ones); the others run unquantized (§ 7.5). */
  scored: ReadonlySet<string>;
  /** nsamples × seqlen token ids and the calibration loss mask (io/calib.ts). */
  ids: Int32Array;
  lossMask: Uint8Array;
  nsamples: number;
  seqlen: number;
  batchSize: number;
  quantizer?: ScoreQuantizer;
  /** Receives every dL/dŴ (batch b, option index) before it is reduced; must not keep it. */
  onWeightGrad?: (layer: string, option: number, dW: Tensor) => void;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** The scores and, per option, the token-mean loss of each batch (keep-16-bit options: empty). */
export interface ScoreResult {
  scores: Map<string, number[]>;
  losses: number[][];
}

/** Σ|g ⊙ d| in float64 (§ 3.1's weight term for one gradient and one W − Ŵ). */
export function absProductSum(g: ArrayLike<number>, d: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += Math.abs(g[i] * d[i]);
  return s;
}

/** Next-token targets of `ids` [B, T] with the loss mask: −1 where not counted; and the count. */
export function lmTargets(ids: Int32Array, mask: Uint8Array, batch: number, seqlen: number) {
  const targets = new Int32Array(batch * seqlen).fill(-1);
  let count = 0;
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t + 1 < seqlen; t++) {
      const r = b * seqlen + t;
      if (mask[r]) (targets[r] = ids[r + 1]), count++;
    }
  }
  return { targets, count };
}

/** A block's weights with its scored Linears replaced by Ŵ, and host W − Ŵ per scored Linear. */
async function quantizedBlock(
  inp: ScoreInput,
  w: BlockWeights,
  i: number,
  o: AutoOption,
  withDelta: boolean,
) {
  const q = inp.quantizer ?? rtnQuantizer;
  const linear = { ...w.linear };
  const owned: Tensor[] = [];
  const delta = new Map<LinearName, Float64Array>();
  for (const { name: l } of blockLinears(inp.spec, i)) {
    const name = blockPrefix(i, inp.spec) + l;
    if (!inp.scored.has(name)) continue;
    const wq = await q(name, o, w.linear[l]);
    owned.push(wq);
    linear[l] = wq;
    if (withDelta) {
      const a = await inp.be.read(w.linear[l]), b = await inp.be.read(wq);
      delta.set(l, Float64Array.from(a, (x, j) => x - b[j]));
    }
  }
  return { weights: { ...w, linear }, delta, dispose: () => owned.forEach((t) => t[Symbol.dispose]()) };
}

/** Run the scoring pass (§ 3.3 block-wise, § 5.3 streaming). */
export async function scoreOptions(inp: ScoreInput): Promise<ScoreResult> {
  const { be, spec, weights: src, options, seqlen } = inp;
  if (!be.crossEntropyBackward) {
    throw new QuantizeError(
      `AutoScheme scoring needs the cross-entropy backward, which the ${be.name} backend lacks: use --device cpu`,
    );
  }
  const scores = new Map([...inp.scored].map((n) => [n, options.map(() => 0)]));
  const losses: number[][] = options.map(() => []);
  const load = (name: string, shape: number[]) =>
    src.readF32(name).then((v) => be.upload(v, shape, be.computeDType));
  const H = spec.hidden, V = spec.vocab;
  if (spec.finalSoftcap !== undefined) {
    throw new UnsupportedError(
      `AutoScheme's scoring pass has no backward of ${spec.modelType}'s final logit soft-capping yet`,
    );
  }
  using embed = await load(embedName(spec), [V, H]);
  using norm = spec.normOffset
    ? await loadNorm(be, src, finalNormName(spec), [H], be.computeDType)
    : await load(finalNormName(spec), [H]);
  const headName = !spec.tieEmbeddings || src.has(spec.lmHeadName) ? spec.lmHeadName : undefined;
  using headOwned = headName ? await load(headName, [V, H]) : undefined;
  const head = headOwned ?? embed;
  using rope = uploadRope(be, spec, seqlen);
  const chunk = Math.max(1, Math.floor((1 << 22) / V));
  for (const [oi, o] of options.entries()) {
    if (o.keep16) continue; // § 3.1: never run, every layer scores 0
    for (let s0 = 0; s0 < inp.nsamples; s0 += inp.batchSize) {
      const batch = Math.min(inp.batchSize, inp.nsamples - s0);
      const geo = { batch, seqLen: seqlen }, rows = batch * seqlen;
      const ids = inp.ids.subarray(s0 * seqlen, s0 * seqlen + rows);
      const { targets, count } = lmTargets(ids, inp.lossMask.subarray(s0 * seqlen), batch, seqlen);
      // Forward, no grad: h_0 … h_{N−1} kept, one block resident at a time.
      const hs: Tensor[] = [];
      try {
        using idT = be.uploadInt(ids, [rows]);
        hs.push(scaleEmbeddings(be, spec, be.embedding(embed, idT)));
        for (let i = 0; i < spec.nLayers; i++) {
          using w = await loadBlockWeights(be, spec, src, i);
          const qb = await quantizedBlock(inp, w, i, o, false);
          hs.push(blockForward(be, spec, qb.weights, hs[i], geo, rope).y);
          qb.dispose();
        }
        // Head: z = rmsnorm(h_N); loss = mean CE over counted tokens; g_N = ∂L/∂h_N (chunks of rows).
        const hN = hs.pop()!;
        using z = be.rmsNorm(hN, norm, spec.rmsEps);
        using dz = be.full([rows, H], 0);
        let nll = 0;
        for (let r = 0; r < rows; r += chunk) {
          const c = Math.min(chunk, rows - r);
          using zc = be.rows(z, r, c);
          using logits = be.matmul(zc, head, { transB: true });
          using tg = be.uploadInt(targets.subarray(r, r + c), [c]);
          using ce = be.crossEntropy(logits, tg);
          const ceh = await be.read(ce);
          for (let j = 0; j < c; j++) if (targets[r + j] >= 0) nll += ceh[j];
          using dl = be.crossEntropyBackward(logits, tg, 1 / Math.max(count, 1));
          using dzc = be.matmul(dl, head);
          using dst = be.rows(dz, r, c);
          be.copy(dst, dzc);
        }
        losses[oi].push(nll / Math.max(count, 1));
        let g = be.rmsNormBackward(hN, norm, dz, spec.rmsEps);
        hN[Symbol.dispose]();
        // Replay in reverse: reload block i, recompute from h_i, backward with scoring hooks.
        for (let i = spec.nLayers - 1; i >= 0; i--) {
          using w = await loadBlockWeights(be, spec, src, i);
          const qb = await quantizedBlock(inp, w, i, o, true);
          const hi = hs.pop()!;
          const { y, saved } = blockForward(be, spec, qb.weights, hi, geo, rope, { save: true });
          y[Symbol.dispose]();
          let dx: Tensor | undefined;
          const pending: Promise<void>[] = [];
          blockBackward(be, spec, qb.weights, saved!, g, geo, rope, (l) => qb.delta.has(l), {
            release: true,
            onGrad: (l, dW) => {
              const name = blockPrefix(i, spec) + l;
              inp.onWeightGrad?.(name, oi, dW);
              pending.push(
                be.read(dW).then((gh) => {
                  scores.get(name)![oi] += absProductSum(gh, qb.delta.get(l)!);
                }).finally(() => dW[Symbol.dispose]()),
              );
            },
            onInputGrad: i > 0 ? (t) => (dx = t) : undefined,
          });
          await Promise.all(pending);
          disposeSaved(saved!);
          hi[Symbol.dispose]();
          qb.dispose();
          g[Symbol.dispose]();
          if (i > 0) g = dx!;
        }
      } finally {
        for (const t of hs) t[Symbol.dispose]();
      }
    }
    inp.log?.(
      `AutoScheme ${o.name}: loss ${mean(losses[oi]).toFixed(4)} over ${losses[oi].length} batch(es)`,
    );
  }
  return { scores, losses };
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
}
