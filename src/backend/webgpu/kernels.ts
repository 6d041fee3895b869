/**
 * WGSL sources and the pipeline cache. Kernel files are imported as text assets so `deno bundle` and
 * `deno compile` carry them; each pipeline is the kernel file plus a generated prelude (features,
 * compile-time constants, per-binding storage aliases) and is compiled once per distinct prelude.
 */
import common from "../../../wgsl/common.wgsl" with { type: "text" };
import matmul from "../../../wgsl/matmul.wgsl" with { type: "text" };
import memory from "../../../wgsl/memory.wgsl" with { type: "text" };
import elementwise from "../../../wgsl/elementwise.wgsl" with { type: "text" };
import rmsNorm from "../../../wgsl/rms_norm.wgsl" with { type: "text" };
import rope from "../../../wgsl/rope.wgsl" with { type: "text" };
import attention from "../../../wgsl/attention.wgsl" with { type: "text" };
import attentionBackward from "../../../wgsl/attention_backward.wgsl" with { type: "text" };
import fakeQuant from "../../../wgsl/fake_quant.wgsl" with { type: "text" };
import floatMath from "../../../wgsl/float_math.wgsl" with { type: "text" };
import floatQuant from "../../../wgsl/float_quant.wgsl" with { type: "text" };
import actQuant from "../../../wgsl/act_quant.wgsl" with { type: "text" };
import loss from "../../../wgsl/loss.wgsl" with { type: "text" };
import reduce from "../../../wgsl/reduce.wgsl" with { type: "text" };
import ggufMath from "../../../wgsl/gguf_math.wgsl" with { type: "text" };
import ggufSearch from "../../../wgsl/gguf_search.wgsl" with { type: "text" };
import ggufSuper from "../../../wgsl/gguf_super.wgsl" with { type: "text" };
import ggufPack from "../../../wgsl/gguf_pack.wgsl" with { type: "text" };
import intSearch from "../../../wgsl/int_search.wgsl" with { type: "text" };
import twoProd from "../../../wgsl/two_prod.wgsl" with { type: "text" };
import { type StorageKind, storageKind } from "./storage.ts";

const F32_KIND = storageKind("f32", false);

/**
 * Every WGSL file as the program carries it, by its path in the repository (`wgsl/<name>.wgsl`):
 * what `autoround --version` hashes, and what tests compare with the files on disk.
 */
export const WGSL_FILES: Readonly<Record<string, string>> = {
  "wgsl/attention.wgsl": attention,
  "wgsl/attention_backward.wgsl": attentionBackward,
  "wgsl/common.wgsl": common,
  "wgsl/elementwise.wgsl": elementwise,
  "wgsl/act_quant.wgsl": actQuant,
  "wgsl/fake_quant.wgsl": fakeQuant,
  "wgsl/float_math.wgsl": floatMath,
  "wgsl/float_quant.wgsl": floatQuant,
  "wgsl/gguf_math.wgsl": ggufMath,
  "wgsl/gguf_pack.wgsl": ggufPack,
  "wgsl/gguf_search.wgsl": ggufSearch,
  "wgsl/gguf_super.wgsl": ggufSuper,
  "wgsl/int_search.wgsl": intSearch,
  "wgsl/loss.wgsl": loss,
  "wgsl/matmul.wgsl": matmul,
  "wgsl/memory.wgsl": memory,
  "wgsl/reduce.wgsl": reduce,
  "wgsl/rms_norm.wgsl": rmsNorm,
  "wgsl/rope.wgsl": rope,
  "wgsl/two_prod.wgsl": twoProd,
};

/** What every GGUF kernel file builds on: its float32 helpers and uniform, and the exact product. */
export const GGUF_MATH_WGSL = `${ggufMath}\n${twoProd}`;

/** The kernel families, one WGSL file each. */
export const WGSL_SOURCES = {
  matmul,
  memory,
  elementwise,
  rmsNorm,
  rope,
  attention,
  attentionBackward,
  fakeQuant: `${fakeQuant}\n${twoProd}`,
  // The float-scheme kernels share their exact float32 math (the file declares the uniform first).
  floatQuant: `${floatQuant}\n${floatMath}\n${twoProd}`,
  actQuant: `${actQuant}\n${floatMath}\n${twoProd}`,
  loss,
  reduce,
  // The GGUF kernels share their float32 helpers and uniform (gguf_math.wgsl, two_prod.wgsl).
  ggufSearch: `${GGUF_MATH_WGSL}\n${ggufSearch}`,
  ggufSuper: `${GGUF_MATH_WGSL}\n${ggufSuper}`,
  ggufPack: `${GGUF_MATH_WGSL}\n${ggufPack}`,
  intSearch: `${GGUF_MATH_WGSL}\n${intSearch}`,
} as const;

