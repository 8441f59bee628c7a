/* bspline_field and bspline_grad on the CPU (backend.h gr_bspline; the
 * arithmetic is kernels/bspline_eval.h, shared with cuda_bspline.cu: the
 * field is bitwise the GPU's). The chain rule sums per B-spline cell, see
 * cpu_bspline_grad. */
#include <stdlib.h>
#include <string.h>
#include "kernels/bspline_eval.h"
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_threads.h"

gr_status cpu_bspline_field(gr_backend *be, const gr_grid *g, const gr_bspline *bs, float *u) {
  const gr_status s = gr_bs_check(g, bs, u, u, "bspline_field", 1);
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

/* Per-cell partial sums: every voxel of B-spline cell s (support start s) adds
 * its 64 weighted terms into the cell's 64 x 3 partials (one visit per voxel,
 * voxels in raster order); control point q then adds the partials of its
 * 64 cells q - o in a fixed order. Cell planes are kept in a ring of 4 (a
 * control point's cells span 4 planes), so memory is 4 planes of cells. The
 * result does not depend on the thread count; it equals the GPU's gather up
 * to the order of the sums (cuda_bspline.cu visits each voxel once per
 * control point, which suits a GPU but not a CPU). */
enum { CELL_TERMS = 64 * 3 };

static void cell_partials(const gr_grid *g, const gr_bspline *bs, const float *grad_u, const int64_t cell[3],
                          double *part) {
  memset(part, 0, sizeof(double) * CELL_TERMS);
  int64_t lo[3], hi[3];
  if (gr_bs_box_range(bs->iA, g->n, cell, 1.0, 2.0, lo, hi) == 0) return;
  const int64_t n = g->n[0] * g->n[1] * g->n[2];
  for (int64_t k = lo[2]; k <= hi[2]; ++k)
    for (int64_t j = lo[1]; j <= hi[1]; ++j)
      for (int64_t i = lo[0]; i <= hi[0]; ++i) {
        double c[3];
        if (!gr_bs_index(bs, (double)i, (double)j, (double)k, c)) continue;
        if ((int64_t)floor(c[0] - 1.0) != cell[0] || (int64_t)floor(c[1] - 1.0) != cell[1] ||
            (int64_t)floor(c[2] - 1.0) != cell[2])
          continue;
        const int64_t v = (k * g->n[1] + j) * g->n[0] + i;
        const double g0 = grad_u[v], g1 = grad_u[n + v], g2 = grad_u[2 * n + v];
        if (g0 == 0.0 && g1 == 0.0 && g2 == 0.0) continue;
        double w[3][4];
        for (int a = 0; a < 3; ++a)
          for (int q = 0; q < 4; ++q) w[a][q] = gr_bs_weight(c[a] - (double)(cell[a] + q));
        double *p = part;
        for (int cz = 0; cz < 4; ++cz)
          for (int b = 0; b < 4; ++b) {
            const double wbc = w[2][cz] * w[1][b];
            for (int a = 0; a < 4; ++a, p += 3) {
              const double ww = wbc * w[0][a];
              p[0] += ww * g0;
              p[1] += ww * g1;
              p[2] += ww * g2;
            }
          }
      }
}

gr_status cpu_bspline_grad(gr_backend *be, const gr_grid *g, const gr_bspline *bs, const float *grad_u, double *dcoef) {
  const gr_status s = gr_bs_check(g, bs, grad_u, dcoef, "bspline_grad", 0);
  if (s != GR_OK) return s;
  const int64_t sx = bs->size[0], sy = bs->size[1], sz = bs->size[2], G = sx * sy * sz;
  const int64_t cx = sx - 3, cy = sy - 3, cz = sz - 3, cplane = cx * cy; /* cells: support starts 0..size-4 */
  double *ring = malloc(sizeof(double) * CELL_TERMS * (size_t)cplane * 4);
  if (!ring) return gr_error(GR_ERR_NOMEM, "bspline_grad: cannot allocate %zu bytes of cell partials",
                             sizeof(double) * CELL_TERMS * (size_t)cplane * 4);
  const int nt = cpu_nthreads(be);
  for (int64_t qz = 0; qz < sz; ++qz) {
    if (qz < cz) { /* cell plane qz, then control plane qz (its cells are planes qz-3 .. qz) */
      double *plane = ring + (size_t)(qz % 4) * CELL_TERMS * (size_t)cplane;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
      for (int64_t c = 0; c < cplane; ++c) {
        const int64_t cell[3] = {c % cx, c / cx, qz};
        cell_partials(g, bs, grad_u, cell, plane + (size_t)c * CELL_TERMS);
      }
    }
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t c = 0; c < sx * sy; ++c) {
      const int64_t qx = c % sx, qy = c / sx;
      double d[3] = {0.0, 0.0, 0.0};
      for (int oz = 0; oz < 4; ++oz)
        for (int oy = 0; oy < 4; ++oy)
          for (int ox = 0; ox < 4; ++ox) {
            const int64_t ex = qx - ox, ey = qy - oy, ez = qz - oz;
            if (ex < 0 || ey < 0 || ez < 0 || ex >= cx || ey >= cy || ez >= cz) continue;
            const double *p = ring + ((size_t)(ez % 4) * (size_t)cplane + (size_t)(ey * cx + ex)) * CELL_TERMS +
                              (size_t)((oz * 4 + oy) * 4 + ox) * 3;
            for (int r = 0; r < 3; ++r) d[r] += p[r];
          }
      for (int r = 0; r < 3; ++r) dcoef[r * G + qz * sx * sy + c] = d[r];
    }
  }
  free(ring);
  return GR_OK;
}
