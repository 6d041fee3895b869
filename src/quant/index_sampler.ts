/** The order SignRound draws calibration samples in, as auto-round draws them. */
import type { PyRandom } from "../io/pyrandom.ts";

/**
 * auto-round's IndexSampler: shuffles 0..n−1 once, hands out `batch` indices per call, reshuffles
 * when fewer than `batch` remain (the partial rest is dropped).
 */
export class IndexSampler {
  private readonly indices: number[];
  private index = 0;
  constructor(private readonly n: number, private readonly batch: number, private readonly rng: PyRandom) {
    this.indices = [...Array(n).keys()];
    rng.shuffle(this.indices);
  }
  next(): number[] {
    if (this.index + this.batch > this.n) {
      this.rng.shuffle(this.indices);
      this.index = 0;
    }
    const b = this.indices.slice(this.index, this.index + this.batch);
    this.index += this.batch;
    return b;
  }
}