/** Name of a kernel family. */
export type KernelFamily = keyof typeof WGSL_SOURCES;

/** Binding kinds after the uniform at binding 0: read-only or read-write storage. */
export type BindingKind = "r" | "rw";

/** Everything that determines one compute pipeline. */
export interface KernelSpec {
  family: KernelFamily;
  entry: string;
  /** Storage bindings 1..n in order. */
  bindings: readonly BindingKind[];
  /** Storage kind of each tensor binding alias (`X` → `X_t`, `X_cv`). */
  types?: Readonly<Record<string, StorageKind>>;
  /** Compile-time constants: integers become `u32`, booleans `bool`. */
  consts?: Readonly<Record<string, number | boolean>>;
  /** Further prelude lines (e.g. vector aliases chosen per pipeline). */
  extra?: string;
  /**
   * The family's text after generation (e.g. matmul.ts writes out unrolled code for the tile), or an
   * earlier version a bench compares with; defaults to the family's file.
   */
  source?: string;
}

/** A compiled pipeline and the layout its bind groups use. */
export interface Kernel {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

function storeConversion(name: string, k: StorageKind): string {
  const t = `${name}_t`;
  if (k.round === "f16") return `fn ${name}_cv(v: f32) -> ${t} { return round_f16(v); }`;
  if (k.round === "bf16") return `fn ${name}_cv(v: f32) -> ${t} { return round_bf16(v); }`;
  return `fn ${name}_cv(v: f32) -> ${t} { return ${t}(v); }`;
}

/**
 * The full WGSL text of a kernel: prelude, common helpers, the family's file.
 *
 * @example
 * ```ts
 * kernelSource({ family: "elementwise", entry: "add", bindings: ["rw", "rw", "rw"] }, true);
 * ```
 */
export function kernelSource(spec: KernelSpec, enableF16: boolean): string {
  const lines: string[] = [];
  if (enableF16) lines.push("enable f16;");
  for (const [name, v] of Object.entries(spec.consts ?? {})) {
    lines.push(typeof v === "boolean" ? `const ${name}: bool = ${v};` : `const ${name}: u32 = ${v >>> 0}u;`);
  }
  // Every alias the family's file mentions must exist, also those of entry points not compiled
  // now (WGSL validates the whole module): unnamed ones default to f32.
  const source = spec.source ?? WGSL_SOURCES[spec.family];
  const names = new Set([
    ...source.matchAll(/\b([a-z][a-z0-9]*)_t\b/g).map((m) => m[1]),
    ...Object.keys(spec.types ?? {}),
  ]);
  for (const name of names) {
    const k = spec.types?.[name] ?? F32_KIND;
    lines.push(`alias ${name}_t = ${k.wgsl};`, storeConversion(name, k));
  }
  if (spec.extra) lines.push(spec.extra);
  return unrollMarked(`${lines.join("\n")}\n${common}\n${source}`);
}

/**
 * Values of the module's `const NAME: u32 = EXPR;` declarations whose expressions use only integer
 * literals, + − * / % and parentheses, and constants declared before (the dispatcher's prelude
 * writes the pipeline's constants first).
 */
function u32Constants(code: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const m of code.matchAll(/^\s*const (\w+)\s*:\s*u32\s*=\s*([^;]+);/gm)) {
    const v = evalU32(m[2], values);
    if (v !== undefined) values.set(m[1], v);
  }
  return values;
}

