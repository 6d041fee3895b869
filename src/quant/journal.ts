/**
 * The resume journal of a quantization run (`quantize --resume`), kept in the temporary output
 * folder (`<out>.partial/.journal`, io/output_folder.ts) and removed with it on commit.
 *
 * What it holds is what a run cannot recompute cheaply; everything else is recomputed on resume:
 *
 *   run.json            the run's fingerprint (settings, model files, program); resume refuses a
 *                       different run
 *   block-NNNNN.bin     one per finished block, written whole and renamed into place (so a file that
 *                       exists is complete): every call the block made to the exporters, in order,
 *                       with the tensors that came from tuning (each quantized Linear's codes, scales
 *                       and zero points; GGUF's importance vectors), the block's report and the
 *                       random generator's state after the block
 *
 * On resume (pipeline.ts) the finished blocks are replayed: the exporters get the same calls again
 * (weights, biases and untouched tensors are re-read from the checkpoint), and the activation streams
 * are rebuilt by the block forwards — the fp stream with the checkpoint's weights, the quantized
 * stream with the journaled codes dequantized, which equal the fake-quantized weights bit for bit
 * (both are scale · (code − zero) of an exactly representable product). Then tuning continues
 * from the first unfinished block, so the output is byte-identical to an uninterrupted run's.
 *
 * File layout of a block record: "ARJ1", u32 header length, the header (JSON), then the tensors'
 * bytes at the offsets the header gives (8-aligned).
 */
import { InputError, UsageError, writeErrorOf } from "../errors.ts";
import type { FloatQuantizedLinear, QuantizedLinear } from "../qmath/quantized.ts";
import type { BlockReport } from "./block_report.ts";

/** One exporter call as the journal keeps it (tensors that tuning produced; the rest by name). */
export type JournalCall =
  | { op: "raw"; to: number[]; name: string }
  | ({ op: "quantized"; to: number[] } & Omit<QuantizedLinear, "bias">)
  | { op: "float"; to: number[]; name: string; n: number; k: number; importance?: Float32Array }
  | {
    /** A float-scheme Linear with its fake-quantized weight (the quantized stream's, bit for bit). */
    op: "floatQuantized";
    to: number[];
    layer: Omit<FloatQuantizedLinear, "bias">;
    fake: Float32Array;
  };

/** A finished block. */
export interface JournalBlock {
  calls: JournalCall[];
  report: Omit<BlockReport, "seconds"> & { seconds: number };
  rng: { mt: Uint32Array; index: number };
}

const MAGIC = "ARJ1";
const DIR = ".journal";

/** The journal folder of a run's temporary output folder (the entry OutputFolder keeps on resume). */
export const JOURNAL_DIR = DIR;

/** A run's journal: open it, replay its finished blocks, add blocks as they finish. */
export class RunJournal {
  private constructor(readonly dir: string, readonly finished: number) {}

  /**
   * Start a journal in `outPath` (the temporary output folder), or, when `adopted` (a dead run's
   * folder taken over with --resume), continue the one there. A journal of a different run (its
   * fingerprint differs) is a UsageError naming the differing settings; a missing one starts over.
   */
  static async open(
    outPath: string,
    fingerprint: Record<string, unknown>,
    adopted: boolean,
  ): Promise<RunJournal> {
    const dir = `${outPath}/${DIR}`;
    const want = JSON.stringify(fingerprint);
    if (adopted) {
      const have = await Deno.readTextFile(`${dir}/run.json`).catch(() => undefined);
      if (have !== undefined) {
        if (have !== want) throw new UsageError(mismatch(JSON.parse(have), fingerprint, outPath));
        return new RunJournal(dir, await countFinished(dir));
      }
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true }).catch((e) => {
      throw writeErrorOf(e, dir);
    });
    await writeWhole(`${dir}/run.json`, new TextEncoder().encode(want));
    return new RunJournal(dir, 0);
  }

  /** Remove the journal (the run is complete; it is no part of the output). */
  async remove(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }

  /** Record finished block `b` (written whole, then renamed: it exists only complete). */
  async writeBlock(b: number, rec: JournalBlock): Promise<void> {
    await writeWhole(blockPath(this.dir, b), ...encodeBlock(rec));
  }

  /** Read finished block `b`. */
  async readBlock(b: number): Promise<JournalBlock> {
    const path = blockPath(this.dir, b);
    try {
      return decodeBlock(await Deno.readFile(path));
    } catch (e) {
      throw new InputError(
        `the resume journal is damaged (${(e as Error).message}); run without --resume to start over`,
        path,
      );
    }
  }
}

