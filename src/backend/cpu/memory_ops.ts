/**
 * The CPU backend's data movement on plain arrays: whole calibration samples gathered into a batch,
 * and embedding rows looked up by token id.
 */
import { BackendError } from "../../errors.ts";
import type { FArr } from "./kernels.ts";

/**
 * dst samples i ← src samples `indices[i] − first` (`per` elements each); with `segment` set, indices
 * outside the source leave their dst sample as it is, otherwise they are an error (Backend.gatherSamples).
 */
export function gatherSamples(
  dd: FArr,
  sd: FArr,
  indices: readonly number[],
  per: number,
  first: number,
  segment: boolean,
): void {
  const samples = sd.length / per;
  if (dd.length < indices.length * per) {
    throw new BackendError(`gatherSamples: dst holds ${dd.length} elements, need ${indices.length * per}`);
  }
  indices.forEach((idx, i) => {
    const j = idx - first;
    if (j >= 0 && j < samples) dd.set(sd.subarray(j * per, (j + 1) * per), i * per);
    else if (!segment) {
      throw new BackendError(`gatherSamples: sample index ${idx} outside 0..${samples - 1}`);
    }
  });
}

/** Rows of `table` `[vocab, H]` for the token ids `ids` into `out` `[ids.length, H]`. */
export function embeddingRows(table: FArr, vocab: number, ids: Int32Array, out: FArr): void {
  const H = table.length / vocab;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw new BackendError(`token id ${ids[i]} outside the vocabulary`);
    }
    out.set(table.subarray(ids[i] * H, (ids[i] + 1) * H), i * H);
  }
}
