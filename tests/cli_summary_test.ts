/**
 * The line a quantize run ends with (issue 14): wall time, peak RSS, peak device memory where the
 * backend tracks one, bytes written per format — the same figures as the last `--log_json` record,
 * and the byte counts equal to what is on disk.
 */
import { treeBytes } from "../src/quant/run_summary.ts";
import { assert, assertEquals, fixture } from "./assert.ts";
import { cli } from "./cli_helpers.ts";

Deno.test("quantize ends with a summary line and a --log_json summary record that match the output on disk", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const out = `${tmp}/out`, log = `${tmp}/log.jsonl`;
    const r = await cli([
      "quantize",
      "--model",
      fixture("stories260K"),
      "--group_size",
      "32",
      "--iters",
      "2",
      "--dataset",
      fixture("tinystories-calib.jsonl"),
      "--seqlen",
      "64",
      "--nsamples",
      "4",
      "--format",
      "auto_round,gguf:q4_0,fake",
      "--device",
      "cpu",
      "--output_dir",
      out,
      "--log_json",
      log,
    ]);
    assertEquals(r.code, 0, r.stderr);
    const records = (await Deno.readTextFile(log)).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(records.filter((x) => "block" in x).length, 5);
    const s = records.at(-1).summary;
    assert(s, "the last record is the summary");
    const want: Record<string, number> = {};
    for (const [f, dir] of [["auto_round", "auto_round"], ["gguf:q4_0", "gguf-q4_0"], ["fake", "fake"]]) {
      want[f] = await treeBytes(`${out}/${dir}`);
    }
    assertEquals(s.bytesWritten, want);
    assert(s.seconds > 0 && s.seconds < 600, `seconds ${s.seconds}`);
    // Deno alone is tens of MiB; stories260K's run is far from 4 GiB.
    assert(s.peakRssBytes > 20 * 2 ** 20 && s.peakRssBytes < 4 * 2 ** 30, `peak RSS ${s.peakRssBytes}`);
    assert(s.peakRssIsPeak === (Deno.build.os === "linux"));
    const line = r.stderr.trim().split("\n").find((l) => l.startsWith("done in "));
    assert(line, r.stderr);
    assert(line.includes(`done in ${s.seconds.toFixed(1)} s`), line);
    assert(/peak RSS [0-9.]+ (MiB|GiB)/.test(line), line);
    assert(
      /wrote auto_round [0-9.]+ (kB|MB), gguf:q4_0 [0-9.]+ (kB|MB), fake [0-9.]+ (kB|MB)$/.test(line),
      line,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