/** Integer value of a u32 constant expression, or undefined when it names something unknown. */
function evalU32(expr: string, values: ReadonlyMap<string, number>): number | undefined {
  const tokens = expr.match(/\d+u?|\w+|[-+*/%()]/g) ?? [];
  let i = 0;
  const atom = (): number | undefined => {
    const t = tokens[i++];
    if (t === "(") {
      const v = sum();
      return tokens[i++] === ")" ? v : undefined;
    }
    if (t !== undefined && /^\d+u?$/.test(t)) return parseInt(t);
    return t === undefined ? undefined : values.get(t);
  };
  const product = (): number | undefined => {
    let v = atom();
    while (v !== undefined && ["*", "/", "%"].includes(tokens[i])) {
      const op = tokens[i++], w = atom();
      if (w === undefined || (op !== "*" && w === 0)) return undefined;
      v = op === "*" ? v * w : op === "/" ? Math.floor(v / w) : v % w;
    }
    return v;
  };
  const sum = (): number | undefined => {
    let v = product();
    while (v !== undefined && (tokens[i] === "+" || tokens[i] === "-")) {
      const op = tokens[i++], w = product();
      if (w === undefined) return undefined;
      v = op === "+" ? v + w : v - w;
    }
    return v;
  };
  const v = sum();
  return i === tokens.length ? v : undefined;
}

/**
 * Write out every loop marked by a `// @unroll` line just before it: `for (var x = A; x < B; x++) {
 * body }` with A and B u32 constants becomes `{ let x = Au; body } { let x = (A+1)u; body } …`.
 * Why: naga bounds every WGSL loop with a hidden counter (wgpu's force_loop_bounding), so drivers no
 * longer unroll loops of constant trip count, and a private array indexed by such a loop's variable
 * (`acc[cc]`) is placed in local memory instead of registers — about 20× slower on an H100 (see
 * wgsl/matmul.wgsl). Nested marked loops are written out too; bodies may not `break` or `continue`.
 *
 * @example
 * ```ts
 * unrollMarked("const N: u32 = 2u;\n// @unroll\nfor (var i = 0u; i < N; i++) { a[i] = 0.0; }");
 * ```
 */
export function unrollMarked(code: string): string {
  const marker =
    /^[ \t]*\/\/ @unroll[ \t]*\n[ \t]*for \(var (\w+) = ([^;]+); (\w+) < ([^;]+); (\w+)\+\+\) \{/m;
  let values: Map<string, number> | undefined;
  for (let m = code.match(marker); m; m = code.match(marker)) {
    const [head, name, from, v2, to, v3] = m;
    values ??= u32Constants(code);
    const start = m.index!, open = start + head.length - 1;
    let depth = 0, end = open;
    for (; end < code.length; end++) {
      if (code[end] === "{") depth++;
      else if (code[end] === "}" && --depth === 0) break;
    }
    const body = code.slice(open + 1, end);
    const a = evalU32(from, values), b = evalU32(to, values);
    if (v2 !== name || v3 !== name || a === undefined || b === undefined || depth !== 0) {
      throw new Error(`@unroll: cannot write out loop "${head.trim()}"`);
    }
    if (/\b(break|continue)\b/.test(body)) throw new Error(`@unroll: loop over ${name} has break/continue`);
    const indent = head.match(/\n([ \t]*)for/)![1];
    const copies = [];
    for (let v = a; v < b; v++) copies.push(`{ let ${name} = ${v}u;${body}}`);
    code = code.slice(0, start) + indent + copies.join(" ") + code.slice(end + 1);
  }
  return code;
}

/** Compiles pipelines on first use and keeps them for the device's lifetime. */
export class KernelCache {
  private cache = new Map<string, Kernel>();

  constructor(private readonly device: GPUDevice, private readonly enableF16: boolean) {}

  /** The pipeline for `spec`, compiled on first request. */
  get(spec: KernelSpec): Kernel {
    const code = kernelSource(spec, this.enableF16);
    const key = `${spec.entry}\n${spec.bindings.join(",")}\n${code}`;
    let k = this.cache.get(key);
    if (!k) {
      const layout = this.device.createBindGroupLayout({
        label: `${spec.family}.${spec.entry}`,
        entries: [
          { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } },
          ...spec.bindings.map((b, i) => ({
            binding: i + 1,
            visibility: GPUShaderStage.COMPUTE,
            buffer: { type: b === "r" ? "read-only-storage" as const : "storage" as const },
          })),
        ],
      });
      const module = this.device.createShaderModule({ label: `${spec.family}.wgsl`, code });
      const pipeline = this.device.createComputePipeline({
        label: `${spec.family}.${spec.entry}`,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: spec.entry },
      });
      k = { pipeline, layout };
      this.cache.set(key, k);
    }
    return k;
  }

  /** Number of distinct pipelines compiled so far. */
  get size(): number {
    return this.cache.size;
  }
}
