/**
 * What the container images and the release workflow promise, checked on their text (no image is built
 * here): the runtime stages run `autoround` as a non-root user with the /models and /out volumes and
 * nothing to fetch; the build stage takes Deno from package.json on a Node new enough for the locked
 * packages; the CUDA image's major version is the cuBLASLt the program loads; .dockerignore keeps every
 * file the build reads; every compiled release target is smoke-tested on a runner of its own; actions
 * are pinned to commits.
 */
import { assert, assertEquals } from "./assert.ts";

const ROOT = Deno.realPathSync(new URL("..", import.meta.url).pathname);
const read = (path: string) => Deno.readTextFileSync(`${ROOT}/${path}`);

interface Stage {
  from: string;
  lines: string[];
}

/** A Dockerfile's stages: instructions with continuation lines joined, comments dropped, ARGs expanded in FROM. */
function stages(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim()).filter((l) =>
    l && !l.startsWith("#")
  );
  const args = new Map<string, string>();
  const out: Stage[] = [];
  for (const line of lines) {
    const from = /^FROM\s+(\S+)/i.exec(line);
    if (from) out.push({ from: from[1].replace(/\$\{(\w+)\}/g, (_, k) => args.get(k) ?? ""), lines: [] });
    else if (out.length) out[out.length - 1].lines.push(line);
    const arg = /^ARG\s+(\w+)=(\S+)/i.exec(line);
    if (arg && !out.length) args.set(arg[1], arg[2]);
  }
  return out;
}

const instr = (s: Stage, name: string) => s.lines.filter((l) => l.toUpperCase().startsWith(name + " "));

const DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"];

Deno.test("the images run autoround as a non-root user, with /models and /out, and nothing to fetch", () => {
  for (const file of DOCKERFILES) {
    const all = stages(read(file));
    const run = all[all.length - 1];
    const user = instr(run, "USER");
    assertEquals(user.length, 1, `${file}: one USER`);
    const uid = user[0].split(/\s+/)[1].split(":")[0];
    assert(/^\d+$/.test(uid) && uid !== "0", `${file}: numeric non-root USER (runAsNonRoot can check it)`);
    assert(run.lines.some((l) => l.includes(`useradd --uid ${uid} `)), `${file}: USER ${uid} is created`);
    assert(run.lines.some((l) => /chown \S+ \/out\b/.test(l)), `${file}: /out belongs to that user`);
    assertEquals(instr(run, "VOLUME"), ['VOLUME ["/models", "/out"]'], file);
    assertEquals(instr(run, "ENTRYPOINT"), ['ENTRYPOINT ["autoround"]'], file);
    const env = instr(run, "ENV").join(" ");
    assert(/HF_HUB_CACHE=\/models\//.test(env), `${file}: the HF cache is looked for on the models volume`);
    assert(/HF_HUB_OFFLINE=1/.test(env), file);
    // Only Debian/Ubuntu packages enter the runtime stage; nothing downloads or installs software at run time.
    assert(
      !/\b(curl|wget|pip|npm|npx|git)\b/.test(run.lines.join("\n")),
      `${file}: no fetching tool in the runtime stage`,
    );
    assert(run.lines.some((l) => l.includes("libopenblas0-pthread")), `${file}: OpenBLAS`);
  }
  // libopenblas0-pthread provides libopenblas.so.0, one of the names the CPU backend tries.
  assert(read("ffi/blas/cblas.ts").includes('"libopenblas.so.0"'));
  const cpu = stages(read("Dockerfile"));
  const cpuRun = cpu[cpu.length - 1].lines.join("\n");
  assert(/libvulkan1/.test(cpuRun) && /mesa-vulkan-drivers/.test(cpuRun), "WebGPU through Mesa");
});

Deno.test("the build stage takes Deno from package.json, on a Node the locked packages accept", () => {
  const pkg = JSON.parse(read("package.json"));
  assert(/^\d+\.\d+\.\d+$/.test(pkg.dependencies.deno), "package.json pins one Deno version");
  // The highest `node >= N` any locked package asks for.
  const lock = JSON.parse(read("package-lock.json")) as {
    packages: Record<string, { engines?: { node?: string } }>;
  };
  let needed = 0;
  for (const p of Object.values(lock.packages)) {
    const m = /^>=\s*(\d+)/.exec(p.engines?.node ?? "");
    if (m) needed = Math.max(needed, Number(m[1]));
  }
  for (const file of DOCKERFILES) {
    const text = read(file);
    const build = stages(text)[0];
    const node = /^node:(\d+)-/.exec(build.from);
    assert(node, `${file}: the build stage is a node image (${build.from})`);
    assert(Number(node[1]) >= needed, `${file}: node ${node[1]} < ${needed}, which the locked packages need`);
    assert(build.lines.includes("COPY package.json package-lock.json ./"), file);
    assert(build.lines.some((l) => /^RUN npm (install|ci)\b/.test(l)), `${file}: npm brings Deno`);
    assert(!/deno@|deno\.land|install\.sh|denoland\/deno/.test(text), `${file}: no other Deno`);
  }
});

Deno.test("the CUDA image's major version is the cuBLASLt the program loads, and it has cuBLAS", () => {
  const want = /libcublasLt\.so\.(\d+)/.exec(read("ffi/cuda/cublaslt.ts"))![1];
  const all = stages(read("Dockerfile.cuda"));
  const base = all[all.length - 1].from;
  const m = /^nvidia\/cuda:(\d+)\.\d+\.\d+-(runtime|devel)-/.exec(base);
  assert(m, `a runtime or devel CUDA image (the base flavour has no cuBLAS): ${base}`);
  assertEquals(m[1], want, `CUDA ${m[1]} image, libcublasLt.so.${want} loaded`);
  assert(/NVIDIA_DRIVER_CAPABILITIES=compute,utility/.test(instr(all[all.length - 1], "ENV").join(" ")));
});

/** Docker's .dockerignore rules: the last pattern that matches the path or a folder above it decides. */
function ignored(path: string, patterns: string[]): boolean {
  let out = false;
  for (const raw of patterns) {
    const negate = raw.startsWith("!");
    const glob = (negate ? raw.slice(1) : raw).replace(/^\/+/, "").replace(/\/+$/, "");
    const re = new RegExp(
      "^" + glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*\/?|\*|\?/g, (t) =>
        t.startsWith("**") ? "(?:.*/)?" : t === "*" ? "[^/]*" : "[^/]") +
        "$",
    );
    const parts = path.split("/");
    if (
      parts.some((_, i) =>
        re.test(parts.slice(0, i + 1).join("/"))
      )
    ) {
      out = !negate;
    }
  }
  return out;
}

