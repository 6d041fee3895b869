/**
 * The resume journal's storage (src/quant/journal.ts): a block record read back equals what was
 * written (codes of every width, odd lengths, importance vectors, generator state, report); a
 * damaged record and a journal of other settings are typed errors that say what to do.
 */
import { InputError, UsageError } from "../src/errors.ts";
import { type JournalBlock, packCodes, RunJournal, unpackCodes } from "../src/quant/journal.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

function codes(n: number, bits: number, seed: number): Uint8Array {
  const c = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) c[i] = (x = (x * 1103515245 + 12345) >>> 0) % (1 << bits);
  return c;
}

Deno.test("journal: codes of 2, 3, 4 and 8 bits pack and unpack exactly, odd lengths included", () => {
  for (const bits of [2, 3, 4, 8]) {
    for (const n of [1, 7, 64, 1001]) {
      const c = codes(n, bits, bits * 31 + n);
      const packed = packCodes(c, bits);
      assertEquals(packed.length, bits <= 4 ? Math.ceil(n / 2) : n);
      assertEquals([...unpackCodes(packed, bits, n)], [...c], `${bits} bits, ${n} codes`);
    }
  }
});

Deno.test("journal: a block record reads back as written; run.json decides what resumes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fp = { seed: 42, iters: 200 };
    const j = await RunJournal.open(dir, fp, false);
    assertEquals(j.finished, 0);
    const rec: JournalBlock = {
      calls: [
        { op: "raw", to: [0, 1], name: "model.layers.0.input_layernorm.weight" },
        {
          op: "quantized",
          to: [1],
          name: "model.layers.0.self_attn.q_proj",
          n: 3,
          k: 5,
          bits: 3,
          groupSize: 32,
          sym: false,
          q: {
            codes: codes(15, 3, 1),
            scales: Float32Array.of(0.5, 1e-30, 3),
            zeros: Int32Array.of(4, 0, 7),
          },
        },
        {
          op: "float",
          to: [0],
          name: "model.layers.0.mlp.up_proj",
          n: 2,
          k: 3,
          importance: Float32Array.of(1, 2, 3.5),
        },
        { op: "float", to: [0], name: "model.layers.0.mlp.gate_proj", n: 2, k: 3 },
      ],
      report: { block: 0, seconds: 1.5, quantized: ["a"], skipped: ["b"], lossStart: 0.25, lossBest: 0.125 },
      rng: { mt: Uint32Array.from({ length: 624 }, (_, i) => i * 2654435761), index: 17 },
    };
    await j.writeBlock(0, rec);
    const again = await RunJournal.open(dir, fp, true);
    assertEquals(again.finished, 1);
    const back = await again.readBlock(0);
    assertEquals(JSON.stringify(back.report), JSON.stringify(rec.report));
    assertEquals([...back.rng.mt], [...rec.rng.mt]);
    assertEquals(back.rng.index, 17);
    assertEquals(back.calls.length, 4);
    const q = back.calls[1], imp = back.calls[2], none = back.calls[3];
    assert(q.op === "quantized" && imp.op === "float" && none.op === "float");
    assertEquals([...q.q.codes], [...(rec.calls[1] as { q: { codes: Uint8Array } }).q.codes]);
    assertEquals([...q.q.scales], [0.5, Math.fround(1e-30), 3]);
    assertEquals([...q.q.zeros], [4, 0, 7]);
    assertEquals([...imp.importance!], [1, 2, 3.5]);
    assertEquals(none.importance, undefined);
    assertEquals(back.calls[0], rec.calls[0]);

    // Other settings: refused, naming the difference; the journal is left as it was.
    const e = await assertRejects(() => RunJournal.open(dir, { seed: 7, iters: 200 }, true), UsageError);
    assert(e.message.includes("seed: 42 then, 7 now"), e.message);
    assertEquals((await RunJournal.open(dir, fp, true)).finished, 1);

    // A damaged record is an InputError advising a fresh start.
    const path = `${dir}/.journal/block-00000.bin`;
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 9));
    await assertRejects(() => again.readBlock(0), InputError, "run without --resume");

    // Not adopted: whatever journal is there is replaced by a fresh one.
    assertEquals((await RunJournal.open(dir, fp, false)).finished, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
