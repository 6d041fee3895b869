/**
 * The layer rules of ARCHITECTURE.md, checked over the program's own import statements (main.ts,
 * src/, ffi/): every file sits in one layer, and imports only from its own layer or from the layers
 * that layer may import; no files import each other in a circle; no TypeScript file is longer than
 * MAX_LINES (that rule also holds for tests/, bench/ and tools/). tests/architecture_test.ts runs it on
 * the tree (so `npm test` and .ci/run enforce it) and on synthetic files (so a rule that stops firing
 * is noticed).
 *
 * ```sh
 * deno run --allow-read tools/check_imports.ts     # prints each violation, exits 1 if there is one
 * ```
 */

/** One layer: the paths it holds (a folder ends in "/") and the layers it may import from. */
export interface Layer {
  name: string;
  paths: readonly string[];
  may: readonly string[];
}

/** The layers, top to bottom (ARCHITECTURE.md § Layers says why each may import what it may). */
export const LAYERS: readonly Layer[] = [
  {
    name: "cli",
    paths: ["main.ts", "src/cli/"],
    may: ["quant", "eval", "export", "io", "formats", "model", "backend", "qmath", "base", "ffi"],
  },
  {
    name: "quant",
    paths: ["src/quant/"],
    may: ["export", "io", "formats", "model", "backend", "qmath", "base", "data"],
  },
  { name: "eval", paths: ["src/eval/"], may: ["io", "formats", "model", "backend", "qmath", "base"] },
  { name: "export", paths: ["src/export/"], may: ["io", "formats", "model", "qmath", "base"] },
  { name: "io", paths: ["src/io/"], may: ["formats", "model", "qmath", "base"] },
  { name: "formats", paths: ["src/formats/"], may: ["model", "qmath", "base"] },
  { name: "model", paths: ["src/model/"], may: ["backend", "base"] },
  { name: "backend", paths: ["src/backend/"], may: ["qmath", "base", "ffi", "kernels"] },
  { name: "qmath", paths: ["src/qmath/"], may: ["base"] },
  {
    name: "base",
    paths: ["src/tensor/", "src/std/", "src/parallel/", "src/errors.ts", "src/log.ts", "src/version.ts"],
    may: [],
  },
  { name: "ffi", paths: ["ffi/"], may: [] },
  { name: "kernels", paths: ["wgsl/"], may: [] },
  { name: "data", paths: ["recipes/"], may: [] },
];

/** Longest TypeScript file allowed (STYLE.md: a file over ~400 lines is usually two concepts). */
export const MAX_LINES = 400;

/** What the checker reports. */
export interface Violation {
  kind: "layer" | "unplaced" | "circle" | "size";
  file: string;
  message: string;
}

/** The layer of a repo-relative path, or undefined. */
export function layerOf(path: string, layers: readonly Layer[] = LAYERS): Layer | undefined {
  return layers.find((l) => l.paths.some((p) => (p.endsWith("/") ? path.startsWith(p) : path === p)));
}

/**
 * The relative specifiers a TypeScript source imports: static `import`/`export … from`, bare
 * `import "…"` and `import("…")` with a string literal. Statements must start a line, so examples
 * inside JSDoc comments (lines starting with `*`) do not count.
 */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const from = /^[ \t]*(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/gm;
  const bare = /^[ \t]*import\s*["']([^"']+)["']/gm;
  const dynamic = /\bimport\(\s*["']([^"']+)["']\s*\)/g;
  for (const re of [from, bare, dynamic]) {
    for (const m of source.matchAll(re)) if (m[1].startsWith(".")) out.push(m[1]);
  }
  return out;
}

/** `spec` imported by `from`, as a repo-relative path. */
export function resolve(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const seg of spec.split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== ".") parts.push(seg);
  }
  return parts.join("/");
}

