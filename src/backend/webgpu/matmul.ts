/**
 * Dispatcher of wgsl/matmul.wgsl: picks a tile shape, writes out the kernel's unrolled parts for it
 * (`expandMatmul`), splits the product into chunks whose operand windows fit one storage binding
 * (M, N or K ranges; K chunks after the first accumulate with beta = 1), and chooses vector or
 * scalar loads per chunk.
 */
import { BackendError } from "../../errors.ts";
import matmulWgsl from "../../../wgsl/matmul.wgsl" with { type: "text" };
import type { KernelSpec } from "./kernels.ts";
import { Params } from "./params.ts";
import { storageKind } from "./storage.ts";
import type { GpuRuntime } from "./runtime.ts";
import { bind, type GpuTensor } from "./tensor.ts";

/** Workgroup tile of C and the K step (BM, BN multiples of 8 with BM·BN/64 threads). */
export interface MatmulTile {
  bm: number;
  bn: number;
  bk: number;
}

/** Options of one product, as in Backend.matmul. */
export interface MatmulOpts {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  /**
   * Opt-in: form each tile's products as f16 partial sums (packed f16 FMAs) added into the f32
   * accumulators (see wgsl/matmul.wgsl ACC16). Used only when both operands are native f16.
   */
  f16Partials?: boolean;
  /**
   * Bench only: WGSL text used instead of wgsl/matmul.wgsl (same bindings, constants and prelude),
   * to time an earlier version of the kernel (bench/webgpu_matmul_v0.wgsl).
   */
  kernelSource?: string;
}

/** Tiles the dispatcher chooses from, largest first. */
export const MATMUL_TILES: readonly MatmulTile[] = [
  { bm: 128, bn: 128, bk: 8 },
  { bm: 64, bn: 64, bk: 8 },
  { bm: 32, bn: 32, bk: 8 },
];

/**
 * `AUTOROUND_WEBGPU_TILE=BMxBNxBK` forces the tile of large products (bench/webgpu_matmul.ts measures
 * the candidates on a device; the default is the 128×128×8 tile).
 */
function tileOverride(): MatmulTile | undefined {
  const variable = "AUTOROUND_WEBGPU_TILE";
  // Ask only when already granted: never prompt for a tuning knob.
  if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") return undefined;
  const m = Deno.env.get(variable)?.match(/^(\d+)x(\d+)x(\d+)$/);
  return m ? { bm: +m[1], bn: +m[2], bk: +m[3] } : undefined;
}
const TILE_OVERRIDE = tileOverride();

/** Whether the kernel can run tile `t`: 8×8 outputs per thread, whole vec4 loads per thread. */
export function tileValid(t: MatmulTile): boolean {
  const nt = (t.bm / 8) * (t.bn / 8);
  return t.bm % 8 === 0 && t.bn % 8 === 0 && t.bk % 4 === 0 && nt > 0 &&
    (t.bm * t.bk / 4) % nt === 0 && (t.bn * t.bk / 4) % nt === 0;
}

/**
 * wgsl/matmul.wgsl with every `// @expand NAME` line replaced by straight-line code for tile `t`
 * (the kernel's header says why nothing there may be a loop of constant trip count).
 *
 * @example
 * ```ts
 * const code = expandMatmul(matmulWgsl, { bm: 128, bn: 128, bk: 8 }, false);
 * ```
 */
