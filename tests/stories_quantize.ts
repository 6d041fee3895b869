/**
 * The quantize run several tests share: stories260K, W2G32, 12 SignRound iterations over 16 × 64
 * TinyStories tokens, batch 8, auto_round output — with each block's report and every quantized
 * Linear's fake-quantized weight collected. Options override any field.
 */
import type { Backend } from "../src/backend/backend.ts";
import { silentLog } from "../src/log.ts";
import type { BlockReport } from "../src/quant/pipeline.ts";
import { quantize, type QuantizeOptions } from "../src/quant/quantize.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { fixture } from "./assert.ts";

/** What a run leaves: the output folder (until `cleanup`), block reports and fake-quantized weights. */
export interface StoriesRun {
  dir: string;
  blocks: BlockReport[];
  fake: Map<string, Float32Array>;
  cleanup: () => Promise<void>;
}

/** Quantize stories260K on `be`; the caller removes the output with `cleanup()`. */
export async function quantizeStories(be: Backend, opts: Partial<QuantizeOptions> = {}): Promise<StoriesRun> {
  const out = await Deno.makeTempDir();
  const blocks: BlockReport[] = [];
  const fake = new Map<string, Float32Array>();
  const cleanup = () => Deno.remove(out, { recursive: true });
  try {
    await quantize({
      model: fixture("stories260K"),
      outputDir: `${out}/q`,
      formats: ["auto_round"],
      scheme: resolveScheme("W2A16", { groupSize: 32 }),
      iters: 12,
      nsamples: 16,
      seqlen: 64,
      batchSize: 8,
      dataset: fixture("tinystories-calib.jsonl"),
      maxShardSize: 5e9,
      backend: be,
      onBlock: (r) => blocks.push(r),
      onFakeWeight: (n, v) => fake.set(n, v),
      ...opts,
    }, silentLog);
  } catch (e) {
    await cleanup();
    throw e;
  }
  return { dir: `${out}/q`, blocks, fake, cleanup };
}

/** The same, output removed at once: only the reports and weights are kept. */
export async function quantizeStoriesReports(
  be: Backend,
  opts: Partial<QuantizeOptions> = {},
): Promise<Pick<StoriesRun, "blocks" | "fake">> {
  const r = await quantizeStories(be, opts);
  await r.cleanup();
  return { blocks: r.blocks, fake: r.fake };
}
