/**
 * AutoScheme's DP groups (spec/AUTOSCHEME.md § 4.1, auto-round auto_scheme/utils.py:232-496): user
 * shared-layer groups matched per block, per-block MoE expert groups, their union-find merge, and the
 * fill of inactive experts' scores (§ 3.1 step 4). A group is a set of layers forced to one option.
 */
import { boundedRegExp } from "../../std/regex.ts";

/**
 * `merge_lists_unionfind` (utils.py:232-262): lists sharing a member are merged; groups come out in
 * the order their root first appeared, members in first-appearance order (the order decides DP keys).
 */
export function mergeUnionFind(lists: readonly (readonly string[])[]): string[][] {
  const parent = new Map<string, string>();
  const find = (x: string): string => {
    while (parent.get(x) !== x) {
      const gp = parent.get(parent.get(x)!)!;
      parent.set(x, gp);
      x = gp;
    }
    return x;
  };
  for (const lst of lists) {
    for (const item of lst) if (!parent.has(item)) parent.set(item, item);
    for (let i = 1; i < lst.length; i++) {
      const rx = find(lst[0]);
      const ry = find(lst[i]);
      if (rx !== ry) parent.set(ry, rx);
    }
  }
  const groups = new Map<string, string[]>();
  for (const item of parent.keys()) {
    const root = find(item);
    const g = groups.get(root);
    if (g) g.push(item);
    else groups.set(root, [item]);
  }
  return [...groups.values()];
}

/** Python `sorted` on str: code-point order (equal to UTF-16 order for the ASCII layer names). */
function pySorted(xs: Iterable<string>): string[] {
  return [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The layers of `names` inside block `block` (prefix `block + "."`), in the given order. */
function layersOfBlock(names: readonly string[], block: string): string[] {
  return names.filter((n) => n.startsWith(block + "."));
}

/**
 * `parse_shared_layers` (utils.py:265-341, § 4.1): a group whose names are all exact layer names is
 * kept; otherwise, per block, the block's layers matched by any entry (`re.search` — which
 * `re.fullmatch` implies — or substring; an invalid or refused regex falls back to substring) plus
 * the group's exact names form one sorted group. All groups are merged by union-find. Kept quirk
 * (§ 7.11): a group mixing exact names and patterns adds its exact names to every block's set, so the
 * pattern's matches of all blocks end up in one group.
 *
 * @param layerNames every supported (Linear) layer name of the model, in `named_modules` order
 * @param blocks the block names (all block lists)
 */
export function parseSharedLayers(
  patterns: readonly (readonly string[])[],
  layerNames: readonly string[],
  blocks: readonly string[],
): string[][] {
  if (patterns.length === 0) return [];
  const known = new Set(layerNames);
  const matched: string[][] = [];
  const fuzzy: { pattern: string; direct: boolean }[][] = [];
  for (const group of patterns) {
    const status = group.map((p) => ({ pattern: p, direct: known.has(p) }));
    if (status.every((s) => s.direct)) matched.push([...group]);
    else fuzzy.push(status);
  }
  const regexOf = new Map<string, RegExp | null>();
  const re = (p: string): RegExp | null => {
    if (!regexOf.has(p)) {
      let r: RegExp | null = null;
      try {
        r = boundedRegExp(p);
      } catch {
        r = null; // Python: re.error → substring only
      }
      regexOf.set(p, r);
    }
    return regexOf.get(p)!;
  };
  for (const block of blocks) {
    const inBlock = layersOfBlock(layerNames, block);
    for (const group of fuzzy) {
      const set = new Set<string>();
      for (const { pattern, direct } of group) {
        if (direct) {
          set.add(pattern);
          continue;
        }
        const r = re(pattern);
        for (const name of inBlock) {
          if ((r && r.test(name)) || name.includes(pattern)) set.add(name);
        }
      }
      if (set.size > 0) matched.push(pySorted(set));
    }
  }
  return mergeUnionFind(matched);
}

const EXPERT_ID = /^(.*?\.experts\.\d+)(?:\.|$)/;

/**
 * `_expert_key_from_layer_name` (utils.py:344-362): the prefix up to `.experts.<id>`, else the name
 * minus its last field when it contains `.moe.`, else undefined (not an expert layer).
 */
export function expertKey(name: string): string | undefined {
  const m = EXPERT_ID.exec(name);
  if (m) return m[1];
  if (name.includes(".moe.")) {
    const parts = name.split(".");
    return parts.length > 1 ? parts.slice(0, -1).join(".") : name;
  }
  return undefined;
}

/** The block of a layer: the longest block name that prefixes it (utils.py:420-427). */
function blockOfLayer(name: string, blocks: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const b of blocks) {
    if ((name === b || name.startsWith(b + ".")) && (best === undefined || b.length > best.length)) best = b;
  }
  return best;
}

/**
 * `build_expert_groups` (utils.py:406-439, § 4.1): per block, all non-fixed expert layers form one
 * sorted group when there are at least two.
 *
 * @param dpNames the non-fixed quantized layers
 * @param blocks the text block names, in block order
 */
export function buildExpertGroups(dpNames: readonly string[], blocks: readonly string[]): string[][] {
  const perBlock = new Map<string, string[]>();
  for (const name of dpNames) {
    if (expertKey(name) === undefined) continue;
    const b = blockOfLayer(name, blocks);
    if (b === undefined) continue;
    perBlock.set(b, [...(perBlock.get(b) ?? []), name]);
  }
  const groups: string[][] = [];
  for (const b of blocks) {
    const layers = perBlock.get(b);
    if (layers && layers.length > 1) groups.push(pySorted(layers));
  }
  return groups;
}

const ZERO_EPS = 1e-12;

/**
 * `_fill_inactive_expert_scores` (utils.py:442-496, § 3.1 step 4) on one option's scores, in place:
 * per block, an expert whose layers all have |score| < 1e-12 gets, on each of its layers, the mean
 * over active experts of (the mean of that expert's layers with |score| ≥ 1e-12). Non-finite scores
 * are skipped, as in the reference.
 */
export function fillInactiveExperts(scores: Map<string, number>, blocks: readonly string[]): void {
  const stats = new Map<string, Map<string, { layers: string[]; active: boolean }>>();
  for (const [name, loss] of scores) {
    if (!Number.isFinite(loss)) continue;
    const block = blockOfLayer(name, blocks);
    if (block === undefined) continue;
    const key = expertKey(name);
    if (key === undefined) continue;
    let perExpert = stats.get(block);
    if (!perExpert) stats.set(block, perExpert = new Map());
    let s = perExpert.get(key);
    if (!s) perExpert.set(key, s = { layers: [], active: false });
    s.layers.push(name);
    if (Math.abs(loss) >= ZERO_EPS) s.active = true;
  }
  for (const perExpert of stats.values()) {
    const means: number[] = [];
    for (const s of perExpert.values()) {
      if (!s.active) continue;
      const act = s.layers.map((n) => scores.get(n)!).filter((v) => Math.abs(v) >= ZERO_EPS);
      if (act.length) means.push(act.reduce((a, b) => a + b, 0) / act.length);
    }
    if (!means.length) continue;
    const fill = means.reduce((a, b) => a + b, 0) / means.length;
    for (const s of perExpert.values()) if (!s.active) { for (const n of s.layers) scores.set(n, fill); }
  }
}
