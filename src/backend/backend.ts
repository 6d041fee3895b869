/**
 * The one interface every compute backend implements: CPU (the reference), WebGPU and CUDA.
 *
 * The model forward pass, the SignRound loop and the evaluators are written once against these
 * ops; a backend only adds kernels. Shapes are row-major. Activations are 2-D `[rows, features]`
 * where rows = batch × sequence; attention and RoPE take the batch/sequence/head geometry as
 * arguments instead of needing 4-D tensors.
 *
 * Ops enqueue work and return at once (GPU backends run asynchronously); only `read` waits.
 * Every tensor a call returns is owned by the caller and must be disposed (`using t = ...`).
 * A `view` shares its parent's storage and must not outlive it; disposing a view frees nothing.
 */
import type { AttentionShape, FamilyOps, RopeGeo } from "./family_ops.ts";

export type { AttentionShape, RopeGeo } from "./family_ops.ts";
import type { QuantGgmlType } from "../qmath/gguf/params.ts";
import type { ActQuant, QuantizedWeights, QuantScheme } from "../qmath/quantized.ts";

/** Element types tensors can hold on a device. */
export type DType = "f32" | "f16" | "bf16" | "i32" | "u8";

/** A tensor living in one backend's memory. */
export interface Tensor extends Disposable {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
  /** The backend that owns the storage. */
  readonly backend: Backend;
}

/** Integer weight quantizer settings of one Linear (spec ALGORITHM.md § Integer quantizers). */
export interface IntQuantParams {
  bits: number;
  /** Columns per group; equals K for per-row (group_size -1 or K < group_size). */
  groupSize: number;
  sym: boolean;
  /** Scale storage dtype the forward rounds scales to (fp16 by default in AutoRound). */
  scaleDType: "f16" | "bf16" | "f32";
  /**
   * SignRoundV2 (`--enable_alg_ext`, symmetric int): the state's initScale is tuned, scale =
   * fp16(initScale·β) with α, β ∈ [0, 2] (spec/SCHEMES.md § 9.6). Only the CPU backend has it so far.
   */
  signRoundV2?: boolean;
}

/**
 * Float weight quantizer settings of one Linear (spec/SCHEMES.md § 4–7): the scheme (its data type,
 * bits and group size: MX 32, NV 16, FP8 0 = per tensor or −1 = per row) and, for NVFP4, the weight
 * global scale gs = 2688/amax (§ 5.1; the fused minimum over q/k/v and gate/up).
 */
export interface FloatQuantParams {
  kind: "float";
  scheme: QuantScheme;
  globalScale?: number;
  /** SignRoundV2: β is clamped into [0, 2] instead of [0, 1] (sign_roundv2/quantizer.py:102). */
  signRoundV2?: boolean;
}

/**
 * An activation quantizer call: the scheme's ActQuant, the calibrated input maximum (static FP8,
 * NVFP4's global scale) and the tunable static scale coefficient `[1]` (FP8_STATIC's act_max_scale,
 * clamped to [0, 1] by the tuner).
 */
export interface ActQuantArgs {
  act: ActQuant;
  actMax?: number;
  actMaxScale?: Tensor;
  /** Static quantizers take their range from max |x| of this input instead of actMax (SCHEMES.md § 12.2). */
  rangeFromInput?: boolean;
  /**
   * A stored static parameter used as is instead of one derived from actMax: FP8_STATIC's
   * input_scale, NVFP4's input_global_scale (a checkpoint's values, at inference).
   */
  inputScale?: number;
  inputGlobalScale?: number;
}

/**
 * Tunable quantization state of one Linear with weight `[N, K]` and G = K / groupSize groups:
 * V `[N, K]` rounding offsets, α (min scale) and β (max scale) `[N·G]`, and the per-group
 * weight min/max `[N·G]` taken once from the unquantized weight (AutoRound's `weight_min/max`).
 */
export interface QuantState {
  v: Tensor;
  minScale: Tensor;
  maxScale: Tensor;
  wMin: Tensor;
  wMax: Tensor;
  /** Optional searched initial scale `[N·G]` (opt-RTN); when present it replaces the min/max scale. */
  initScale?: Tensor;
}

