/**
 * Failures of the machine rather than of the input: a disk that fills up part way, a read-only
 * output location, and two runs writing the same output folder. Each must end in one `error:` line
 * naming the place and the cause, a non-zero exit, and no output folder — neither a final one nor
 * a temporary one — while a previous output and a concurrent run's output stay intact.
 *
 * The full and read-only file systems are tmpfs mounts inside a mount namespace (`unshare -rm`,
 * or `unshare -m` as root), so the test needs no privileges where user namespaces are allowed and
 * leaves no mount behind; where neither works the tests are skipped with the reason printed.
 */
import { join } from "../src/std/path.ts";
import { assert, assertEquals, fixture, withTempDir } from "./assert.ts";
import {
  assertNoOutput,
  assertOneErrorLine,
  cli,
  type CliResult,
  outputEntries,
  skipUnless,
  spawnCli,
  unshareFlags,
} from "./cli_helpers.ts";

const mountNs = await unshareFlags("mount");
const noMountNs = skipUnless(mountNs, "full-disk and read-only tests");

/** RTN into two formats (two writers: safetensors shards, a GGUF file) — about a second. */
const QUANTIZE = [
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
  "auto_round,gguf:q4_0",
  "--device",
  "cpu",
];

const withTemp = <T>(fn: (dir: string) => Promise<T>) => withTempDir("autoround-env-", fn);

/** What a run in a mount namespace left on its mount: the names in it, and `out` copied out. */
interface MountedRun extends CliResult {
  listing: string[];
  /** A copy of `<mount>/out` in `host`, when the run left one. */
  copy?: string;
}

/**
 * Run the CLI with `args` in a new mount namespace where `mnt` (an empty folder of `host`) is a
 * tmpfs mounted with `opts` and `setup` (shell, `$MNT` set) has run; `{out}` in args stands for
 * `<mnt>/out`. The mount disappears with the namespace, so the listing and a copy of the output
 * are taken inside it.
 */
async function runOnTmpfs(host: string, opts: string, args: string[], setup = ""): Promise<MountedRun> {
  const mnt = join(host, "mnt");
  await Deno.mkdir(mnt, { recursive: true });
  const script = [
    `mount -t tmpfs -o "$OPTS" tmpfs "$MNT" || exit 99`,
    setup,
    `"$@"; rc=$?`,
    `ls -A "$MNT" > "$HOST/listing"`,
    `if [ -d "$MNT/out" ]; then cp -r "$MNT/out" "$HOST/out-copy"; fi`,
    `exit $rc`,
  ].join("\n");
  const cmdArgs = args.map((a) => a.replace("{out}", join(mnt, "out")));
  const r = await cli(cmdArgs, { MNT: mnt, HOST: host, OPTS: opts }, [
    "unshare",
    ...(mountNs as string[]),
    "sh",
    "-c",
    script,
    "sh",
  ]);
  assert(r.code !== 99, `the tmpfs could not be mounted: ${r.stderr}`);
  const listing = (await Deno.readTextFile(join(host, "listing"))).split("\n").filter(Boolean);
  const copy = listing.includes("out") ? join(host, "out-copy") : undefined;
  return { ...r, listing, copy };
}

/** Bytes the finished output takes on disk, in whole 4 KiB pages per file (as tmpfs counts them). */
async function outputPages(dir: string): Promise<number> {
  let bytes = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    bytes += e.isDirectory ? await outputPages(p) : Math.ceil((await Deno.stat(p)).size / 4096) * 4096;
  }
  return bytes;
}

Deno.test({
  name:
    "a disk that fills up at any point: one error line naming the place and ENOSPC, nothing left; else a whole output",
  ignore: noMountNs,
  async fn(t) {
    // The whole output's size, measured on a roomy disk, places the sizes below around it.
    const full = await withTemp(async (tmp) => {
      const r = await cli([...QUANTIZE, "--output_dir", `${tmp}/out`, "--quiet"]);
      assertEquals(r.code, 0, r.stderr);
      return await outputPages(`${tmp}/out`);
    });
    const kib = Math.ceil(full / 1024);
    // Too small for a shard; half; just short of the output; around the peak (shard headers are
    // compacted into a copy, the GGUF file is assembled from a side file); plenty.
    const sizes = [16, kib >> 1, kib - 8, kib + 4, Math.round(kib * 1.5), kib * 2 + 64, kib * 4];
    const outcomes: string[] = [];
    for (const size of sizes) {
      await t.step(`tmpfs of ${size} KiB`, async () => {
        await withTemp(async (host) => {
          const r = await runOnTmpfs(host, `size=${size}k`, [
            ...QUANTIZE,
            "--output_dir",
            "{out}",
            "--quiet",
          ]);
          if (r.code === 0) {
            outcomes.push("written");
            assertEquals(r.listing, ["out"]);
            for (const f of ["auto_round", "gguf-q4_0/stories260K-Q4_0.gguf"]) {
              const i = await cli(["inspect", join(r.copy!, f)]);
              assertEquals(i.code, 0, `${f}: ${i.stderr}`);
            }
          } else {
            outcomes.push("failed");
            assertEquals(r.code, 1, r.stderr);
            assertOneErrorLine(r.stderr, join(host, "mnt", "out"), "No space left on device");
            assertEquals(r.listing, [], "no output folder and no temporary folder");
          }
        });
      });
    }
    assertEquals(outcomes[0], "failed", "a disk smaller than one shard fails");
    assertEquals(outcomes[2], "failed", "a disk smaller than the output fails");
    assertEquals(outcomes[outcomes.length - 1], "written", "a roomy tmpfs holds the whole output");
  },
});

