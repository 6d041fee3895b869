/**
 * `quantize --config FILE` (issue 15): jobs from a YAML or JSON file, run in turn or one by `--job`;
 * a job whose output is there is skipped (its files untouched), a killed one resumes; command-line
 * flags override the file; a bad file is one `error:` line and exit 2; `--log_json` records carry
 * the phase, elapsed time and ETA. All on the stories260K demo model, tiny runs.
 */
import { parseJobConfig } from "../src/cli/job_config.ts";
import { QUANTIZE_FLAGS } from "../src/cli/quantize.ts";
import { UsageError } from "../src/errors.ts";
import { parseYaml } from "../src/std/yaml.ts";
import { assert, assertEquals, assertThrows, fixture } from "./assert.ts";
import { assertLastErrorLine, assertNoOutput, assertOneErrorLine, cli, spawnCli } from "./cli_helpers.ts";

const MODEL = fixture("stories260K");
const CALIB = fixture("tinystories-calib.jsonl");

/** The two-job config of these tests, as YAML (JSON: `JSON.stringify(parseYaml(...))`). */
function twoJobs(dir: string, log = `${dir}/log.jsonl`): string {
  return `# defaults for both jobs
group_size: 32
iters: 0            # optimized RTN
nsamples: 4
seqlen: 64
dataset: "${CALIB}"
device: cpu
threads: 1
log_json: "${log}"
jobs:
  - model: "${MODEL}"
    output_dir: "${dir}/a"
  - model: "${MODEL}"
    output_dir: "${dir}/b"
    format: [auto_round, "gguf:q4_0"]
    iters: 2        # this job: SignRound
`;
}

/** Every file under `dir` with its bytes and modification time. */
async function snapshot(dir: string, rel = ""): Promise<Map<string, { bytes: Uint8Array; mtime: number }>> {
  const out = new Map<string, { bytes: Uint8Array; mtime: number }>();
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) { for (const [k, v] of await snapshot(dir, p)) out.set(k, v); }
    else {
      const st = await Deno.stat(`${dir}/${p}`);
      out.set(p, { bytes: await Deno.readFile(`${dir}/${p}`), mtime: st.mtime!.getTime() });
    }
  }
  return out;
}

function assertSameBytes(a: Map<string, { bytes: Uint8Array }>, b: Map<string, { bytes: Uint8Array }>): void {
  assertEquals([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, v] of a) {
    const w = b.get(k)!.bytes;
    assert(v.bytes.length === w.length && v.bytes.every((x, i) => x === w[i]), `${k} differs`);
  }
}

function assertOneLine(stderr: string, line: string): void {
  assertEquals(stderr.trim().split("\n"), [line]);
}

const readLog = async (p: string) =>
  (await Deno.readTextFile(p)).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);