function blockPath(dir: string, b: number): string {
  return `${dir}/block-${String(b).padStart(5, "0")}.bin`;
}

/** Consecutive finished blocks from block 0. */
async function countFinished(dir: string): Promise<number> {
  let n = 0;
  while (await Deno.stat(blockPath(dir, n)).then(() => true, () => false)) n++;
  return n;
}

/**
 * Write `pieces` one after another to `path` (through a temporary file and a rename); a function
 * piece is called when its turn comes (its bytes exist only while they are written).
 */
async function writeWhole(path: string, ...pieces: (Uint8Array | (() => Uint8Array))[]): Promise<void> {
  const tmp = `${path}.tmp`;
  try {
    {
      using f = await Deno.open(tmp, { write: true, create: true, truncate: true });
      for (const piece of pieces) {
        const bytes = typeof piece === "function" ? piece() : piece;
        let at = 0;
        while (at < bytes.length) at += await f.write(bytes.subarray(at));
      }
      await f.sync();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    throw writeErrorOf(e, path); // a full disk is the user's to fix, one line
  }
}

/** What differs between two fingerprints, for the refusal message. */
function mismatch(have: Record<string, unknown>, want: Record<string, unknown>, outPath: string): string {
  const keys = [...new Set([...Object.keys(have), ...Object.keys(want)])];
  const diff = keys.filter((k) => JSON.stringify(have[k]) !== JSON.stringify(want[k]));
  const show = (v: unknown) => {
    const s = JSON.stringify(v) ?? "none";
    return s.length > 60 ? s.slice(0, 57) + "..." : s;
  };
  const parts = diff.slice(0, 3).map((k) => `${k}: ${show(have[k])} then, ${show(want[k])} now`);
  return `--resume: the unfinished run in ${outPath} was started differently (${parts.join("; ")}${
    diff.length > 3 ? `; and ${diff.length - 3} more` : ""
  }); use the same flags, or run without --resume to start over`;
}

// ---- block record encoding ----

/** A blob's bytes are made when written (`bytes()`); `byteLength` is known before. */
type Blob = {
  dtype: "u8" | "u32" | "i32" | "f32";
  bytes: () => Uint8Array;
  byteLength: number;
  length: number;
};

/**
 * The record's bytes as pieces to write in order (header, then each blob padded to 8 bytes): a MoE
 * block's codes are packed one Linear at a time as they are written, never all at once nor copied
 * into one block-sized buffer.
 */
function encodeBlock(rec: JournalBlock): (Uint8Array | (() => Uint8Array))[] {
  const blobs: Blob[] = [];
  const add = (a: Uint8Array | Uint32Array | Int32Array | Float32Array, dtype: Blob["dtype"]) => {
    const bytes = () => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    blobs.push({ dtype, bytes, byteLength: a.byteLength, length: a.length });
    return blobs.length - 1;
  };
  const addCodes = (codes: Uint8Array, bits: number) => {
    const byteLength = bits > 4 ? codes.length : Math.ceil(codes.length / 2);
    blobs.push({ dtype: "u8", bytes: () => packCodes(codes, bits), byteLength, length: byteLength });
    return blobs.length - 1;
  };
  const calls = rec.calls.map((c) => {
    if (c.op === "quantized") {
      const { q, ...rest } = c;
      return {
        ...rest,
        codes: addCodes(q.codes, c.bits),
        codesLength: q.codes.length,
        scales: add(q.scales, "f32"),
        zeros: add(q.zeros, "i32"),
      };
    }
    if (c.op === "float") {
      const { importance, ...rest } = c;
      return { ...rest, importance: importance ? add(importance, "f32") : undefined };
    }
    if (c.op === "floatQuantized") {
      const { elements, scales, ...rest } = c.layer;
      return {
        op: c.op,
        to: c.to,
        layer: { ...rest, elements: add(elements, "f32"), scales: add(scales, "f32") },
        fake: add(c.fake, "f32"),
      };
    }
    return c;
  });
  const rng = { mt: add(rec.rng.mt, "u32"), index: rec.rng.index };
  let at = 0;
  const offsets = blobs.map((b) => {
    const o = at;
    at += Math.ceil(b.byteLength / 8) * 8;
    return { dtype: b.dtype, offset: o, length: b.length };
  });
  const header = new TextEncoder().encode(JSON.stringify({ calls, report: rec.report, rng, blobs: offsets }));
  const start = Math.ceil((8 + header.length) / 8) * 8;
  const head = new Uint8Array(start);
  head.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(head.buffer).setUint32(4, header.length, true);
  head.set(header, 8);
  const pad = (n: number) => new Uint8Array(Math.ceil(n / 8) * 8 - n);
  return [head, ...blobs.flatMap((b) => [b.bytes, pad(b.byteLength)])];
}

function decodeBlock(bytes: Uint8Array): JournalBlock {
  if (new TextDecoder().decode(bytes.subarray(0, 4)) !== MAGIC) throw new Error("not a journal block");
  const hlen = new DataView(bytes.buffer, bytes.byteOffset).getUint32(4, true);
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  const start = Math.ceil((8 + hlen) / 8) * 8;
  const blob = (i: number) => {
    const { dtype, offset, length } = h.blobs[i];
    const size = dtype === "u8" ? 1 : 4;
    if (start + offset + length * size > bytes.length) throw new Error("truncated journal block");
    const copy = bytes.slice(start + offset, start + offset + length * size);
    return dtype === "u8"
      ? copy
      : dtype === "u32"
      ? new Uint32Array(copy.buffer)
      : dtype === "i32"
      ? new Int32Array(copy.buffer)
      : new Float32Array(copy.buffer);
  };
  // deno-lint-ignore no-explicit-any
  const calls: JournalCall[] = h.calls.map((c: any) => {
    if (c.op === "quantized") {
      const { codes, codesLength, scales, zeros, ...rest } = c;
      return {
        ...rest,
        q: {
          codes: unpackCodes(blob(codes) as Uint8Array, c.bits, codesLength),
          scales: blob(scales) as Float32Array,
          zeros: blob(zeros) as Int32Array,
        },
      };
    }
    if (c.op === "float") {
      return {
        ...c,
        importance: c.importance === undefined ? undefined : blob(c.importance) as Float32Array,
      };
    }
    if (c.op === "floatQuantized") {
      const elements = blob(c.layer.elements) as Float32Array, scales = blob(c.layer.scales) as Float32Array;
      return { ...c, layer: { ...c.layer, elements, scales }, fake: blob(c.fake) as Float32Array };
    }
    return c;
  });
  return { calls, report: h.report, rng: { mt: blob(h.rng.mt) as Uint32Array, index: h.rng.index } };
}

/** Codes of ≤ 4 bits two to a byte (low nibble first); wider codes a byte each. */
export function packCodes(codes: Uint8Array, bits: number): Uint8Array {
  if (bits > 4) return codes;
  const out = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i += 2) out[i >> 1] = codes[i] | ((codes[i + 1] ?? 0) << 4);
  return out;
}

/** Inverse of {@link packCodes}. */
export function unpackCodes(packed: Uint8Array, bits: number, length: number): Uint8Array {
  if (bits > 4) return packed;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (packed[i >> 1] >> ((i & 1) * 4)) & 15;
  return out;
}
