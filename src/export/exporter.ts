/**
 * What every export format receives while a model is quantized: tensors stream in block by block
 * (each written to disk at once), then `finish` writes configs and tokenizer files.
 */
import type { QuantGgmlType } from "../qmath/gguf/params.ts";
import type { ModelSpec } from "../model/config.ts";
import type { FloatQuantizedLinear, QuantizedLinear } from "../qmath/quantized.ts";
import type { RunInfo } from "../formats/run.ts";
import type { StDType } from "../tensor/dtype.ts";
import type { WorkerPool } from "../parallel/pool.ts";

/** Everything an exporter needs to know about the source model. */
export interface ExportContext {
  spec: ModelSpec;
  /** The source model folder (tokenizer and generation files are copied from it). */
  sourceDir: string;
  /** The source config.json as parsed. */
  config: Record<string, unknown>;
  run: RunInfo;
  /** Shard size limit in bytes. */
  maxShardSize: number;
  /** A device GGUF quantizer (the run's backend's ggufQuantize); without it GGUF quantizes on the host. */
  ggufQuantizer?: GgufDeviceQuantizer;
  /** Threads for host-side work (GGUF searches and packing); absent: the calling thread only. */
  pool?: WorkerPool;
}

/**
 * Packed GGML block bytes of a `[n, k]` float weight, computed on a device (Backend.ggufQuantize);
 * `imatrix` is the per-column importance `[k]`, already averaged.
 */
export type GgufDeviceQuantizer =
  & ((
    type: QuantGgmlType,
    /** Host rows (uploaded), or a weight on the device of `backend` (any float dtype). */
    w: Float32Array | DeviceWeight,
    n: number,
    k: number,
    opts: { optRtn: boolean; imatrix?: Float32Array; atExport?: boolean },
  ) => Promise<Uint8Array>)
  & {
    /** The backend it runs on: weights on this backend are quantized where they are. */
    readonly backend?: object;
  };

/**
 * A weight on the run's device, opaque to the exporters (a backend Tensor; src/export does not depend
 * on src/backend): its shape and the backend holding it, which a device quantizer compares with its own.
 */
export interface DeviceWeight {
  readonly shape: readonly number[];
  readonly backend: object;
}

/**
 * A tensor's stored bytes, read on demand: an exporter copying a 1.2 GB embedding reads it in
 * pieces (SafetensorsWriter.addFrom) instead of holding it whole.
 */
export interface RawSource {
  readonly byteLength: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A RawSource over bytes already in memory. */
export function rawFromBytes(bytes: Uint8Array): RawSource {
  return { byteLength: bytes.byteLength, read: (o, l) => Promise.resolve(bytes.subarray(o, o + l)) };
}

/** All of a RawSource's bytes at once (for writers that need the whole tensor). */
export function readAllRaw(src: RawSource): Promise<Uint8Array> {
  return src.read(0, src.byteLength);
}

/** A format writer. Calls arrive in model order; each tensor is written to disk before returning. */
export interface Exporter {
  readonly format: string;
  /** A tensor kept as it is in the source checkpoint (norms, embeddings, unquantized Linears). */
  writeRaw(name: string, dtype: StDType, shape: number[], src: RawSource): Promise<void>;
  /** A quantized Linear. */
  writeQuantized(layer: QuantizedLinear): Promise<void>;
  /**
   * A Linear quantized with a float or activation-quantized scheme (MX, NVFP4, FP8, INT8_W8A8);
   * formats without it refuse those schemes before the run (registry.ts).
   */
  writeFloatQuantized?(layer: FloatQuantizedLinear): Promise<void>;
  /**
   * Formats that quantize with their own block structure (GGUF) set this and receive every block
   * Linear's float weight `[n, k]` instead (with the importance statistics `[k]` when calibration
   * collected them); they then get no writeQuantized/writeRaw call for those weights.
   */
  readonly wantsFloatLinears?: boolean;
  /**
   * Set by such exporters when they want the importance statistics (imatrix) even if the run's
   * own scheme would not collect them (GGUF with optimized RTN, like AutoRound's OptimizedRTNQuantizer).
   */
  readonly wantsImportance?: boolean;
  /**
   * For such exporters: true when a Linear the pipeline quantized anyway can be written as it is
   * (its integer grid is the one this format stores for that tensor); the pipeline then calls
   * writeQuantized instead of writeFloatLinear, so the run quantizes that Linear once.
   */
  acceptsQuantized?(l: QuantizedLinear): boolean;
  writeFloatLinear?(
    name: string,
    n: number,
    k: number,
    weight: Float32Array,
    importance?: Float32Array,
  ): Promise<void>;
  /**
   * For such exporters, when the run's backend quantizes for them on the device: the stored bytes of
   * block Linear `name` quantized from its device weight `[n, k]` (no host copy of the weight;
   * importance `[k]` as for writeFloatLinear), or undefined when this format stores it otherwise
   * (a float type): it then gets writeFloatLinear. Called in model order, before writePackedLinear.
   */
  packLinearOnDevice?(
    name: string,
    weight: DeviceWeight,
    importance?: Float32Array,
  ): Promise<Uint8Array | undefined>;
  /** Writes what packLinearOnDevice returned for `name`. */
  writePackedLinear?(name: string, n: number, k: number, bytes: Uint8Array): Promise<void>;
  /** Configs, tokenizer and index files. */
  finish(): Promise<void>;
}