/** Files importing each other in a loop (Tarjan's strongly connected components of size > 1). */
function circles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], on = new Set<string>(), found: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next), low.set(v, next++), stack.push(v), on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) (visit(w), low.set(v, Math.min(low.get(v)!, low.get(w)!)));
      else if (on.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const comp: string[] = [];
    for (let w = ""; w !== v;) (w = stack.pop()!, on.delete(w), comp.push(w));
    if (comp.length > 1 || graph.get(v)?.includes(v)) found.push(comp.sort());
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

/**
 * Check `files` (repo-relative path → source text) against the layers. Every file given is placed
 * and measured; imports of files outside the given set are placed by path alone (wgsl/, recipes/).
 *
 * @example
 * ```ts
 * checkSources(new Map([["src/backend/x.ts", 'import { q } from "../quant/y.ts";']]));
 * // [{ kind: "layer", file: "src/backend/x.ts", message: "backend may not import quant: ../quant/y.ts" }]
 * ```
 */
export function checkSources(
  files: ReadonlyMap<string, string>,
  layers: readonly Layer[] = LAYERS,
): Violation[] {
  const out: Violation[] = [];
  const graph = new Map<string, string[]>();
  for (const [file, source] of files) {
    const layer = layerOf(file, layers);
    if (!layer) {
      out.push({
        kind: "unplaced",
        file,
        message: "in no layer: add its folder to LAYERS and ARCHITECTURE.md",
      });
    }
    if (file.endsWith(".ts")) out.push(...sizeViolations(new Map([[file, source]])));
    const targets: string[] = [];
    for (const spec of importsOf(source)) {
      const target = resolve(file, spec);
      targets.push(target);
      const to = layerOf(target, layers);
      if (!layer || !to || to === layer || layer.may.includes(to.name)) continue;
      out.push({ kind: "layer", file, message: `${layer.name} may not import ${to.name}: ${spec}` });
    }
    graph.set(file, targets.filter((t) => files.has(t)));
  }
  for (const c of circles(graph)) {
    out.push({ kind: "circle", file: c[0], message: `files import each other in a circle: ${c.join(", ")}` });
  }
  return out;
}

/** The .ts files under `root`/`dirs` (repo-relative path → text), skipping `skip` folders. */
export async function typescriptFiles(
  root: string,
  dirs: readonly string[],
  skip: readonly string[] = [],
): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(`${root}/${dir}`)) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory && !skip.some((s) => rel === s || rel.endsWith(`/${s}`))) await walk(rel);
      else if (e.isFile && e.name.endsWith(".ts")) files.set(rel, await Deno.readTextFile(`${root}/${rel}`));
    }
  };
  for (const d of dirs) await walk(d);
  return files;
}

/** The program's own source files under `root`: main.ts and the .ts files of src/ and ffi/. */
export async function programSources(root: string): Promise<Map<string, string>> {
  const files = await typescriptFiles(root, ["src", "ffi"]);
  files.set("main.ts", await Deno.readTextFile(`${root}/main.ts`));
  return files;
}

/** TypeScript that is not the program (tests, benchmarks, tools), held to the size rule only. */
export function supportSources(root: string): Promise<Map<string, string>> {
  return typescriptFiles(root, ["tests", "bench", "tools"], ["fixtures", "node_modules", "pylib", "out"]);
}

/** Files of `files` longer than MAX_LINES. */
export function sizeViolations(files: ReadonlyMap<string, string>): Violation[] {
  const out: Violation[] = [];
  for (const [file, source] of files) {
    const lines = source.split("\n").length - (source.endsWith("\n") ? 1 : 0);
    if (lines > MAX_LINES) {
      out.push({ kind: "size", file, message: `${lines} lines (at most ${MAX_LINES}): split it by job` });
    }
  }
  return out;
}

if (import.meta.main) {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const found = [...checkSources(await programSources(root)), ...sizeViolations(await supportSources(root))];
  for (const v of found) console.log(`${v.file}: ${v.kind}: ${v.message}`);
  console.log(found.length ? `${found.length} violations` : "imports follow ARCHITECTURE.md");
  Deno.exit(found.length ? 1 : 0);
}