Deno.test("--config: two jobs run in turn; the log has phases and ETAs; a second run skips both; JSON = YAML", async (t) => {
  const tmp = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${tmp}/jobs.yaml`, twoJobs(tmp));
    const r = await cli(["quantize", "--config", `${tmp}/jobs.yaml`]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stderr.includes("job 0 of") && r.stderr.includes("job 1 of"), r.stderr);
    const qa = JSON.parse(await Deno.readTextFile(`${tmp}/a/config.json`)).quantization_config;
    assertEquals([qa.iters, qa.group_size, qa.nsamples, qa.seqlen], [0, 32, 4, 64]);
    const qb = JSON.parse(await Deno.readTextFile(`${tmp}/b/auto_round/config.json`)).quantization_config;
    assertEquals(qb.iters, 2, "the job's own key overrides the default");
    assert((await Deno.stat(`${tmp}/b/gguf-q4_0/stories260K-Q4_0.gguf`)).size > 0);

    await t.step("--log_json: phases in order, elapsed and ETA on every record", async () => {
      const recs = await readLog(`${tmp}/log.jsonl`);
      for (const job of [0, 1]) {
        const mine = recs.filter((x) => x.job === job);
        const phases = mine.map((x) => x.phase);
        assertEquals(phases, [
          "load",
          "calibrate",
          "quantize",
          ...Array(5).fill("quantize"),
          "export",
          "done",
        ]);
        const blocks = mine.filter((x) => "block" in x);
        assertEquals(blocks.map((x) => x.block), [0, 1, 2, 3, 4]);
        assert(
          blocks.every((x) => x.blocks === 5 && typeof x.eta_s === "number" && x.eta_s >= 0),
          "block ETA",
        );
        assertEquals(blocks.at(-1)!.eta_s, 0, "no time left after the last block");
        assertEquals(mine[0].eta_s, null, "no estimate before the first block");
        const elapsed = mine.map((x) => x.elapsed_s as number);
        assert(elapsed.every((e, i) => e >= 0 && (i === 0 || e >= elapsed[i - 1])), `elapsed ${elapsed}`);
        const done = mine.at(-1)!;
        assertEquals(done.eta_s, 0);
        assert((done.summary as { seconds: number }).seconds > 0, JSON.stringify(done));
      }
      assertEquals(recs.length, 20, "every record belongs to a job");
    });

    await t.step("a second run skips both jobs and touches no file", async () => {
      const before = await snapshot(tmp);
      const again = await cli(["quantize", "--config", `${tmp}/jobs.yaml`]);
      assertEquals(again.code, 0, again.stderr);
      assert(again.stderr.includes(`skipped: ${tmp}/a exists`), again.stderr);
      assert(again.stderr.includes(`skipped: ${tmp}/b exists`), again.stderr);
      assert(!again.stderr.includes("block 1/5"), again.stderr);
      const after = await snapshot(tmp);
      for (const [k, v] of before) {
        if (k === "log.jsonl") continue;
        assertEquals(after.get(k)?.mtime, v.mtime, `${k} was rewritten`);
      }
      assertSameBytes(
        new Map([...before].filter(([k]) => k !== "log.jsonl")),
        new Map([...after].filter(([k]) => k !== "log.jsonl")),
      );
      const recs = (await readLog(`${tmp}/log.jsonl`)).slice(20);
      assertEquals(recs.map((x) => [x.job, x.phase, x.skipped]), [[0, "done", true], [1, "done", true]]);
    });

    await t.step("the same config as JSON writes the same bytes", async () => {
      const json = JSON.stringify(parseYaml(twoJobs(`${tmp}/json`)));
      await Deno.writeTextFile(`${tmp}/jobs.json`, json);
      const j = await cli(["quantize", "--config", `${tmp}/jobs.json`]);
      assertEquals(j.code, 0, j.stderr);
      assertSameBytes(await snapshot(`${tmp}/a`), await snapshot(`${tmp}/json/a`));
      assertSameBytes(await snapshot(`${tmp}/b`), await snapshot(`${tmp}/json/b`));
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("--job N runs that job alone; command-line flags override the file", async (t) => {
  const tmp = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${tmp}/jobs.yaml`, twoJobs(tmp));
    await t.step("--job 1: only the second job", async () => {
      const r = await cli(["quantize", "--config", `${tmp}/jobs.yaml`, "--job", "1"]);
      assertEquals(r.code, 0, r.stderr);
      assert(!r.stderr.includes("job 0 of"), r.stderr);
      await assertNoOutput(`${tmp}/a`);
      assert((await Deno.stat(`${tmp}/b/auto_round/config.json`)).isFile);
    });
    await t.step("--group_size 64 and --iter 1 (an alias) on the command line beat the file", async () => {
      const r = await cli([
        "quantize",
        "--config",
        `${tmp}/jobs.yaml`,
        "--job",
        "0",
        "--group_size",
        "64",
        "--iter",
        "1",
      ]);
      assertEquals(r.code, 0, r.stderr);
      const q = JSON.parse(await Deno.readTextFile(`${tmp}/a/config.json`)).quantization_config;
      assertEquals([q.group_size, q.iters], [64, 1]);
    });
    await t.step("--skip_existing on a plain run: skipped when every format's files are there", async () => {
      const base = ["quantize", "--model", MODEL, "--iters", "0", "--disable_opt_rtn", "--skip_existing"];
      const before = await snapshot(`${tmp}/b`);
      const r = await cli([...base, "--format", "auto_round,gguf:q4_0", "--output_dir", `${tmp}/b`]);
      assertEquals(r.code, 0, r.stderr);
      assertOneLine(r.stderr, `skipped: ${tmp}/b exists`);
      assertEquals(await snapshot(`${tmp}/b`), before);
      // One format writes into the folder itself: the folder of two formats holds no files, so it runs.
      const one = await cli([...base, "--format", "fake", "--output_dir", `${tmp}/b`]);
      assertEquals(one.code, 0, one.stderr);
      assert(!one.stderr.includes("skipped"), one.stderr);
      assert((await Deno.stat(`${tmp}/b/config.json`)).isFile);
    });
    await t.step("--job out of range, or without --config: usage errors", async () => {
      const r = await cli(["quantize", "--config", `${tmp}/jobs.yaml`, "--job", "2"]);
      assertEquals(r.code, 2);
      assertOneErrorLine(r.stderr, "--job must be a job index from 0 to 1", "2 jobs");
      const n = await cli(["quantize", "--model", MODEL, "--job", "0"]);
      assertEquals(n.code, 2);
      assertOneErrorLine(n.stderr, "--job needs --config");
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a bad config file: one error line naming the file and the key, exit 2, nothing written", async (t) => {
  const tmp = await Deno.makeTempDir();
  const out = `${tmp}/out`;
  const head = `model: "${MODEL}"\noutput_dir: "${out}"\niters: 0\ndisable_opt_rtn: true\n`;
  const cases: [string, string, string, string[]][] = [
    ["unknown key", "c.yaml", `${head}output-dir: x\n`, [
      'unknown key "output-dir"',
      "did you mean output_dir",
    ]],
    ["unknown key in a job", "c.yaml", `${head}jobs:\n  - sceme: W4A16\n`, ['jobs[0]: unknown key "sceme"']],
    ["a list for a number", "c.yaml", `${head}jobs:\n  - nsamples: [1, 2]\n`, [
      "jobs[0]: nsamples must be an integer (got a list)",
    ]],
    ["text for an integer", "c.yaml", `${head}seqlen: long\n`, ['seqlen must be an integer (got "long")']],
    ["a string for a switch", "c.yaml", `${head}asym: "yes"\n`, ['asym must be true or false (got "yes")']],
    ["a mapping for a string", "c.yaml", `${head}scheme: {bits: 4}\n`, [
      "scheme must be a string or a number (got a mapping)",
    ]],
    ["a block scalar", "c.yaml", `${head}dataset: |\n  x\n`, ["YAML line 5: block scalars"]],
    ["bad indentation", "c.yaml", `${head}jobs:\n  - seed: 1\n   seqlen: 2\n`, ["YAML line 7"]],
    ["bad JSON", "c.json", `{"model": "${MODEL}",}`, ["not valid JSON"]],
    ["not a mapping", "c.json", `[1, 2]`, ["must be a mapping"]],
    ["an empty job list", "c.yaml", `${head}jobs: []\n`, ['"jobs" must be a non-empty list']],
    ["a command-line-only flag", "c.yaml", `${head}debug: true\n`, ['"debug" belongs on the command line']],
    ["two jobs, one output", "c.yaml", `${head}jobs:\n  - seed: 1\n  - seed: 2\n`, [
      "jobs 0 and 1 both write",
    ]],
    ["another extension", "c.toml", head, ["must end in .json, .yaml or .yml"]],
  ];
  try {
    for (const [name, file, text, parts] of cases) {
      await t.step(name, async () => {
        await Deno.writeTextFile(`${tmp}/${file}`, text);
        const r = await cli(["quantize", "--config", `${tmp}/${file}`]);
        assertEquals(r.code, 2, r.stderr);
        assertOneErrorLine(r.stderr, `${tmp}/${file}`, ...parts);
        await assertNoOutput(out);
      });
    }
    await t.step("a value only the run can check names the file and the job", async () => {
      await Deno.writeTextFile(`${tmp}/v.yaml`, `${head}scheme: W9A16\n`);
      const r = await cli(["quantize", "--config", `${tmp}/v.yaml`]);
      assertEquals(r.code, 2, r.stderr);
      assertLastErrorLine(r.stderr, `${tmp}/v.yaml, job 0:`, "W9A16");
      await assertNoOutput(out);
    });
    await t.step("a missing file is exit 1; a positional model with --config is exit 2", async () => {
      const r = await cli(["quantize", "--config", `${tmp}/nope.yaml`]);
      assertEquals(r.code, 1);
      assertOneErrorLine(r.stderr, `${tmp}/nope.yaml`, "not found");
      const p = await cli(["quantize", MODEL, "--config", `${tmp}/c.yaml`]);
      assertEquals(p.code, 2);
      assertOneErrorLine(p.stderr, "give the model in the file or as --model");
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a config job killed outright resumes from its journal on the next run, to the same bytes", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const settings = `model: "${MODEL}"\ndataset: "${CALIB}"\ngroup_size: 32\niters: 30\nnsamples: 16\n` +
      `seqlen: 128\nbatch_size: 4\ndevice: cpu\nthreads: 1\n`;
    await Deno.writeTextFile(`${tmp}/job.yaml`, `${settings}output_dir: "${tmp}/out"\n`);
    const run = spawnCli(["quantize", "--config", `${tmp}/job.yaml`]);
    await run.stderrShows("block 2/5");
    run.kill("SIGKILL");
    const killed = await run.result();
    assertEquals(killed.signal, "SIGKILL", `the run ended before the kill:\n${killed.stderr}`);
    assert((await Deno.stat(`${tmp}/out.partial`)).isDirectory, "the killed run left its folder");

    const resumed = await cli(["quantize", "--config", `${tmp}/job.yaml`]);
    assertEquals(resumed.code, 0, resumed.stderr);
    assert(resumed.stderr.includes(`resuming the unfinished run in ${tmp}/out.partial`), resumed.stderr);
    assert(resumed.stderr.includes("replayed from the journal"), resumed.stderr);

    await Deno.writeTextFile(`${tmp}/ref.yaml`, `${settings}output_dir: "${tmp}/ref"\n`);
    const ref = await cli(["quantize", "--config", `${tmp}/ref.yaml`]);
    assertEquals(ref.code, 0, ref.stderr);
    assert(!ref.stderr.includes("resuming"), ref.stderr);
    assertSameBytes(await snapshot(`${tmp}/out`), await snapshot(`${tmp}/ref`));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("config merging: job over defaults over nothing, command line over all, aliases as one key", () => {
  const yaml =
    `iters: 5\nsym: true\nformat: [auto_round, "gguf:q4_0"]\nlayer_config: {mlp.down_proj: {bits: 8}}\n` +
    `resume: false\njobs:\n  - {model: m, iter: 7, asym: true, output_dir: x}\n  - {model: n, output_dir: y, resume: true}\n`;
  const c = parseJobConfig(JSON.stringify(parseYaml(yaml)), "j.json", QUANTIZE_FLAGS, { bs: "3" });
  assertEquals(c.jobs[0].values, {
    format: "auto_round,gguf:q4_0",
    layer_config: '{"mlp.down_proj":{"bits":8}}',
    model: "m",
    iter: "7",
    asym: true,
    output_dir: "x",
    bs: "3",
  });
  assertEquals([...c.jobs[0].off], ["resume"]);
  assertEquals(c.jobs[1].values.iters, "5");
  assertEquals(c.jobs[1].values.sym, true);
  assertEquals([...c.jobs[1].off], [], "the job's resume: true undoes the default's false");
  const noJobs = parseJobConfig("model: m\nthreads: 2\n", "j.yml", QUANTIZE_FLAGS, { threads: "4" });
  assertEquals(noJobs.jobs.map((j) => j.values), [{ model: "m", threads: "4" }]);
  assertThrows(
    () => parseJobConfig("lr: fast\n", "j.yaml", QUANTIZE_FLAGS, {}),
    UsageError,
    "lr must be a number",
  );
});

Deno.test("recipes/jobs/example.yaml is a valid config: two jobs, two formats each", async () => {
  const file = new URL("../recipes/jobs/example.yaml", import.meta.url).pathname;
  const c = parseJobConfig(await Deno.readTextFile(file), file, QUANTIZE_FLAGS, {});
  assertEquals(c.jobs.length, 2);
  for (const j of c.jobs) assertEquals(j.values.format, "auto_round,gguf:q4_k_m");
  assertEquals(new Set(c.jobs.map((j) => j.values.output_dir)).size, 2);
});
