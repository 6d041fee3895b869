/**
 * Where host memory goes during a quantize run: the CLI's quantize in this process, with
 * Deno.memoryUsage() sampled every 100 ms and printed, per second, as rss / V8 heap / external
 * (ArrayBuffers) in MiB, next to the run's log lines. Arguments are `autoround quantize`'s:
 *   deno run -A bench/memory_probe.ts --model DIR --scheme W4A16 --dataset F --device cuda ...
 */
import { quantizeCommand } from "../src/cli/quantize.ts";
import type { Log } from "../src/log.ts";

const t0 = performance.now();
const mib = (x: number) => (x / 2 ** 20).toFixed(0);
let last = { rss: 0, heap: 0, ext: 0 }, peak = { rss: 0, heap: 0, ext: 0, at: 0 };
let second = -1;
const sample = () => {
  const m = Deno.memoryUsage();
  last = { rss: m.rss, heap: m.heapUsed, ext: m.external };
  const t = (performance.now() - t0) / 1000;
  if (m.rss > peak.rss) peak = { ...last, at: t };
  if (Math.floor(t) !== second) {
    second = Math.floor(t);
    console.log(`${t.toFixed(1)}s rss ${mib(m.rss)} heap ${mib(m.heapUsed)} ext ${mib(m.external)}`);
  }
};
const timer = setInterval(sample, 100);
const line = (kind: string) => (msg: string) => {
  sample();
  console.log(`${((performance.now() - t0) / 1000).toFixed(1)}s [${kind}] ${msg} | rss ${mib(last.rss)}`);
};
const log: Log = { info: line("info"), warn: line("warn"), debug: () => {} };
try {
  await quantizeCommand(Deno.args, log);
} finally {
  clearInterval(timer);
  console.log(
    `peak rss ${mib(peak.rss)} MiB at ${peak.at.toFixed(1)}s (heap ${mib(peak.heap)}, external ${
      mib(peak.ext)
    })`,
  );
}
