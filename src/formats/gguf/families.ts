/**
 * GGUF for the issue-18 families (spec/MODELS.md § 8): the architecture keys each family adds
 * (experts, Gemma soft-caps and sliding window, Phi-3 partial rotary and LongRoPE), the extra
 * tensors (Phi-3 `rope_factors_long/short`), what llama.cpp cannot run as the checkpoint defines it
 * (refused or warned), and the way back: a GGUF file's family keys as config.json fields.
 *
 * Sources: llama.cpp convert_hf_to_gguf (conversion/base.py `set_gguf_parameters`, qwen.py, llama.py,
 * gemma.py, phi.py) and its loaders (src/models/{qwen2moe,qwen3moe,llama,gemma2,gemma3,phi3}.cpp).
 */
import { UnsupportedError } from "../../errors.ts";
import type { ModelSpec } from "../../model/config.ts";
import type { GgufFile } from "./file.ts";
import { type GgufMetaValue, meta } from "./writer.ts";

type Kv = [string, GgufMetaValue][];

/**
 * llama.cpp's hard-coded renormalisation of the top-k routing weights (spec § 2.1): qwen2moe
 * never (qwen2moe.cpp norm_w false), qwen3moe and llama with experts always.
 */
export function llamaCppRenorm(ggufArch: string): boolean {
  return ggufArch !== "qwen2moe";
}

/** llama.cpp's default sliding layers when the file has no pattern key (gemma2: 2, gemma3: 6). */
export function llamaCppSlidingLayer(ggufArch: string, i: number): boolean {
  return ggufArch === "gemma2" ? i % 2 < 1 : i % 6 < 5;
}

/**
 * What llama.cpp cannot reproduce of this checkpoint: throws UnsupportedError where the file could
 * not be loaded or would compute something else entirely, and returns warnings where llama.cpp's
 * graph differs from the checkpoint's (the GGUF then disagrees with the float model).
 */
export function ggufFamilyWarnings(spec: ModelSpec, file = "config.json"): string[] {
  const a = spec.traits.ggufArch, out: string[] = [];
  const moe = spec.moe;
  if (spec.multimodal) out.push(multimodalWarning(spec, a, file));
  if (moe && moe.denseLayers.length > 0 && a !== "llama") {
    throw new UnsupportedError(
      `GGUF ${a} has no dense-MLP layers; layers ${moe.denseLayers.join(", ")} are dense ` +
        `(mlp_only_layers / decoder_sparse_step)`,
      file,
    );
  }
  if (moe && moe.renorm !== llamaCppRenorm(a)) {
    out.push(
      `norm_topk_prob=${moe.renorm}, but llama.cpp's ${a} ${
        llamaCppRenorm(a) ? "always" : "never"
      } renormalises the top-${moe.topK} routing weights: the GGUF's outputs differ from the model's`,
    );
  }
  if ((spec.fused || a === "qwen2moe") && spec.nHeads * spec.headDim !== spec.hidden) {
    throw new UnsupportedError(
      `GGUF ${a} requires num_attention_heads·head_dim = hidden_size (${spec.nHeads}·${spec.headDim} ≠ ${spec.hidden})`,
      file,
    );
  }
  if (a === "phi3" && spec.slidingWindow) {
    out.push(
      `llama.cpp disables Phi-3's sliding window (phi3.cpp); sliding_window ${spec.slidingWindow} is ignored`,
    );
  }
  if (a === "gemma2" || a === "gemma3") {
    const lt = spec.layerTypes;
    if (lt && lt.some((t, i) => (t === "sliding") !== llamaCppSlidingLayer(a, i))) {
      out.push(`layer_types differ from llama.cpp's ${a} sliding pattern; the GGUF uses llama.cpp's`);
    }
    const scale = spec.attnScale ?? 1 / Math.sqrt(spec.headDim);
    const theirs = 1 /
      Math.sqrt(llamaCppGemmaScaleDim(a, spec.nLayers, spec.hidden, spec.nHeads, spec.headDim));
    if (Math.abs(scale - theirs) > 1e-7 * theirs) {
      out.push(
        `query_pre_attn_scalar gives attention scale ${scale}; llama.cpp's ${a} uses ${theirs} (from the layer count)`,
      );
    }
  }
  return out;
}