Deno.test({
  name:
    "a read-only output location: one error line before any work, nothing written, a previous output kept",
  ignore: noMountNs,
  async fn(t) {
    await t.step("the output's parent is read-only", async () => {
      await withTemp(async (host) => {
        const r = await runOnTmpfs(host, "ro,size=64k", [...QUANTIZE, "--output_dir", "{out}"]);
        assertEquals(r.code, 1, r.stderr);
        // One line and nothing else: no model was opened, no block quantized.
        assertOneErrorLine(r.stderr, join(host, "mnt", "out"), "Read-only file system");
        assertEquals(r.listing, []);
      });
    });
    await t.step("a missing parent on a read-only file system", async () => {
      await withTemp(async (host) => {
        const r = await runOnTmpfs(host, "ro,size=64k", [...QUANTIZE, "--output_dir", "{out}/../sub/out"]);
        assertEquals(r.code, 1, r.stderr);
        assertOneErrorLine(r.stderr, "cannot write output folder", "Read-only file system");
        assertEquals(r.listing, []);
      });
    });
    await t.step("a previous output on a file system made read-only stays as it was", async () => {
      await withTemp(async (host) => {
        // A read-only bind mount over the folder (a user namespace may not remount the tmpfs itself).
        const setup = `mkdir "$MNT/out" && echo previous > "$MNT/out/config.json" && ` +
          `mount --bind "$MNT" "$MNT" && mount -o remount,bind,ro "$MNT" || exit 99`;
        const r = await runOnTmpfs(host, "size=64k", [...QUANTIZE, "--output_dir", "{out}"], setup);
        assertEquals(r.code, 1, r.stderr);
        assertOneErrorLine(r.stderr, join(host, "mnt", "out"), "Read-only file system");
        assertEquals(r.listing, ["out"]);
        assertEquals([...Deno.readDirSync(r.copy!)].map((e) => e.name), ["config.json"]);
        assertEquals(await Deno.readTextFile(join(r.copy!, "config.json")), "previous\n");
      });
    });
  },
});

Deno.test("two runs writing the same output folder: the second fails at once, the first finishes intact", async () => {
  await withTemp(async (tmp) => {
    const out = `${tmp}/out`;
    // SignRound, 50 iterations a block: the first run holds the output folder for several seconds.
    const first = spawnCli([
      "quantize",
      "--model",
      fixture("stories260K"),
      "--scheme",
      "W4A16",
      "--group_size",
      "32",
      "--iters",
      "50",
      "--dataset",
      fixture("tinystories-calib.jsonl"),
      "--seqlen",
      "64",
      "--nsamples",
      "8",
      "--device",
      "cpu",
      "--output_dir",
      out,
    ]);
    await first.stderrShows("block 1/5");
    const second = await cli([...QUANTIZE, "--output_dir", out]);
    assertEquals(second.code, 1, second.stderr);
    assertOneErrorLine(second.stderr, "another autoround run is writing", out);
    const r = await first.result();
    assertEquals(r.code, 0, r.stderr);
    assertEquals(await outputEntries(out), ["out"], "the first run's output, nothing else");
    const e = await cli([
      "eval",
      "--model",
      out,
      "--text",
      fixture("stories260K/eval.txt"),
      "--seqlen",
      "256",
    ]);
    assertEquals(e.code, 0, e.stderr);
    const ppl = Number(/ppl ([\d.]+)/.exec(e.stdout)?.[1]);
    assert(ppl > 4.1654 && ppl < 4.6, `perplexity of the first run's output: ${e.stdout}`);
    await Deno.remove(out, { recursive: true });
    await assertNoOutput(out);
  });
});