/** The GGML block types a device GGUF quantizer writes (llama.cpp's names; src/qmath/gguf/params.ts). */
export type GgufBlockType = QuantGgmlType;

/** How {@link Backend.ggufQuantize} quantizes (quantize.ts SearchOptions, quantizeAtExport). */
export interface GgufQuantizeOptions {
  /** AutoRound's optimized RTN: the Q4_0/Q5_0/Q8_0 scale search and the importance matrix. */
  optRtn: boolean;
  /** Importance per input column, f32 `[K]`; used with optRtn only (ignored when all zero). */
  imatrix?: Tensor;
  /**
   * The rules for tensors AutoRound quantizes only at export (token_embd): llama.cpp's reference
   * quantizers for the 32-wide types, the K-quant searches without an importance matrix.
   */
  atExport?: boolean;
}

/** Gradients of the fake-quant op with respect to its tunable inputs. */
export interface FakeQuantGrads {
  dv: Tensor;
  dMinScale: Tensor;
  dMaxScale: Tensor;
}

/** The op set. Each method's JSDoc states its exact math; the CPU backend is the reference. */
export interface Backend extends Disposable, FamilyOps<Tensor> {
  readonly name: "cpu" | "webgpu" | "cuda";
  /** Human-readable device description for logs. */
  readonly device: string;
  /** The dtype activations and weights use for compute on this backend (f32 on the CPU). */
  readonly computeDType: "f32" | "bf16" | "f16";
  /**
   * Largest tensor, in bytes, one allocation may hold (WebGPU: the device's `maxBufferSize`);
   * undefined when only the device's memory limits it. Callers split larger data (activation
   * stores by sample, micro-batches by rows) so no single tensor exceeds it.
   */
  readonly maxTensorBytes?: number;

  // ---- memory ---------------------------------------------------------------------------------
  /** Copy host values to a new tensor of `dtype` (rounded to nearest even). */
  upload(data: Float32Array | Float64Array, shape: readonly number[], dtype?: DType): Tensor;
  /** Copy host integers to a new i32 tensor. */
  uploadInt(data: Int32Array, shape: readonly number[]): Tensor;
  /**
   * Optional: upload raw little-endian f32/f16/bf16 bytes (checkpoint data as stored) into a tensor of
   * `dtype` (default: the bytes' own dtype), converting on the device instead of decoding on the host.
   */
  uploadBytes?(
    bytes: Uint8Array,
    srcDType: "f32" | "f16" | "bf16",
    shape: readonly number[],
    dtype?: DType,
  ): Tensor;
  /**
   * Optional: the raw little-endian bytes of a float tensor in its own dtype (waits for queued
   * work): a bf16 tensor comes back as 2 bytes per value, with no conversion on the host.
   */
  readBytes?(t: Tensor): Promise<Uint8Array>;
  /** Optional: raw bytes of `dst`'s own dtype copied into `dst` (a tensor or a view of rows). */
  writeBytes?(dst: Tensor, bytes: Uint8Array): void;
  /** New tensor filled with `value`. */
  full(shape: readonly number[], value: number, dtype?: DType): Tensor;
  /** Read a float tensor back as f32 (waits for queued work). */
  read(t: Tensor): Promise<Float32Array>;
  /** Read an i32 tensor back. */
  readInt(t: Tensor): Promise<Int32Array>;
  /** Same storage, new shape of the same size. */
  view(t: Tensor, shape: readonly number[]): Tensor;
  /** Rows `[start, start+count)` of a 2-D tensor as a view. */
  rows(t: Tensor, start: number, count: number): Tensor;
  /** dst ← src (same size; converts dtype if they differ). */
  copy(dst: Tensor, src: Tensor): void;
  /**
   * Gather whole samples: dst rows `[i·rowsPerSample, (i+1)·rowsPerSample)` ← src rows of sample
   * `indices[i]`. Used to assemble a training batch from the calibration activations. `indices` may
   * be an i32 tensor on this backend, read on the device, so a captured iteration can gather other
   * samples on every replay.
   *
   * With `firstSample` (a source split into segments of whole samples), `src` holds samples
   * `[firstSample, firstSample + src.rows/rowsPerSample)`: entries of `indices` in that range are
   * gathered, the others leave their dst sample untouched. Without it an index outside the source
   * is an error.
   */
  gatherSamples(
    dst: Tensor,
    src: Tensor,
    indices: readonly number[] | Tensor,
    rowsPerSample: number,
    firstSample?: number,
  ): void;