export function expandMatmul(source: string, t: MatmulTile, acc16: boolean): string {
  const nt = (t.bm / 8) * (t.bn / 8);
  const la = t.bm * t.bk / 4 / nt, lb = t.bn * t.bk / 4 / nt;
  const r16 = [...Array(16).keys()], rA = [...Array(la).keys()], rB = [...Array(lb).keys()];
  const idx = (l: number) => `lid + ${l * nt}u`;
  const rowOf = (i: number) => (i < 4 ? `a0.${"xyzw"[i]}` : `a1.${"xyzw"[i - 4]}`);
  const parts: Record<string, string[]> = {
    decl: [
      ...r16.map((i) => `var c${i} = vec4<f32>();`),
      ...(acc16 ? r16.map((i) => `var h${i} = vec4<tile_t>();`) : []),
      ...rA.map((l) => `var ra${l} = vec4<f32>();`),
      ...rB.map((l) => `var rb${l} = vec4<f32>();`),
    ],
    first: [
      ...rA.map((l) => `stash_a(0u, ${idx(l)}, fetch_a(m0, 0u, ${idx(l)}));`),
      ...rB.map((l) => `stash_b(0u, ${idx(l)}, fetch_b(n0, 0u, ${idx(l)}));`),
    ],
    prefetch: [
      ...rA.map((l) => `ra${l} = fetch_a(m0, k1, ${idx(l)});`),
      ...rB.map((l) => `rb${l} = fetch_b(n0, k1, ${idx(l)});`),
    ],
    compute: [...Array(t.bk).keys()].flatMap((k) => {
      const ld = acc16 ? (x: string) => x : (x: string) => `vec4<f32>(${x})`;
      const [acc, ty] = acc16 ? ["h", "tile_t"] : ["c", "f32"];
      return [
        `{`,
        `  let a0 = ${ld(`As[cur][${k}][ty]`)}; let a1 = ${ld(`As[cur][${k}][ty + TY]`)};`,
        `  let b0 = ${ld(`Bs[cur][${k}][tx]`)}; let b1 = ${ld(`Bs[cur][${k}][tx + TX]`)};`,
        ...[...Array(8).keys()].flatMap((i) => [
          `  ${acc}${2 * i} = fma(vec4<${ty}>(${rowOf(i)}), b0, ${acc}${2 * i});`,
          `  ${acc}${2 * i + 1} = fma(vec4<${ty}>(${rowOf(i)}), b1, ${acc}${2 * i + 1});`,
        ]),
        `}`,
      ];
    }).concat(acc16 ? r16.map((i) => `c${i} += vec4<f32>(h${i}); h${i} = vec4<tile_t>();`) : []),
    stash: [
      ...rA.map((l) => `stash_a(1u - cur, ${idx(l)}, ra${l});`),
      ...rB.map((l) => `stash_b(1u - cur, ${idx(l)}, rb${l});`),
    ],
    store: [...Array(8).keys()].flatMap((i) => {
      const row = i < 4 ? `m0 + ty * 4u + ${i}u` : `m0 + BM / 2u + ty * 4u + ${i - 4}u`;
      return [
        `store_c4(${row}, n0 + tx * 4u, c${2 * i});`,
        `store_c4(${row}, n0 + BN / 2u + tx * 4u, c${2 * i + 1});`,
      ];
    }),
  };
  return source.replace(/^([ \t]*)\/\/ @expand (\w+)[ \t]*$/gm, (_, indent: string, name: string) => {
    const code = parts[name];
    if (!code) throw new BackendError(`matmul.wgsl: unknown expansion ${name}`);
    return code.map((l) => indent + l).join("\n");
  });
}

/** Workgroup memory a tile needs (two buffers of A and B tiles, rows padded by 4 floats). */
export function tileBytes(t: MatmulTile, elemBytes = 4): number {
  return 2 * t.bk * ((t.bm + 4) + (t.bn + 4)) * elemBytes;
}

/**
 * The tile for an M×N output: the largest one that still gives at least 64 workgroups (enough to
 * fill a large GPU) and fits the device's workgroup memory and invocation limits.
 */
export function chooseTile(rt: GpuRuntime, M: number, N: number): MatmulTile {
  const fits = [...(TILE_OVERRIDE ? [TILE_OVERRIDE] : []), ...MATMUL_TILES].filter((t) =>
    tileValid(t) &&
    tileBytes(t) <= rt.maxWorkgroupStorage && (t.bm / 8) * (t.bn / 8) <= rt.maxInvocations
  );
  for (const t of fits) if (Math.ceil(M / t.bm) * Math.ceil(N / t.bn) >= 64) return t;
  return fits[fits.length - 1];
}

/**
 * Per-operand prelude: the array element type (vec4 or scalar) and conversions that type-check in
 * both branches of the kernel (WGSL validates the branch a constant disables, too).
 */
function operandPrelude(name: string, vec: boolean): string {
  const el = `${name}_el`;
  return vec
    ? [
      `alias ${el} = vec4<${name}_t>;`,
      `fn ${name}_ld4(x: ${el}) -> vec4<f32> { return vec4<f32>(x); }`,
      `fn ${name}_ld1(x: ${el}) -> f32 { return f32(x.x); }`,
    ].join("\n")
    : [
      `alias ${el} = ${name}_t;`,
      `fn ${name}_ld4(x: ${el}) -> vec4<f32> { return vec4<f32>(f32(x)); }`,
      `fn ${name}_ld1(x: ${el}) -> f32 { return f32(x); }`,
    ].join("\n");
}

interface Dims {
  M: number;
  N: number;
  K: number;
}

/** Byte span of the windows one chunk of sizes (mc, nc, kc) needs, per operand. */
function windowBytes(
  a: GpuTensor,
  b: GpuTensor,
  c: GpuTensor,
  o: MatmulOpts,
  mc: number,
  nc: number,
  kc: number,
) {
  const lda = a.cols, ldb = b.cols, ldc = c.cols;
  const spanA = o.transA ? (kc - 1) * lda + mc : (mc - 1) * lda + kc;
  const spanB = o.transB ? (nc - 1) * ldb + kc : (kc - 1) * ldb + nc;
  const spanC = (mc - 1) * ldc + nc;
  return [spanA * a.kind.bytes, spanB * b.kind.bytes, spanC * c.kind.bytes];
}

