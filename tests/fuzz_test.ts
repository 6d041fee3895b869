/**
 * Fuzzing (issue 14), the CI share: a few hundred mutated real inputs per parser, run the way the CLI
 * runs them (tests/fuzz/), each of which must succeed or fail with one typed, one-line error — no
 * crash, no hang, no huge allocation, no console output, no partial output folder. A self-check
 * target proves the harness sees each kind of failure. bench/fuzz.ts runs the same with ≥ 10 000
 * cases per parser (BENCHMARKS.md § Issue 14).
 */
import { assert, assertEquals } from "./assert.ts";
import { buildCase, type CaseResult, makeContext, TARGETS } from "./fuzz/case.ts";
import { fuzz, type TargetSummary } from "./fuzz/runner.ts";
import { SELF_CHECK_VERDICTS } from "./fuzz/selfcheck.ts";
import { prepareSeeds } from "./fuzz/seeds.ts";

/** Cases per parser: enough to reach every mutator family, few enough for CI on two cores. */
const CASES = 250;
const SEED = 14;

const root = await Deno.makeTempDir({ prefix: "autoround-fuzz-test-" });
const seedRoot = `${root}/seeds`;
let prepared: Promise<void> | undefined;
const seeds = () => (prepared ??= prepareSeeds(seedRoot).then(() => Deno.mkdir(`${root}/cases`)));

function describe(r: CaseResult): string {
  return `${r.target} #${r.index} [${r.kind}] ${r.error} ${r.where ?? ""}\n  ${
    r.steps.join("; ").slice(0, 300)
  }`;
}

async function run(targets: string[], cases: number, timeoutMs = 30_000): Promise<TargetSummary[]> {
  await seeds();
  return await fuzz({ targets, cases, seed: SEED, jobs: 2, timeoutMs, seedRoot, workRoot: `${root}/cases` });
}

Deno.test("fuzz harness self-check: a crash, a hang, a huge allocation, a bad message, console output and a stray rejection are each findings", async () => {
  const [s] = await run(["selfcheck"], SELF_CHECK_VERDICTS.length, 3000);
  const verdict = (i: number) => {
    const r = [...s.findings].find((f) => f.index === i);
    if (r) return r.kind;
    return i === 0 ? (s.accepted === 1 ? "accepted" : "?") : "clean";
  };
  SELF_CHECK_VERDICTS.forEach(([what, want], i) => assertEquals(verdict(i), want, `a case that ${what}`));
  assertEquals([s.accepted, s.clean, s.findings.length], [1, 1, SELF_CHECK_VERDICTS.length - 2]);
});

Deno.test("fuzz cases are reproducible: the same (target, seed, index) builds the same case", async () => {
  await seeds();
  const ctx = await makeContext(seedRoot);
  for (const t of TARGETS) {
    for (const i of [0, 7, 123]) {
      const a = await buildCase(t, ctx, SEED, i, `${root}/cases/repro-a`);
      const b = await buildCase(t, ctx, SEED, i, `${root}/cases/repro-b`);
      assertEquals(a.steps, b.steps, `${t.name} #${i}`);
      assertEquals(a.mode, b.mode, `${t.name} #${i}`);
      await Deno.remove(`${root}/cases/repro-a`, { recursive: true });
      await Deno.remove(`${root}/cases/repro-b`, { recursive: true });
    }
  }
});

for (const t of TARGETS) {
  Deno.test(`fuzz ${t.name}: ${CASES} mutated inputs each succeed or fail with one typed one-line error`, async () => {
    const [s] = await run([t.name], CASES);
    assertEquals(s.cases, CASES);
    assertEquals(s.findings.map(describe), [], `findings of ${t.name}`);
    // Both paths are exercised: some mutations are accepted, most are refused.
    assert(s.accepted > 0 && s.clean > 0, `${t.name}: ${s.accepted} accepted, ${s.clean} clean errors`);
  });
}

Deno.test("names of Object.prototype members are unknown names, not table entries", async () => {
  const { main } = await import("../main.ts");
  const { getRecipe } = await import("../src/quant/recipes.ts");
  const { parseFormats } = await import("../src/export/registry.ts");
  const { resolveScheme } = await import("../src/quant/scheme.ts");
  const { parseTaskList } = await import("../src/eval/tasks.ts");
  const { parseModelConfig } = await import("../src/model/config.ts");
  const { AutoRoundError } = await import("../src/errors.ts");
  for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
    for (
      const f of [
        () => getRecipe(name),
        () => parseFormats(name),
        () => parseFormats(`gguf:${name}`),
        () => resolveScheme(name),
        () => parseTaskList(name),
        () => parseModelConfig({ model_type: name }, "config.json"),
      ]
    ) {
      let thrown: unknown;
      try {
        f();
      } catch (e) {
        thrown = e;
      }
      assert(thrown instanceof AutoRoundError, `${name}: ${f} gave ${thrown}`);
    }
  }
  const err = console.error;
  console.error = () => {};
  try {
    assertEquals(await main(["constructor"]), 2);
  } finally {
    console.error = err;
  }
});

Deno.test({
  name: "fuzz: remove the scratch folder",
  fn: () => Deno.remove(root, { recursive: true }),
});
