/**
 * Block 0's inputs: the calibration tokens' embedding rows (scaled as the family scales them).
 */
import type { Backend, Tensor } from "../backend/backend.ts";
import type { Checkpoint } from "../io/checkpoint.ts";
import { TensorRows } from "../io/tensor_rows.ts";
import { embedName } from "../model/multimodal.ts";
import { scaleEmbeddings } from "../model/transformer.ts";

/** Embedding rows of token ids as a tensor in the compute dtype. */
export interface EmbeddingSource extends Disposable {
  lookup(ids: Int32Array): Tensor;
}

/**
 * The calibration tokens' embedding rows. From a plain checkpoint only the rows of the tokens that
 * occur are read (never the whole table: 2.5 GB as f32 for a 151936 × 4096 vocabulary, and over
 * some GPUs' largest buffer); other sources (a quantized folder) upload the whole table. Both give
 * the same values: the stored rows rounded to the compute dtype.
 */
export async function embeddingSource(
  be: Backend,
  ckpt: Checkpoint,
  ids: Int32Array,
): Promise<EmbeddingSource> {
  const name = embedName(ckpt.spec);
  const info = ckpt.reader.has(name) ? ckpt.reader.info(name) : undefined;
  if (info && info.shape.length === 2 && ["F32", "F16", "BF16"].includes(info.dtype)) {
    const rows = await TensorRows.read(ckpt.reader, name, ids);
    return {
      lookup: (batch) =>
        scaleEmbeddings(
          be,
          ckpt.spec,
          be.upload(rows.gather(batch), [batch.length, rows.cols], be.computeDType),
        ),
      [Symbol.dispose]() {},
    };
  }
  const spec = ckpt.spec;
  const table = be.upload(await ckpt.weights.readF32(name), [spec.vocab, spec.hidden], be.computeDType);
  return {
    lookup: (batch) => {
      using t = be.uploadInt(batch, [batch.length]);
      return scaleEmbeddings(be, spec, be.embedding(table, t));
    },
    [Symbol.dispose]: () => table[Symbol.dispose](),
  };
}
