/**
 * Structure-aware JSON mutators: pick a node of a parsed document (weighted towards structural
 * nodes and a target's focus keys), then delete it, change its type, set it to an edge number, nest
 * it deeply, make it a very long or odd unicode string, duplicate or rename keys. The mutated tree is
 * written by {@link writeJson}, which can also emit text JSON.stringify never would (NaN, 1e400,
 * 10 000 levels of nesting); {@link mutateJsonText} adds syntax-level damage on top.
 */
import { mutateBytes } from "./bytes.ts";
import type { Rng } from "./rng.ts";

/** Raw JSON text placed verbatim by {@link writeJson} (invalid or extreme literals, deep nests). */
export class Raw {
  constructor(readonly text: string) {}
}

/** A JSON tree that may hold {@link Raw} leaves. */
export type JsonTree = null | boolean | number | string | Raw | JsonTree[] | { [k: string]: JsonTree };

/** Edge numbers: huge, negative, fractional, past 2^53, denormal, and JSON-invalid NaN/Infinity. */
export const EDGE_NUMBERS: JsonTree[] = [
  0,
  -1,
  1,
  2,
  3,
  0.5,
  -0.5,
  1.5,
  31,
  33,
  -2147483648,
  2147483647,
  4294967296,
  2 ** 40,
  2 ** 53 + 2,
  1e12,
  1e300,
  -1e300,
  5e-324,
  new Raw("-0"),
  new Raw("1e400"),
  new Raw("-1e400"),
  new Raw("NaN"),
  new Raw("Infinity"),
  new Raw("123456789012345678901234567890"),
  new Raw("0x10"),
  new Raw("01"),
];

const ODD_STRINGS = [
  "",
  " ",
  "\u0000",
  "\ud800",
  "\udfff",
  "\u202e\u202d",
  "\u200b\ufeff",
  "😀👩‍👩‍👧",
  "ünïcödé ✓ 中文 العربية",
  "\n\r\t",
  "{{ x }}",
  "%s%n%x",
  "../../etc/passwd",
  "null",
  "[]",
  "<s>",
  "</s>",
  "<unk>",
  "\\",
  '"',
];

interface Node {
  parent: JsonTree[] | Record<string, JsonTree> | undefined;
  key: string | number;
  value: JsonTree;
  path: string;
  weight: number;
}

function nodes(root: JsonTree, focus: readonly string[]): Node[] {
  const out: Node[] = [{ parent: undefined, key: "", value: root, path: "$", weight: 1 }];
  const walk = (v: JsonTree, path: string, depth: number) => {
    if (depth > 64 || v === null || typeof v !== "object" || v instanceof Raw) return;
    const entries: [string | number, JsonTree][] = Array.isArray(v)
      ? v.map((x, i) => [i, x])
      : Object.entries(v);
    // Members of big arrays and maps (vocabularies, merges) share the weight of a few nodes.
    const w = 1 / Math.sqrt(Math.max(1, entries.length));
    for (const [k, x] of entries) {
      const p = typeof k === "number" ? `${path}[${k}]` : `${path}.${k}`;
      const focused = typeof k === "string" && focus.includes(k);
      out.push({ parent: v, key: k, value: x, path: p, weight: focused ? 10 : w });
      walk(x, p, depth + 1);
    }
  };
  walk(root, "$", 0);
  return out;
}

function otherValue(rng: Rng, v: JsonTree): JsonTree {
  const choices: (() => JsonTree)[] = [
    () => null,
    () => true,
    () => false,
    () => rng.pick(EDGE_NUMBERS),
    () => rng.pick(ODD_STRINGS),
    () => String(v instanceof Raw ? v.text : JSON.stringify(v) ?? ""),
    () => [],
    () => ({}),
    () => [v],
    () => ({ value: v }),
    () => (typeof v === "number" ? -v : typeof v === "string" ? v.toUpperCase() : 1),
    () => (typeof v === "number" ? v * rng.pick([2, 1000, 1e9]) + rng.pick([0, 0.5, 1]) : 0),
  ];
  return rng.pick(choices)();
}

function longString(rng: Rng): string {
  const unit = rng.pick(["a", "▁", "😀", "\\u", "<s>", " ", "\u0301"]);
  // Long enough to break a message or a field's limits; longer only measures tokenizer speed.
  return unit.repeat(rng.pick([1000, 30_000, 300_000]));
}

function set(n: Node, root: { v: JsonTree }, v: JsonTree) {
  if (n.parent === undefined) root.v = v;
  else if (Array.isArray(n.parent)) n.parent[n.key as number] = v;
  else n.parent[n.key as string] = v;
}

/**
 * One to three structural mutations of a (deep-copied) JSON tree; `focus` keys are chosen more
 * often. Returns the new tree and the steps taken.
 */
