/**
 * Ctrl-C and `kill` in the middle of a run (src/cli/interrupt.ts): SIGINT exits 130 and SIGTERM 143
 * with one `error: interrupted (...)` line, and the unfinished output folder is gone — while
 * SignRound tunes on the worker threads, while blocks are being exported, at the very end of a run
 * (then either the complete output or none), after two signals in a row, and during eval and
 * generate, which have no folder. A previous output in the same place is left as it was. SIGKILL
 * cannot be handled: it leaves the temporary folder, which `--resume` picks up.
 *
 * Each run is signalled once its stderr shows it has reached the stage under test (the progress
 * line of a block, the backend's debug line), never after a fixed delay.
 */
import { join } from "../src/std/path.ts";
import { assert, assertEquals, fixture, withTempDir } from "./assert.ts";
import {
  assertLastErrorLine,
  assertNoOutput,
  cli,
  copyModel,
  outputEntries,
  spawnCli,
} from "./cli_helpers.ts";

/** SignRound on stories260K: about 3 s per block on the 2-core build machine, 5 blocks. */
const TUNE = [
  "quantize",
  "--model",
  fixture("stories260K"),
  "--scheme",
  "W4A16",
  "--group_size",
  "32",
  "--iters",
  "200",
  "--dataset",
  fixture("tinystories-calib.jsonl"),
  "--seqlen",
  "64",
  "--nsamples",
  "8",
  "--device",
  "cpu",
  "--threads",
  "2",
];

const withTemp = <T>(fn: (dir: string) => Promise<T>) => withTempDir("autoround-signals-", fn);

/** Whether an unfinished (temporary) output folder for `out` exists now. */
async function partialExists(out: string): Promise<boolean> {
  return (await outputEntries(out)).some((n) => n.includes(".partial"));
}

Deno.test("SIGINT while SignRound tunes on 2 threads: exit 130, one error line, the unfinished folder removed", async () => {
  await withTemp(async (tmp) => {
    const out = `${tmp}/out`;
    const run = spawnCli([...TUNE, "--output_dir", out]);
    await run.stderrShows("block 1/5"); // block 1 written, block 2 tuning
    assert(await partialExists(out), "the run writes into a temporary folder");
    run.kill("SIGINT");
    const r = await run.result();
    assertEquals([r.code, r.signal], [130, null], r.stderr);
    assertLastErrorLine(r.stderr, "interrupted (SIGINT)", out);
    assert(!r.stderr.includes("block 2/5"), "the run stopped before its next block");
    await assertNoOutput(out);
  });
});

Deno.test("SIGTERM while tuning: exit 143, and a previous output in the same folder is left as it was", async () => {
  await withTemp(async (tmp) => {
    const out = `${tmp}/out`;
    await Deno.mkdir(out);
    await Deno.writeTextFile(`${out}/config.json`, "previous run");
    const run = spawnCli([...TUNE, "--output_dir", out]);
    await run.stderrShows("block 1/5");
    run.kill("SIGTERM");
    const r = await run.result();
    assertEquals([r.code, r.signal], [143, null], r.stderr);
    assertLastErrorLine(r.stderr, "interrupted (SIGTERM)");
    assertEquals(await outputEntries(out), ["out"]);
    assertEquals([...Deno.readDirSync(out)].map((e) => e.name), ["config.json"]);
    assertEquals(await Deno.readTextFile(`${out}/config.json`), "previous run");
  });
});

Deno.test("SIGINT and SIGTERM at once: the first handled ends the run; one line, its exit code, nothing left", async () => {
  await withTemp(async (tmp) => {
    const out = `${tmp}/out`;
    const run = spawnCli([...TUNE, "--output_dir", out]);
    await run.stderrShows("block 1/5");
    run.kill("SIGINT");
    run.kill("SIGTERM");
    const r = await run.result();
    // Both may be pending at the same turn of the event loop; either is handled first, never both.
    const sig = r.code === 143 ? "SIGTERM" : "SIGINT";
    assertEquals([r.code, r.signal], [sig === "SIGINT" ? 130 : 143, null], r.stderr);
    assertLastErrorLine(r.stderr, `interrupted (${sig})`);
    await assertNoOutput(out);
  });
});

Deno.test("a signal while blocks are exported or the run finishes: the complete output or nothing", async (t) => {
  // RTN with four formats: each block's tensors go to four writers while the next block computes,
  // then the writers finish (headers, configs, the GGUF file) and the folder is committed.
  const formats = "auto_round,auto_gptq,fake,gguf:q4_0";
  const cases: [string, Deno.Signal][] = [
    ["block 2/5", "SIGINT"],
    ["block 4/5", "SIGTERM"],
    ["block 5/5", "SIGINT"],
    ["kept in 16-bit", "SIGTERM"],
  ];
  let interrupted = 0;
  for (const [line, sig] of cases) {
    await t.step(`${sig} after "${line}"`, async () => {
      await withTemp(async (tmp) => {
        const out = `${tmp}/out`;
        const run = spawnCli([
          "quantize",
          "--model",
          fixture("stories260K"),
          "--scheme",
          "W4A16",
          "--group_size",
          "32",
          "--iters",
          "0",
          "--disable_opt_rtn",
          "--format",
          formats,
          "--device",
          "cpu",
          "--output_dir",
          out,
        ]);
        await run.stderrShows(line);
        run.kill(sig);
        const r = await run.result();
        assertEquals(r.signal, null, "the process exits itself");
        if (r.code === 0) {
          // The signal came after the commit: the output is complete.
          assertEquals(await outputEntries(out), ["out"]);
          for (const f of ["auto_round", "auto_gptq", "fake", "gguf-q4_0/stories260K-Q4_0.gguf"]) {
            const e = await cli(["inspect", join(out, f)]);
            assertEquals(e.code, 0, `${f}: ${e.stderr}`);
          }
        } else {
          interrupted++;
          assertEquals(r.code, sig === "SIGINT" ? 130 : 143, r.stderr);
          assertLastErrorLine(r.stderr, `interrupted (${sig})`);
          await assertNoOutput(out);
        }
      });
    });
  }
  assert(interrupted > 0, "at least one run was interrupted before its end");
});

