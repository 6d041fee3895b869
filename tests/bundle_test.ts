/**
 * The bundled program alone (issue 15): `tools/build.ts bundle` builds it into a temporary folder, and
 * only that one file (with the demo model and calibration data, as a user's inputs) is copied into an
 * empty folder outside the repository, with no deno.json, package.json or node_modules in it or
 * above it. There it runs with `--no-config --no-npm --no-remote` and a bare environment, so
 * everything it needs at run time — the WGSL and PTX kernels, the recipes, the npm packages
 * (tokenizer, chat templates, parquet), the CPU worker threads (which load the bundle itself) — must
 * be inside it: quantize (RTN and a short SignRound, auto_round and gguf:q4_0), eval, inspect,
 * generate and --version, each compared with the source tree running the same command in the same
 * folder (the outputs are the same bytes, the perplexities the same numbers). WebGPU runs too where
 * an adapter exists (Mesa's lavapipe is one); the PTX cannot run here, but --version's kernel hash,
 * equal to the files', proves it is carried.
 */
import { gitCommit, kernelsHash } from "../src/cli/version.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { join } from "../src/std/path.ts";
import { VERSION } from "../src/version.ts";
import { assert, assertEquals, fixture } from "./assert.ts";
import { type CliResult, cliResult, copyModel } from "./cli_helpers.ts";
import { diskKernels } from "./kernel_files.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/**
 * Run `deno` with `args` in `cwd`; `bare`: with only the environment a program needs (no PATH: no
 * git, no tools of the machine).
 */
async function deno(cwd: string, args: string[], bare = true): Promise<CliResult> {
  const env: Record<string, string> = {};
  for (const k of ["HOME", "XDG_RUNTIME_DIR", "DENO_DIR"]) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  return cliResult(
    await new Deno.Command(Deno.execPath(), {
      args,
      cwd,
      env: bare ? env : undefined,
      clearEnv: bare,
      stdout: "piped",
      stderr: "piped",
    }).output(),
  );
}

/** Every file under `dir`, by relative path, with its bytes. */
async function treeFiles(dir: string, rel = ""): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(join(dir, rel))) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) { for (const [k, v] of await treeFiles(dir, p)) out.set(k, v); }
    else out.set(p, await Deno.readFile(join(dir, p)));
  }
  return out;
}