  // ---- dense math -----------------------------------------------------------------------------
  /**
   * C = alpha · op(A) · op(B) + beta · C, op(X) = Xᵀ when the flag is set. A linear layer
   * `x @ Wᵀ` is `matmul(x, W, {transB: true})`. With `out` omitted a new C is returned (beta
   * ignored).
   */
  matmul(
    a: Tensor,
    b: Tensor,
    opts?: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number; out?: Tensor },
  ): Tensor;
  /** out = a + b (same shape); `out` may alias `a`. */
  add(a: Tensor, b: Tensor, out?: Tensor): Tensor;
  /** x[r, :] += bias for every row (in place). */
  addRowVector(x: Tensor, bias: Tensor): void;
  /**
   * y = x · rsqrt(mean(x²) + eps) · w over each consecutive run of n = w.size elements of x (a row
   * of `[rows, n]`, or one head of `[rows, heads·n]` for Qwen3's q/k norm). Output has x's shape.
   */
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor;
  /** dx of rmsNorm for given dy (w frozen). */
  rmsNormBackward(x: Tensor, w: Tensor, dy: Tensor, eps: number): Tensor;
  /**
   * Rotary embedding, Hugging Face `rotate_half` convention, in place on `[B·T, heads·headDim]`:
   * for position t (0-based within each sequence, plus `posOffset`) and i < headDim/2,
   * (x_i, x_{i+h}) ← (x_i·cos − x_{i+h}·sin, x_{i+h}·cos + x_i·sin) with cos/sin from `table`
   * `[maxPos, headDim/2]` pairs (cos table, sin table). `inverse` rotates by −θ (the backward).
   */
  rope(
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    geo: RopeGeo,
    inverse?: boolean,
  ): void;
  /**
   * Causal grouped-query attention. q `[B·T, nH·hd]`, k/v `[B·T, nKv·hd]` → out `[B·T, nH·hd]`
   * and the row log-sum-exp `[B·nH·T]` (f32) the backward needs.
   */
  attention(q: Tensor, k: Tensor, v: Tensor, shape: AttentionShape): { out: Tensor; lse: Tensor };
  /** Gradients of attention for dOut. */
  attentionBackward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    dOut: Tensor,
    shape: AttentionShape,
  ): { dq: Tensor; dk: Tensor; dv: Tensor };
  /** h = silu(g) · u. */
  siluMul(g: Tensor, u: Tensor): Tensor;
  /**
   * Gradients of siluMul for dh. With `overwrite` the backend may write dg and du over g and u (the
   * caller is done with them) and return those very tensors; one that cannot returns new ones.
   */
  siluMulBackward(
    g: Tensor,
    u: Tensor,
    dh: Tensor,
    opts?: { overwrite?: boolean },
  ): { dg: Tensor; du: Tensor };
  /** Embedding lookup: rows of `table` `[V, H]` for token ids (i32 `[n]`) → `[n, H]`. */
  embedding(table: Tensor, ids: Tensor): Tensor;
  /**
   * Per-row negative log-likelihood of the target token under softmax(logits): logits `[n, V]`,
   * targets i32 `[n]` → f32 `[n]`, computed in f32 with a max-shifted log-sum-exp.
   */
  crossEntropy(logits: Tensor, targets: Tensor): Tensor;
  /**
   * Optional: gradient of `scale · Σ_r crossEntropy(logits, targets)[r]` w.r.t. the logits, i.e.
   * `scale · (softmax(row) − onehot(target))` per row (max-shifted), rows whose target is < 0 all
   * zero; a new tensor of logits' shape and dtype. With scale = 1/count this is torch's
   * CrossEntropyLoss(mean) backward (spec/AUTOSCHEME.md § 3.1, AutoScheme's scoring pass).
   */
  crossEntropyBackward?(logits: Tensor, targets: Tensor, scale: number): Tensor;
  /** Index of the largest value of each row → i32 `[rows]` (ties: lowest index). */
  argmaxRows(x: Tensor): Tensor;

  // ---- quantization ---------------------------------------------------------------------------
  /**
   * Optional: per-group minimum (clamped ≤ 0) and maximum (clamped ≥ 0) of w `[N, K]` over groups of
   * `groupSize` consecutive columns (a short last group allowed; −1 = the whole row) → f32 `[N·G]` each; AutoRound's
   * `weight_min`/`weight_max`. Without it the pipeline computes them on the host.
   */
  groupMinMax?(w: Tensor, groupSize: number): { wMin: Tensor; wMax: Tensor };
  /**
   * Optional: optimized-RTN scales for symmetric int (src/qmath/int_quant.ts searchScalesSym with
   * float32 candidates, importance from `imatrix` f32 `[K]` via importanceForWeight) → f32 `[N·G]`.
   * Without it the pipeline searches on the host.
   */
  optRtnScales?(w: Tensor, imatrix: Tensor | undefined, groupSize: number, bits: number): Tensor;
  /**
   * Optional: quantize weight `w` `[N, K]` (K a multiple of the type's block size) to GGML blocks as
   * the host reference does (src/qmath/gguf/quantize.ts quantizeTensor / quantizeAtExport, then
   * qmath/gguf/blocks.ts packBlocks) and return the packed llama.cpp block bytes, row-major. Device
   * kernels emulate the host's float32 operation order, so the bytes equal the host's except at rare
   * float32 near-ties. Without it the GGUF exporter quantizes on the host.
   */
  ggufQuantize?(w: Tensor, type: GgufBlockType, opts: GgufQuantizeOptions): Promise<Uint8Array>;
  /**
   * Fake-quantize weight `w` `[N, K]` with the tunable state (spec ALGORITHM.md § Integer
   * quantizers; AutoRound `quant_tensor_sym` / `quant_tensor_asym`), returning Ŵ in `outDType`.
   */
  fakeQuant(w: Tensor, state: QuantState, p: IntQuantParams, outDType?: DType): Tensor;
  /**
   * Straight-through gradients of fakeQuant for dŴ: ∂/∂V = dŴ·scale on unclamped elements, and the
   * exact gradients through the scale (and zero point) to α and β, as autograd computes them with
   * round_ste.
   */
  fakeQuantBackward(w: Tensor, state: QuantState, p: IntQuantParams, dWq: Tensor): FakeQuantGrads;
  /** The final integer codes, scales and zero points for export (same math as fakeQuant). */
  quantizeWeights(w: Tensor, state: QuantState, p: IntQuantParams): Promise<QuantizedWeights>;

  // ---- float and activation quantizers (optional; issue 17, spec/SCHEMES.md) -------------------
  /**
   * Optional: fake-quantize weight `w` `[N, K]` with a float data type (MX, NVFP4, FP8) and the
   * tunable state (V, β = maxScale; α has no role, SCHEMES.md § 9.1; initScale, when present,
   * multiplies β: NVFP4's opt-RTN and SignRoundV2 coefficients), as auto-round's quant_mx / nv_fp4 /
   * quant_fp8_sym compute it. Backends without it cannot run the float schemes.
   */
  floatFakeQuant?(w: Tensor, state: QuantState, p: FloatQuantParams, outDType?: DType): Tensor;
  /** Straight-through gradients of floatFakeQuant (SCHEMES.md § 9.4); dMinScale is all zero. */
  floatFakeQuantBackward?(w: Tensor, state: QuantState, p: FloatQuantParams, dWq: Tensor): FakeQuantGrads;
  /** Element values and per-group scales of floatFakeQuant (FloatQuantizedLinear's fields). */
  floatQuantizeWeights?(
    w: Tensor,
    state: QuantState,
    p: FloatQuantParams,
  ): Promise<{ elements: Float32Array; scales: Float32Array }>;
  /**
   * Optional: fake-quantize activations `x` `[rows, K]` (the input of a quantized Linear) with the
   * scheme's activation quantizer (SCHEMES.md § 8); a new tensor in x's dtype.
   */
  actFakeQuant?(x: Tensor, a: ActQuantArgs): Tensor;
  /**
   * Gradients of actFakeQuant for dOut: dL/dx (through the straight-through rounding and the dynamic
   * group maxima) and, when `a.actMaxScale` is given (a static scale being tuned), dL/d(actMaxScale) `[1]`.
   */
  actFakeQuantBackward?(x: Tensor, a: ActQuantArgs, dOut: Tensor): { dx: Tensor; dActMaxScale?: Tensor };

  // ---- training -------------------------------------------------------------------------------
  /**
   * Masked MSE as AutoRound computes it: loss = Σ mask_r·(y − t)² / (rows·cols), in f32; also
   * returns dy = scale · ∂loss/∂y in y's dtype (as autograd does). mask is f32 `[rows]` (1 = counted)
   * or omitted.
   */
  mseLoss(y: Tensor, target: Tensor, mask: Tensor | undefined, scale: number): { loss: Tensor; dy: Tensor };
  /**
   * Optional: SignRoundV2's outlier-suppressed loss (spec/SCHEMES.md § 9.6): the max(1, ⌊n/1000⌋)
   * largest |y − t| are masked out, then mean((|y − t|·mask)²); dy = scale · ∂loss/∂y.
   */
  outlierSuppressedMseLoss?(
    y: Tensor,
    target: Tensor,
    mask: Tensor | undefined,
    scale: number,
  ): { loss: Tensor; dy: Tensor };
  /**
   * Sign-SGD step: p ← p − lr·sign(g), then clamp into [lo, hi] when given. `lr` may be an f32 `[1]`
   * tensor read on the device (the decaying learning rate of a captured iteration).
   */
  signSgdStep(p: Tensor, g: Tensor, lr: number | Tensor, clamp?: { lo: number; hi: number }): void;
  /** acc += alpha·x (same shape; alpha defaults to 1). */
  accumulate(acc: Tensor, x: Tensor, alpha?: number): void;
  /** acc[c] += Σ_r x[r, c]² for x `[rows, cols]`, acc f32 `[cols]` (importance matrix statistics). */
  accumulateColumnSquares(acc: Tensor, x: Tensor): void;
  /**
   * If `loss[0] < best[0]`: best ← loss and every `dst ← src` in `pairs`. Evaluated on the device
   * so the tuning loop need not wait for the loss each iteration.
   */
  keepBest(loss: Tensor, best: Tensor, pairs: readonly (readonly [src: Tensor, dst: Tensor])[]): void;

  /** Wait until queued work finishes. */
  sync(): Promise<void>;

  /** Optional: bytes of device memory still free for tensors (undefined when unknown). */
  freeMemory?(): number | undefined;

  /** Optional: the most device memory this backend's allocator has held at once, in bytes. */
  peakMemoryBytes?(): number;
  /**
   * Give memory cached for reuse back to the device (waits for queued work). A caching allocator
   * keeps freed buffers by size; called where a phase with other shapes begins (a block's tuning
   * after its forwards), so the peak counts what is in use rather than the last phase's cache.
   */
  releaseCachedMemory?(): void;

  /**
   * Optional: record the device work `fn` enqueues (without running it) so `replay()` re-issues it
   * with one launch (a CUDA graph). `fn` must not read back, upload, or depend on host values that
   * change between replays; tensors it allocates stay valid for the capture's lifetime.
   */
  capture?(fn: () => void): CapturedWork;
}

/** Device work recorded once and re-issued by `replay()`. */
export interface CapturedWork extends Disposable {
  replay(): void;
}
