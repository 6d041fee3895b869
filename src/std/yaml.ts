/**
 * A YAML subset for configuration files (JSR's @std/yaml is unreachable where this project is built;
 * where it is reachable, its `parse` can replace this module's body). What a job file needs:
 *
 * - block mappings (`key: value`) and sequences (`- item`, `- key: value`), nested by indentation
 *   with spaces;
 * - flow sequences and mappings on one line (`[a, b]`, `{bits: 8}`);
 * - plain scalars with YAML 1.2's core schema (`null`/`~`, `true`/`false`, integers, floats, else a
 *   string), single- and double-quoted strings (with `\n`, `\t`, `\"`, `\\`, `\uXXXX` escapes);
 * - comments (`#` at the start of a line or after a space), a leading `---`.
 *
 * Anything else (anchors, aliases, tags, block scalars `|` `>`, `?` keys, several documents, a plain
 * value continued on the next line, tabs in indentation, duplicate keys) is refused with a
 * {@link YamlError} that names the line, never misread.
 *
 * @example
 * ```ts
 * parseYaml("scheme: W4A16\njobs:\n  - model: m  # a comment\n    format: [auto_round, 'gguf:q4_0']\n");
 * // { scheme: "W4A16", jobs: [{ model: "m", format: ["auto_round", "gguf:q4_0"] }] }
 * ```
 */

/** A value of the subset. */
export type YamlValue = null | boolean | number | string | YamlValue[] | { [key: string]: YamlValue };

/** A document outside the subset, or malformed; `line` is 1-based. */
export class YamlError extends Error {
  constructor(readonly line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = "YamlError";
  }
}

/** Deepest nesting of collections accepted (a guard against stack exhaustion). */
export const MAX_YAML_DEPTH = 64;

interface Line {
  /** 1-based line number. */
  n: number;
  indent: number;
  /** The content after the indentation, comment removed, trailing spaces trimmed. */
  text: string;
}

/** Parse one YAML document of the subset; an empty document is null. */
export function parseYaml(text: string): YamlValue {
  const lines = splitLines(text);
  if (lines.length === 0) return null;
  const p = new BlockParser(lines);
  const v = p.block(lines[0].indent, 0);
  if (p.i < lines.length) {
    const l = lines[p.i];
    throw new YamlError(l.n, `unexpected indentation (${l.indent} spaces) for "${l.text}"`);
  }
  return v;
}

function splitLines(text: string): Line[] {
  const out: Line[] = [];
  let started = false;
  const raw = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (let k = 0; k < raw.length; k++) {
    const n = k + 1, s = raw[k];
    const indent = s.length - s.trimStart().length;
    if (/^ *\t/.test(s) && s.trim() !== "") throw new YamlError(n, "tabs are not allowed in indentation");
    const body = stripComment(s.slice(indent), n).trimEnd();
    if (body === "") continue;
    if (indent === 0 && (body === "---" || body.startsWith("--- "))) {
      if (started) throw new YamlError(n, "several documents in one file are not supported");
      started = true;
      if (body !== "---") throw new YamlError(n, "content after --- is not supported");
      continue;
    }
    if (indent === 0 && body === "...") continue;
    if (indent === 0 && body.startsWith("%")) throw new YamlError(n, "directives (%) are not supported");
    started = true;
    out.push({ n, indent, text: body });
  }
  return out;
}

/** `s` without its comment (a `#` at the start or after whitespace, outside quotes). */
function stripComment(s: string, n: number): string {
  let quote = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) {
        if (quote === "'" && s[i + 1] === "'") i++;
        else quote = "";
      }
    } else if (c === "#" && (i === 0 || s[i - 1] === " " || s[i - 1] === "\t")) return s.slice(0, i);
    else if ((c === '"' || c === "'") && (i === 0 || /[\s[{,:-]/.test(s[i - 1]))) quote = c;
  }
  if (quote) throw new YamlError(n, `unterminated ${quote === '"' ? "double" : "single"}-quoted string`);
  return s;
}

/** Index of the `:` that ends a mapping key in `s` (followed by a space or the end), or -1. */
function keyColon(s: string): number {
  let quote = "", depth = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = "";
    } else if ((c === '"' || c === "'") && i === 0) quote = c;
    else if (c === "[" || c === "{") {
      if (i === 0) return -1; // a flow collection, not a key
      depth++;
    } else if (c === "]" || c === "}") depth--;
    else if (c === ":" && depth === 0 && (i + 1 === s.length || s[i + 1] === " ")) return i;
  }
  return -1;
}

class BlockParser {
  i = 0;
  constructor(private readonly lines: Line[]) {}

