/**
 * The evaluation tasks as data: which file each reads, how a record becomes lm-eval requests,
 * and how the answers become per-document metric items (shared/data/README.md § Schemas, and the
 * task YAMLs of lm-eval 0.4: arc_easy.yaml, piqa.yaml, hellaswag.yaml, winogrande/default.yaml,
 * lambada_openai.yaml, wikitext.yaml). Zero-shot, no chat template, target delimiter " ".
 */
import { FormatError, InputError, UsageError } from "../errors.ts";
import { join } from "../std/path.ts";
import { pyLen, pyWhitespaceSplitCount, utf8Length } from "./pystr.ts";
import { wikitextDetokenize, wikitextDocuments } from "./wikitext.ts";

/** How a task is scored. */
export type TaskKind = "multiple_choice" | "winogrande" | "lambada" | "wikitext";

/** One metric of a task, as lm-eval's table shows it. */
export interface MetricSpec {
  name: string;
  higherIsBetter: boolean;
}

/** A task's row in {@linkcode TASKS}. */
export interface TaskSpec {
  name: string;
  /** lm-eval's `metadata.version`. */
  version: number;
  kind: TaskKind;
  /** Where its data lies under the data folder, first match wins. */
  files: string[];
  metrics: MetricSpec[];
}

const ACC = { name: "acc", higherIsBetter: true };
const ACC_NORM = { name: "acc_norm", higherIsBetter: true };
const mc = (name: string): TaskSpec => ({
  name,
  version: 1,
  kind: "multiple_choice",
  files: [`eval/${name}.jsonl`, `${name}.jsonl`],
  metrics: [ACC, ACC_NORM],
});
const WIKI_FILES = ["wikitext-2-raw/wiki.test.raw", "wiki.test.raw"];
const WIKI_METRICS: MetricSpec[] = [
  { name: "word_perplexity", higherIsBetter: false },
  { name: "byte_perplexity", higherIsBetter: false },
  { name: "bits_per_byte", higherIsBetter: false },
];

/**
 * Every task `--tasks` accepts. `wikitext` is lm-eval's task; `wikitext2` adds to it the GPTQ /
 * AutoRound token perplexity (`token_perplexity`, windows of `--seqlen`).
 */
export const TASKS: Readonly<Record<string, TaskSpec>> = {
  arc_easy: mc("arc_easy"),
  arc_challenge: mc("arc_challenge"),
  piqa: mc("piqa"),
  hellaswag: mc("hellaswag"),
  winogrande: {
    name: "winogrande",
    version: 1,
    kind: "winogrande",
    files: ["eval/winogrande.jsonl", "winogrande.jsonl"],
    metrics: [ACC],
  },
  lambada_openai: {
    name: "lambada_openai",
    version: 1,
    kind: "lambada",
    files: ["eval/lambada_openai.jsonl", "lambada_openai.jsonl"],
    metrics: [{ name: "perplexity", higherIsBetter: false }, ACC],
  },
  wikitext: { name: "wikitext", version: 2, kind: "wikitext", files: WIKI_FILES, metrics: WIKI_METRICS },
  wikitext2: {
    name: "wikitext2",
    version: 2,
    kind: "wikitext",
    files: WIKI_FILES,
    metrics: [...WIKI_METRICS, { name: "token_perplexity", higherIsBetter: false }],
  },
};

/**
 * Parse `--tasks` ("arc_easy,piqa" or "all"), keeping order and dropping repeats.
 *
 * @throws {UsageError} an unknown task name
 */
export function parseTaskList(value: string): TaskSpec[] {
  const names = value.split(",").map((s) => s.trim()).filter(Boolean);
  const expanded = names.flatMap((
    n,
  ) => (n === "all" ? Object.keys(TASKS).filter((t) => t !== "wikitext") : [n]));
  const out: TaskSpec[] = [];
  for (const n of expanded) {
    const t = Object.hasOwn(TASKS, n) ? TASKS[n] : undefined;
    if (!t) throw new UsageError(`unknown task "${n}" (known: ${Object.keys(TASKS).join(", ")}, all)`);
    if (!out.includes(t)) out.push(t);
  }
  if (out.length === 0) throw new UsageError(`--tasks is empty`);
  return out;
}

/**
 * The data file of a task under `dataDir`.
 *
 * @throws {InputError} none of the task's candidate files exists; the message names every path tried
 */
export async function findTaskFile(task: TaskSpec, dataDir: string, origin: string): Promise<string> {
  const tried: string[] = [];
  for (const rel of task.files) {
    const p = join(dataDir, rel);
    tried.push(p);
    try {
      if ((await Deno.stat(p)).isFile) return p;
    } catch { /* try the next */ }
  }
  throw new InputError(`no data file for task ${task.name}: looked for ${tried.join(" and ")} (${origin})`);
}

// ---- documents ----

/** An ARC / PIQA / HellaSwag record. */
export interface ChoiceDoc {
  context: string;
  choices: string[];
  gold: number;
}
/** A WinoGrande record. */
export interface WinograndeDoc {
  contexts: string[];
  continuation: string;
  gold: number;
}
/** A LAMBADA record. */
export interface LambadaDoc {
  text: string;
}
/** A WikiText document (original, not detokenized). */
export interface WikiDoc {
  page: string;
}
export type TaskDoc = ChoiceDoc | WinograndeDoc | LambadaDoc | WikiDoc;