Deno.test("SIGTERM during eval: exit 143 with one error line (no output folder involved)", async () => {
  await withTemp(async (tmp) => {
    // 60 copies of the evaluation text: a minute of windows on the CPU, far more than the test waits.
    const one = await Deno.readTextFile(fixture("stories260K/eval.txt"));
    await Deno.writeTextFile(`${tmp}/long.txt`, one.repeat(60));
    const run = spawnCli([
      "eval",
      "--model",
      fixture("stories260K"),
      "--text",
      `${tmp}/long.txt`,
      "--seqlen",
      "256",
      "--device",
      "cpu",
      "--debug",
    ]);
    await run.stderrShows("debug: cpu: CPU");
    run.kill("SIGTERM");
    const r = await run.result();
    assertEquals([r.code, r.signal], [143, null], r.stderr);
    assertLastErrorLine(
      r.stderr.split("\n").filter((l) => !l.startsWith("debug:")).join("\n"),
      "interrupted",
    );
    assert(!r.stdout.includes("ppl"), "no result printed");
  });
});

Deno.test("SIGINT during generate: exit 130 with one error line", async () => {
  await withTemp(async (tmp) => {
    // stories260K with a 32768-token context and no EOS/BOS to stop at: generation runs for minutes.
    const m = await copyModel(`${tmp}/long`);
    const edit = async (f: string, change: (j: Record<string, unknown>) => void) => {
      const j = JSON.parse(await Deno.readTextFile(join(m, f)));
      change(j);
      await Deno.writeTextFile(join(m, f), JSON.stringify(j));
    };
    await edit("config.json", (j) => Object.assign(j, { max_position_embeddings: 32768 }));
    await edit("tokenizer_config.json", (j) => Object.assign(j, { bos_token: null, eos_token: null }));
    await Deno.writeTextFile(join(m, "generation_config.json"), "{}");
    await Deno.remove(join(m, "special_tokens_map.json"));
    const run = spawnCli([
      "generate",
      "--model",
      m,
      "--prompt",
      "Once upon a time",
      "--max_new_tokens",
      "30000",
      "--device",
      "cpu",
      "--debug",
    ]);
    await run.stderrShows("debug: cpu: CPU");
    run.kill("SIGINT");
    const r = await run.result();
    assertEquals([r.code, r.signal], [130, null], r.stderr);
    assertLastErrorLine(
      r.stderr.split("\n").filter((l) => !l.startsWith("debug:")).join("\n"),
      "interrupted",
    );
  });
});

Deno.test("SIGKILL cannot be handled: <out>.partial stays (for --resume) and the next run clears it", async () => {
  await withTemp(async (tmp) => {
    const out = `${tmp}/out`;
    const run = spawnCli([...TUNE, "--output_dir", out]);
    await run.stderrShows("block 1/5");
    run.kill("SIGKILL");
    const r = await run.result();
    assertEquals(r.signal, "SIGKILL");
    assertEquals(await outputEntries(out), ["out.partial"]);
    // The dead run's lock went with its process: the next run clears the folder and finishes.
    const again = await cli([...TUNE.map((a) => a === "200" ? "0" : a), "--output_dir", out]);
    assertEquals(again.code, 0, again.stderr);
    assertEquals(await outputEntries(out), ["out"]);
  });
});

Deno.test("SIGTERM on a --resume run keeps its unfinished folder and journal; the same command continues it", async () => {
  await withTemp(async (tmp) => {
    const out = `${tmp}/out`;
    const args = [...TUNE, "--output_dir", out, "--resume"];
    const run = spawnCli(args);
    await run.stderrShows("block 2/5"); // block 1 journaled
    run.kill("SIGTERM");
    const r = await run.result();
    assertEquals([r.code, r.signal], [143, null], r.stderr);
    assertLastErrorLine(r.stderr, "interrupted (SIGTERM)", "kept", "--resume");
    const journal = [...Deno.readDirSync(`${out}.partial/.journal`)].map((e) => e.name);
    assert(journal.includes("block-00000.bin"), `journal: ${journal}`); // block 2's may still be in flight
    const again = await cli(args);
    assertEquals(again.code, 0, again.stderr);
    assert(/resuming: (block 1|blocks 1-[2-5]) of 5 finished earlier/.test(again.stderr), again.stderr);
    assert(!(await partialExists(out)), "the temporary folder became the output");
    assert((await Deno.stat(`${out}/model.safetensors`)).isFile);
  });
});
