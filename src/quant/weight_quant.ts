/**
 * One entry point for a Linear's weight quantizer, whatever its data type: integer schemes go to the
 * backend's int kernels (fakeQuant / fakeQuantBackward / quantizeWeights), float schemes (MX, NVFP4,
 * FP8; spec/SCHEMES.md) to its float kernels. SignRound and the pipeline call these, so the tuning
 * loop exists once for every data type.
 */
import type {
  Backend,
  DType,
  FakeQuantGrads,
  FloatQuantParams,
  IntQuantParams,
  QuantState,
  Tensor,
} from "../backend/backend.ts";
import { QuantizeError } from "../errors.ts";

/** The quantizer settings of one Linear: integer or float. */
export type LayerQuantParams = IntQuantParams | FloatQuantParams;

/** True for float-scheme parameters. */
export function isFloatParams(p: LayerQuantParams): p is FloatQuantParams {
  return (p as FloatQuantParams).kind === "float";
}

/** Bits of the weight elements (for the learning-rate rule). */
export function paramBits(p: LayerQuantParams): number {
  return isFloatParams(p) ? p.scheme.bits : p.bits;
}

/** Ŵ of weight `w` with the tunable state. */
export function fakeQuantOf(
  be: Backend,
  w: Tensor,
  state: QuantState,
  p: LayerQuantParams,
  outDType?: DType,
): Tensor {
  if (!isFloatParams(p)) return be.fakeQuant(w, state, p, outDType);
  return floatOps(be, p).floatFakeQuant(w, state, p, outDType);
}

/** Straight-through gradients of fakeQuantOf for dŴ. */
export function fakeQuantBackwardOf(
  be: Backend,
  w: Tensor,
  state: QuantState,
  p: LayerQuantParams,
  dWq: Tensor,
): FakeQuantGrads {
  if (!isFloatParams(p)) return be.fakeQuantBackward(w, state, p, dWq);
  return floatOps(be, p).floatFakeQuantBackward(w, state, p, dWq);
}

/** The backend's float quantizer ops, or a QuantizeError naming the backend that lacks them. */
export function floatOps(
  be: Backend,
  p: FloatQuantParams,
): Required<Pick<Backend, "floatFakeQuant" | "floatFakeQuantBackward" | "floatQuantizeWeights">> {
  if (!be.floatFakeQuant || !be.floatFakeQuantBackward || !be.floatQuantizeWeights) {
    throw new QuantizeError(
      `data type ${p.scheme.dataType} (${p.scheme.bits}-bit) is not implemented on the ${be.name} backend yet: use --device cpu or webgpu`,
    );
  }
  return {
    floatFakeQuant: be.floatFakeQuant.bind(be),
    floatFakeQuantBackward: be.floatFakeQuantBackward.bind(be),
    floatQuantizeWeights: be.floatQuantizeWeights.bind(be),
  };
}
