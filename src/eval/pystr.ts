/**
 * The few Python string semantics lm-eval's scoring depends on, spelled out for JavaScript:
 * `str.isspace` / `re`'s `\s` (which differ from JS `\s`), `str.rstrip()`, `len(str)` in code
 * points, and `len(re.split(r"\s+", s))`.
 */

/**
 * Characters Python's `str.isspace()` accepts (and `re`'s `\s` matches in str patterns): bidi
 * classes WS, B, S and category Zs. Unlike JS `\s` it includes U+001C–U+001F and U+0085 and
 * excludes U+FEFF.
 */
export const PY_WHITESPACE =
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" +
  "\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

/** A regex character class body matching exactly {@linkcode PY_WHITESPACE}. */
export const PY_WS_CLASS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029" +
  "\\u202f\\u205f\\u3000";

const WS_SET = new Set(PY_WHITESPACE);

/** Python `c.isspace()` for one character. */
export function isPySpace(c: string): boolean {
  return WS_SET.has(c);
}

/**
 * Python `s.rstrip()` (no argument: strips Unicode whitespace, not only spaces).
 *
 * @example
 * ```ts
 * pyRstrip("Answer: \n"); // "Answer:"
 * ```
 */
export function pyRstrip(s: string): string {
  let end = s.length;
  while (end > 0 && WS_SET.has(s[end - 1])) end--;
  return s.slice(0, end);
}

/** Python `s.strip()`. */
export function pyStrip(s: string): string {
  let start = 0;
  while (start < s.length && WS_SET.has(s[start])) start++;
  return pyRstrip(s.slice(start));
}

/**
 * Python `len(s)`: the number of code points (JS `length` counts UTF-16 units).
 *
 * @example
 * ```ts
 * pyLen("naïve 😀"); // 7 (JS "naïve 😀".length is 8)
 * ```
 */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * `len(re.split(r"\s+", s))`: one more than the number of maximal whitespace runs. A leading or
 * trailing run counts too (Python yields an empty first/last piece), which is how lm-eval's
 * wikitext task counts words.
 *
 * @example
 * ```ts
 * pyWhitespaceSplitCount(" = A = \n"); // 5, as ["", "=", "A", "=", ""]
 * ```
 */
export function pyWhitespaceSplitCount(s: string): number {
  let runs = 0, inRun = false;
  for (const c of s) {
    const ws = WS_SET.has(c);
    if (ws && !inRun) runs++;
    inRun = ws;
  }
  return runs + 1;
}

/** UTF-8 byte length, Python `len(s.encode("utf-8"))`. */
export function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}
