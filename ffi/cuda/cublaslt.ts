/**
 * cuBLASLt through `Deno.dlopen("libcublasLt.so.13")`: dense products with f32 accumulation for
 * bf16/f16/f32 operands, the transA/transB/alpha/beta forms, an optional bias epilogue, one
 * workspace, and the heuristic's algorithm cached per shape (a plan holds the descriptors, so a
 * repeated shape costs one cublasLtMatmul call). Matrices here are column-major, as cuBLAS sees
 * them; src/backend/cuda/matmul.ts maps the program's row-major products onto them.
 *
 * f32 operands use CUBLAS_COMPUTE_32F (no TF32: the reference-accuracy path) unless a plan asks for
 * "tf32". Enum values from cublasLt.h / cublas_api.h / library_types.h (CUDA 13).
 *
 * Reproducibility (cuBLAS guide § Results reproducibility): one cublasLtMatmul call with a given
 * algorithm gives the same bits at every run on GPUs of the same architecture and SM count when one
 * stream is active; here there is one stream and one user-owned workspace of a fixed size, and the
 * heuristic sees only the shape, the dtypes, the alignments and that size. A shape with `noSplitK`
 * is planned with the reduction-scheme mask cleared (CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = 0:
 * only CUBLASLT_REDUCTION_SCHEME_NONE), so each output's dot product runs in one sequence, never as
 * K slices summed afterwards; each plan records the split and scheme the heuristic chose (`config`).
 */
import { CudaError, CudaUnavailableError } from "./errors.ts";
import { loaderMessage } from "./library.ts";

