/** What a finished block reports (logs, `--log_json`, the resume journal). */

/** Per-block record for logs and `--log_json`. */
export interface BlockReport {
  block: number;
  seconds: number;
  quantized: string[];
  skipped: string[];
  /** SignRound only: auto-round's "loss iter 0: L0 -> iter k: Lbest". */
  lossStart?: number;
  lossBest?: number;
  bestIter?: number;
  iterations?: number;
  /** Set when the block was finished by an earlier, interrupted run and replayed from its journal. */
  replayed?: boolean;
}

/** Progress callback: block `index` (1-based) of `total` finished. */
export type BlockProgress = (report: BlockReport, index: number, total: number) => void;
