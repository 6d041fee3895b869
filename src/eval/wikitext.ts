/**
 * WikiText-2 (raw) as lm-eval and GPTQ read `wiki.test.raw`:
 * - documents as `EleutherAI/wikitext_document_level` cuts them (its `_generate_examples`: a new
 *   page at each line that, after `"= = ="→"==="`, `"= ="→"=="` and strip, starts with `"= "` and
 *   ends with `" ="`; lines joined with `"\n"`; blank pages skipped except the last);
 * - lm-eval's `wikitext_detokenizer` (tasks/wikitext/preprocess_wikitext.py), rule for rule;
 * - the Hugging Face `wikitext-2-raw-v1` rows GPTQ joins with `"\n\n"` (shared/data/README.md).
 */
import { PY_WS_CLASS, pyStrip } from "./pystr.ts";

/**
 * Split the raw file into lm-eval's documents (62 for the test split).
 *
 * @example
 * ```ts
 * const docs = wikitextDocuments(await Deno.readTextFile("wiki.test.raw"));
 * docs[0].startsWith(" = Robert Boulter = \n"); // true
 * ```
 */
export function wikitextDocuments(raw: string): string[] {
  const docs: string[] = [];
  let lines: string[] = [];
  for (const line of raw.split("\n")) {
    const r = pyStrip(line.replaceAll("= = =", "===").replaceAll("= =", "=="));
    if (r.startsWith("= ") && r.endsWith(" =")) {
      const page = lines.join("\n");
      if (pyStrip(page) !== "") docs.push(page);
      lines = [];
    }
    lines.push(line);
  }
  docs.push(lines.join("\n"));
  return docs;
}

const WS = `[${PY_WS_CLASS}]`;
const RE_CONTRACTION_DIGIT = /\/' [0-9]\//g;
const RE_PARENS = new RegExp(`\\(${WS}*([^\\)]*?)${WS}*\\)`, "g");
const RE_BRACKETS = new RegExp(`\\[${WS}*([^\\]]*?)${WS}*\\]`, "g");
const RE_BRACES = new RegExp(`\\{${WS}*([^}]*?)${WS}*\\}`, "g");
const RE_DQUOTES = new RegExp(`"${WS}*([^"]*?)${WS}*"`, "g");
const RE_SQUOTES = new RegExp(`'${WS}*([^']*?)${WS}*'`, "g");

/**
 * lm-eval's `wikitext_detokenizer`, in its order (Python `str.replace` replaces every
 * non-overlapping occurrence left to right, as `replaceAll` does).
 *
 * @example
 * ```ts
 * wikitextDetokenize("a @-@ b , ( c )"); // "a-b, (c)"
 * ```
 */
export function wikitextDetokenize(page: string): string {
  let s = page;
  // contractions
  s = s.replaceAll("s '", "s'");
  s = s.replace(RE_CONTRACTION_DIGIT, "/'[0-9]/");
  // number separators
  s = s.replaceAll(" @-@ ", "-").replaceAll(" @,@ ", ",").replaceAll(" @.@ ", ".");
  // punctuation
  s = s.replaceAll(" : ", ": ").replaceAll(" ; ", "; ").replaceAll(" . ", ". ").replaceAll(" ! ", "! ");
  s = s.replaceAll(" ? ", "? ").replaceAll(" , ", ", ");
  // double brackets
  s = s.replace(RE_PARENS, "($1)").replace(RE_BRACKETS, "[$1]").replace(RE_BRACES, "{$1}");
  s = s.replace(RE_DQUOTES, '"$1"').replace(RE_SQUOTES, "'$1'");
  // miscellaneous
  s = s.replaceAll("= = = =", "====").replaceAll("= = =", "===").replaceAll("= =", "==");
  s = s.replaceAll(" \u00b0 ", "\u00b0");
  s = s.replaceAll(" \n", "\n").replaceAll("\n ", "\n");
  s = s.replaceAll(" N ", " 1 ").replaceAll(" 's", "'s");
  return s;
}

/**
 * The rows of Hugging Face `wikitext-2-raw-v1` (test): one per line of the file, a non-blank line
 * with its `"\n"`, a blank one (`" "`) as `""`. GPTQ/AutoRound tokenize `rows.join("\n\n")` once.
 *
 * @example
 * ```ts
 * const text = wikitextRows(raw).join("\n\n");
 * ```
 */
export function wikitextRows(raw: string): string[] {
  const lines = raw.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.map((l) => (pyStrip(l) === "" ? "" : l + "\n"));
}
