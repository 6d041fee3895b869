// bench/webgpu_matmul_v0.wgsl — the looped matmul kernel before issue #6 (kept so bench/webgpu_matmul.ts can
// time it beside the current straight-line wgsl/matmul.wgsl: 2 TFLOP/s on an H100; see BENCHMARKS.md § WebGPU).
// Same bindings, constants and prelude as wgsl/matmul.wgsl; not used by the backend.
//
// matmul.wgsl — C = alpha · op(A) · op(B) + beta · C, f32 accumulation for f32 and f16 operands.
//
// Layout: row-major. A is [M, K] (contiguous along K) or, with TRANS_A, [K, M] (contiguous along M);
// B is [K, N] (contiguous along N) or, with TRANS_B, [N, K] (contiguous along K); C is [M, N]. Leading
// dimensions (lda, ldb, ldc) and element offsets (a_base, ...) come as uniforms, so views and split
// dispatches bind any sub-range.
// Tiling: a workgroup computes a BM×BN tile of C with (BM/8)·(BN/8) threads, 8×8 outputs per thread
// held as 16 vec4 accumulators (rows ty·4+i and BM/2+ty·4+i, columns tx·4+j and BN/2+tx·4+j). K is
// walked in BK steps through two workgroup buffers (double-buffered: the next tile's global loads are
// in flight while the current one is multiplied; one barrier per step). Tiles are stored k-major
// (As[k][m], Bs[k][n], rows padded by 4 floats against bank conflicts) and converted to f32 when
// stored, so f16 operands cost one conversion per element per tile, not per multiply-add. Global
// loads are vec4 along the contiguous dimension when it is a multiple of 4 (VEC_A/VEC_B), else
// scalar with bounds checks; edge tiles read zeros. alpha/beta are uniforms (beta read only when set).
// ACC16 (opt-in, f16 operands only): tiles are kept as f16 in workgroup memory and each thread forms
// the products of one K step of BK as packed f16 FMAs (2 per instruction on GPUs with f16 ALUs),
// adding these f16 partial sums of BK products into the f32 accumulators after every tile: about
// twice the multiply rate, at a relative error near 2^-11·sqrt(BK) and with f16's range for the
// partial sums (±65504), so it is never the default.
// Measured (tests/webgpu_matmul_test.ts, llvmpipe, odd and aligned sizes, all four forms): relative
// error ‖C−ref‖/‖ref‖ ≤ 1.7e-7 with f32 operands (bound asserted 1e-5); with f16 operands ≤ 1.1e-5
// against the CPU on the same f16 values (f16 output rounding; bound 4e-3) and ≈ 3.6e-4 against f32
// math on the unrounded values (bound 1e-2); ACC16 ≈ 2.1e-4 (K = 100; bound 1e-2).

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
const LA: u32 = BM * BK / 4u / NT;
const LB: u32 = BN * BK / 4u / NT;

@group(0) @binding(0) var<uniform> P: MatmulParams;
@group(0) @binding(1) var<storage, read> A: array<a_el>;
@group(0) @binding(2) var<storage, read> B: array<b_el>;
@group(0) @binding(3) var<storage, read_write> C: array<c_t>;

var<workgroup> As: array<vec4<tile_t>, 2u * BK * SA4>;
var<workgroup> Bs: array<vec4<tile_t>, 2u * BK * SB4>;

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

