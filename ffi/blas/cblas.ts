/**
 * CBLAS through `Deno.dlopen`: single and double precision GEMM from whichever CBLAS library this
 * machine has, found at run time. Intel oneMKL's single dynamic library (`libmkl_rt.so`, the oneAPI
 * path on CPUs) is tried first, then OpenBLAS (Debian `libopenblas0-pthread`), then the generic
 * `libcblas.so.3` / `libblas.so.3` names the Debian alternatives system points at a BLAS provider.
 * All export the reference CBLAS symbols (`cblas_sgemm`, `cblas_dgemm`; cblas.h), so one symbol
 * table serves them; the thread-count setters are vendor extensions, bound when present.
 *
 * Matrices are row-major (CblasRowMajor); the caller passes typed arrays, never pointers.
 *
 * The libraries' own threads spin for a while after each call by default (OpenBLAS ~2^28 cycles,
 * Intel OpenMP 200 ms) in case another call follows. Here the program's own worker threads run between
 * the calls and need those cores, so `open` asks for sleeping at once (`OPENBLAS_THREAD_TIMEOUT=4`,
 * the minimum; `KMP_BLOCKTIME=0`) unless the environment already sets them; both are read when the
 * library loads.
 *
 * Reproducibility: OpenBLAS and the reference BLAS give the same bits run to run for a fixed thread
 * count (measured, README § Determinism). oneMKL promises that only in its Conditional Numerical
 * Reproducibility mode (oneMKL developer guide, "Reproducibility Conditions": without it the code path
 * may depend on the arrays' alignment, and with MKL_DYNAMIC the thread count may change per call), so
 * `open` also sets `MKL_CBWR=AUTO` (CNR on the best branch for this CPU) and `MKL_DYNAMIC=FALSE`
 * unless the environment sets them (`MKL_CBWR=OFF` turns it off).
 *
 * @example
 * ```ts
 * using blas = Cblas.open(); // or Cblas.open("/opt/intel/oneapi/mkl/latest/lib/libmkl_rt.so.2")
 * blas.setThreads(4);
 * // c[2×2] = a[2×3] · b[2×3]ᵀ
 * blas.sgemm(false, true, 2, 2, 3, 1, a, 3, b, 3, 0, c, 2);
 * ```
 */

const GEMM_ARGS = [
  "i32", // order
  "i32", // transA
  "i32", // transB
  "i32", // M
  "i32", // N
  "i32", // K
  "f32", // alpha
  "buffer", // A
  "i32", // lda
  "buffer", // B
  "i32", // ldb
  "f32", // beta
  "buffer", // C
  "i32", // ldc
] as const;

const SYMBOLS = {
  cblas_sgemm: { parameters: GEMM_ARGS, result: "void" },
  cblas_dgemm: {
    parameters: GEMM_ARGS.map((a) => (a === "f32" ? "f64" : a)) as [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f64",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f64",
      "buffer",
      "i32",
    ],
    result: "void",
    optional: true,
  },
  // OpenBLAS extensions (openblas_config.h / cblas.h of OpenBLAS).
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
  // oneMKL service functions (mkl_service.h): MKL_Set_Num_Threads is what mkl_set_num_threads expands to.
  MKL_Set_Num_Threads: { parameters: ["i32"], result: "void", optional: true },
  MKL_Get_Version_String: { parameters: ["buffer", "i32"], result: "void", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>;

/** cblas.h enum values. */
const ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112;

const LIB_DIR = "/usr/lib/x86_64-linux-gnu";
/** Library names in the order they are tried; each bare name also under the Debian multiarch folder. */
export const CBLAS_CANDIDATES: readonly string[] = [
  "libmkl_rt.so",
  "libmkl_rt.so.2",
  "libopenblas.so.0",
  "libopenblas.so",
  "libcblas.so.3",
  "libblas.so.3",
].flatMap((n) => [n, `${LIB_DIR}/${n}`]);

/** No CBLAS library could be opened: the reason in one line (the libraries tried and why). */
export class CblasUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CblasUnavailableError";
  }
}

/** An open CBLAS library. */
export class Cblas implements Disposable {
  private constructor(
    private readonly lib: Lib,
    /** The file name it was opened by. */
    readonly path: string,
    /** Vendor and version where the library says (e.g. "OpenBLAS 0.3.21 ... Haswell"), else the path. */
    readonly description: string,
  ) {}

  /** Open `path`, or the first of CBLAS_CANDIDATES that loads and exports `cblas_sgemm`. */
  static open(path?: string): Cblas {
    setLibraryEnvironment();
    const tried: string[] = [];
    for (const p of path ? [path] : CBLAS_CANDIDATES) {
      let lib: Lib;
      try {
        lib = Deno.dlopen(p, SYMBOLS);
      } catch (e) {
        tried.push(`${p}: ${firstLine(e)}`);
        continue;
      }
      return new Cblas(lib, p, describe(lib, p));
    }
    const what = path
      ? tried.join("; ")
      : `tried ${CBLAS_CANDIDATES.filter((c) => !c.startsWith("/")).join(", ")}`;
    throw new CblasUnavailableError(`no CBLAS library (${what})`);
  }

