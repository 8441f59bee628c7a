/* bspline_field and bspline_grad on the CPU (backend.h gr_bspline; the
 * arithmetic is kernels/bspline_eval.h, shared with cuda_bspline.cu). The
 * gradient gathers per control point in GR_BSPLINE_LANES strided partial sums
 * and a pairwise tree, exactly the CUDA block's order, so the two backends
 * agree bit for bit and neither depends on the thread count. */
#include <string.h>
#include "kernels/bspline_eval.h"
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_threads.h"

static gr_status check(const gr_grid *g, const gr_bspline *bs, const void *a, const void *b, const char *what) {
  if (!g || !bs || !bs->coef || !a || !b) return gr_error(GR_ERR_INVALID_ARG, "%s: NULL argument", what);
  for (int ax = 0; ax < 3; ++ax) {
    if (g->n[ax] < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: grid size %lld along axis %d", what, (long long)g->n[ax], ax);
    if (bs->size[ax] < 4)
      return gr_error(GR_ERR_INVALID_ARG, "%s: %lld control points along axis %d (need >= 4)", what,
                      (long long)bs->size[ax], ax);
  }
  return GR_OK;
}

gr_status cpu_bspline_field(gr_backend *be, const gr_grid *g, const gr_bspline *bs, float *u) {
  const gr_status s = check(g, bs, u, u, "bspline_field");
  if (s != GR_OK) return s;
  const int64_t nx = g->n[0], ny = g->n[1], nz = g->n[2], n = nx * ny * nz;
#pragma omp parallel for collapse(2) schedule(static) num_threads(cpu_nthreads(be)) if (n >= CPU_PAR_MIN_ELEMS)
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        float o[3];
        gr_bs_field_at(bs, i, j, k, o);
        const int64_t v = (k * ny + j) * nx + i;
        for (int r = 0; r < 3; ++r) u[r * n + v] = o[r];
      }
  return GR_OK;
}

gr_status cpu_bspline_grad(gr_backend *be, const gr_grid *g, const gr_bspline *bs, const float *grad_u, double *dcoef) {
  const gr_status s = check(g, bs, grad_u, dcoef, "bspline_grad");
  if (s != GR_OK) return s;
  const int64_t n = g->n[0] * g->n[1] * g->n[2], G = bs->size[0] * bs->size[1] * bs->size[2];
#pragma omp parallel for schedule(dynamic, 4) num_threads(cpu_nthreads(be)) if (n >= CPU_PAR_MIN_ELEMS)
  for (int64_t cp = 0; cp < G; ++cp) {
    const int64_t q[3] = {cp % bs->size[0], (cp / bs->size[0]) % bs->size[1], cp / (bs->size[0] * bs->size[1])};
    int64_t lo[3], hi[3];
    const int64_t nbox = gr_bs_box(bs->iA, g->n, q, lo, hi);
    const int64_t bx = hi[0] - lo[0] + 1, bxy = bx * (hi[1] - lo[1] + 1);
    double acc[3][GR_BSPLINE_LANES];
    memset(acc, 0, sizeof acc);
    for (int lane = 0; lane < GR_BSPLINE_LANES; ++lane)
      for (int64_t t = lane; t < nbox; t += GR_BSPLINE_LANES) {
        const int64_t i = lo[0] + t % bx, j = lo[1] + (t % bxy) / bx, k = lo[2] + t / bxy;
        const double ww = gr_bs_term(bs, q, i, j, k);
        if (ww == 0.0) continue;
        const int64_t v = (k * g->n[1] + j) * g->n[0] + i;
        for (int r = 0; r < 3; ++r) acc[r][lane] = GR_BS_ADD(acc[r][lane], GR_BS_MUL(ww, (double)grad_u[r * n + v]));
      }
    for (int h = GR_BSPLINE_LANES / 2; h > 0; h >>= 1)
      for (int lane = 0; lane < h; ++lane)
        for (int r = 0; r < 3; ++r) acc[r][lane] = GR_BS_ADD(acc[r][lane], acc[r][lane + h]);
    for (int r = 0; r < 3; ++r) dcoef[r * G + cp] = acc[r][0];
  }
  return GR_OK;
}