/** Chunk sizes (mc, nc, kc) whose windows all fit one binding. */
export function planChunks(rt: GpuRuntime, a: GpuTensor, b: GpuTensor, c: GpuTensor, o: MatmulOpts, d: Dims) {
  let mc = d.M, nc = d.N, kc = Math.max(1, d.K);
  const limit = rt.maxBinding - rt.offsetAlign;
  const halve = (x: number) => Math.max(4, Math.ceil(x / 8) * 4);
  for (;;) {
    const [wa, wb, wc] = windowBytes(a, b, c, o, mc, nc, kc);
    if (wa <= limit && wb <= limit && wc <= limit) return { mc, nc, kc };
    const worst = Math.max(wa, wb, wc);
    const before = [mc, nc, kc].join();
    // Shrink the dimension that shortens the largest window (rows of the operand's storage).
    if (worst === wa) o.transA ? kc = halve(kc) : mc = halve(mc);
    else if (worst === wb) o.transB ? nc = halve(nc) : kc = halve(kc);
    else mc = halve(mc);
    if ([mc, nc, kc].join() === before) {
      throw new BackendError(`matmul operand rows do not fit maxStorageBufferBindingSize ${rt.maxBinding}`);
    }
  }
}

/**
 * C = alpha·op(A)·op(B) + beta·C into `c` (already allocated with M·N elements).
 *
 * @example
 * ```ts
 * runMatmul(rt, x, w, y, { transB: true }); // y = x·wᵀ
 * ```
 */
export function runMatmul(
  rt: GpuRuntime,
  a: GpuTensor,
  b: GpuTensor,
  c: GpuTensor,
  o: MatmulOpts,
  tile?: MatmulTile,
): void {
  const [ar, ac] = [a.rows, a.cols], [br, bc] = [b.rows, b.cols];
  const M = o.transA ? ac : ar, K = o.transA ? ar : ac;
  const N = o.transB ? br : bc, K2 = o.transB ? bc : br;
  if (K !== K2) throw new BackendError(`matmul inner sizes differ: ${K} vs ${K2}`);
  if (c.size !== M * N) throw new BackendError(`matmul out has ${c.size} elements, need ${M}×${N}`);
  if (M === 0 || N === 0) return;
  const acc16 = !!o.f16Partials && a.kind.wgsl === "f16" && b.kind.wgsl === "f16";
  const t = tile ?? (acc16 ? { ...chooseTile(rt, M, N), bk: 16 } : chooseTile(rt, M, N));
  if (!tileValid(t)) throw new BackendError(`matmul tile ${t.bm}×${t.bn}×${t.bk} is not supported`);
  if (tileBytes(t, acc16 ? 2 : 4) > rt.maxWorkgroupStorage) {
    throw new BackendError(
      `matmul tile ${t.bm}×${t.bn}×${t.bk} needs more workgroup memory than the device has`,
    );
  }
  const alpha = o.alpha ?? 1, beta = o.beta ?? 0;
  const { mc, nc, kc } = planChunks(rt, a, b, c, o, { M, N, K });
  const source = expandMatmul(o.kernelSource ?? matmulWgsl, t, acc16);
  const tileKind = storageKind(acc16 ? "f16" : "f32", rt.nativeF16);
  const [lda, ldb, ldc] = [ac, bc, N];
  for (let m0 = 0; m0 < M; m0 += mc) {
    for (let n0 = 0; n0 < N; n0 += nc) {
      // K = 0 still runs one chunk: C = beta·C.
      for (let k0 = 0; k0 < Math.max(K, 1); k0 += kc) {
        const m = Math.min(mc, M - m0), n = Math.min(nc, N - n0), k = Math.min(kc, K - k0);
        const aStart = o.transA ? k0 * lda + m0 : m0 * lda + k0;
        const bStart = o.transB ? n0 * ldb + k0 : k0 * ldb + n0;
        const cStart = m0 * ldc + n0;
        const [wa, wb, wc] = windowBytes(a, b, c, o, m, n, Math.max(k, 1));
        const A = bind(rt, a, aStart, Math.ceil(wa / a.kind.bytes));
        const B = bind(rt, b, bStart, Math.ceil(wb / b.kind.bytes));
        const C = bind(rt, c, cStart, Math.ceil(wc / c.kind.bytes));
        const first = k0 === 0;
        const chunkBeta = first ? beta : 1;
        const vecA = lda % 4 === 0 && A.base % 4 === 0 && (o.transA ? m % 4 === 0 : k % 4 === 0);
        const vecB = ldb % 4 === 0 && B.base % 4 === 0 && (o.transB ? k % 4 === 0 : n % 4 === 0);
        const spec: KernelSpec = {
          family: "matmul",
          entry: "matmul",
          bindings: ["r", "r", "rw"],
          types: { a: a.kind, b: b.kind, c: c.kind, tile: tileKind },
          consts: {
            BM: t.bm,
            BN: t.bn,
            BK: t.bk,
            TRANS_A: !!o.transA,
            TRANS_B: !!o.transB,
            VEC_A: vecA,
            VEC_B: vecB,
            ACC16: acc16,
          },
          extra: [
            operandPrelude("a", vecA),
            operandPrelude("b", vecB),
          ]
            .join("\n"),
          source,
        };
        const p = new Params().u(m).u(n).u(k).u(lda).u(ldb).u(ldc).u(A.base).u(B.base).u(C.base)
          .f(alpha).f(chunkBeta).u(chunkBeta !== 0 ? 1 : 0);
        rt.dispatch(rt.kernel(spec), p, [A.window, B.window, C.window], [
          Math.ceil(n / t.bn),
          Math.ceil(m / t.bm),
          1,
        ]);
      }
    }
  }
}
