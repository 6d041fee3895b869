/**
 * The gguf format (llama.cpp, ollama, LM Studio): one `<model>-<TYPE>.gguf` file per `gguf:<type>`
 * format. Spec: FORMATS.md § gguf; source: auto-round export/export_to_gguf/ (convert.py, packing.py)
 * and export/formats/backends/gguf.py.
 *
 * The exporter quantizes with the GGML block structure itself: it receives every block Linear as
 * float weights (with the importance matrix when calibration collected one), picks each tensor's type
 * with AutoRound's mix rules (formats/gguf/presets.ts), quantizes it as AutoRound does
 * (qmath/gguf/quantize.ts, on the run's device when it has a GGUF quantizer, see ExportContext),
 * permutes q/k rows for the "llama" architecture, and streams the blocks to the file. Issue-18
 * families (spec/MODELS.md § 8): per-architecture names, routed experts stacked per projection
 * (gguf_experts.ts), routers and the shared-expert gate F32, Gemma norms written as 1 + w.
 */
import { FormatError } from "../errors.ts";
import { packBlocks } from "../qmath/gguf/blocks.ts";
import {
  expertSlot,
  ggufNaming,
  hfToGgufName,
  permuteRowsHfToGguf,
  permutesQK,
  qkHeads,
} from "../formats/gguf/names.ts";
import { familyTensors, ggufFamilyWarnings } from "../formats/gguf/families.ts";
import { deviceRowChunks, ExpertStacker } from "./gguf_experts.ts";
import { type GgmlTypeName } from "../qmath/gguf/types.ts";
import { LLAMA_FILE_TYPES } from "../formats/gguf/constants.ts";
import { GgufWriter, meta } from "../formats/gguf/writer.ts";
import { basename, join } from "../std/path.ts";
import {
  decodeFloats,
  encodeFloats,
  type FloatDType,
  ST_DTYPE_BYTES,
  type StDType,
} from "../tensor/dtype.ts";
import {
  type DeviceWeight,
  type ExportContext,
  type Exporter,
  type RawSource,
  readAllRaw,
} from "./exporter.ts";
import { dequantizeLinear, type FloatQuantizedLinear, type QuantizedLinear } from "../qmath/quantized.ts";
import { paramsFromQuantized, permuteGivenRows } from "../formats/gguf/given_codes.ts";
import { packMxfp4Blocks } from "../qmath/gguf/mxfp4.ts";
export { paramsFromQuantized } from "../formats/gguf/given_codes.ts";
import { copyModelSideFiles } from "./hf_files.ts";
import { Tokenizer } from "../io/tokenizer.ts";
import { type GgufFormat, ggufFormat, GgufTypeSelector, isFloatGguf } from "../formats/gguf/presets.ts";
import {
  architectureMetadata,
  generalMetadata,
  llama3RopeFactors,
  tokenizerMetadata,
} from "../formats/gguf/metadata.ts";
import { isQuantType, packParams } from "../qmath/gguf/quantize.ts";
import { quantizeToBytesOn } from "../qmath/gguf/parallel.ts";
import { plainTextName } from "../model/multimodal.ts";

/** The row getter of a whole `[·, k]` tensor in memory. */
function rowsOf(w: Float32Array, k: number): (r0: number, r1: number) => Float32Array {
  return (r0, r1) => w.subarray(r0 * k, r1 * k);
}

/** What each tensor became, for logs, inspect and tests. */
export interface GgufTensorRecord {
  name: string;
  hfName: string;
  type: GgmlTypeName;
  /** Whether the codes came from a QuantizedLinear given by the pipeline (no second quantization). */
  fromGivenCodes?: boolean;
}

/** Writes one GGUF file. */
export class GgufExporter implements Exporter {
  readonly format: string;
  /** Self-quantizing, except gguf:mxfp4, which stores the run's MXFP4 weights (writeFloatQuantized). */
  get wantsFloatLinears(): boolean {
    return this.#fmt.base !== "MXFP4";
  }
  /** AutoRound collects the importance matrix for GGUF when optimized RTN is on (iters 0). */
  readonly wantsImportance: boolean;
  readonly fileName: string;
  readonly records: GgufTensorRecord[] = [];
  readonly #dir: string;
  readonly #ctx: ExportContext;
  readonly #fmt: GgufFormat;
  readonly #selector: GgufTypeSelector;
  readonly #optRtn: boolean;
  readonly #permute: boolean;
  #writer?: GgufWriter;
  readonly #types = new Map<string, GgmlTypeName>();

