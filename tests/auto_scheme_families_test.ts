/**
 * AutoScheme's scoring pass on the families with their own embedding scale, (1 + w) norms, MoE routing
 * and fused Linears (tests/fixtures/models/): with a quantizer that returns the weights unchanged, the
 * pass's loss is the model's own next-token loss (LoadedModel.nextTokenNll, the evaluation path) on the
 * same tokens; and a model with final logit soft-capping (gemma2) is refused.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { blockLinears } from "../src/model/block_layout.ts";
import { blockPrefix } from "../src/model/config.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { resolveOptions } from "../src/quant/auto_scheme/options.ts";
import { scoreOptions } from "../src/quant/auto_scheme/score.ts";
import { assert, assertRejects, fixture } from "./assert.ts";

const T = 24, B = 2;
const ids = Int32Array.from({ length: B * T }, (_, i) => 3 + (i * 53) % 500);
const mask = new Uint8Array(B * T).fill(1);

for (const family of ["gemma3_text", "qwen2_moe", "phi3_longrope"]) {
  Deno.test(`${family}: AutoScheme's pass with unquantized weights gives the model's own loss`, async () => {
    using ckpt = await openCheckpoint(fixture(`models/${family}`));
    const spec = ckpt.spec;
    using be = new CpuBackend({ precision: "f64" });
    const names = [...Array(spec.nLayers).keys()].flatMap((i) =>
      blockLinears(spec, i).filter((l) => !l.router).map((l) => blockPrefix(i, spec) + l.name)
    );
    const { options } = resolveOptions("W4A16");
    const { losses } = await scoreOptions({
      be,
      spec,
      weights: ckpt.weights,
      options,
      scored: new Set(names),
      ids,
      lossMask: mask,
      nsamples: B,
      seqlen: T,
      batchSize: B,
      quantizer: (_n, _o, w) => Promise.resolve(be.view(w, w.shape)),
    });
    using m = await LoadedModel.load(be, spec, ckpt.weights, { positions: T });
    const nll = await m.nextTokenNll(ids, { batch: B, seqLen: T });
    let sum = 0;
    for (let b = 0; b < B; b++) for (let t = 0; t + 1 < T; t++) sum += nll[b * T + t];
    const ref = sum / (B * (T - 1)), got = losses[0][0];
    console.log(`  ${family}: pass loss ${got.toFixed(9)}, evaluation ${ref.toFixed(9)}`);
    assert(Math.abs(got - ref) <= 1e-9 * ref, `${got} vs ${ref}`);
  });
}

Deno.test("gemma2 (final logit soft-capping) is refused by AutoScheme's pass", async () => {
  using ckpt = await openCheckpoint(fixture("models/gemma2"));
  using be = new CpuBackend();
  const { options } = resolveOptions("W4A16");
  await assertRejects(
    () =>
      scoreOptions({
        be,
        spec: ckpt.spec,
        weights: ckpt.weights,
        options,
        scored: new Set(),
        ids,
        lossMask: mask,
        nsamples: B,
        seqlen: T,
        batchSize: B,
      }),
    Error,
    "soft-capping",
  );
});