async function assertSameTree(a: string, b: string): Promise<void> {
  const [x, y] = [await treeFiles(a), await treeFiles(b)];
  assertEquals([...x.keys()].sort(), [...y.keys()].sort(), `${a} and ${b} hold other files`);
  for (const [k, v] of x) {
    const w = y.get(k)!;
    assert(v.length === w.length && v.every((byte, i) => byte === w[i]), `${k} differs`);
  }
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

/** Why WebGPU cannot run here, or undefined when an adapter answers. */
async function webgpuMissing(): Promise<string | undefined> {
  if (!("gpu" in navigator)) return "this Deno has no navigator.gpu";
  try {
    return (await navigator.gpu.requestAdapter()) ? undefined : "no WebGPU adapter";
  } catch (e) {
    return `no WebGPU adapter: ${(e as Error).message}`;
  }
}

Deno.test("the bundle alone in an empty folder: --version, quantize, eval, inspect, generate", async (t) => {
  const build = await Deno.makeTempDir({ prefix: "autoround-bundle-build-" });
  const work = await Deno.makeTempDir({ prefix: "autoround-bundle-run-" });
  try {
    const buildArgs = ["run", "-A", `${ROOT}/tools/build.ts`, "bundle", "-o", `${build}/autoround.js`];
    const b = await deno(ROOT, buildArgs, false);
    assertEquals(b.code, 0, b.stderr);
    await Deno.copyFile(`${build}/autoround.js`, `${work}/autoround.js`);
    await copyModel(`${work}/model`);
    await Deno.copyFile(fixture("tinystories-calib.jsonl"), `${work}/calib.jsonl`);
    for (let d = work; d !== "/"; d = d.slice(0, d.lastIndexOf("/")) || "/") {
      for (const name of ["deno.json", "deno.jsonc", "package.json", "node_modules"]) {
        assert(!(await exists(`${d}/${name}`)), `${d}/${name} exists: the folder is not alone`);
      }
    }
    const bundle = (...args: string[]) =>
      deno(work, ["run", "-A", "--no-config", "--no-npm", "--no-remote", "autoround.js", ...args]);
    const source = (...args: string[]) =>
      deno(work, ["run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/main.ts`, ...args]);

    await t.step("--version: the commit built from, deno, the hash of the kernel files", async () => {
      const r = await bundle("--version");
      assertEquals(r.code, 0, r.stderr);
      const commit = (await gitCommit(ROOT)) ?? "unknown";
      const kernels = (await kernelsHash(await diskKernels())).slice(0, 12);
      assertEquals(
        r.stdout,
        `autoround ${VERSION} (commit ${commit}, deno ${Deno.version.deno}, kernels ${kernels})\n`,
      );
    });

    const quantize = ["quantize", "--model", "model", "--group_size", "32", "--dataset", "calib.jsonl"];
    const cpu = ["--device", "cpu", "--threads", "2"];
    const formats = ["--format", "auto_round,gguf:q4_0", "--seqlen", "64"];

    await t.step("quantize RTN on 2 CPU threads: auto_round and a GGUF that parses", async () => {
      const r = await bundle(
        ...quantize,
        ...formats,
        "--iters",
        "0",
        "--nsamples",
        "8",
        ...cpu,
        "--output_dir",
        "rtn",
      );
      assertEquals(r.code, 0, r.stderr);
      assert(r.stderr.includes("block 5/5"), r.stderr);
      const cfg = JSON.parse(await Deno.readTextFile(`${work}/rtn/auto_round/config.json`));
      assertEquals(cfg.quantization_config.bits, 4);
      assertEquals(cfg.quantization_config.group_size, 32);
      using g = await GgufFile.open(`${work}/rtn/gguf-q4_0/model-Q4_0.gguf`);
      assertEquals(g.str("general.architecture"), "llama");
      assertEquals(g.tensors.filter((x) => x.type === "Q4_0").length, 30, "30 Q4_0 tensors");
    });

    await t.step("quantize SignRound (2 iters): the same bytes as the source tree's run", async () => {
      const args = [...quantize, ...formats, "--iters", "2", "--nsamples", "4", ...cpu];
      const r = await bundle(...args, "--output_dir", "sr", "--log_json", "sr.jsonl");
      assertEquals(r.code, 0, r.stderr);
      const blocks = (await Deno.readTextFile(`${work}/sr.jsonl`)).trim().split("\n").map((l) =>
        JSON.parse(l)
      )
        .filter((x) => "block" in x);
      assertEquals(blocks.length, 5);
      assert(blocks.every((x) => x.iterations === 2 && Number.isFinite(x.lossBest)), JSON.stringify(blocks));
      const s = await source(...args, "--output_dir", "sr-src");
      assertEquals(s.code, 0, s.stderr);
      await assertSameTree(`${work}/sr`, `${work}/sr-src`);
    });

    const evalArgs = ["eval", "--model", "sr/auto_round", "--text", "model/eval.txt", "--seqlen", "256"];
    let cpuPpl = NaN;
    await t.step("eval: the perplexity on worker threads, equal to the source tree's", async () => {
      const r = await bundle(...evalArgs, ...cpu, "--json", "--debug");
      assertEquals(r.code, 0, r.stderr);
      assert(r.stderr.includes("CPU (f32, 2 threads"), r.stderr);
      cpuPpl = JSON.parse(r.stdout).ppl;
      // stories260K's fp perplexity on this text is 4.1654; 4-bit G32 adds a little.
      assert(cpuPpl > 4.1654 && cpuPpl < 4.6, `ppl ${cpuPpl}`);
      const s = await source(...evalArgs, ...cpu, "--json");
      assertEquals(s.code, 0, s.stderr);
      assertEquals(cpuPpl, JSON.parse(s.stdout).ppl);
      const g = await bundle(
        "eval",
        "--model",
        "sr/gguf-q4_0/model-Q4_0.gguf",
        "--text",
        "model/eval.txt",
        "--seqlen",
        "256",
        ...cpu,
        "--json",
      );
      assertEquals(g.code, 0, g.stderr);
      const gp = JSON.parse(g.stdout).ppl;
      assert(gp > 4.1654 && gp < 4.8, `GGUF ppl ${gp}`);
    });

    await t.step("inspect: the output folder and the GGUF file", async () => {
      const r = await bundle("inspect", "sr/auto_round");
      assertEquals(r.code, 0, r.stderr);
      assert(r.stdout.includes("quantized layers (20)"), r.stdout);
      const g = await bundle("inspect", "sr/gguf-q4_0/model-Q4_0.gguf");
      assertEquals(g.code, 0, g.stderr);
      assert(g.stdout.includes("format: GGUF v3") && g.stdout.includes("file type Q4_0"), g.stdout);
    });

    await t.step("generate: the same greedy continuation as the source tree", async () => {
      const args = [
        "generate",
        "--model",
        "sr/auto_round",
        "--prompt",
        "Once upon a time",
        "--max_new_tokens",
        "8",
      ];
      const r = await bundle(...args, ...cpu);
      assertEquals(r.code, 0, r.stderr);
      assert(
        r.stdout.startsWith("Once upon a time") && r.stdout.trim().length > "Once upon a time".length,
        r.stdout,
      );
      const s = await source(...args, ...cpu);
      assertEquals(s.code, 0, s.stderr);
      assertEquals(r.stdout, s.stdout);
    });

    const noGpu = await webgpuMissing();
    if (noGpu) console.log(`bundle on WebGPU skipped: ${noGpu}`);
    await t.step({
      name: "eval on WebGPU: the WGSL kernels are in the bundle",
      ignore: noGpu !== undefined,
      fn: async () => {
        const r = await bundle(...evalArgs, "--device", "webgpu", "--json");
        assertEquals(r.code, 0, r.stderr);
        const ppl = JSON.parse(r.stdout).ppl;
        assert(Math.abs(ppl - cpuPpl) < 1e-4 * cpuPpl, `webgpu ppl ${ppl} vs cpu ${cpuPpl}`);
      },
    });
  } finally {
    await Deno.remove(build, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});
