// The CUDA GGUF quantizer's functions (gguf_search.cuh, gguf_super.cuh, gguf_pack.cuh) compiled for
// the CPU, so tests/cuda_gguf_host_test.ts can check their arithmetic against the host reference on a
// machine without a GPU. Not part of the PTX module; built by the test with
//   nvcc -std=c++17 -O2 -Xcompiler -ffp-contract=off gguf_host_check.cu -o gguf_host_check
//
// stdin: int32 type, flags, n, k, gs, sgs, bs, ts, superBits, ncand, nsgrid; float32 grid[ncand],
// sgrid[nsgrid], w[n·k], and imatrix[k] when flags has GG_IMATRIX. stdout: the packed bytes. The loops
// below do what gguf.cu's kernels do per thread.
#include <stdio.h>
#include <stdlib.h>
#include <vector>
#include "gguf_search.cuh"
#include "gguf_super.cuh"
#include "gguf_pack.cuh"

struct HostBlock {
  const float* w;
  GG_FN float operator()(int j) const { return w[j]; }
};

static void read_all(void* p, size_t bytes) {
  if (bytes && fread(p, 1, bytes, stdin) != bytes) {
    fprintf(stderr, "gguf_host_check: short input\n");
    exit(1);
  }
}

template <int GS>
static void search(int family, int type, int flags, long groups, long k, const float* w, const float* im,
                   const float* grid, int ncand, float* par) {
  for (long g = 0; g < groups; g++) {
    float x[GS], imp[GS];
    for (int i = 0; i < GS; i++) x[i] = w[g * GS + i];
    if (flags & GG_IMATRIX)
      for (int i = 0; i < GS; i++) imp[i] = im[(g * GS) % k + i];
    if (family == 0) gg_legacy_group<GS>(x, imp, type, flags, grid, ncand, par + 3 * g);
    else if (family == 1) gg_kasym_group<GS>(x, imp, gg_bits(type), flags, grid, ncand, par + 3 * g);
    else par[3 * g] = gg_ksym_group<GS>(x, imp, gg_bits(type), flags, grid, ncand);
  }
}

int main() {
  int h[11];
  read_all(h, sizeof h);
  const int type = h[0], flags = h[1], gs = h[4], sgs = h[5], bs = h[6], ts = h[7], superBits = h[8];
  const long n = h[2], k = h[3];
  const int ncand = h[9], nsgrid = h[10];
  std::vector<float> grid(ncand + 1), sgrid(nsgrid + 1), w(n * k), im(k);
  read_all(grid.data(), 4 * ncand);
  read_all(sgrid.data(), 4 * nsgrid);
  read_all(w.data(), 4 * n * k);
  if (flags & GG_IMATRIX) read_all(im.data(), 4 * k);
  const long groups = n * k / gs, blocks = n * k / bs;
  const int family = type <= 4 ? 0 : (type == 6 || type == 9) ? 2 : 1;
  std::vector<float> par(3 * groups), sup(2 * blocks + 2);
  if (gs == 32) search<32>(family, type, flags, groups, k, w.data(), im.data(), grid.data(), ncand, par.data());
  else search<16>(family, type, flags, groups, k, w.data(), im.data(), grid.data(), ncand, par.data());
  for (long s = 0; family != 0 && s < blocks; s++) {
    float* p = par.data() + 3 * sgs * s;
    if (family == 2) gg_super_sym(p, sup.data() + 2 * s, superBits);
    else if (sgs == 8) gg_super_asym<8>(p, sup.data() + 2 * s, superBits, flags, sgrid.data());
    else gg_super_asym<16>(p, sup.data() + 2 * s, superBits, flags, sgrid.data());
  }
  std::vector<unsigned char> out(blocks * ts);
  for (long at = 0; at < blocks * ts; at++) {
    const long bl = at / ts;
    const HostBlock x{w.data() + bl * bs};
    const GgBlock b{type, flags, gs, par.data() + 3 * (bs / gs) * bl, sup.data() + 2 * bl};
    out[at] = (unsigned char)gg_block_byte(x, b, (int)(at % ts));
  }
  fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}
