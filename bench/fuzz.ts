/**
 * Fuzzing bench (issue 14): mutated real inputs through every parser, in-process in Workers with a
 * per-case time limit and an allocation guard, plus a sample through the real CLI. Prints, per parser:
 * cases, accepted, clean errors, findings (crash / hang / oom / other) and the slowest case, then each
 * finding with the steps that made it. The floor: 0 findings.
 *
 *   deno run -A bench/fuzz.ts [--cases 10000] [--seed 1] [--jobs 2] [--cli 20] [--targets a,b] [--timeout 10000]
 *   deno run -A bench/fuzz.ts --target gguf --case 123 [--seed 1]     # re-run one case here, with its stack
 */
import { parseArgs } from "node:util";
import { installAllocationGuard } from "../tests/fuzz/alloc_guard.ts";
import { ALL_TARGETS, type CaseResult, makeContext, runCase, TARGETS } from "../tests/fuzz/case.ts";
import { runCliCase } from "../tests/fuzz/cli.ts";
import { fuzz, summaryTable, type TargetSummary } from "../tests/fuzz/runner.ts";
import { prepareSeeds } from "../tests/fuzz/seeds.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    cases: { type: "string", default: "10000" },
    seed: { type: "string", default: "1" },
    jobs: { type: "string", default: "2" },
    cli: { type: "string", default: "20" },
    targets: { type: "string" },
    target: { type: "string" },
    case: { type: "string" },
    timeout: { type: "string", default: "20000" },
    errors: { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
  },
});
const seed = Number(f.seed);
const root = await Deno.makeTempDir({ prefix: "autoround-fuzz-" });
const seedRoot = `${root}/seeds`, workRoot = `${root}/cases`;
await Deno.mkdir(workRoot, { recursive: true });

function describe(r: CaseResult): string {
  const steps = r.steps.join("; ");
  return `- ${r.target} #${r.index} [${r.kind}] ${r.mode ?? ""}: ${r.error}${
    r.where ? ` at ${r.where}` : ""
  }\n    ${steps.length > 400 ? steps.slice(0, 400) + "…" : steps}`;
}

try {
  const t0 = performance.now();
  await prepareSeeds(seedRoot);
  console.error(`seeds ready in ${((performance.now() - t0) / 1000).toFixed(1)} s (${root})`);

  if (f.case !== undefined) { // one case, in this process, with the full stack
    installAllocationGuard();
    const target = ALL_TARGETS.find((t) => t.name === f.target);
    if (!target) throw new Error(`--target must be one of ${TARGETS.map((t) => t.name).join(", ")}`);
    const ctx = await makeContext(seedRoot);
    const r = await runCase(target, ctx, seed, Number(f.case), `${workRoot}/one`, true);
    console.log(describe(r).replace("[undefined]", `[${r.outcome}]`));
    if (r.thrown) console.log((r.thrown as Error).stack);
    console.log(`case folder kept: ${workRoot}/one`);
    Deno.exit(0);
  }

  const targets = f.targets?.split(",");
  const cases = Number(f.cases);
  const started = performance.now();
  let done = 0;
  const total = cases * (targets?.length ?? TARGETS.length);
  const rows: TargetSummary[] = await fuzz({
    targets,
    cases,
    seed,
    jobs: Number(f.jobs),
    timeoutMs: Number(f.timeout),
    seedRoot,
    workRoot,
    onResult: (r) => {
      if (r.outcome === "finding" && !f.quiet) console.error(describe(r));
      if (++done % 1000 === 0) {
        console.error(`${done}/${total} cases, ${((performance.now() - started) / 1000).toFixed(0)} s`);
      }
    },
  });
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `\nin-process: ${cases} cases per parser, seed ${seed}, ${f.jobs} workers, ${seconds.toFixed(0)} s\n`,
  );
  console.log(summaryTable(rows));

  // The CLI sample: the first N cases of each target through main.ts as a subprocess.
  const cliRows: string[] = [];
  const cliFindings: CaseResult[] = [];
  const ctx = await makeContext(seedRoot);
  const cliStart = performance.now();
  for (const t of TARGETS.filter((t) => !targets || targets.includes(t.name))) {
    const tally = { accepted: 0, clean: 0, findings: 0, slowest: 0 };
    for (let i = 0; i < Number(f.cli); i++) {
      const r = await runCliCase(t, ctx, seed, i, `${workRoot}/cli-${t.name}-${i}`);
      tally[r.outcome === "finding" ? "findings" : r.outcome]++;
      tally.slowest = Math.max(tally.slowest, r.ms);
      if (r.outcome === "finding") {
        cliFindings.push(r);
        console.error(describe(r));
      }
    }
    cliRows.push(
      `| ${t.name} | ${f.cli} | ${tally.accepted} | ${tally.clean} | ${tally.findings} | ${
        tally.slowest.toFixed(0)
      } |`,
    );
  }
  const cliSeconds = (performance.now() - cliStart) / 1000;

  if (Number(f.cli) > 0) {
    console.log(`\nCLI subprocess: first ${f.cli} cases per parser, ${cliSeconds.toFixed(0)} s\n`);
    console.log("| parser | cases | exit 0 | clean error | findings | slowest case ms |");
    console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
    console.log(cliRows.join("\n"));
  }
  const findings = [...rows.flatMap((r) => r.findings), ...cliFindings];
  console.log(`\nfindings: ${findings.length}`);
  // Grouped by parser, kind, place and message start: one example of each.
  const groups = new Map<string, { n: number; first: CaseResult }>();
  for (const r of findings) {
    const key = `${r.target} ${r.kind} ${r.where ?? ""} ${
      (r.error ?? "").replace(/\/tmp\/\S*/g, "").slice(0, 50)
    }`;
    const g = groups.get(key) ?? { n: 0, first: r };
    g.n++;
    groups.set(key, g);
  }
  for (const { n, first } of groups.values()) console.log(`${n} × ${describe(first)}`);
  if (f.errors) {
    for (const s of rows) {
      console.log(`\n${s.target}: most frequent clean errors`);
      for (const [e, n] of [...s.errors].sort((a, b) => b[1] - a[1]).slice(0, 12)) {
        console.log(`  ${n}  ${e}`);
      }
    }
  }
} finally {
  if (f.case === undefined) await Deno.remove(root, { recursive: true }).catch(() => {});
}
// A worker stopped while stuck in native code may linger; the run is over.
Deno.exit(0);
