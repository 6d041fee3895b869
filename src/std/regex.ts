/**
 * Regular expressions that come from files and flags (`--layer_config` patterns, auto-round's
 * `extra_config` keys, GPTQ `dynamic` rules, compressed-tensors `re:` targets), compiled only when
 * they run in bounded time. JavaScript's engine backtracks: `(.*)*x` or `(a|a)+$` takes exponential
 * time on a 40-character layer name, and a quantization_config downloaded with a model must not be
 * able to hang the program. Refused: a repeated group whose body repeats or alternates (star height
 * above one), more than {@link MAX_UNBOUNDED} unbounded quantifiers (polynomial blow-up), back
 * references, and patterns over {@link MAX_PATTERN} characters. Layer patterns never need these.
 */

/** Most unbounded quantifiers (`*`, `+`, `{n,}`) in one pattern: O(n^5) steps on a 60-character name. */
export const MAX_UNBOUNDED = 5;
/** Longest pattern accepted. */
export const MAX_PATTERN = 1000;

/** A pattern refused for its running time (the caller turns it into its own typed error). */
export class SlowRegexError extends Error {
  override name = "SlowRegexError";
}

interface Group {
  repeats: boolean;
  alternates: boolean;
}

/** The quantifier at `s[i]`: its length and whether it repeats (more than once) / is unbounded. */
function quantifierAt(s: string, i: number): { len: number; repeats: boolean; unbounded: boolean } {
  const c = s[i];
  let len = 0, repeats = false, unbounded = false;
  if (c === "*" || c === "+") [len, repeats, unbounded] = [1, true, true];
  else if (c === "?") len = 1;
  else if (c === "{") {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(s.slice(i));
    if (m) {
      len = m[0].length;
      unbounded = m[2] !== undefined && m[3] === "";
      repeats = unbounded || Number(m[3] ?? m[1]) > 1;
    }
  }
  if (len && s[i + len] === "?") len++; // lazy
  return { len, repeats, unbounded };
}

/**
 * Why `source` is refused, or undefined when it is safe to run.
 *
 * @example
 * ```ts
 * slowRegexReason(".*mlp\\.down_proj.*"); // undefined
 * slowRegexReason("(.*)*x"); // "a repeated group repeats inside ..."
 * ```
 */
export function slowRegexReason(source: string): string | undefined {
  if (source.length > MAX_PATTERN) return `it is longer than ${MAX_PATTERN} characters`;
  const stack: Group[] = [{ repeats: false, alternates: false }];
  let unbounded = 0;
  for (let i = 0; i < source.length;) {
    const c = source[i];
    if (c === "\\") {
      if (/[1-9k]/.test(source[i + 1] ?? "")) return "it uses a back reference";
      i += 2;
    } else if (c === "[") {
      i++;
      if (source[i] === "^") i++;
      if (source[i] === "]") i++;
      while (i < source.length && source[i] !== "]") i += source[i] === "\\" ? 2 : 1;
      i++;
    } else if (c === "(") {
      stack.push({ repeats: false, alternates: false });
      i++;
      if (source[i] === "?") { // (?: (?= (?! (?<= (?<! (?<name>
        const m = /^\?(<[=!]|<[A-Za-z_$][\w$]*>|[:=!])/.exec(source.slice(i));
        i += m ? m[0].length : 1;
      }
      continue;
    } else if (c === ")") {
      const body = stack.length > 1 ? stack.pop()! : { repeats: false, alternates: false };
      i++;
      const q = quantifierAt(source, i);
      if (q.repeats && (body.repeats || body.alternates)) {
        return "a repeated group repeats or alternates inside (exponential backtracking)";
      }
      const top = stack[stack.length - 1];
      top.repeats ||= body.repeats || q.repeats;
      if (q.unbounded) unbounded++;
      i += q.len;
      continue;
    } else if (c === "|") {
      stack[stack.length - 1].alternates = true;
      i++;
      continue;
    } else i++;
    // After an atom (a character, an escape, a class): its quantifier.
    const q = quantifierAt(source, i);
    if (q.repeats) stack[stack.length - 1].repeats = true;
    if (q.unbounded) unbounded++;
    i += q.len;
  }
  if (unbounded > MAX_UNBOUNDED) {
    return `it has ${unbounded} unbounded quantifiers (at most ${MAX_UNBOUNDED})`;
  }
  return undefined;
}

/**
 * `new RegExp(source)` for a pattern from a file or flag: SlowRegexError when it could take
 * exponential (or high polynomial) time, SyntaxError when it is not a regular expression.
 *
 * @example
 * ```ts
 * boundedRegExp(".*q_proj.*").test("model.layers.0.self_attn.q_proj"); // true
 * ```
 */
export function boundedRegExp(source: string): RegExp {
  const why = slowRegexReason(source);
  if (why) throw new SlowRegexError(why);
  return new RegExp(source);
}