/**
 * A VLM's GGUF is its text model (spec/MODELS.md § 9.4), as auto-round and llama.cpp's converter
 * write it: Gemma 3's is plain gemma3, Qwen2.5-VL's llama.cpp's qwen2vl (qwen2 with M-RoPE sections).
 */
function multimodalWarning(spec: ModelSpec, a: string, file: string): string {
  const type = spec.multimodal!;
  if (a === "qwen2vl" && !(spec.mropeSection && spec.mropeSection.length <= 4)) {
    throw new UnsupportedError(
      `GGUF qwen2vl needs mrope_section (at most 4 entries) in the RoPE config`,
      file,
    );
  }
  return `GGUF of the vision-language model ${type}: only the text model is written (GGUF ${a}); ` +
    `the vision tower and projector are left out (no mmproj file), so the file cannot read images`;
}

/** llama.cpp gemma2/gemma3: the attention scale is 1/√head_dim, 1/√(H/nH) for the 27B (46/62 layers). */
function llamaCppGemmaScaleDim(a: string, nLayers: number, hidden: number, nHeads: number, headDim: number) {
  return nLayers === (a === "gemma2" ? 46 : 62) ? hidden / nHeads : headDim;
}

/** The family keys of `{arch}.*` beyond the Llama ones (metadata.ts architectureMetadata). */
export function familyMetadata(spec: ModelSpec): Kv {
  const a = spec.traits.ggufArch, kv: Kv = [];
  const moe = spec.moe;
  if (moe) {
    kv.push([`${a}.expert_count`, meta.u32(moe.nExperts)], [`${a}.expert_used_count`, meta.u32(moe.topK)]);
    if (moe.style === "qwen") kv.push([`${a}.expert_feed_forward_length`, meta.u32(moe.expertInter)]);
    if (moe.sharedInter) kv.push([`${a}.expert_shared_feed_forward_length`, meta.u32(moe.sharedInter)]);
  }
  if (a === "gemma2" || a === "gemma3") {
    if (spec.attnSoftcap) kv.push([`${a}.attn_logit_softcapping`, meta.f32(spec.attnSoftcap)]);
    if (spec.finalSoftcap) kv.push([`${a}.final_logit_softcapping`, meta.f32(spec.finalSoftcap)]);
    if (spec.slidingWindow) kv.push([`${a}.attention.sliding_window`, meta.u32(spec.slidingWindow)]);
    if (spec.localRopeTheta) kv.push([`${a}.rope.freq_base_swa`, meta.f32(spec.localRopeTheta)]);
  }
  if (a === "qwen2vl") {
    // base.py: mrope_section padded with zeros to [time, height, width, extra].
    const s = [...spec.mropeSection!, 0, 0, 0, 0].slice(0, 4);
    kv.push([`${a}.rope.dimension_sections`, meta.i32s(s)]);
  }
  if (a === "phi3") {
    const r = spec.ropeScaling;
    kv.push([`${a}.rope.dimension_count`, meta.u32(spec.rotaryDim ?? spec.headDim)]);
    const orig = r.type === "longrope" ? r.originalMaxPositions : spec.maxPositions;
    kv.push([`${a}.rope.scaling.original_context_length`, meta.u32(orig)]);
    kv.push([`${a}.attention.sliding_window`, meta.u32(spec.slidingWindow ?? 0)]);
    if (r.type === "longrope") kv.push([`${a}.rope.scaling.attn_factor`, meta.f32(r.attentionFactor)]);
  }
  return kv;
}

/** Extra F32 tensors: Phi-3 LongRoPE's per-frequency factors (phi.py generate_extra_tensors). */
export function familyTensors(spec: ModelSpec): [string, Float32Array][] {
  const r = spec.ropeScaling;
  if (r.type !== "longrope") return [];
  return [
    ["rope_factors_long.weight", Float32Array.from(r.longFactor)],
    ["rope_factors_short.weight", Float32Array.from(r.shortFactor)],
  ];
}

// ---------------------------------------------------------------------------------------------------
// Back: family keys as config.json fields (read with the semantics llama.cpp gives the file)
// ---------------------------------------------------------------------------------------------------

