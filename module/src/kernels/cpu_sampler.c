/* cpu_resample: the composite implicit grid sampler (reference semantics).
 *
 * For every voxel x (integer index (i,j,k)) of out_grid:
 *   x_phys = out.i2p * (i,j,k,1)
 *   y      = A (x_phys + disp(x)) + t        (T = [A|t], NULL = identity; disp NULL = 0;
 *                                            disp = 3 planes on out_grid, mm)
 *   c      = in.p2i * y                     (continuous index in the input)
 *   out_q(x) = interp(in_q, c)  for each of the ncomp planes q.
 * Implemented with the composite 3x4 matrix M = in.p2i * T * out.i2p (double)
 * and P = (linear p2i) * A for the displacement:
 *   c = M * (i,j,k,1) + P * disp(x),  with the row part M*(0,j,k,1) hoisted.
 * Interpolation and boundary rules (trilinear/nearest, ZERO/CLAMP, the 1e-6
 * border snap) are those of cpu_interp.h. Arithmetic is double; the result is
 * rounded to float once.
 *
 * Parallel over z-slices; every voxel is an independent pure function of the
 * inputs, so the output is identical for any thread count. No scratch memory. */
#include <math.h>
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_interp.h"
#include "kernels/cpu_threads.h"

/* M = in.p2i * T * out.i2p as a 3x4 row-major affine. */
static void composite_map(const gr_grid *out_grid, const gr_grid *in_grid, const gr_affine *T, double M[12]) {
  gr_affine i2p, p2i, tmp, res;
  for (int k = 0; k < 12; ++k) {
    i2p.m[k] = out_grid->i2p[k];
    p2i.m[k] = in_grid->p2i[k];
  }
  if (T) {
    gr_affine_compose(T, &i2p, &tmp);
    gr_affine_compose(&p2i, &tmp, &res);
  } else {
    gr_affine_compose(&p2i, &i2p, &res);
  }
  for (int k = 0; k < 12; ++k) M[k] = res.m[k];
}

static gr_status check_args(const gr_grid *out_grid, const float *out, const gr_grid *in_grid, const float *in,
                            int ncomp, gr_interp interp, gr_boundary boundary) {
  if (!out_grid || !in_grid || !out || !in)
    return gr_error(GR_ERR_INVALID_ARG, "cpu resample: NULL grid or image pointer");
  if (ncomp < 1) return gr_error(GR_ERR_INVALID_ARG, "cpu resample: ncomp %d (must be >= 1)", ncomp);
  for (int d = 0; d < 3; ++d)
    if (out_grid->n[d] <= 0 || in_grid->n[d] <= 0)
      return gr_error(GR_ERR_INVALID_ARG, "cpu resample: empty grid along axis %d (out %lld, in %lld)", d,
                      (long long)out_grid->n[d], (long long)in_grid->n[d]);
  if (interp != GR_INTERP_LINEAR && interp != GR_INTERP_NEAREST)
    return gr_error(GR_ERR_INVALID_ARG, "cpu resample: unknown interpolation %d", (int)interp);
  if (boundary != GR_BOUNDARY_ZERO && boundary != GR_BOUNDARY_CLAMP)
    return gr_error(GR_ERR_INVALID_ARG, "cpu resample: unknown boundary %d", (int)boundary);
  return GR_OK;
}

/* One output voxel, all components. `c` is the continuous input index. */
static inline void sample_voxel(const float *restrict in, int64_t in_nvox, const int64_t n[3], int ncomp,
                                const double c[3], gr_interp interp, gr_boundary boundary, float *restrict out,
                                int64_t out_nvox, int64_t v) {
  if (interp == GR_INTERP_NEAREST) {
    const int64_t o = cpu_nearest_offset(n, c, boundary == GR_BOUNDARY_CLAMP);
    for (int q = 0; q < ncomp; ++q) out[q * out_nvox + v] = o >= 0 ? in[q * in_nvox + o] : 0.0f;
    return;
  }
  double cs[3];
  for (int d = 0; d < 3; ++d) cs[d] = cpu_snap_index(c[d], n[d]);
  if (cpu_inside3(n, cs)) { /* the common case; identical results for ZERO and CLAMP */
    int64_t st[3];
    double t[3];
    cpu_inside_strides(n, st);
    const int64_t o = cpu_inside_cell(n, cs, t);
    for (int q = 0; q < ncomp; ++q) out[q * out_nvox + v] = (float)cpu_inside_value(in + q * in_nvox, o, st, t);
    return;
  }
  cpu_axis a[3];
  if (boundary == GR_BOUNDARY_CLAMP) {
    for (int d = 0; d < 3; ++d) cpu_axis_clamp(c[d], n[d], &a[d]);
  } else {
    for (int d = 0; d < 3; ++d) {
      if (!cpu_axis_zero(cs[d], n[d], &a[d])) {
        for (int q = 0; q < ncomp; ++q) out[q * out_nvox + v] = 0.0f;
        return;
      }
    }
  }
  int64_t o[8];
  cpu_tri_offsets(a, n[0], n[0] * n[1], o);
  for (int q = 0; q < ncomp; ++q) out[q * out_nvox + v] = (float)cpu_tri_value_at(in + q * in_nvox, o, a);
}

gr_status cpu_resample(gr_backend *be, const gr_grid *out_grid, float *out, const gr_grid *in_grid, const float *in,
                       int ncomp, const gr_affine *T, const float *disp, gr_interp interp, gr_boundary boundary) {
  const gr_status st = check_args(out_grid, out, in_grid, in, ncomp, interp, boundary);
  if (st != GR_OK) return st;
  double M[12];
  composite_map(out_grid, in_grid, T, M);
  double P[12];
  cpu_disp_matrix(in_grid->p2i, T, P);
  const int64_t nx = out_grid->n[0], ny = out_grid->n[1], nz = out_grid->n[2];
  const int64_t out_nvox = nx * ny * nz;
  const int64_t in_nvox = in_grid->n[0] * in_grid->n[1] * in_grid->n[2];
  const int64_t *n = in_grid->n;
  const float *restrict dx = disp, *restrict dy = disp ? disp + out_nvox : NULL, *restrict dz = disp ? disp + 2 * out_nvox : NULL;
  const int nt = cpu_nthreads(be);
  (void)nt; /* only read by the OpenMP pragma */

#pragma omp parallel for schedule(static) num_threads(nt) if (out_nvox >= CPU_PAR_MIN_ELEMS)
  for (int64_t k = 0; k < nz; ++k) {
    for (int64_t j = 0; j < ny; ++j) {
      double row[3];
      for (int r = 0; r < 3; ++r) row[r] = M[r * 4 + 1] * (double)j + M[r * 4 + 2] * (double)k + M[r * 4 + 3];
      const int64_t v0 = (k * ny + j) * nx;
      for (int64_t i = 0; i < nx; ++i) {
        const int64_t v = v0 + i;
        double c[3];
        for (int r = 0; r < 3; ++r) c[r] = row[r] + M[r * 4] * (double)i;
        if (disp) {
          const double ux = dx[v], uy = dy[v], uz = dz[v];
          for (int r = 0; r < 3; ++r) c[r] += P[r * 4] * ux + P[r * 4 + 1] * uy + P[r * 4 + 2] * uz;
        }
        sample_voxel(in, in_nvox, n, ncomp, c, interp, boundary, out, out_nvox, v);
      }
    }
  }
  return GR_OK;
}