export function mutateJsonTree(
  rng: Rng,
  value: unknown,
  focus: readonly string[] = [],
): { tree: JsonTree; steps: string[] } {
  const root = { v: structuredClone(value) as JsonTree };
  const steps: string[] = [];
  for (let k = rng.range(1, 3); k > 0; k--) {
    const all = nodes(root.v, focus);
    const n = all[rng.weighted(all.map((x) => x.weight))];
    const op = rng.weighted([3, 4, 4, 1, 1, 1, 1, 1, 1, 1]);
    switch (op) {
      case 0: // delete
        if (n.parent && !Array.isArray(n.parent)) delete n.parent[n.key as string];
        else if (Array.isArray(n.parent)) n.parent.splice(n.key as number, 1);
        else root.v = {};
        steps.push(`delete ${n.path}`);
        break;
      case 1: { // change type / value
        const v = otherValue(rng, n.value);
        set(n, root, v);
        steps.push(`${n.path} = ${describe(v)}`);
        break;
      }
      case 2: { // edge number
        const v = rng.pick(EDGE_NUMBERS);
        set(n, root, v);
        steps.push(`${n.path} = ${describe(v)}`);
        break;
      }
      case 3: { // deep nesting
        const depth = rng.pick([100, 1000, 100_000]);
        set(n, root, new Raw("[".repeat(depth) + "1" + "]".repeat(depth)));
        steps.push(`${n.path} nested ${depth} deep`);
        break;
      }
      case 4:
        set(n, root, longString(rng));
        steps.push(`${n.path} = a very long string`);
        break;
      case 5: {
        const s = rng.pick(ODD_STRINGS);
        set(n, root, typeof n.value === "string" ? n.value + s : s);
        steps.push(`${n.path} += ${JSON.stringify(s)}`);
        break;
      }
      case 6: // rename a key
        if (n.parent && !Array.isArray(n.parent)) {
          delete n.parent[n.key as string];
          defineKey(
            n.parent,
            rng.pick([`${n.key}_`, String(n.key).toUpperCase(), "", "__proto__", "constructor"]),
            n.value,
          );
          steps.push(`rename ${n.path}`);
        }
        break;
      case 7: // duplicate an array element, or empty an array/object
        if (Array.isArray(n.value) && n.value.length) {
          if (rng.chance(0.5)) n.value.push(...n.value.slice(0, rng.smallSize(n.value.length)));
          else n.value.length = rng.int(n.value.length);
          steps.push(`resize array ${n.path}`);
        } else if (n.value && typeof n.value === "object" && !(n.value instanceof Raw)) {
          set(n, root, Array.isArray(n.value) ? [] : {});
          steps.push(`empty ${n.path}`);
        }
        break;
      case 8: // add an unknown key
        if (n.value && typeof n.value === "object" && !Array.isArray(n.value) && !(n.value instanceof Raw)) {
          defineKey(
            n.value,
            rng.pick(["unknown_key", "__proto__", "", "x".repeat(1000)]),
            otherValue(rng, 1),
          );
          steps.push(`add key to ${n.path}`);
        }
        break;
      default: { // swap with another node's value
        const m = all[rng.int(all.length)];
        set(n, root, structuredCloneTree(m.value));
        steps.push(`${n.path} = copy of ${m.path}`);
      }
    }
  }
  return { tree: root.v, steps };
}

/** Set an own key, "__proto__" included (plain assignment would change the prototype). */
function defineKey(o: Record<string, JsonTree>, key: string, value: JsonTree): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

function structuredCloneTree(v: JsonTree): JsonTree {
  if (v instanceof Raw) return v;
  if (Array.isArray(v)) return v.map(structuredCloneTree);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, structuredCloneTree(x)]));
  }
  return v;
}

function describe(v: JsonTree): string {
  if (v instanceof Raw) return v.text.length > 40 ? `${v.text.slice(0, 40)}…` : v.text;
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/** JSON text of a tree, {@link Raw} leaves verbatim ("__proto__" keys kept as ordinary keys). */
export function writeJson(v: JsonTree, indent = ""): string {
  if (v instanceof Raw) return v.text;
  if (Array.isArray(v)) return `[${v.map((x) => writeJson(x, indent)).join(",")}]`;
  if (v && typeof v === "object") {
    const parts = Object.keys(v).map((k) => `${JSON.stringify(k)}:${writeJson(v[k], indent)}`);
    return `{${parts.join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/**
 * A mutated JSON document: mostly structural mutations of the parsed value, sometimes byte-level
 * damage to its text (syntax errors, truncation), a BOM or a comment.
 */
export function mutateJsonText(
  rng: Rng,
  text: string,
  focus: readonly string[] = [],
): { bytes: Uint8Array; steps: string[] } {
  const enc = new TextEncoder();
  const r = rng.weighted([7, 2, 1]);
  if (r === 0) {
    const { tree, steps } = mutateJsonTree(rng, JSON.parse(text), focus);
    return { bytes: enc.encode(writeJson(tree)), steps };
  }
  if (r === 1) return mutateBytes(rng, enc.encode(text));
  const i = rng.int(7);
  const edits = ["\ufeff" + text, text + "\n// comment", text.replace(/}\s*$/, ",}"), "", "null", "[]", "1"];
  return { bytes: enc.encode(edits[i]), steps: [`syntax-level edit ${i}`] };
}
