/**
 * ARCHITECTURE.md's rules, enforced (tools/check_imports.ts): the program's files stay in their
 * layers, import only downwards, import each other in no circle and stay under 400 lines (tests,
 * benchmarks and tools too); and the checker itself still fires on each kind of violation.
 */
import { assertEquals } from "./assert.ts";
import {
  checkSources,
  importsOf,
  layerOf,
  LAYERS,
  programSources,
  sizeViolations,
  supportSources,
} from "../tools/check_imports.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("the program's imports follow ARCHITECTURE.md: layers, no circles, no file over 400 lines", async () => {
  const files = await programSources(ROOT);
  assertEquals(checkSources(files).map((v) => `${v.file}: ${v.message}`), []);
  // The walk found the whole program (a broken walk would pass vacuously).
  for (const f of ["main.ts", "src/qmath/int_quant.ts", "src/formats/gguf/file.ts", "ffi/cuda/driver.ts"]) {
    assertEquals(files.has(f), true, f);
  }
});

Deno.test("tests, benchmarks and tools hold to the 400-line rule too", async () => {
  const files = await supportSources(ROOT);
  assertEquals(sizeViolations(files).map((v) => `${v.file}: ${v.message}`), []);
  assertEquals(files.has("tests/architecture_test.ts") && files.has("bench/cuda_8b.ts"), true);
  assertEquals([...files.keys()].some((f) => f.includes("fixtures/") || f.includes("node_modules/")), false);
});

Deno.test("the checker reports a layer violation, an unplaced file, a circle and an oversized file", () => {
  const long = "export const x = 1;\n".repeat(401);
  const found = checkSources(
    new Map([
      ["src/backend/cpu/x.ts", 'import { groupMinMax } from "../../quant/y.ts";\n'],
      ["src/quant/y.ts", 'import type { Backend } from "../backend/backend.ts";\n'],
      ["src/backend/backend.ts", "export interface Backend {}\n"],
      ["src/export/writer.ts", 'export { a } from "../backend/backend.ts";\n'],
      ["src/newfolder/z.ts", "export const z = 1;\n"],
      ["src/qmath/a.ts", 'import { b } from "./b.ts";\n'],
      ["src/qmath/b.ts", 'import { a } from "./a.ts";\n'],
      ["src/formats/big.ts", long],
    ]),
  );
  const got = found.map((v) => `${v.kind} ${v.file}`).sort();
  assertEquals(got, [
    "circle src/qmath/a.ts",
    "layer src/backend/cpu/x.ts",
    "layer src/export/writer.ts",
    "size src/formats/big.ts",
    "unplaced src/newfolder/z.ts",
  ]);
  const layer = found.find((v) => v.file === "src/backend/cpu/x.ts")!;
  assertEquals(layer.message, "backend may not import quant: ../../quant/y.ts");
  // A file may import its own layer and the layers below it; upward is the violation.
  assertEquals(
    checkSources(new Map([["src/quant/y.ts", 'import { q } from "../qmath/int_quant.ts";\n']])),
    [],
  );
});

Deno.test("importsOf: static, re-export, side-effect and dynamic imports; not JSDoc examples or strings", () => {
  const src = [
    'import { a } from "./a.ts";',
    "import type {",
    "  B,",
    '} from "../b.ts";',
    'export * from "./c.ts";',
    'import "./d.ts";',
    'const e = await import("./e.ts");',
    'import text from "../../wgsl/f.wgsl" with { type: "text" };',
    'import { parseArgs } from "node:util";',
    ' * import { g } from "./g.ts";',
    'export const h = "./h.ts";',
  ].join("\n");
  assertEquals(importsOf(src).sort(), [
    "../../wgsl/f.wgsl",
    "../b.ts",
    "./a.ts",
    "./c.ts",
    "./d.ts",
    "./e.ts",
  ]);
});

Deno.test("every folder of src/ is in exactly one layer", async () => {
  for await (const e of Deno.readDir(`${ROOT}/src`)) {
    const path = e.isDirectory ? `src/${e.name}/x.ts` : `src/${e.name}`;
    assertEquals(LAYERS.filter((l) => layerOf(path, [l])).length, 1, path);
  }
});