/** lm-eval's `--limit`: a count, or a fraction of the documents (rounded up) when below 1. */
export function applyLimit<T>(docs: T[], limit?: number): T[] {
  if (limit === undefined) return docs;
  const n = limit < 1 ? Math.ceil(docs.length * limit) : Math.floor(limit);
  return docs.slice(0, n);
}

/**
 * Read a task's documents from its file.
 *
 * @throws {FormatError} a line is not JSON or lacks a field; the message gives the line number
 */
export function parseTaskDocs(task: TaskSpec, text: string, file: string): TaskDoc[] {
  if (task.kind === "wikitext") return wikitextDocuments(text).map((page) => ({ page }));
  const docs: TaskDoc[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new FormatError(`line ${i + 1} is not JSON: ${(e as Error).message}`, file);
    }
    const bad = (field: string) =>
      new FormatError(`line ${i + 1}: field "${field}" is missing or of the wrong type`, file);
    const isStrings = (v: unknown) =>
      Array.isArray(v) && v.length >= 2 && v.every((x) => typeof x === "string");
    if (task.kind === "multiple_choice") {
      if (typeof rec.context !== "string") throw bad("context");
      if (!isStrings(rec.choices)) throw bad("choices");
      if (
        !Number.isInteger(rec.gold) || (rec.gold as number) < 0 ||
        (rec.gold as number) >= (rec.choices as string[]).length
      ) throw bad("gold");
      docs.push({ context: rec.context, choices: rec.choices as string[], gold: rec.gold as number });
    } else if (task.kind === "winogrande") {
      if (!isStrings(rec.contexts)) throw bad("contexts");
      if (typeof rec.continuation !== "string") throw bad("continuation");
      if (
        !Number.isInteger(rec.gold) || (rec.gold as number) < 0 ||
        (rec.gold as number) >= (rec.contexts as string[]).length
      ) throw bad("gold");
      docs.push({
        contexts: rec.contexts as string[],
        continuation: rec.continuation,
        gold: rec.gold as number,
      });
    } else {
      if (typeof rec.text !== "string") throw bad("text");
      docs.push({ text: rec.text });
    }
  });
  return docs;
}

// ---- requests ----

/** A text request: a (context, continuation) pair, or a whole text scored with rolling windows. */
export type TextRequest =
  | { type: "pair"; context: string; continuation: string }
  | { type: "rolling"; text: string };

/**
 * lm-eval's `construct_requests` for one document.
 *
 * @example
 * ```ts
 * taskRequests(TASKS.lambada_openai, { text: "a b c" });
 * // [{type: "pair", context: "a b", continuation: " c"}]
 * ```
 */
export function taskRequests(task: TaskSpec, doc: TaskDoc): TextRequest[] {
  switch (task.kind) {
    case "multiple_choice": {
      const d = doc as ChoiceDoc;
      return d.choices.map((c) => ({ type: "pair", context: d.context, continuation: " " + c }));
    }
    case "winogrande": {
      const d = doc as WinograndeDoc;
      return d.contexts.map((c) => ({ type: "pair", context: c, continuation: " " + d.continuation }));
    }
    case "lambada": {
      // doc_to_text: text.split(' ')[:-1]|join(' '); doc_to_target: ' ' + text.split(' ')[-1].
      const t = (doc as LambadaDoc).text;
      const cut = t.lastIndexOf(" ");
      const context = cut < 0 ? "" : t.slice(0, cut);
      return [{ type: "pair", context, continuation: " " + t.slice(cut + 1) }];
    }
    case "wikitext":
      return [{ type: "rolling", text: wikitextDetokenize((doc as WikiDoc).page) }];
  }
}

/** Per-document metric items: a value for means, (loglik, weight) for weighted perplexities. */
export type DocItems = Record<string, number | [number, number]>;

/**
 * lm-eval's `process_results` for one document, from its requests' (logprob, greedy) answers.
 *
 * `acc`: the gold choice has the highest summed log-likelihood; `acc_norm`: the highest
 * log-likelihood divided by the choice's length in characters (Python `len`). Ties go to the
 * lower index (`np.argmax`).
 */
export function processDoc(
  task: TaskSpec,
  doc: TaskDoc,
  answers: { logprob: number; isGreedy: boolean }[],
): DocItems {
  switch (task.kind) {
    case "multiple_choice": {
      const d = doc as ChoiceDoc;
      const lls = answers.map((a) => a.logprob);
      return {
        acc: argmax(lls) === d.gold ? 1 : 0,
        acc_norm: argmax(lls.map((l, i) => l / pyLen(d.choices[i]))) === d.gold ? 1 : 0,
      };
    }
    case "winogrande":
      return { acc: argmax(answers.map((a) => a.logprob)) === (doc as WinograndeDoc).gold ? 1 : 0 };
    case "lambada":
      return { perplexity: answers[0].logprob, acc: answers[0].isGreedy ? 1 : 0 };
    case "wikitext": {
      // Words and bytes of the *original* page (preprocess_wikitext.process_results).
      const page = (doc as WikiDoc).page;
      const ll = answers[0].logprob;
      const bytes = utf8Length(page);
      return {
        word_perplexity: [ll, pyWhitespaceSplitCount(page)],
        byte_perplexity: [ll, bytes],
        bits_per_byte: [ll, bytes],
      };
    }
  }
}

/** `np.argmax`: the first index of the largest value. */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}
