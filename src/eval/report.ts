/**
 * Results as lm-eval prints and saves them: the markdown table of `lm_eval.utils.make_table`
 * (tasks in name order, metrics sorted by name, values "%.4f", "±" and the stderr or "N/A") and a
 * JSON object with lm-eval's `results` / `versions` / `n-shot` / `higher-is-better` / `n-samples`
 * keys, so scripts written for lm-eval's output read ours.
 */
import type { EvalReport, TaskResult } from "./run.ts";

type Align = "left" | "right";

/** A markdown table laid out like pytablewriter's (centred headers, numbers right-aligned). */
export function markdownTable(headers: string[], rows: string[][], align: Align[]): string {
  const width = headers.map((h, c) => Math.max(3, h.length, ...rows.map((r) => [...r[c]].length)));
  const pad = (s: string, w: number, a: Align | "center") => {
    const n = w - [...s].length;
    if (a === "right") return " ".repeat(n) + s;
    if (a === "left") return s + " ".repeat(n);
    const l = Math.floor(n / 2);
    return " ".repeat(l) + s + " ".repeat(n - l);
  };
  const line = (cells: string[]) => "|" + cells.join("|") + "|";
  return [
    line(headers.map((h, c) => pad(h, width[c], "center"))),
    line(width.map((w, c) => (align[c] === "right" ? "-".repeat(w - 1) + ":" : "-".repeat(w)))),
    ...rows.map((r) => line(r.map((s, c) => pad(s, width[c], align[c])))),
  ].join("\n");
}

/**
 * lm-eval's results table.
 *
 * @example
 * ```ts
 * console.log(formatResultsTable(report));
 * // |  Tasks |Version|Filter|n-shot| Metric |   |Value |   |Stderr|
 * // |--------|------:|------|-----:|--------|---|-----:|---|-----:|
 * // |arc_easy|      1|none  |     0|acc     |↑  |0.2600|±  |0.0441|
 * ```
 */
export function formatResultsTable(report: EvalReport): string {
  const rows: string[][] = [];
  const tasks = [...report.results].sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : 0));
  for (const t of tasks) {
    const metrics = [...t.metrics].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    metrics.forEach((m, i) => {
      rows.push([
        i === 0 ? t.task : "",
        i === 0 ? String(t.version) : "",
        "none",
        "0",
        m.name,
        m.higherIsBetter ? "↑" : "↓",
        m.value.toFixed(4),
        "±",
        m.stderr === null ? "   N/A" : m.stderr.toFixed(4),
      ]);
    });
  }
  return markdownTable(
    ["Tasks", "Version", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"],
    rows,
    ["left", "right", "left", "right", "left", "left", "right", "left", "right"],
  );
}

/** lm-eval's `results` entry of one task: `"acc,none"`, `"acc_stderr,none"`, ..., `"alias"`. */
function lmEvalEntry(t: TaskResult): Record<string, number | string> {
  const e: Record<string, number | string> = { alias: t.task };
  for (const m of t.metrics) {
    e[`${m.name},none`] = m.value;
    e[`${m.name}_stderr,none`] = m.stderr ?? "N/A";
  }
  return e;
}

/**
 * The report as JSON in lm-eval's layout, plus `autoround` details (timings, stderr methods,
 * token-perplexity windows, and per-document samples when logged).
 */
export function reportToJson(
  report: EvalReport,
  meta: Record<string, unknown> = {},
): Record<string, unknown> {
  const by = <T>(f: (t: TaskResult) => T) => Object.fromEntries(report.results.map((t) => [t.task, f(t)]));
  return {
    results: by(lmEvalEntry),
    versions: by((t) => t.version),
    "n-shot": by(() => 0),
    "higher_is_better": by((t) => Object.fromEntries(t.metrics.map((m) => [m.name, m.higherIsBetter]))),
    "n-samples": by((t) => t.nSamples),
    config: { ...meta, ...report.config },
    autoround: by((t) => ({
      seconds: t.seconds,
      stderr_method: Object.fromEntries(t.metrics.map((m) => [m.name, m.stderrMethod])),
      ...(t.tokenPerplexity ? { token_perplexity: t.tokenPerplexity } : {}),
    })),
    ...(report.results.some((t) => t.samples)
      ? {
        samples: by((t) =>
          t.samples?.map((s) => ({
            doc_id: s.docId,
            arguments: s.requests.map((r) => [r.context, r.continuation]),
            context_tokens: s.requests.map((r) => r.tokens.context),
            continuation_tokens: s.requests.map((r) => r.tokens.continuation),
            resps: s.answers.map((a) => [a.logprob, a.isGreedy]),
            items: s.items,
          }))
        ),
      }
      : {}),
  };
}
