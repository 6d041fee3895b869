// matmul.wgsl — C = alpha · op(A) · op(B) + beta · C, f32 accumulation for f32 and f16 operands.
//
// Layout: row-major. A is [M, K] (contiguous along K) or, with TRANS_A, [K, M] (contiguous along M);
// B is [K, N] (contiguous along N) or, with TRANS_B, [N, K] (contiguous along K); C is [M, N]. Leading
// dimensions (lda, ldb, ldc) and element offsets (a_base, ...) come as uniforms, so views and split
// dispatches bind any sub-range.
// Tiling: a workgroup computes a BM×BN tile of C with (BM/8)·(BN/8) threads, 8×8 outputs per thread
// held in 16 vec4 accumulators c0..c15 (rows ty·4+i and BM/2+ty·4+i, columns tx·4+j and BN/2+tx·4+j).
// K is walked in BK steps through two workgroup buffers (double-buffered: the next tile's global
// loads are in flight while the current one is multiplied; one barrier per step). Tiles are stored
// k-major (As[buf][k][m/4], Bs[buf][k][n/4], rows padded by one vec4 against bank conflicts of the
// transposing stores) and converted to f32 when stored, so f16 operands cost one conversion per
// element per tile, not per multiply-add. Global loads are vec4 along the contiguous dimension when it
// is a multiple of 4 (VEC_A/VEC_B), else scalar with bounds checks; edge tiles read zeros.
//
// No loops of constant trip count, no indexed private arrays. The dispatcher (matmul.ts,
// expandMatmul) replaces each `// @expand NAME` line with straight-line code for the pipeline's
// BM/BN/BK: the accumulators are 16 named vec4 variables, the K step is written out BK times, the
// per-thread global loads LA/LB times. Reason, measured on an H100 (Vulkan, Deno 2.9.6's wgpu): naga
// bounds every WGSL loop with an extra counter (wgpu's force_loop_bounding), so the driver can no
// longer unroll `for (var k = 0u; k < BK; k++)`, and arrays indexed by such loop counters
// (`acc[i]`, `ra[l]`) live in local memory: the looped kernel ran every 8B-shaped GEMM at 2 TFLOP/s
// whatever the tile or dtype, its time ∝ FLOPs from 1024³ up (bench/webgpu_matmul_v0.wgsl keeps it).
// Speed (H100, GPU timestamps, bench/webgpu_matmul.ts, BENCHMARKS.md § WebGPU): 128×128×8 is the best
// tile measured, 39–40 TFLOP/s in f32 and 41–43 with f16 operands on all three 8B GEMM forms (59–63%
// of the 67 TFLOP/s f32 FMA rate); BK = 16 or 64-wide tiles 21–39; ACC16 at BK = 32 36–38.
//
// ACC16 (opt-in, f16 operands only): tiles are kept as f16 in workgroup memory (tile_t = f16) and
// each thread forms the products of one K step of BK as packed f16 FMAs (2 per instruction on GPUs
// with f16 ALUs) in h0..h15, adding these f16 partial sums of BK products into the f32 accumulators
// after every tile: about twice the multiply rate, at a relative error near 2^-11·sqrt(BK) and with
// f16's range for the partial sums (±65504), so it is never the default.
// Measured (tests/webgpu_matmul_test.ts, llvmpipe, odd and aligned sizes, all four forms): relative
// error ‖C−ref‖/‖ref‖ ≤ 1.7e-7 with f32 operands (bound asserted 1e-5); with f16 operands ≤ 1.1e-5
// against the CPU on the same f16 values (f16 output rounding; bound 4e-3) and ≈ 3.6e-4 against f32
// math on the unrounded values (bound 1e-2); ACC16 ≈ 6.8e-4 (K = 100; bound 1e-2). At the 8B shapes
// on the H100, sampled entries against float64: f32 ≤ 2.2e-6, f16 ≤ 2.4e-4, ACC16 ≤ 6.5e-4.