const SYMBOLS = {
  cublasLtCreate: { parameters: ["buffer"], result: "i32" },
  cublasLtDestroy: { parameters: ["usize"], result: "i32" },
  cublasLtGetVersion: { parameters: [], result: "usize" },
  cublasLtGetStatusName: { parameters: ["i32"], result: "pointer" },
  cublasLtGetStatusString: { parameters: ["i32"], result: "pointer" },
  cublasLtMatmulDescCreate: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cublasLtMatmulDescDestroy: { parameters: ["usize"], result: "i32" },
  cublasLtMatmulDescSetAttribute: { parameters: ["usize", "i32", "buffer", "usize"], result: "i32" },
  cublasLtMatrixLayoutCreate: { parameters: ["buffer", "i32", "u64", "u64", "i64"], result: "i32" },
  cublasLtMatrixLayoutDestroy: { parameters: ["usize"], result: "i32" },
  cublasLtMatmulPreferenceCreate: { parameters: ["buffer"], result: "i32" },
  cublasLtMatmulPreferenceDestroy: { parameters: ["usize"], result: "i32" },
  cublasLtMatmulPreferenceSetAttribute: { parameters: ["usize", "i32", "buffer", "usize"], result: "i32" },
  cublasLtMatmulAlgoGetHeuristic: {
    parameters: ["usize", "usize", "usize", "usize", "usize", "usize", "usize", "i32", "buffer", "buffer"],
    result: "i32",
  },
  cublasLtMatmulAlgoConfigGetAttribute: {
    parameters: ["buffer", "i32", "buffer", "usize", "buffer"],
    result: "i32",
  },
  cublasLtMatmul: {
    parameters: [
      "usize", // handle
      "usize", // matmul desc
      "buffer", // alpha (host)
      "usize", // A
      "usize", // Adesc
      "usize", // B
      "usize", // Bdesc
      "buffer", // beta (host)
      "usize", // C
      "usize", // Cdesc
      "usize", // D
      "usize", // Ddesc
      "buffer", // algo
      "usize", // workspace
      "usize", // workspace bytes
      "usize", // stream
    ],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>;

const LIB_CANDIDATES = [
  "libcublasLt.so.13",
  "/usr/local/cuda/targets/x86_64-linux/lib/libcublasLt.so.13",
  "/usr/local/cuda/lib64/libcublasLt.so.13",
];

/** cudaDataType_t (library_types.h). */
const CUDA_R = { f32: 0, f16: 2, bf16: 14 } as const;
/** cublasComputeType_t. */
const COMPUTE = { f32: 68, tf32: 77 } as const;
const CUBLAS_OP = { N: 0, T: 1 } as const;
/** cublasLtMatmulDescAttributes_t. */
const DESC = { TRANSA: 3, TRANSB: 4, EPILOGUE: 7, BIAS_POINTER: 8, BIAS_DATA_TYPE: 26 } as const;
/** cublasLtEpilogue_t. */
const EPILOGUE = { DEFAULT: 1, BIAS: 4 } as const;
/** cublasLtMatmulPreferenceAttributes_t. */
const PREF = {
  MAX_WORKSPACE_BYTES: 1,
  REDUCTION_SCHEME_MASK: 3,
  MIN_ALIGN_A: 5,
  MIN_ALIGN_B: 6,
  MIN_ALIGN_C: 7,
  MIN_ALIGN_D: 8,
} as const;
/** cublasLtMatmulAlgoConfigAttributes_t (each a 32-bit integer). */
const ALGO_CONFIG = { ID: 0, TILE_ID: 1, SPLITK_NUM: 2, REDUCTION_SCHEME: 3, STAGES_ID: 6 } as const;
/** cublasLtReductionScheme_t, by value (0 = NONE: no split-K). */
const REDUCTION_SCHEMES: Readonly<Record<number, string>> = {
  0: "none",
  1: "inplace",
  2: "compute-type",
  4: "output-type",
};
/** sizeof(cublasLtMatmulHeuristicResult_t): algo (64) + workspaceSize (8) + state + wavesCount + int[4]. */
const HEURISTIC_BYTES = 96;

/** Element types cuBLASLt multiplies here. */
export type GemmType = keyof typeof CUDA_R;

/** One product D = alpha·op(A)·op(B) + beta·C in cuBLAS's column-major terms. */
export interface GemmShape {
  transa: boolean;
  transb: boolean;
  m: number;
  n: number;
  k: number;
  lda: number;
  ldb: number;
  ldc: number;
  /** Type of A and B. */
  ab: GemmType;
  /** Type of C and D. */
  cd: GemmType;
  /** f32 accumulation; "tf32" lets f32 operands use the TF32 tensor cores. */
  compute: "f32" | "tf32";
  /** Largest power of two (≤ 256) dividing each address, for the heuristic. */
  alignA: number;
  alignB: number;
  alignC: number;
  /** Bias vector type when D gets a per-row (m) bias added by the epilogue. */
  bias?: GemmType;
  /** Only algorithms without split-K (reduction scheme NONE): one sequence per dot product. */
  noSplitK?: boolean;
}

/** What the heuristic chose for a plan (cublasLtMatmulAlgoConfigAttributes_t). */
export interface AlgoConfig {
  algoId: number;
  tileId: number;
  stagesId: number;
  /** Slices K is cut into (1: none). */
  splitK: number;
  /** How the slices are summed: "none", "inplace", "compute-type", "output-type". */
  reductionScheme: string;
}

/** A cached descriptor set and algorithm for one GemmShape. */
export class GemmPlan {
  constructor(
    readonly key: string,
    readonly desc: bigint,
    readonly layoutA: bigint,
    readonly layoutB: bigint,
    readonly layoutC: bigint,
    readonly algo: Uint8Array,
    readonly workspaceBytes: number,
    readonly hasBias: boolean,
    readonly config: AlgoConfig,
    /** The shape it was planned for. */
    readonly shape: Readonly<GemmShape>,
  ) {}
}

/** The cuBLASLt handle and its plan cache. */
export class CublasLt implements Disposable {
  private readonly plans = new Map<string, GemmPlan | null>();
  private readonly alpha = new Float32Array(1);
  private readonly beta = new Float32Array(1);
  private readonly ptrArg = new BigUint64Array(1);
  private destroyed = false;

  private constructor(private readonly lib: Lib, readonly handle: bigint, readonly version: number) {}

  /** Load the library and create a handle, or throw CudaUnavailableError saying why. */
  static open(): CublasLt {
    const override = Deno.env.get("AUTOROUND_LIBCUBLASLT");
    const candidates = override ? [override] : LIB_CANDIDATES;
    let lib: Lib | undefined, firstError = "";
    for (const c of candidates) {
      try {
        lib = Deno.dlopen(c, SYMBOLS);
        break;
      } catch (e) {
        firstError ||= (e as Error).message;
      }
    }
    if (!lib) {
      throw new CudaUnavailableError(
        `cuBLASLt (libcublasLt.so.13) could not be loaded (${loaderMessage(firstError)}); ` +
          `install the CUDA 13 toolkit's libraries or add their folder to LD_LIBRARY_PATH`,
      );
    }
    const out = new BigUint64Array(1);
    const rc = lib.symbols.cublasLtCreate(out);
    if (rc !== 0) {
      lib.close();
      throw new CudaUnavailableError(`cublasLtCreate failed with status ${rc}`);
    }
    return new CublasLt(lib, out[0], Number(lib.symbols.cublasLtGetVersion()));
  }

  private check(rc: number, call: string, detail = ""): void {
    if (rc === 0) return;
    const s = this.lib.symbols;
    const str = (p: Deno.PointerValue) => (p ? new Deno.UnsafePointerView(p).getCString() : "");
    throw new CudaError(
      call,
      rc,
      str(s.cublasLtGetStatusName(rc)) || `status ${rc}`,
      [str(s.cublasLtGetStatusString(rc)), detail].filter(Boolean).join("; "),
    );
  }

  private setDesc(desc: bigint, attr: number, value: Int32Array | Uint32Array | BigUint64Array): void {
    this.check(
      this.lib.symbols.cublasLtMatmulDescSetAttribute(desc, attr, value, BigInt(value.byteLength)),
      "cublasLtMatmulDescSetAttribute",
    );
  }

  /** The plan for a shape (cached), or null when cuBLASLt has no algorithm for it. */
  plan(g: GemmShape, workspaceBytes: number): GemmPlan | null {
    const key = [
      +g.transa,
      +g.transb,
      g.m,
      g.n,
      g.k,
      g.lda,
      g.ldb,
      g.ldc,
      g.ab,
      g.cd,
      g.compute,
      g.alignA,
      g.alignB,
      g.alignC,
      g.bias ?? "",
      g.noSplitK ? "nosplitk" : "",
    ].join(",");
    if (this.plans.has(key)) return this.plans.get(key)!;
    const s = this.lib.symbols;
    const out = new BigUint64Array(1);
    this.check(s.cublasLtMatmulDescCreate(out, COMPUTE[g.compute], CUDA_R.f32), "cublasLtMatmulDescCreate");
    const desc = out[0];
    this.setDesc(desc, DESC.TRANSA, new Int32Array([g.transa ? CUBLAS_OP.T : CUBLAS_OP.N]));
    this.setDesc(desc, DESC.TRANSB, new Int32Array([g.transb ? CUBLAS_OP.T : CUBLAS_OP.N]));
    if (g.bias) {
      this.setDesc(desc, DESC.EPILOGUE, new Uint32Array([EPILOGUE.BIAS]));
      this.setDesc(desc, DESC.BIAS_DATA_TYPE, new Int32Array([CUDA_R[g.bias]]));
    }
    const layout = (type: GemmType, rows: number, cols: number, ld: number): bigint => {
      this.check(
        s.cublasLtMatrixLayoutCreate(out, CUDA_R[type], BigInt(rows), BigInt(cols), BigInt(ld)),
        "cublasLtMatrixLayoutCreate",
      );
      return out[0];
    };
    const la = g.transa ? layout(g.ab, g.k, g.m, g.lda) : layout(g.ab, g.m, g.k, g.lda);
    const lb = g.transb ? layout(g.ab, g.n, g.k, g.ldb) : layout(g.ab, g.k, g.n, g.ldb);
    const lc = layout(g.cd, g.m, g.n, g.ldc);
    this.check(s.cublasLtMatmulPreferenceCreate(out), "cublasLtMatmulPreferenceCreate");
    const pref = out[0];
    const setPref = (attr: number, v: Uint32Array | BigUint64Array) =>
      this.check(
        s.cublasLtMatmulPreferenceSetAttribute(pref, attr, v, BigInt(v.byteLength)),
        "cublasLtMatmulPreferenceSetAttribute",
      );
    setPref(PREF.MAX_WORKSPACE_BYTES, new BigUint64Array([BigInt(workspaceBytes)]));
    setPref(PREF.MIN_ALIGN_A, new Uint32Array([g.alignA]));
    setPref(PREF.MIN_ALIGN_B, new Uint32Array([g.alignB]));
    setPref(PREF.MIN_ALIGN_C, new Uint32Array([g.alignC]));
    setPref(PREF.MIN_ALIGN_D, new Uint32Array([g.alignC]));
    if (g.noSplitK) setPref(PREF.REDUCTION_SCHEME_MASK, new Uint32Array([0]));
    const results = new Uint8Array(HEURISTIC_BYTES);
    const count = new Int32Array(1);
    const rc = s.cublasLtMatmulAlgoGetHeuristic(this.handle, desc, la, lb, lc, lc, pref, 1, results, count);
    s.cublasLtMatmulPreferenceDestroy(pref);
    const view = new DataView(results.buffer);
    if (rc !== 0 || count[0] < 1 || view.getInt32(72, true) !== 0) {
      s.cublasLtMatmulDescDestroy(desc);
      for (const l of [la, lb, lc]) s.cublasLtMatrixLayoutDestroy(l);
      this.plans.set(key, null);
      return null;
    }
    const algo = results.slice(0, 64);
    const plan = new GemmPlan(
      key,
      desc,
      la,
      lb,
      lc,
      algo,
      Number(view.getBigUint64(64, true)),
      g.bias !== undefined,
      this.algoConfig(algo),
      { ...g },
    );
    this.plans.set(key, plan);
    return plan;
  }

  /** Every plan made so far (shapes cuBLASLt had no algorithm for are not plans). */
  planList(): GemmPlan[] {
    return [...this.plans.values()].filter((p): p is GemmPlan => p !== null);
  }

  /** The configuration of an algorithm the heuristic returned (−1 for an attribute it does not tell). */
  private algoConfig(algo: Uint8Array): AlgoConfig {
    const value = new Int32Array(1), written = new BigUint64Array(1);
    const get = (attr: number): number => {
      value[0] = -1;
      const rc = this.lib.symbols.cublasLtMatmulAlgoConfigGetAttribute(algo, attr, value, 4n, written);
      return rc === 0 ? value[0] : -1;
    };
    const scheme = get(ALGO_CONFIG.REDUCTION_SCHEME);
    return {
      algoId: get(ALGO_CONFIG.ID),
      tileId: get(ALGO_CONFIG.TILE_ID),
      stagesId: get(ALGO_CONFIG.STAGES_ID),
      splitK: get(ALGO_CONFIG.SPLITK_NUM),
      reductionScheme: REDUCTION_SCHEMES[scheme] ?? `scheme ${scheme}`,
    };
  }

  /** Enqueue D = alpha·op(A)·op(B) + beta·C (+ bias) on `stream`. */
  run(
    plan: GemmPlan,
    p: {
      a: bigint;
      b: bigint;
      c: bigint;
      d: bigint;
      alpha: number;
      beta: number;
      bias?: bigint;
      workspace: bigint;
      workspaceBytes: number;
      stream: bigint;
    },
  ): void {
    if (plan.hasBias) {
      this.ptrArg[0] = p.bias ?? 0n;
      this.setDesc(plan.desc, DESC.BIAS_POINTER, this.ptrArg);
    }
    this.alpha[0] = p.alpha;
    this.beta[0] = p.beta;
    this.check(
      this.lib.symbols.cublasLtMatmul(
        this.handle,
        plan.desc,
        this.alpha,
        p.a,
        plan.layoutA,
        p.b,
        plan.layoutB,
        this.beta,
        p.c,
        plan.layoutC,
        p.d,
        plan.layoutC,
        plan.algo,
        p.workspace,
        BigInt(p.workspaceBytes),
        p.stream,
      ),
      "cublasLtMatmul",
      plan.key,
    );
  }

  [Symbol.dispose](): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const s = this.lib.symbols;
    for (const p of this.plans.values()) {
      if (!p) continue;
      s.cublasLtMatmulDescDestroy(p.desc);
      for (const l of [p.layoutA, p.layoutB, p.layoutC]) s.cublasLtMatrixLayoutDestroy(l);
    }
    this.plans.clear();
    s.cublasLtDestroy(this.handle);
    this.lib.close();
  }
}
