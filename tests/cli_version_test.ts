/**
 * `autoround --version` (issue 15): the version, the commit, the Deno version and a hash of the
 * kernels. The kernels the program carries (WGSL and PTX imported as text) are every file of wgsl/
 * and ffi/cuda/*.ptx, byte for byte, so the hash printed is the hash of the files on disk.
 */
import { buildInfoSource } from "../tools/build.ts";
import { gitCommit, kernelsHash, kernelSources } from "../src/cli/version.ts";
import { VERSION } from "../src/version.ts";
import { assert, assertEquals } from "./assert.ts";
import { cli } from "./cli_helpers.ts";
import { diskKernels } from "./kernel_files.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("the program carries every WGSL and PTX file as it is on disk", async () => {
  const disk = await diskKernels();
  const carried = kernelSources();
  assertEquals(carried.map(([p]) => p), disk.map(([p]) => p));
  assert(disk.filter(([p]) => p.endsWith(".ptx")).length >= 6, "the PTX files are there");
  for (const [i, [path, text]] of disk.entries()) assert(carried[i][1] === text, `${path} differs`);
  assertEquals(await kernelsHash(), await kernelsHash(disk));
});

Deno.test("the kernels hash covers each file's path and every byte", async () => {
  const disk = await diskKernels();
  const base = await kernelsHash(disk);
  assert(/^[0-9a-f]{64}$/.test(base), base);
  const ptx = disk.findIndex(([p]) => p.endsWith(".ptx"));
  const oneByte = disk.map(([p, t], i): [string, string] => [p, i === ptx ? t.slice(0, -1) + "!" : t]);
  const renamed = disk.map(([p, t], i): [string, string] => [i === 0 ? p + "x" : p, t]);
  assert(await kernelsHash(oneByte) !== base, "a changed PTX byte changes the hash");
  assert(await kernelsHash(renamed) !== base, "a renamed file changes the hash");
  assert(await kernelsHash(disk.slice(1)) !== base, "a missing file changes the hash");
});

Deno.test("--version from source: version, the source tree's commit, deno, kernels", async () => {
  const r = await cli(["--version"]);
  assertEquals(r.code, 0, r.stderr);
  const m = /^autoround (\S+) \(source tree (\S+), deno (\S+), kernels ([0-9a-f]{12})\)\n$/.exec(r.stdout);
  assert(m, r.stdout);
  assertEquals(m[1], VERSION);
  assertEquals(m[2], (await gitCommit(ROOT)) ?? "unknown");
  assertEquals(m[3], Deno.version.deno);
  assertEquals(m[4], (await kernelsHash(await diskKernels())).slice(0, 12));
});

Deno.test("--version without git (no git program on PATH) says unknown and exits 0", async () => {
  const r = await cli(["--version"], { PATH: "/nonexistent" });
  assertEquals(r.code, 0, r.stderr);
  assert(
    /^autoround \S+ \(source tree unknown, deno \S+, kernels [0-9a-f]{12}\)\n$/.test(r.stdout),
    r.stdout,
  );
});

Deno.test("gitCommit: 12 hex digits in a work tree, undefined outside one", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    assertEquals(await gitCommit(tmp), undefined);
    const git = (...args: string[]) =>
      new Deno.Command("git", { args: ["-C", tmp, ...args], stdout: "null", stderr: "null" }).output();
    let hasGit = true;
    try {
      await git("init", "-q");
    } catch {
      hasGit = false;
    }
    if (!hasGit) return console.log("git not installed: the work-tree half skipped");
    await Deno.writeTextFile(`${tmp}/a`, "1");
    await git("add", "a");
    await git(
      "-c",
      "user.name=t",
      "-c",
      "user.email=t@t",
      "-c",
      "commit.gpgsign=false",
      "commit",
      "-qm",
      "a",
    );
    const head = await gitCommit(tmp);
    assert(head && /^[0-9a-f]{12}$/.test(head), String(head));
    await Deno.writeTextFile(`${tmp}/a`, "2");
    assertEquals(await gitCommit(tmp), `${head}-dirty`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("the generated build-info module embeds the commit as a string", () => {
  const src = buildInfoSource('abc"1');
  assert(src.includes(`export const BUILD_COMMIT: string | null = "abc\\"1";`), src);
});
