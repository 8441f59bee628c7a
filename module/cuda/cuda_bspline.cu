/* bspline_field and bspline_grad on the GPU (backend.h gr_bspline; the
 * arithmetic is module/src/kernels/bspline_eval.h, shared with cpu_bspline.c:
 * the field is bitwise the CPU's, the chain rule equal to rounding). Field: one thread per voxel, 64
 * coefficient reads served by L1/L2 (the coefficient grid is small). Chain
 * rule: one block of GR_BSPLINE_LANES threads per control point gathers over
 * the voxels of its support box (lane t takes voxels t, t + 256, ... of the
 * box) and reduces the lanes in a fixed pairwise tree: deterministic, no
 * atomics, no per-voxel scratch (the CPU sums per B-spline cell instead, which
 * visits each voxel once: better for caches, worse for a GPU's parallelism). Each voxel is visited by the 64 control points
 * whose support holds it, recomputing its control index each time (cheaper
 * than storing 12 weights per voxel). */
#include "cuda_ops.cuh"
#include "kernels/bspline_eval.h"

namespace grcu {

__global__ void __launch_bounds__(kBlock) bspline_field_kernel(const gr_bspline bs, long long nx, long long ny,
                                                               long long nz, float *__restrict__ u) {
  const long long x = (long long)blockIdx.x * kBX + threadIdx.x, y = (long long)blockIdx.y * kBY + threadIdx.y;
  if (x >= nx || y >= ny) return;
  const long long n = nx * ny * nz;
  for (long long z = blockIdx.z; z < nz; z += gridDim.z) {
    float o[3];
    gr_bs_field_at(&bs, x, y, z, o);
    const long long v = (z * ny + y) * nx + x;
    u[v] = o[0];
    u[n + v] = o[1];
    u[2 * n + v] = o[2];
  }
}

static_assert(GR_BSPLINE_LANES == kBlock, "one lane per thread of a block");

__global__ void __launch_bounds__(kBlock) bspline_grad_kernel(const gr_bspline bs, long long nx, long long ny,
                                                              long long nz, const float *__restrict__ g,
                                                              double *__restrict__ dcoef) {
  __shared__ double red[3][GR_BSPLINE_LANES];
  const long long G = bs.size[0] * bs.size[1] * bs.size[2], n = nx * ny * nz;
  const int lane = threadIdx.x;
  const long long grid_n[3] = {nx, ny, nz};
  for (long long cp = blockIdx.x; cp < G; cp += gridDim.x) {
    const int64_t q[3] = {cp % bs.size[0], (cp / bs.size[0]) % bs.size[1], cp / (bs.size[0] * bs.size[1])};
    int64_t lo[3], hi[3];
    const int64_t nbox = gr_bs_box(bs.iA, (const int64_t *)grid_n, q, lo, hi);
    const long long bx = hi[0] - lo[0] + 1, bxy = bx * (hi[1] - lo[1] + 1);
    double a0 = 0.0, a1 = 0.0, a2 = 0.0;
    for (long long t = lane; t < nbox; t += GR_BSPLINE_LANES) {
      const long long i = lo[0] + t % bx, j = lo[1] + (t % bxy) / bx, k = lo[2] + t / bxy;
      const double ww = gr_bs_term(&bs, q, i, j, k);
      if (ww == 0.0) continue;
      const long long v = (k * ny + j) * nx + i;
      a0 = dadd(a0, dmul(ww, (double)__ldg(g + v)));
      a1 = dadd(a1, dmul(ww, (double)__ldg(g + n + v)));
      a2 = dadd(a2, dmul(ww, (double)__ldg(g + 2 * n + v)));
    }
    red[0][lane] = a0;
    red[1][lane] = a1;
    red[2][lane] = a2;
    __syncthreads();
    for (int h = GR_BSPLINE_LANES / 2; h > 0; h >>= 1) {
      if (lane < h)
        for (int r = 0; r < 3; ++r) red[r][lane] = dadd(red[r][lane], red[r][lane + h]);
      __syncthreads();
    }
    if (lane == 0)
      for (int r = 0; r < 3; ++r) dcoef[r * G + cp] = red[r][0];
    __syncthreads();
  }
}

gr_status bspline_field(gr_backend *be, const gr_grid *g, const gr_bspline *bs, float *u) {
  gr_status st = gr_bs_check(g, bs, u, u, "bspline_field", 1);
  if (st == GR_OK) st = enter(be);
  if (st != GR_OK) return st;
  const long long n[3] = {g->n[0], g->n[1], g->n[2]};
  bspline_field_kernel<<<voxel_grid(n), dim3(kBX, kBY), 0, impl_of(be)->stream>>>(*bs, n[0], n[1], n[2], u);
  GRCU_LAUNCHED("bspline_field kernel");
  return GR_OK;
}

gr_status bspline_grad(gr_backend *be, const gr_grid *g, const gr_bspline *bs, const float *grad_u, double *dcoef) {
  gr_status st = gr_bs_check(g, bs, grad_u, dcoef, "bspline_grad", 0);
  if (st == GR_OK) st = enter(be);
  if (st != GR_OK) return st;
  const long long G = bs->size[0] * bs->size[1] * bs->size[2];
  const unsigned blocks = (unsigned)(G < 65536 * 4 ? G : 65536 * 4);
  bspline_grad_kernel<<<blocks, kBlock, 0, impl_of(be)->stream>>>(*bs, g->n[0], g->n[1], g->n[2], grad_u, dcoef);
  GRCU_LAUNCHED("bspline_grad kernel");
  return GR_OK;
}

}  // namespace grcu
