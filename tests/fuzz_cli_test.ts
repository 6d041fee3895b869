/**
 * Fuzzing through the real CLI (issue 14): mutated inputs given to `main.ts quantize | eval |
 * generate | inspect` as a subprocess. A case passes when the command succeeds or exits with a code
 * other than 0 and 70, prints exactly one `error: ...` line and no stack trace, and — for quantize —
 * leaves neither the output folder nor its `<out>.partial` one behind. The in-process share is
 * fuzz_test.ts; bench/fuzz.ts runs more (`--cli N`).
 */
import { assert, assertEquals } from "./assert.ts";
import { makeContext, TARGETS } from "./fuzz/case.ts";
import { cliProblems, runCliCase } from "./fuzz/cli.ts";
import { prepareSeeds } from "./fuzz/seeds.ts";

/** Cases per parser through the CLI (each is a `deno run`, about a second). */
const PER_PARSER = 2;
const SEED = 14;

Deno.test("CLI verdicts: exit 70, a second stderr line and a stack trace are each problems", () => {
  assertEquals(cliProblems(0, "warning: x\n"), []);
  assertEquals(cliProblems(1, "warning: w\nerror: x.json: bad\n"), []);
  assert(cliProblems(70, "internal error: boom\n(run with --debug)\n").some((p) => p.includes("70")));
  assert(cliProblems(1, "error: a\nerror: b\n").some((p) => p.includes("2 lines")));
  assert(cliProblems(1, "error: a\n    at f (x.ts:1:1)\n").some((p) => p.includes("stack")));
  assert(cliProblems(2, "TypeError: x\n").some((p) => p.includes(`"error: "`)));
});

Deno.test(`fuzz through the CLI: ${PER_PARSER} cases per parser exit cleanly with one error line`, async () => {
  const root = await Deno.makeTempDir({ prefix: "autoround-fuzz-cli-" });
  try {
    await prepareSeeds(`${root}/seeds`);
    const ctx = await makeContext(`${root}/seeds`);
    const problems: string[] = [];
    let clean = 0;
    for (const t of TARGETS) {
      for (let i = 0; i < PER_PARSER; i++) {
        const r = await runCliCase(t, ctx, SEED, i, `${root}/${t.name}-${i}`);
        if (r.outcome === "clean") clean++;
        if (r.outcome === "finding") problems.push(`${t.name} #${i} ${r.argv.join(" ")}: ${r.error}`);
      }
    }
    assertEquals(problems, []);
    // Most mutations are refused: the one-line check ran on real errors, not only on successes.
    assert(clean >= TARGETS.length, `${clean} clean errors of ${TARGETS.length * PER_PARSER} cases`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