  /** Whether double-precision GEMM is available. */
  get hasDgemm(): boolean {
    return this.lib.symbols.cblas_dgemm !== null;
  }

  /** Whether the library lets us set its thread count (OpenBLAS, oneMKL). */
  get canSetThreads(): boolean {
    const s = this.lib.symbols;
    return s.openblas_set_num_threads !== null || s.MKL_Set_Num_Threads !== null;
  }

  /** Use `n` threads for the following calls (no-op for libraries without a setter). */
  setThreads(n: number): void {
    const s = this.lib.symbols;
    s.openblas_set_num_threads?.(n);
    s.MKL_Set_Num_Threads?.(n);
  }

  /** c[M,N] = alpha·op(a)·op(b) + beta·c in f32, row-major; op(x) = xᵀ when the flag is set. */
  sgemm(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void {
    if (M === 0 || N === 0) return;
    checkOperands(transA, transB, M, N, K, a.length, lda, b.length, ldb, c.length, ldc);
    const t = (x: boolean) => (x ? TRANS : NO_TRANS);
    this.lib.symbols.cblas_sgemm(
      ROW_MAJOR,
      t(transA),
      t(transB),
      M,
      N,
      K,
      alpha,
      a,
      lda,
      b,
      ldb,
      beta,
      c,
      ldc,
    );
  }

  /** The f64 form of sgemm; throws when the library has no `cblas_dgemm` (check hasDgemm). */
  dgemm(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    a: Float64Array,
    lda: number,
    b: Float64Array,
    ldb: number,
    beta: number,
    c: Float64Array,
    ldc: number,
  ): void {
    const fn = this.lib.symbols.cblas_dgemm;
    if (!fn) throw new CblasUnavailableError(`${this.path} has no cblas_dgemm`);
    if (M === 0 || N === 0) return;
    checkOperands(transA, transB, M, N, K, a.length, lda, b.length, ldb, c.length, ldc);
    const t = (x: boolean) => (x ? TRANS : NO_TRANS);
    fn(ROW_MAJOR, t(transA), t(transB), M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  }

  [Symbol.dispose](): void {
    this.lib.close();
  }
}

/**
 * The library reads past a typed array's end without complaint, so the extents are checked here:
 * op(a) is M×K, op(b) is K×N, c is M×N, each row `ld` elements apart.
 */
function checkOperands(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  aLen: number,
  lda: number,
  bLen: number,
  ldb: number,
  cLen: number,
  ldc: number,
): void {
  const need = (rows: number, cols: number, ld: number) => (rows === 0 ? 0 : (rows - 1) * ld + cols);
  const [aRows, aCols] = transA ? [K, M] : [M, K];
  const [bRows, bCols] = transB ? [N, K] : [K, N];
  const bad = aCols > lda || bCols > ldb || N > ldc || need(aRows, aCols, lda) > aLen ||
    need(bRows, bCols, ldb) > bLen || need(M, N, ldc) > cLen;
  if (bad) {
    throw new RangeError(
      `gemm operands too small for M=${M} N=${N} K=${K} (lengths ${aLen}, ${bLen}, ${cLen}; ld ${lda}, ${ldb}, ${ldc})`,
    );
  }
}

/** Variables the libraries read at load time: idle spinning and oneMKL's reproducibility mode. */
export const LIBRARY_ENVIRONMENT: readonly (readonly [string, string])[] = [
  ["OPENBLAS_THREAD_TIMEOUT", "4"],
  ["KMP_BLOCKTIME", "0"],
  ["MKL_CBWR", "AUTO"],
  ["MKL_DYNAMIC", "FALSE"],
];

/** Set LIBRARY_ENVIRONMENT where allowed and not already set. */
function setLibraryEnvironment(): void {
  for (const [variable, value] of LIBRARY_ENVIRONMENT) {
    if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") continue;
    if (Deno.env.get(variable) === undefined) Deno.env.set(variable, value);
  }
}

function describe(lib: Lib, path: string): string {
  const s = lib.symbols;
  const cfg = s.openblas_get_config?.();
  if (cfg) return new Deno.UnsafePointerView(cfg).getCString().trim();
  if (s.MKL_Get_Version_String) {
    const buf = new Uint8Array(256);
    s.MKL_Get_Version_String(buf, buf.length);
    const text = new TextDecoder().decode(buf.subarray(0, buf.indexOf(0) < 0 ? buf.length : buf.indexOf(0)));
    return text.trim() || path;
  }
  return path;
}

function firstLine(e: unknown): string {
  return String((e as Error).message ?? e).split("\n")[0];
}
