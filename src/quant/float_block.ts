/**
 * The per-block values float schemes need besides the tuned state (spec/SCHEMES.md): NVFP4's weight
 * global scales (§ 5.1, fused over q/k/v and gate/up), the static activation ranges calibrated on a
 * forward pass (§ 8.2), and what the exporters store from them: FP8_STATIC's input_scale (§ 8.3) and
 * NVFP4's input_global_scale (§ 5.1).
 */
import type { Backend, Tensor } from "../backend/backend.ts";
import type { LayerPlan } from "../formats/run.ts";
import type { LinearName } from "../model/config.ts";
import { actOf, type BlockActQuant, needsCalibration } from "./act_quant.ts";
import type { FloatLinearExtras } from "./block_outputs.ts";

/** Linears whose global scales auto-round fuses to their minimum (data_type/utils.py:433-504). */
const FUSED: readonly (readonly LinearName[])[] = [
  ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
  ["mlp.gate_proj", "mlp.up_proj"],
];

/** FP8 E4M3 max × E2M1 max: calculate_gparam's numerator (nvfp.py:56-64). */
const NV_GPARAM = 448 * 6;
/** Smallest FP8 scale (fp8.py:68,123, "copied from vLLM"). */
const FP8_MIN_SCALE = 1 / (448 * 512);

/** calculate_gparam: fl32(2688 · fl32(1/amax)), 0 for amax 0 (a multiply by the f32 reciprocal). */
export function nvGlobalScale(amax: number): number {
  const a = Math.fround(amax);
  return a === 0 ? 0 : Math.fround(NV_GPARAM * Math.fround(1 / a));
}

/** Replace each fused group's values by their minimum when every member has one (AR_NVFP4_FUSED_LAYER_GLOBAL_SCALE on). */
function fuseMinimum(values: Map<LinearName, number>): Map<LinearName, number> {
  const out = new Map(values);
  for (const group of FUSED) {
    if (!group.every((l) => values.has(l))) continue;
    const m = Math.min(...group.map((l) => values.get(l)!));
    for (const l of group) out.set(l, m);
  }
  return out;
}

/** NVFP4 weight global scales of a block's nv_fp Linears, fused (§ 5.1). */
export async function nvWeightGlobalScales(
  be: Backend,
  weights: Record<LinearName, Tensor>,
  plans: ReadonlyMap<LinearName, LayerPlan>,
): Promise<Map<LinearName, number>> {
  const gs = new Map<LinearName, number>();
  for (const [l, plan] of plans) {
    if (!plan.quantize || plan.scheme.dataType !== "nv_fp") continue;
    const w = await be.read(weights[l]);
    let amax = 0;
    for (let i = 0; i < w.length; i++) amax = Math.max(amax, Math.abs(w[i]));
    gs.set(l, nvGlobalScale(amax));
  }
  return fuseMinimum(gs);
}

/** Whether any Linear of the block needs a calibrated activation range. */
export function blockNeedsActCalibration(plans: ReadonlyMap<LinearName, LayerPlan>): boolean {
  return [...plans.values()].some((p) => {
    const a = actOf(p);
    return a !== undefined && needsCalibration(a);
  });
}

/**
 * The exporters' per-Linear extras: NVFP4 weight global scale, input_global_scale
 * (calculate_gparam(act_max), fused minimum) and FP8_STATIC input_scale
 * (max(fl32(act_max · act_max_scale)/448, 1/229376), § 8.3; act_max_scale the tuned coefficient).
 */
export async function floatExtras(
  be: Backend,
  plans: ReadonlyMap<LinearName, LayerPlan>,
  weightGlobalScales: ReadonlyMap<LinearName, number>,
  actMax: ReadonlyMap<LinearName, number>,
  act?: BlockActQuant,
): Promise<Map<LinearName, FloatLinearExtras>> {
  const out = new Map<LinearName, FloatLinearExtras>();
  const inputGs = new Map<LinearName, number>();
  for (const [l, plan] of plans) {
    const a = actOf(plan);
    if (a?.dataType === "nv_fp") inputGs.set(l, nvGlobalScale(actMax.get(l) ?? 0));
  }
  const fusedInputGs = fuseMinimum(inputGs);
  for (const [l, plan] of plans) {
    if (!plan.quantize) continue;
    const e: FloatLinearExtras = {};
    if (weightGlobalScales.has(l)) e.globalScale = weightGlobalScales.get(l);
    if (fusedInputGs.has(l)) e.inputGlobalScale = fusedInputGs.get(l);
    const a = actOf(plan);
    if (a && a.dataType === "fp" && !a.dynamic) {
      const tuned = act?.scales.get(l);
      const coef = tuned ? (await be.read(tuned.param))[0] : 1;
      const m = Math.fround(Math.fround(actMax.get(l) ?? 0) * Math.fround(coef));
      e.inputScale = Math.max(Math.fround(m / 448), Math.fround(FP8_MIN_SCALE));
    }
    out.set(l, e);
  }
  return out;
}