  /** The collection or scalar whose lines start at the current line, indented `indent`. */
  block(indent: number, depth: number): YamlValue {
    const l = this.lines[this.i];
    if (depth > MAX_YAML_DEPTH) throw new YamlError(l.n, `nests deeper than ${MAX_YAML_DEPTH} levels`);
    if (l.text === "-" || l.text.startsWith("- ")) return this.sequence(indent, depth);
    if (keyColon(l.text) >= 0) return this.mapping(indent, depth);
    this.i++;
    const v = inlineValue(l.text, l.n, depth);
    this.noContinuation(indent, l);
    return v;
  }

  private sequence(indent: number, depth: number): YamlValue[] {
    const out: YamlValue[] = [];
    while (this.i < this.lines.length) {
      const l = this.lines[this.i];
      if (l.indent < indent) break;
      if (l.indent > indent) throw new YamlError(l.n, `unexpected indentation for "${l.text}"`);
      if (!(l.text === "-" || l.text.startsWith("- "))) break;
      const rest = l.text.slice(1).trimStart();
      if (rest === "") {
        this.i++;
        const next = this.lines[this.i];
        if (!next || next.indent <= indent) out.push(null);
        else out.push(this.block(next.indent, depth + 1));
        continue;
      }
      // The item's content starts after "- ": treat it as a line of its own at that column.
      const col = indent + (l.text.length - rest.length);
      this.lines[this.i] = { n: l.n, indent: col, text: rest };
      out.push(this.block(col, depth + 1));
    }
    return out;
  }

  private mapping(indent: number, depth: number): { [key: string]: YamlValue } {
    const out: { [key: string]: YamlValue } = {};
    while (this.i < this.lines.length) {
      const l = this.lines[this.i];
      if (l.indent < indent) break;
      if (l.indent > indent) throw new YamlError(l.n, `unexpected indentation for "${l.text}"`);
      const c = keyColon(l.text);
      if (c < 0) throw new YamlError(l.n, `expected "key: value", got "${l.text}"`);
      const key = mappingKey(l.text.slice(0, c).trim(), l.n);
      if (Object.hasOwn(out, key)) throw new YamlError(l.n, `duplicate key "${key}"`);
      const rest = l.text.slice(c + 1).trim();
      this.i++;
      if (rest !== "") {
        out[key] = inlineValue(rest, l.n, depth + 1);
        this.noContinuation(indent, l);
        continue;
      }
      const next = this.lines[this.i];
      // A nested block is indented further; a sequence may also sit at the key's own indentation.
      if (next && (next.indent > indent || (next.indent === indent && /^-( |$)/.test(next.text)))) {
        out[key] = this.block(next.indent, depth + 1);
      } else out[key] = null;
    }
    return out;
  }

  /** A scalar's line may not be followed by a further-indented line (a multi-line plain scalar). */
  private noContinuation(indent: number, l: Line): void {
    const next = this.lines[this.i];
    if (next && next.indent > indent) {
      throw new YamlError(
        next.n,
        `the value of line ${l.n} continues here: multi-line values are not supported (write it on one line, quoted)`,
      );
    }
  }
}

function mappingKey(k: string, n: number): string {
  if (k === "") throw new YamlError(n, "empty key");
  if (k.startsWith("?")) throw new YamlError(n, "complex keys (?) are not supported");
  const v = scalar(k, n);
  if (typeof v === "object" && v !== null) throw new YamlError(n, "a key must be a scalar");
  return String(v);
}

/** A value written on one line: a flow collection, a quoted string or a plain scalar. */
function inlineValue(s: string, n: number, depth: number): YamlValue {
  if (s[0] === "[" || s[0] === "{") {
    const f = new FlowParser(s, n);
    const v = f.value(depth);
    f.space();
    if (f.i < s.length) {
      throw new YamlError(n, `unexpected "${s.slice(f.i)}" after ${s[0] === "[" ? "]" : "}"}`);
    }
    return v;
  }
  return scalar(s, n);
}

/** A quoted string or plain scalar, whole. */
function scalar(s: string, n: number): YamlValue {
  if (s[0] === '"' || s[0] === "'") {
    const f = new FlowParser(s, n);
    const v = f.quoted();
    if (f.i < s.length) throw new YamlError(n, `unexpected "${s.slice(f.i)}" after a quoted string`);
    return v;
  }
  return plain(s, n);
}

function plain(s: string, n: number): YamlValue {
  const c = s[0];
  if (c === "&" || c === "*") throw new YamlError(n, "anchors and aliases (& and *) are not supported");
  if (c === "!") throw new YamlError(n, "tags (!) are not supported");
  if (c === "|" || c === ">") {
    throw new YamlError(n, "block scalars (| and >) are not supported; write the value on one line, quoted");
  }
  if ((c === "?" || c === ":") && (s.length === 1 || s[1] === " ")) {
    throw new YamlError(n, c === "?" ? "complex keys (?) are not supported" : "a value without its key");
  }
  if (c === "@" || c === "`") throw new YamlError(n, `a plain value cannot start with ${c}; quote it`);
  if (/^(null|Null|NULL|~)$/.test(s)) return null;
  if (/^(true|True|TRUE)$/.test(s)) return true;
  if (/^(false|False|FALSE)$/.test(s)) return false;
  if (/^[-+]?[0-9]+$/.test(s)) return Number(s);
  if (/^0x[0-9a-fA-F]+$/.test(s)) return parseInt(s.slice(2), 16);
  if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(s)) return Number(s);
  if (/^[-+]?\.(inf|Inf|INF)$/.test(s)) return s[0] === "-" ? -Infinity : Infinity;
  if (/^\.(nan|NaN|NAN)$/.test(s)) return NaN;
  return s;
}

