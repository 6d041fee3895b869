/**
 * `quantize --resume` (issue 14): a run killed outright at any point — while tuning, between
 * blocks, while exporting — continues from its journal's last finished block and ends with the
 * same bytes as a run never interrupted. Real processes, real SIGKILLs, at random moments.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  assertSameTree,
  killAfterFirstBlock,
  killResumeCases,
  quantizeArgs,
  readTree,
  runQuantize,
} from "./resume_kill.ts";
import { join } from "../src/std/path.ts";

// 10 kills by default: the suite runs in CI's 20 minutes on 2 cores, where each kill-and-resume costs
// ~25 s under the parallel load; AUTOROUND_RESUME_CASES=20 (or more) for a deeper run.
const CASES = Number(Deno.env.get("AUTOROUND_RESUME_CASES") ?? 10);

Deno.test(`resume: ${CASES} runs killed at random moments (CPU) resume to the uninterrupted run's bytes`, async () => {
  const root = await Deno.makeTempDir({ prefix: "autoround-resume-" });
  try {
    const r = await killResumeCases(root, "cpu", CASES, 14);
    console.log(
      `reference run ${r.reference.toFixed(1)} s; kills by phase: ${
        [...r.phases].map(([k, v]) => `${k} ×${v}`).join(", ")
      }; ${r.replayed} resumes replayed finished blocks`,
    );
    // The kills must land inside the work often enough for the test to mean something.
    assert(r.replayed >= Math.ceil(CASES / 4), `only ${r.replayed} resumes replayed journaled blocks`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("resume: other settings are refused and the unfinished run is kept; without --resume it is removed", async () => {
  const root = await Deno.makeTempDir({ prefix: "autoround-resume-" });
  try {
    const out = join(root, "out");
    const args = quantizeArgs(out, "cpu");
    assert(
      await killAfterFirstBlock(args, `${out}.partial/.journal`),
      "the run ended before it could be killed",
    );
    const before = await readTree(`${out}.partial/.journal`);
    const other = await runQuantize(quantizeArgs(out, "cpu", ["--resume", "--seed", "7"]));
    assertEquals(other.code, 2, other.stderr);
    assert(
      /error: .*--resume: the unfinished run .* was started differently \(seed: 42 then, 7 now\)/.test(
        other.stderr,
      ),
      other.stderr,
    );
    assertSameTree(await readTree(`${out}.partial/.journal`), before, "journal after a refused resume");
    // A fresh run (no --resume) removes the dead run's folder, says so, and starts over.
    const fresh = await runQuantize(args);
    assertEquals(fresh.code, 0, fresh.stderr);
    assert(fresh.stderr.includes("removed the unfinished run left in"), fresh.stderr);
    assert(!fresh.stderr.includes("resuming:"), fresh.stderr);
    const tree = await readTree(out);
    assert(
      ![...tree.keys()].some((n) => n.startsWith(".")),
      `hidden files in the output: ${[...tree.keys()]}`,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