// Element l (0 ≤ l < LA) of this thread's share of the A tile at k0: global load.
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
  let o = buf * BK * SA4;
  if (TRANS_A) {
    let krow = idx / (BM / 4u);
    let mq = idx % (BM / 4u);
    As[o + krow * SA4 + mq] = vec4<tile_t>(v);
  } else {
    let row = idx / (BK / 4u);
    let kq = (idx % (BK / 4u)) * 4u;
    let c = o + kq * SA4 + row / 4u;
    let r = row % 4u;
    As[c][r] = tile_t(v.x);
    As[c + SA4][r] = tile_t(v.y);
    As[c + 2u * SA4][r] = tile_t(v.z);
    As[c + 3u * SA4][r] = tile_t(v.w);
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
  let o = buf * BK * SB4;
  if (TRANS_B) {
    let col = idx / (BK / 4u);
    let kq = (idx % (BK / 4u)) * 4u;
    let c = o + kq * SB4 + col / 4u;
    let r = col % 4u;
    Bs[c][r] = tile_t(v.x);
    Bs[c + SB4][r] = tile_t(v.y);
    Bs[c + 2u * SB4][r] = tile_t(v.z);
    Bs[c + 3u * SB4][r] = tile_t(v.w);
  } else {
    let krow = idx / (BN / 4u);
    let nq = idx % (BN / 4u);
    Bs[o + krow * SB4 + nq] = vec4<tile_t>(v);
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

  var acc: array<vec4<f32>, 16>;
  var h: array<vec4<tile_t>, 16>;
  for (var i = 0u; i < 16u; i++) {
    acc[i] = vec4<f32>(0.0);
    h[i] = vec4<tile_t>();
  }
  var ra: array<vec4<f32>, LA>;
  var rb: array<vec4<f32>, LB>;

  for (var l = 0u; l < LA; l++) { stash_a(0u, lid + l * NT, fetch_a(m0, 0u, lid + l * NT)); }
  for (var l = 0u; l < LB; l++) { stash_b(0u, lid + l * NT, fetch_b(n0, 0u, lid + l * NT)); }
  workgroupBarrier();

  for (var t = 0u; t < tiles; t++) {
    let more = t + 1u < tiles;
    if (more) {
      let k1 = (t + 1u) * BK;
      for (var l = 0u; l < LA; l++) { ra[l] = fetch_a(m0, k1, lid + l * NT); }
      for (var l = 0u; l < LB; l++) { rb[l] = fetch_b(n0, k1, lid + l * NT); }
    }
    let oa = (t % 2u) * BK * SA4;
    let ob = (t % 2u) * BK * SB4;
    if (ACC16) {
      for (var k = 0u; k < BK; k++) {
        let a0 = As[oa + k * SA4 + ty];
        let a1 = As[oa + k * SA4 + ty + TY];
        let b0 = Bs[ob + k * SB4 + tx];
        let b1 = Bs[ob + k * SB4 + tx + TX];
        h[0] = fma(vec4<tile_t>(a0.x), b0, h[0]);
        h[1] = fma(vec4<tile_t>(a0.x), b1, h[1]);
        h[2] = fma(vec4<tile_t>(a0.y), b0, h[2]);
        h[3] = fma(vec4<tile_t>(a0.y), b1, h[3]);
        h[4] = fma(vec4<tile_t>(a0.z), b0, h[4]);
        h[5] = fma(vec4<tile_t>(a0.z), b1, h[5]);
        h[6] = fma(vec4<tile_t>(a0.w), b0, h[6]);
        h[7] = fma(vec4<tile_t>(a0.w), b1, h[7]);
        h[8] = fma(vec4<tile_t>(a1.x), b0, h[8]);
        h[9] = fma(vec4<tile_t>(a1.x), b1, h[9]);
        h[10] = fma(vec4<tile_t>(a1.y), b0, h[10]);
        h[11] = fma(vec4<tile_t>(a1.y), b1, h[11]);
        h[12] = fma(vec4<tile_t>(a1.z), b0, h[12]);
        h[13] = fma(vec4<tile_t>(a1.z), b1, h[13]);
        h[14] = fma(vec4<tile_t>(a1.w), b0, h[14]);
        h[15] = fma(vec4<tile_t>(a1.w), b1, h[15]);
      }
      // Explicit reset: naga hoists a loop-local `var` without initializer to function entry, so it
      // would not start from zero again on the next tile.
      for (var i = 0u; i < 16u; i++) {
        acc[i] += vec4<f32>(h[i]);
        h[i] = vec4<tile_t>();
      }
    } else {
      for (var k = 0u; k < BK; k++) {
        let a0 = vec4<f32>(As[oa + k * SA4 + ty]);
        let a1 = vec4<f32>(As[oa + k * SA4 + ty + TY]);
        let b0 = vec4<f32>(Bs[ob + k * SB4 + tx]);
        let b1 = vec4<f32>(Bs[ob + k * SB4 + tx + TX]);
        acc[0] += a0.x * b0;
        acc[1] += a0.x * b1;
        acc[2] += a0.y * b0;
        acc[3] += a0.y * b1;
        acc[4] += a0.z * b0;
        acc[5] += a0.z * b1;
        acc[6] += a0.w * b0;
        acc[7] += a0.w * b1;
        acc[8] += a1.x * b0;
        acc[9] += a1.x * b1;
        acc[10] += a1.y * b0;
        acc[11] += a1.y * b1;
        acc[12] += a1.z * b0;
        acc[13] += a1.z * b1;
        acc[14] += a1.w * b0;
        acc[15] += a1.w * b1;
      }
    }
    if (more) {
      let nb = (t + 1u) % 2u;
      for (var l = 0u; l < LA; l++) { stash_a(nb, lid + l * NT, ra[l]); }
      for (var l = 0u; l < LB; l++) { stash_b(nb, lid + l * NT, rb[l]); }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 8u; i++) {
    let row = m0 + select(ty * 4u + i, BM / 2u + ty * 4u + i - 4u, i >= 4u);
    store_c4(row, n0 + tx * 4u, acc[2u * i]);
    store_c4(row, n0 + BN / 2u + tx * 4u, acc[2u * i + 1u]);
  }
}