/** model_type and architecture of a GGUF architecture (llama with experts: Mixtral). */
export function hfFamilyOf(
  arch: string,
  nExperts: number,
): { modelType: string; architecture: string } | undefined {
  if (arch === "llama" && nExperts > 0) return { modelType: "mixtral", architecture: "MixtralForCausalLM" };
  const m: Record<string, [string, string]> = {
    qwen2moe: ["qwen2_moe", "Qwen2MoeForCausalLM"],
    qwen3moe: ["qwen3_moe", "Qwen3MoeForCausalLM"],
    gemma2: ["gemma2", "Gemma2ForCausalLM"],
    gemma3: ["gemma3_text", "Gemma3ForCausalLM"],
    phi3: ["phi3", "Phi3ForCausalLM"],
  };
  const hit = Object.hasOwn(m, arch) ? m[arch] : undefined;
  return hit && { modelType: hit[0], architecture: hit[1] };
}

/**
 * config.json fields of the family keys. `factors` are Phi-3's rope_factors_long/short when the file
 * has them (read by the caller, GgufFile reads are asynchronous).
 */
export function familyConfig(
  f: GgufFile,
  arch: string,
  base: Record<string, unknown>,
  factors?: { long: number[]; short: number[] },
): Record<string, unknown> {
  const k = (s: string) => f.num(`${arch}.${s}`);
  const out: Record<string, unknown> = {};
  const nExperts = k("expert_count") ?? 0;
  if (nExperts > 0) {
    Object.assign(out, {
      num_experts: nExperts,
      num_local_experts: nExperts,
      num_experts_per_tok: k("expert_used_count"),
      norm_topk_prob: llamaCppRenorm(arch),
    });
    if (arch !== "llama") out.moe_intermediate_size = k("expert_feed_forward_length");
    const shared = k("expert_shared_feed_forward_length");
    if (shared) out.shared_expert_intermediate_size = shared;
  }
  if (arch === "gemma2" || arch === "gemma3") {
    const n = base.num_hidden_layers as number, window = k("attention.sliding_window");
    const dim = llamaCppGemmaScaleDim(
      arch,
      n,
      base.hidden_size as number,
      base.num_attention_heads as number,
      base.head_dim as number,
    );
    Object.assign(out, {
      hidden_activation: "gelu_pytorch_tanh",
      query_pre_attn_scalar: dim,
      attn_logit_softcapping: k("attn_logit_softcapping") ?? null,
      final_logit_softcapping: k("final_logit_softcapping") ?? null,
      // gemma2's llama.cpp default window is 4096 (gemma2.cpp).
      sliding_window: window ?? (arch === "gemma2" ? 4096 : null),
      layer_types: Array.from(
        { length: n },
        (_, i) => llamaCppSlidingLayer(arch, i) ? "sliding_attention" : "full_attention",
      ),
      tie_word_embeddings: true,
    });
    if (arch === "gemma3") {
      const full: Record<string, unknown> = { rope_theta: base.rope_theta, rope_type: "default" };
      if (f.str(`${arch}.rope.scaling.type`) === "linear" && k("rope.scaling.factor")) {
        Object.assign(full, { rope_type: "linear", factor: k("rope.scaling.factor") });
      }
      out.rope_parameters = {
        full_attention: full,
        sliding_attention: { rope_theta: k("rope.freq_base_swa") ?? 10000, rope_type: "default" },
      };
      out.rope_scaling = null;
    }
  }
  if (arch === "phi3") {
    const rot = k("rope.dimension_count") ?? (base.head_dim as number);
    out.partial_rotary_factor = rot / (base.head_dim as number);
    out.sliding_window = null; // llama.cpp disables Phi-3 SWA (phi3.cpp)
    const orig = k("rope.scaling.original_context_length");
    if (orig) out.original_max_position_embeddings = orig;
    if (factors) {
      out.rope_scaling = {
        type: "longrope",
        long_factor: factors.long,
        short_factor: factors.short,
        original_max_position_embeddings: orig,
        attention_factor: k("rope.scaling.attn_factor") ?? 1,
      };
    }
  }
  return out;
}