const ESCAPES: Record<string, string> = {
  "0": "\0",
  "a": "\x07",
  "b": "\b",
  "t": "\t",
  "\t": "\t",
  "n": "\n",
  "v": "\v",
  "f": "\f",
  "r": "\r",
  "e": "\x1b",
  " ": " ",
  '"': '"',
  "/": "/",
  "\\": "\\",
};

/** One line of flow syntax: `[a, "b", {c: 1}]`. */
class FlowParser {
  i = 0;
  constructor(private readonly s: string, private readonly n: number) {}

  space(): void {
    while (this.s[this.i] === " " || this.s[this.i] === "\t") this.i++;
  }

  value(depth: number): YamlValue {
    if (depth > MAX_YAML_DEPTH) throw new YamlError(this.n, `nests deeper than ${MAX_YAML_DEPTH} levels`);
    this.space();
    const c = this.s[this.i];
    if (c === "[") return this.seq(depth);
    if (c === "{") return this.map(depth);
    if (c === '"' || c === "'") return this.quoted();
    const start = this.i;
    while (this.i < this.s.length && !",]}".includes(this.s[this.i])) {
      if (this.s[this.i] === ":" && (this.s[this.i + 1] === " " || this.s[this.i + 1] === undefined)) break;
      if ("[{".includes(this.s[this.i])) throw new YamlError(this.n, `unexpected "${this.s[this.i]}"`);
      this.i++;
    }
    const text = this.s.slice(start, this.i).trim();
    if (text === "") throw new YamlError(this.n, `a value is missing at column ${start + 1}`);
    return plain(text, this.n);
  }

  private seq(depth: number): YamlValue[] {
    const out: YamlValue[] = [];
    this.i++;
    for (this.space(); this.s[this.i] !== "]";) {
      out.push(this.value(depth + 1));
      if (!this.sep("]")) break;
    }
    this.i++;
    return out;
  }

  private map(depth: number): { [key: string]: YamlValue } {
    const out: { [key: string]: YamlValue } = {};
    this.i++;
    for (this.space(); this.s[this.i] !== "}";) {
      const k = this.value(depth + 1);
      if (typeof k === "object" && k !== null) throw new YamlError(this.n, "a key must be a scalar");
      this.space();
      if (this.s[this.i] !== ":") throw new YamlError(this.n, `expected ":" after the key "${k}"`);
      this.i++;
      const key = String(k);
      if (Object.hasOwn(out, key)) throw new YamlError(this.n, `duplicate key "${key}"`);
      out[key] = this.value(depth + 1);
      if (!this.sep("}")) break;
    }
    this.i++;
    return out;
  }

  /** After an item: `,` (true, more may follow) or the closing bracket (false). */
  private sep(close: string): boolean {
    this.space();
    const c = this.s[this.i];
    if (c === ",") {
      this.i++;
      this.space();
      return this.s[this.i] !== close;
    }
    if (c === close) return false;
    if (c === undefined) {
      throw new YamlError(this.n, `missing "${close}": flow collections must be written on one line`);
    }
    throw new YamlError(this.n, `expected "," or "${close}", got "${c}"`);
  }

  quoted(): string {
    const q = this.s[this.i++];
    let out = "";
    for (;;) {
      const c = this.s[this.i++];
      if (c === undefined) throw new YamlError(this.n, "unterminated quoted string");
      if (c === q) {
        if (q === "'" && this.s[this.i] === "'") {
          out += "'";
          this.i++;
          continue;
        }
        return out;
      }
      if (c === "\\" && q === '"') out += this.escape();
      else out += c;
    }
  }

  private escape(): string {
    const e = this.s[this.i++];
    if (e !== undefined && Object.hasOwn(ESCAPES, e)) return ESCAPES[e];
    const len = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    const hex = this.s.slice(this.i, this.i + len);
    if (len && /^[0-9a-fA-F]+$/.test(hex) && hex.length === len) {
      this.i += len;
      const cp = parseInt(hex, 16);
      if (cp > 0x10ffff) throw new YamlError(this.n, `\\${e}${hex} is not a Unicode code point`);
      return String.fromCodePoint(cp);
    }
    throw new YamlError(this.n, `unknown escape \\${e ?? ""} in a double-quoted string`);
  }
}
