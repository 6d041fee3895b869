/**
 * RoPE cos/sin tables: inverse frequencies from `rope_theta` with llama3 / linear scaling as
 * transformers applies them, angles and their cos/sin in f64. A backend rounds them to its
 * precision on upload (transformers rounds the angles to f32 first; the difference is below f32
 * resolution of the logits, and the f64 path then matches an f64 reference exactly).
 */
import type { ModelSpec } from "./config.ts";

/** Which tables: the global layers', Gemma 3's sliding layers' (local θ, unscaled), LongRoPE's long ones. */
export type RopeKind = "global" | "local" | "long";

/**
 * Inverse frequencies θ_i = theta^(−2i/d) for i < d/2 (d = the rotary dimension), with the model's
 * scaling applied.
 */
export function inverseFrequencies(spec: ModelSpec, kind: RopeKind = "global"): Float64Array {
  const d = spec.rotaryDim ?? spec.headDim;
  const inv = new Float64Array(d / 2);
  const theta = kind === "local" ? spec.localRopeTheta! : spec.ropeTheta;
  for (let i = 0; i < d / 2; i++) inv[i] = 1 / theta ** ((2 * i) / d);
  const s = spec.ropeScaling;
  if (kind === "local") return inv;
  if (s.type === "longrope") {
    // transformers `_compute_longrope_parameters`: θ_i / ext_i, ext = long factors past the
    // original length (f32 arithmetic there: the factors are a float32 tensor).
    const ext = kind === "long" ? s.longFactor : s.shortFactor;
    for (let i = 0; i < inv.length; i++) inv[i] = 1 / (Math.fround(ext[i]) * theta ** ((2 * i) / d));
  } else if (s.type === "linear") {
    for (let i = 0; i < inv.length; i++) inv[i] /= s.factor;
  } else if (s.type === "llama3") {
    // transformers `_compute_llama3_parameters`: low frequencies divided by factor, high ones
    // kept, the band between blended smoothly.
    const lowWave = s.originalMaxPositions / s.lowFreqFactor;
    const highWave = s.originalMaxPositions / s.highFreqFactor;
    for (let i = 0; i < inv.length; i++) {
      const wave = (2 * Math.PI) / inv[i];
      let f = wave > lowWave ? inv[i] / s.factor : inv[i];
      if (!(wave < highWave) && !(wave > lowWave)) {
        const smooth = (s.originalMaxPositions / wave - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
      inv[i] = f;
    }
  }
  return inv;
}

/** cos and sin tables `[positions, rotaryDim/2]` (LongRoPE: times its attention factor). */
export function ropeTables(
  spec: ModelSpec,
  positions: number,
  kind: RopeKind = "global",
): { cos: Float64Array; sin: Float64Array } {
  const inv = inverseFrequencies(spec, kind);
  const f = spec.ropeScaling.type === "longrope" && kind !== "local" ? spec.ropeScaling.attentionFactor : 1;
  const half = inv.length;
  const cos = new Float64Array(positions * half), sin = new Float64Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * inv[i];
      cos[p * half + i] = Math.cos(a) * f;
      sin[p * half + i] = Math.sin(a) * f;
    }
  }
  return { cos, sin };
}