struct MatmulParams {
  M: u32, N: u32, K: u32,
  lda: u32, ldb: u32, ldc: u32,
  a_base: u32, b_base: u32, c_base: u32,
  alpha: f32, beta: f32, use_beta: u32,
}

const TX: u32 = BN / 8u;
const TY: u32 = BM / 8u;
const NT: u32 = TX * TY;
const SA4: u32 = BM / 4u + 1u;
const SB4: u32 = BN / 4u + 1u;

@group(0) @binding(0) var<uniform> P: MatmulParams;
@group(0) @binding(1) var<storage, read> A: array<a_el>;
@group(0) @binding(2) var<storage, read> B: array<b_el>;
@group(0) @binding(3) var<storage, read_write> C: array<c_t>;

var<workgroup> As: array<array<array<vec4<tile_t>, SA4>, BK>, 2>;
var<workgroup> Bs: array<array<array<vec4<tile_t>, SB4>, BK>, 2>;

// Four consecutive elements of A along its contiguous dimension, starting at (row, col) of the
// stored matrix (row < rows, col a multiple of 4 in the vector path), zeros outside.
fn load_a4(row: u32, col: u32, rows: u32, cols: u32) -> vec4<f32> {
  if (VEC_A) {
    if (row >= rows || col >= cols) { return vec4<f32>(0.0); }
    return a_ld4(A[(P.a_base + row * P.lda + col) / 4u]);
  } else {
    // Straight-line selects: reads past the end are safe in WGSL (robust buffer access) and
    // discarded; a per-component loop here made llvmpipe's compile 6× slower.
    let o = P.a_base + row * P.lda + col;
    let ok = row < rows;
    return vec4<f32>(
      select(0.0, a_ld1(A[o]), ok && col < cols),
      select(0.0, a_ld1(A[o + 1u]), ok && col + 1u < cols),
      select(0.0, a_ld1(A[o + 2u]), ok && col + 2u < cols),
      select(0.0, a_ld1(A[o + 3u]), ok && col + 3u < cols),
    );
  }
}

fn load_b4(row: u32, col: u32, rows: u32, cols: u32) -> vec4<f32> {
  if (VEC_B) {
    if (row >= rows || col >= cols) { return vec4<f32>(0.0); }
    return b_ld4(B[(P.b_base + row * P.ldb + col) / 4u]);
  } else {
    let o = P.b_base + row * P.ldb + col;
    let ok = row < rows;
    return vec4<f32>(
      select(0.0, b_ld1(B[o]), ok && col < cols),
      select(0.0, b_ld1(B[o + 1u]), ok && col + 1u < cols),
      select(0.0, b_ld1(B[o + 2u]), ok && col + 2u < cols),
      select(0.0, b_ld1(B[o + 3u]), ok && col + 3u < cols),
    );
  }
}

// Element idx (lid + l·NT, 0 ≤ l < LA) of the A tile at k0: global load.
fn fetch_a(m0: u32, k0: u32, idx: u32) -> vec4<f32> {
  if (TRANS_A) {
    // Stored [K, M]: rows of the tile are k, vectors run along m.
    let krow = idx / (BM / 4u);
    let mq = (idx % (BM / 4u)) * 4u;
    return load_a4(k0 + krow, m0 + mq, P.K, P.M);
  } else {
    let row = idx / (BK / 4u);
    let kq = (idx % (BK / 4u)) * 4u;
    return load_a4(m0 + row, k0 + kq, P.M, P.K);
  }
}

fn stash_a(buf: u32, idx: u32, v: vec4<f32>) {
  if (TRANS_A) {
    As[buf][idx / (BM / 4u)][idx % (BM / 4u)] = vec4<tile_t>(v);
  } else {
    let row = idx / (BK / 4u);
    let kq = (idx % (BK / 4u)) * 4u;
    let c = row / 4u;
    let r = row % 4u;
    As[buf][kq][c][r] = tile_t(v.x);
    As[buf][kq + 1u][c][r] = tile_t(v.y);
    As[buf][kq + 2u][c][r] = tile_t(v.z);
    As[buf][kq + 3u][c][r] = tile_t(v.w);
  }
}

