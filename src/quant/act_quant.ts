/**
 * Activation quantization of a block's Linear inputs (spec/SCHEMES.md § 8), as a block
 * {@link InputTransform}: each quantized Linear whose scheme has an activation quantizer sees its
 * input fake-quantized (MX and INT8 dynamic per group or token; NVFP4 per-16 E4M3 scales under a
 * calibrated global scale; FP8_STATIC one calibrated per-tensor scale), in the tuning forward and
 * its backward, and in the forward that makes the next block's quantized inputs.
 *
 * Static ranges (act_max) are calibrated per Linear as auto-round does (§ 8.2): the maximum |x| of
 * the Linear's input over the calibration pass; FP8_STATIC tunes a coefficient act_max_scale ∈ [0, 1]
 * alongside V and β (§ 8.3).
 */
import type { ActQuantArgs, Backend, Tensor } from "../backend/backend.ts";
import type { InputTransform, LinearInputObserver } from "../model/block.ts";
import type { LinearName } from "../model/config.ts";
import type { LayerPlan } from "../formats/run.ts";
import type { ActQuant } from "../qmath/quantized.ts";
import { QuantizeError } from "../errors.ts";

/** The activation quantizer of a planned Linear, if it has one. */
export function actOf(plan: LayerPlan | undefined): ActQuant | undefined {
  return plan?.quantize ? plan.scheme.act : undefined;
}

/** Whether any planned Linear quantizes its input. */
export function hasActQuant(plans: ReadonlyMap<LinearName, LayerPlan>): boolean {
  return [...plans.values()].some((p) => actOf(p) !== undefined);
}

/** Whether the scheme's activation quantizer needs a calibrated range (auto-round check_need_act_calibration). */
export function needsCalibration(a: ActQuant): boolean {
  return a.bits <= 8 && (!a.dynamic || a.dataType === "nv_fp");
}

/** Whether act_max_scale is a tuned parameter (wrapper.py:213-216: static activations). */
export function tunesActScale(a: ActQuant): boolean {
  return !a.dynamic;
}

/**
 * A hook for blockForward's `observe` recording max |x| of each Linear's input (q/k/v share h1,
 * gate/up share h2: recorded under each consumer) into `into`.
 */
export function actMaxObserver(
  be: Backend,
  plans: ReadonlyMap<LinearName, LayerPlan>,
  into: Map<LinearName, number>,
  pending: Promise<void>[],
): LinearInputObserver {
  return (name, input) => {
    const consumers: LinearName[] = name === "self_attn.q_proj"
      ? ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]
      : name === "mlp.gate_proj"
      ? ["mlp.gate_proj", "mlp.up_proj"]
      : [name];
    const wanted = consumers.filter((c) => {
      const a = actOf(plans.get(c));
      return a !== undefined && needsCalibration(a);
    });
    if (wanted.length === 0) return;
    // The observer must not keep the tensor: read it now (the host copy is this pass's only one).
    pending.push(
      be.read(input).then((x) => {
        let m = 0;
        for (let i = 0; i < x.length; i++) {
          const v = Math.abs(x[i]);
          if (v > m) m = v;
        }
        for (const c of wanted) into.set(c, Math.max(into.get(c) ?? 0, m));
      }),
    );
  };
}

/**
 * The transform of the forward that makes the next block's quantized inputs (after tuning, and when a
 * resumed run replays a journaled block): activations quantized, static ranges taken from each input
 * (auto-round's forward after a block is tuned, SCHEMES.md § 12.2); undefined without activation
 * quantizers.
 */
export function nextInputsTransform(
  be: Backend,
  plans: ReadonlyMap<LinearName, LayerPlan>,
): BlockActQuant | undefined {
  return hasActQuant(plans)
    ? new BlockActQuant(be, plans, { actMax: new Map(), dynamicRanges: true })
    : undefined;
}

/** How a block's activations are quantized in one forward. */
export interface BlockActOptions {
  /** Calibrated max |x| per Linear (static quantizers). */
  actMax: ReadonlyMap<LinearName, number>;
  /**
   * Static ranges come from each input instead (auto-round's forward after a block is tuned passes
   * the range under a name the quantizers ignore: SCHEMES.md § 12.2).
   */
  dynamicRanges?: boolean;
  /** Tune act_max_scale of static quantizers (SignRound): parameters and gradients are kept here. */
  tune?: boolean;
}

/** The activation quantizers of one block's Linears, as blockForward's input transform. */
export class BlockActQuant implements InputTransform, Disposable {
  /** act_max_scale `[1]` per Linear with a tuned static range, and its gradient accumulator. */
  readonly scales = new Map<LinearName, { param: Tensor; grad: Tensor; best: Tensor }>();
  private readonly zero: Tensor;

  constructor(
    private readonly be: Backend,
    private readonly plans: ReadonlyMap<LinearName, LayerPlan>,
    private readonly opts: BlockActOptions,
  ) {
    if (!be.actFakeQuant || !be.actFakeQuantBackward) {
      const a = [...plans.values()].map(actOf).find((x) => x);
      throw new QuantizeError(
        `activation quantization (${a?.dataType} ${a?.bits}-bit) is not implemented on the ${be.name} backend yet: use --device cpu or webgpu`,
      );
    }
    this.zero = be.full([1], 0);
    for (const [name, plan] of plans) {
      const a = actOf(plan);
      if (!a || !opts.tune || !tunesActScale(a)) continue;
      this.scales.set(name, { param: be.full([1], 1), grad: be.full([1], 0), best: be.full([1], 1) });
    }
  }

  applies(name: LinearName): boolean {
    return actOf(this.plans.get(name)) !== undefined;
  }

  forward(name: LinearName, x: Tensor): Tensor {
    return this.be.actFakeQuant!(x, this.argsOf(name));
  }

  backward(name: LinearName, x: Tensor, dXt: Tensor): Tensor {
    const { dx, dActMaxScale } = this.be.actFakeQuantBackward!(x, this.argsOf(name), dXt);
    const s = this.scales.get(name);
    if (dActMaxScale) {
      if (s) this.be.accumulate(s.grad, dActMaxScale);
      dActMaxScale[Symbol.dispose]();
    }
    return dx;
  }

  /** Zero the act_max_scale gradients (start of an iteration). */
  zeroGrads(): void {
    for (const s of this.scales.values()) this.be.copy(s.grad, this.zero);
  }

  [Symbol.dispose](): void {
    for (const s of this.scales.values()) for (const t of [s.param, s.grad, s.best]) t[Symbol.dispose]();
    this.scales.clear();
    this.zero[Symbol.dispose]();
  }

  /** The calibrated range of Linear `name` (0 when its input was never seen). */
  actMaxOf(name: LinearName): number {
    return this.opts.actMax.get(name) ?? 0;
  }

  /** The quantizer call for Linear `name`: static ranges calibrated, or from each input. */
  private argsOf(name: LinearName): ActQuantArgs {
    const a = actOf(this.plans.get(name))!;
    if (!needsCalibration(a)) return { act: a };
    if (this.opts.dynamicRanges) return { act: a, rangeFromInput: true };
    return { act: a, actMax: this.actMaxOf(name), actMaxScale: this.scales.get(name)?.param };
  }
}