  readonly #forceType?: GgmlTypeName;
  readonly #naming: string;
  readonly #stacker?: ExpertStacker;
  /** What llama.cpp will compute differently from the checkpoint (families.ts ggufFamilyWarnings). */
  readonly warnings: string[];

  /**
   * `opts.forceType` writes every weight (Linears and embeddings) in one type instead of the
   * format's mix, e.g. F32 to check a conversion against the float model bit for bit.
   */
  constructor(dir: string, ctx: ExportContext, formatName: string, opts: { forceType?: GgmlTypeName } = {}) {
    this.#forceType = opts.forceType;
    const named = ggufFormat(formatName);
    if (!named) throw new FormatError(`unknown GGUF format "${formatName}"`);
    // A forced F32/F16 file says so in its name and general.file_type (ALL_F32 / MOSTLY_F16).
    const forced = opts.forceType === "F32" ? "ALL_F32" : opts.forceType === "F16" ? "MOSTLY_F16" : undefined;
    const fmt = forced
      ? { ...named, fileType: LLAMA_FILE_TYPES[forced], fileTypeName: opts.forceType! }
      : named;
    this.#dir = dir;
    this.#ctx = ctx;
    this.#fmt = fmt;
    this.format = `gguf:${fmt.name}`;
    const spec = ctx.spec;
    this.fileName = `${basename(ctx.sourceDir)}-${fmt.fileTypeName}.gguf`;
    const nAttnV =
      [...ctx.run.layers.layers].filter(([n, p]) =>
        n.endsWith(".v_proj") && plainTextName(spec, n) && (p.quantize || !p.fromUser)
      ).length;
    this.#selector = new GgufTypeSelector(fmt, {
      nLayers: spec.nLayers,
      nHeads: spec.nHeads,
      nKvHeads: spec.nKvHeads,
      tied: spec.tieEmbeddings,
      nExpert: spec.moe?.nExperts,
    }, nAttnV);
    // RTNConfig: opt-RTN unless disabled; W8 int (gguf:q8_0) turns it off by default.
    this.#optRtn = ctx.run.iters === 0 && !isFloatGguf(named) &&
      !(ctx.run.disableOptRtn ?? (fmt.base === "Q8_0"));
    this.wantsImportance = this.#optRtn;
    this.#permute = permutesQK(spec.traits.ggufArch);
    this.#naming = ggufNaming(spec.traits.ggufArch, spec.moe?.style);
    if (spec.moe) this.#stacker = new ExpertStacker(spec.moe.nExperts);
    this.warnings = ggufFamilyWarnings(spec, join(ctx.sourceDir, "config.json"));
  }

  /** Path of the file written by {@link finish}. */
  get path(): string {
    return join(this.#dir, this.fileName);
  }

  async #w(): Promise<GgufWriter> {
    return this.#writer ??= await GgufWriter.create(this.path);
  }

  /** Rows of q/k permuted into llama.cpp's order (the "llama" architecture only). */
  #toGgufRows(hfName: string, w: Float32Array, rows: number, cols: number): Float32Array {
    const heads = this.#permute ? qkHeads(hfName, this.#ctx.spec.nHeads, this.#ctx.spec.nKvHeads) : 0;
    return heads ? permuteRowsHfToGguf(w, rows, cols, heads) : w;
  }

  /** Add a tensor; `ne` in ggml order (a weight [n, k] is [k, n]). */
  async #put(hfName: string, type: GgmlTypeName, ne: number[], bytes: Uint8Array, given = false) {
    hfName = this.#plain(hfName) ?? hfName;
    const name = hfToGgufName(hfName, this.#naming);
    if (!name) throw new FormatError(`no GGUF name for tensor ${hfName}`);
    const slot = this.#stacker && expertSlot(hfName, this.#naming);
    if (slot) {
      const t = this.#stacker!.add(name, slot.expert, type, ne, bytes);
      if (!t) return;
      [ne, bytes] = [t.ne, t.bytes];
      hfName = hfName.replace(`.${slot.expert}.`, ".*.");
    }
    // The shared-expert gate [1, H] is a vector in llama.cpp ({n_embd}, qwen2moe.cpp).
    if (name.endsWith("ffn_gate_inp_shexp.weight")) ne = [ne[0]];
    await (await this.#w()).addTensor(name, type, ne, bytes);
    this.records.push({ name, hfName, type, fromGivenCodes: given || undefined });
  }

  /** A VLM's text tensor under its text model name; undefined for the vision side (no mmproj). */
  #plain(name: string): string | undefined {
    return plainTextName(this.#ctx.spec, name) ?? (this.#ctx.spec.multimodal ? undefined : name);
  }

  /** Float tensor bytes of a GGUF float type. */
  static floatBytes(type: "F32" | "F16" | "BF16", w: Float32Array): Uint8Array {
    return encodeFloats(w, type as FloatDType);
  }

  /**
   * Write a tensor `[n, k]` in `type`; `rows(r0, r1)` gives its float rows (quantized types are done
   * a chunk of rows at a time, quantize.ts quantizeToBytes).
   */
  async #quantized(
    hfName: string,
    type: GgmlTypeName,
    rows: (r0: number, r1: number) => Float32Array,
    n: number,
    k: number,
    how: "linear" | "export",
    imatrix?: Float32Array,
  ) {
    if (!isQuantType(type)) {
      const bytes = GgufExporter.floatBytes(type as "F32" | "F16" | "BF16", rows(0, n));
      await this.#put(hfName, type, [k, n], bytes);
      return;
    }
    const device = this.#ctx.ggufQuantizer;
    if (device) {
      const opts = how === "export" ? { optRtn: false, atExport: true } : this.#deviceLinearOptions(imatrix);
      await this.#put(hfName, type, [k, n], await device(type, rows(0, n), n, k, opts));
      return;
    }
    const imp = imatrix && Float64Array.from(imatrix, (v) => v / this.#importanceDivisor);
    const opts = how === "export" ? "export" : { optRtn: this.#optRtn, imatrix: imp };
    await this.#put(hfName, type, [k, n], quantizeToBytesOn(this.#ctx.pool, type, n, k, rows, opts));
  }

  async writeRaw(stored: string, dtype: StDType, shape: number[], src: RawSource): Promise<void> {
    const name = this.#plain(stored);
    if (!name) return;
    if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16" && dtype !== "F64") {
      throw new FormatError(`tensor ${name}: dtype ${dtype} cannot go into GGUF`);
    }
    const spec = this.#ctx.spec;
    const embedOrHead = name === "lm_head.weight" || name === "model.embed_tokens.weight";
    if (embedOrHead && name === "lm_head.weight" && spec.tieEmbeddings) return; // llama.cpp uses token_embd
    if (embedOrHead && this.#ctx.ggufQuantizer) {
      const [n, k] = shape;
      const type = this.#forceType ??
        (name === "lm_head.weight" ? this.#selector.lmHead(k) : this.#selector.embedding(k));
      if (isQuantType(type)) {
        const opts = name === "lm_head.weight" ? { optRtn: this.#optRtn } : { optRtn: false, atExport: true };
        const device = this.#ctx.ggufQuantizer;
        return await this.#put(
          name,
          type,
          [k, n],
          await deviceRowChunks(device, type, dtype, src, n, k, opts),
        );
      }
    }
    // Whole: the host GGUF quantizers take the rows of the embedding and lm_head at will.
    const bytes = await readAllRaw(src);
    if (embedOrHead) {
      const [n, k] = shape, size = ST_DTYPE_BYTES[dtype] * k;
      // Decoded a chunk of rows at a time: the float copy of a 32000-row embedding is never whole.
      const rows = (r0: number, r1: number) => decodeFloats(bytes.subarray(r0 * size, r1 * size), dtype);
      const type = this.#forceType ??
        (name === "lm_head.weight" ? this.#selector.lmHead(k) : this.#selector.embedding(k));
      await this.#quantized(name, type, rows, n, k, name === "lm_head.weight" ? "linear" : "export");
      return;
    }
    const w = decodeFloats(bytes, dtype);
    // Gemma stores w and computes (1 + w): the converter writes 1 + w (gemma.py modify_tensors).
    if (spec.normOffset && name.endsWith("norm.weight")) { for (let i = 0; i < w.length; i++) w[i] += 1; }
    // Norms and biases: F32 (convert.py: 1-D tensors and norms stay float32).
    const rows = shape[0], cols = shape.length > 1 ? shape[1] : 1;
    const wr = this.#toGgufRows(name, w, rows, cols);
    await this.#put(name, "F32", [...shape].reverse(), encodeFloats(wr, "F32"));
  }

  /** The type of a block Linear, with the user's layer_config taken into account. */
  linearType(layer: string, k: number): GgmlTypeName {
    const gname = hfToGgufName(this.#plain(`${layer}.weight`) ?? layer, this.#naming) ?? layer;
    // Routers and the shared-expert gate are never quantized in GGUF (convert.py: F32).
    if (/ffn_gate_inp(_shexp)?\.weight$/.test(gname)) return "F32";
    if (this.#forceType) return this.#forceType;
    // Decided once per layer: the selector counts attn_v tensors as it is asked.
    const known = this.#types.get(layer);
    if (known) return known;
    const m = /layers\.(\d+)\./.exec(layer);
    const plan = this.#ctx.run.layers.layers.get(layer);
    let userBits: number | undefined;
    if (plan?.fromUser) userBits = plan.quantize ? plan.scheme.bits : 16;
    const t = this.#selector.linear(gname, m ? Number(m[1]) : 0, k, userBits);
    this.#types.set(layer, t);
    return t;
  }

  async writeFloatLinear(
    name: string,
    n: number,
    k: number,
    weight: Float32Array,
    importance?: Float32Array,
  ): Promise<void> {
    const type = this.linearType(name, k);
    const w = this.#toGgufRows(`${name}.weight`, weight, n, k);
    await this.#quantized(`${name}.weight`, type, rowsOf(w, k), n, k, "linear", importance);
  }

  /**
   * Per-token mean of x²: AutoRound divides the sum by the sample count (the searches only compare
   * weighted sums, so the scale does not change the result).
   */
  get #importanceDivisor(): number {
    return Math.max(1, this.#ctx.run.nsamples);
  }

  #deviceLinearOptions(importance?: Float32Array) {
    const div = this.#importanceDivisor;
    return { optRtn: this.#optRtn, imatrix: importance && Float32Array.from(importance, (v) => v / div) };
  }

  /**
   * A block Linear quantized straight from its device tensor (the run's backend quantizes for this
   * file): no f32 copy of the weight on the host. Rows are quantized in the checkpoint's order and
   * the packed rows permuted afterwards (q/k of the "llama" architecture): GGML blocks never cross
   * rows and the importance is per column, so that equals quantizing the permuted rows.
   */
  async packLinearOnDevice(name: string, weight: DeviceWeight, importance?: Float32Array) {
    const device = this.#ctx.ggufQuantizer;
    const [n, k] = weight.shape;
    const type = this.linearType(name, k);
    if (!device || device.backend !== weight.backend || !isQuantType(type)) return undefined;
    // AUTOROUND_GGUF_HOST_LINEARS=1: the f32 host route instead, so tests compare the two.
    if (Deno.env.get("AUTOROUND_GGUF_HOST_LINEARS") === "1") return undefined;
    return await device(type, weight, n, k, this.#deviceLinearOptions(importance));
  }

  async writePackedLinear(name: string, n: number, k: number, bytes: Uint8Array): Promise<void> {
    await this.#putRows(`${name}.weight`, this.linearType(name, k), n, k, bytes);
  }

  /** Packed rows `[n, ·]` of a Linear, q/k rows permuted for the "llama" architecture. */
  async #putRows(hf: string, type: GgmlTypeName, n: number, k: number, bytes: Uint8Array, given = false) {
    const heads = this.#permute ? qkHeads(hf, this.#ctx.spec.nHeads, this.#ctx.spec.nKvHeads) : 0;
    const rows = heads ? permuteRowsHfToGguf(bytes, n, bytes.length / n, heads) : bytes;
    await this.#put(hf, type, [k, n], rows, given);
  }

  /** gguf:mxfp4: an MXFP4 Linear's elements and shared exponents as ggml MXFP4 blocks (§ 10.9). */
  async writeFloatQuantized(l: FloatQuantizedLinear): Promise<void> {
    const s = l.scheme;
    if (this.#fmt.base !== "MXFP4" || s.dataType !== "mx_fp" || s.bits !== 4 || s.groupSize !== 32) {
      throw new FormatError(`${this.format} cannot store ${l.name} (${s.dataType} ${s.bits}-bit)`);
    }
    await this.#putRows(
      `${l.name}.weight`,
      "MXFP4",
      l.n,
      l.k,
      packMxfp4Blocks(l.elements, l.scales, l.n, l.k),
    );
    if (l.bias) await this.#put(`${l.name}.bias`, "F32", [l.n], encodeFloats(l.bias, "F32"));
  }

  /**
   * Whether {@link writeQuantized} would store this Linear's own codes (its scheme is the grid of the
   * tensor's GGUF type), so a run that packs that scheme anyway need not quantize it twice.
   */
  acceptsQuantized(l: QuantizedLinear): boolean {
    return paramsFromQuantized(l, this.linearType(l.name, l.k)) !== undefined;
  }

  /**
   * A Linear already quantized by the pipeline: written with its own codes and scales when the
   * tensor's GGUF type stores that grid (see {@link paramsFromQuantized}); otherwise its W̃ is
   * quantized again to the tensor's type.
   */
  async writeQuantized(l: QuantizedLinear): Promise<void> {
    const type = this.linearType(l.name, l.k);
    const hf = `${l.name}.weight`;
    const given = paramsFromQuantized(l, type);
    const heads = this.#permute ? qkHeads(hf, this.#ctx.spec.nHeads, this.#ctx.spec.nKvHeads) : 0;
    if (given && isQuantType(type)) {
      const { wq, params } = heads ? permuteGivenRows(given, l.n, l.k, heads) : given;
      await this.#put(hf, type, [l.k, l.n], packBlocks(packParams(type, wq, l.n, l.k, params)), true);
    } else {
      await this.#quantized(
        hf,
        type,
        rowsOf(this.#toGgufRows(hf, dequantizeLinear(l), l.n, l.k), l.k),
        l.n,
        l.k,
        "linear",
      );
    }
    // No bias here: the pipeline hands biases of quantized layers to float-wanting exporters with
    // writeRaw (pipeline.ts), so writing l.bias too would duplicate the tensor.
  }

  async finish(): Promise<void> {
    const w = await this.#w();
    const spec = this.#ctx.spec;
    this.#stacker?.checkComplete();
    for (const [name, v] of familyTensors(spec)) {
      await w.addTensor(name, "F32", [v.length], encodeFloats(v, "F32"));
    }
    const factors = llama3RopeFactors(spec);
    if (factors && !w.hasTensor("rope_freqs.weight")) {
      await w.addTensor("rope_freqs.weight", "F32", [factors.length], encodeFloats(factors, "F32"));
    }
    w.setMeta("general.architecture", meta.str(spec.traits.ggufArch));
    for (const [k, v] of generalMetadata(basename(this.#ctx.sourceDir), this.#fmt)) w.setMeta(k, v);
    for (const [k, v] of architectureMetadata(spec)) w.setMeta(k, v);
    for (const [k, v] of await tokenizerMetadata(this.#ctx.sourceDir, spec, Tokenizer.fromDir)) {
      w.setMeta(k, v);
    }
    await w.finish();
    // The tokenizer files go next to the .gguf so our own tools can encode for it (llama.cpp reads
    // the vocabulary from the metadata).
    await copyModelSideFiles(this.#ctx.sourceDir, this.#dir);
  }
}