fn fetch_b(n0: u32, k0: u32, idx: u32) -> vec4<f32> {
  if (TRANS_B) {
    // Stored [N, K]: vectors run along k.
    let col = idx / (BK / 4u);
    let kq = (idx % (BK / 4u)) * 4u;
    return load_b4(n0 + col, k0 + kq, P.N, P.K);
  } else {
    let krow = idx / (BN / 4u);
    let nq = (idx % (BN / 4u)) * 4u;
    return load_b4(k0 + krow, n0 + nq, P.K, P.N);
  }
}

fn stash_b(buf: u32, idx: u32, v: vec4<f32>) {
  if (TRANS_B) {
    let col = idx / (BK / 4u);
    let kq = (idx % (BK / 4u)) * 4u;
    let c = col / 4u;
    let r = col % 4u;
    Bs[buf][kq][c][r] = tile_t(v.x);
    Bs[buf][kq + 1u][c][r] = tile_t(v.y);
    Bs[buf][kq + 2u][c][r] = tile_t(v.z);
    Bs[buf][kq + 3u][c][r] = tile_t(v.w);
  } else {
    Bs[buf][idx / (BN / 4u)][idx % (BN / 4u)] = vec4<tile_t>(v);
  }
}

// C is written with scalar stores (once per tile, off the critical path) and read only when
// beta ≠ 0, so NaN already in C never leaks into C = alpha·AB (beta = 0).
fn store_c1(o: u32, ok: bool, v: f32) {
  if (ok) {
    var r = P.alpha * v;
    if (P.use_beta != 0u) { r += P.beta * f32(C[o]); }
    C[o] = c_cv(r);
  }
}

fn store_c4(row: u32, col: u32, v: vec4<f32>) {
  if (row >= P.M) { return; }
  let o = P.c_base + row * P.ldc + col;
  store_c1(o, col < P.N, v.x);
  store_c1(o + 1u, col + 1u < P.N, v.y);
  store_c1(o + 2u, col + 2u < P.N, v.z);
  store_c1(o + 3u, col + 3u < P.N, v.w);
}

@compute @workgroup_size(NT)
fn matmul(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % TX;
  let ty = lid / TX;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let tiles = (P.K + BK - 1u) / BK;

  // c0..c15 (f32 accumulators), h0..h15 (ACC16 partial sums), ra*/rb* (next tile's global loads).
  // @expand decl

  // First tile: stash_a(0u, lid + l·NT, fetch_a(m0, 0u, lid + l·NT)) for each l, likewise B.
  // @expand first
  workgroupBarrier();

  for (var t = 0u; t < tiles; t++) {
    let more = t + 1u < tiles;
    let cur = t % 2u;
    if (more) {
      let k1 = (t + 1u) * BK;
      // ra_l = fetch_a(m0, k1, lid + l·NT); rb_l = fetch_b(n0, k1, lid + l·NT)
      // @expand prefetch
    }
    // For k in 0..BK: a0 = As[cur][k][ty], a1 = As[cur][k][ty + TY], b0 = Bs[cur][k][tx],
    // b1 = Bs[cur][k][tx + TX]; c(2i) += a_i·b0, c(2i+1) += a_i·b1 for the 8 rows a_i of a0, a1
    // (ACC16: into h0..h15 as f16, added to c0..c15 after the step).
    // @expand compute
    if (more) {
      // stash_a(1u - cur, lid + l·NT, ra_l), likewise B.
      // @expand stash
    }
    workgroupBarrier();
  }

  // Row i of the thread (ty·4+i, then BM/2+ty·4+i−4): store_c4 of c(2i) at tx·4, c(2i+1) at BN/2+tx·4.
  // @expand store
}