Deno.test(".dockerignore keeps every file the image build reads and drops node_modules", async () => {
  const patterns = read(".dockerignore").split("\n").map((l) => l.trim()).filter((l) =>
    l && !l.startsWith("#")
  );
  assert(ignored("tests/io_calib_test.ts", patterns) && !ignored("tests/fixtures/x", patterns), "matcher");
  const info = new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: ROOT,
    stdout: "piped",
  });
  const graph = JSON.parse(new TextDecoder().decode((await info.output()).stdout)) as {
    modules: { specifier: string }[];
  };
  const local = graph.modules.map((m) => m.specifier).filter((s) => s.startsWith("file://"))
    .map((s) => decodeURIComponent(new URL(s).pathname)).filter((p) => p.startsWith(ROOT + "/"))
    .map((p) => p.slice(ROOT.length + 1)).filter((p) => !p.includes("node_modules/"));
  assert(
    local.includes("src/parallel/pool.ts") && local.includes("wgsl/matmul.wgsl"),
    "the walk found the program",
  );
  const demo = ["tests/fixtures/stories260K/model.safetensors", "tests/fixtures/tinystories-calib.jsonl"];
  const build = [".ci/compile", ".ci/image-files", "deno.json", "package.json", "package-lock.json", ...demo];
  assertEquals([...local, ...build].filter((p) => ignored(p, patterns)), []);
  for (
    const p of ["node_modules/deno/deno", "tests/consumers/node_modules/x", ".git/HEAD", "dist/autoround.js"]
  ) {
    assert(ignored(p, patterns), `${p} stays out of the build context`);
  }
});

Deno.test("release.yml smoke-tests every compiled target on its own runner; actions are pinned to commits", () => {
  const release = read(".github/workflows/release.yml");
  const compile = /\.ci\/compile dist\/release((?:\s+\\\n)?(?:[ \t]+[\w-]+(?:\s+\\\n)?)+)/.exec(release);
  assert(compile, "release.yml runs .ci/compile dist/release TARGET...");
  const compiled = compile[1].replace(/\\\n/g, " ").trim().split(/\s+/).sort();
  const smoked = [...release.matchAll(/target: ([\w-]+)/g)].map((m) => m[1]).sort();
  assertEquals(smoked, compiled);
  assertEquals(compiled.length, 5);
  for (const file of ["ci.yml", "release.yml"]) {
    for (const [, uses] of read(`.github/workflows/${file}`).matchAll(/uses:\s*(\S+)/g)) {
      assert(
        uses.startsWith("./") || /^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/.test(uses),
        `${file}: ${uses} not pinned`,
      );
    }
  }
});
