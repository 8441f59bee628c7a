/* Separable Gaussian smoothing, in place, one axis at a time.
 *
 * Borders: the kernel is renormalised over the taps that fall inside the grid,
 * so a constant stays exactly constant and a displacement field does not decay
 * towards the image border (zero padding would shrink it; mirroring would bias
 * it). Implementation: each line is gathered into a zero-padded per-thread
 * buffer, convolved with the full kernel (padding contributes exact zeros) and
 * scaled by 1 / (sum of in-grid weights) for that output position.
 *
 * Memory: no full-size temporary. x lines are contiguous and handled one at a
 * time; y and z lines are strided, so they are handled as bundles of
 * CPU_SMOOTH_BUNDLE adjacent x positions (one cache line of floats per row):
 * gathering a single z line would touch a whole cache line per voxel and use 4
 * bytes of it.
 *
 * Arithmetic: the kernel g(t) = exp(-t^2 / 2 sigma^2) is symmetric, so each
 * output is computed as
 *   g(0) v[i] + sum_{t=r..1} g(t) (v[i-t] + v[i+t])
 * (half the multiplies), in that fixed order whatever the thread count or
 * schedule, hence deterministic; accumulated in double so the renormalised sum
 * reproduces constants to float rounding.
 *
 * Loop order: taps outermost, outputs innermost, over a per-thread accumulator
 * line (bundle), so the inner loop is a unit-stride multiply-add that
 * vectorises; holding a bundle's accumulators in registers across taps was
 * about 1.7x slower. */
#include <math.h>
#include <string.h>
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_threads.h"

#define CPU_SMOOTH_BUNDLE 16

/* One axis' kernel: 2r+1 weights (w[r] is the centre) and, per output position
 * along the axis, the inverse sum of the weights of its in-grid taps. */
typedef struct smooth_kernel {
  int64_t len; /* samples along the axis */
  int r;       /* radius, capped at len-1: farther taps never land in the grid */
  double *w;
  double *inv_norm;
} smooth_kernel;

static int kernel_radius(double sigma, int64_t len) {
  const double r = ceil(3.0 * sigma);
  return (int)(r < (double)(len - 1) ? r : (double)(len - 1));
}

/* `mem` must hold 2r+1 + len doubles. */
static void kernel_build(double sigma, int64_t len, double *mem, smooth_kernel *k) {
  k->len = len;
  k->r = kernel_radius(sigma, len);
  k->w = mem;
  k->inv_norm = mem + 2 * k->r + 1;
  const int r = k->r;
  const double a = -0.5 / (sigma * sigma);
  for (int t = -r; t <= r; ++t) k->w[t + r] = exp(a * (double)t * (double)t);
  for (int64_t i = 0; i < len; ++i) {
    const int64_t lo = i - r < 0 ? -i : -r;
    const int64_t hi = i + r > len - 1 ? len - 1 - i : r;
    double s = 0.0;
    for (int64_t t = lo; t <= hi; ++t) s += k->w[t + r];
    k->inv_norm[i] = 1.0 / s;
  }
}

/* Per-thread scratch, in doubles, for one axis:
 *   x: padded line (len + 2r) + accumulator (len)
 *   y/z: the same, B lanes wide. */
static size_t scratch_doubles(int axis, const smooth_kernel *k) {
  const size_t padded = (size_t)(k->len + 2 * k->r);
  return axis == 0 ? padded + (size_t)k->len : (padded + (size_t)k->len) * CPU_SMOOTH_BUNDLE;
}

/* Contiguous line: buf is zero-padded by r on both sides (buf[r + i] = line[i]);
 * acc holds len doubles. */
static void smooth_line_x(float *restrict line, const smooth_kernel *k, double *restrict buf,
                          double *restrict acc) {
  const int64_t n = k->len;
  const int r = k->r;
  for (int64_t i = 0; i < n; ++i) buf[r + i] = line[i];
  for (int64_t i = 0; i < n; ++i) acc[i] = k->w[r] * buf[r + i];
  for (int t = 0; t < r; ++t) {
    const double wt = k->w[t];
    const double *restrict lo = buf + t, *restrict hi = buf + 2 * r - t;
    for (int64_t i = 0; i < n; ++i) acc[i] += wt * (lo[i] + hi[i]);
  }
  for (int64_t i = 0; i < n; ++i) line[i] = (float)(acc[i] * k->inv_norm[i]);
}

/* `width` (<= B) adjacent lines starting at base, `stride` floats between
 * consecutive samples along the axis. buf rows are B doubles wide, followed by
 * the len x B accumulator; the padding rows stay zero for the buffer's
 * lifetime. Lanes >= width may hold stale values: lanes are independent and
 * those are never written back. */
static void smooth_bundle(float *restrict base, int64_t stride, int width, const smooth_kernel *k,
                          double *restrict buf) {
  enum { B = CPU_SMOOTH_BUNDLE };
  const int64_t n = k->len;
  const int r = k->r;
  for (int64_t j = 0; j < n; ++j) {
    const float *restrict src = base + j * stride;
    double *restrict row = buf + (size_t)(r + j) * B;
    for (int b = 0; b < width; ++b) row[b] = src[b];
  }
  double *restrict acc = buf + (size_t)(n + 2 * r) * B;
  const int64_t nb = n * B;
  {
    const double wc = k->w[r];
    const double *restrict c = buf + (size_t)r * B;
    for (int64_t q = 0; q < nb; ++q) acc[q] = wc * c[q];
  }
  for (int t = 0; t < r; ++t) {
    const double wt = k->w[t];
    const double *restrict lo = buf + (size_t)t * B, *restrict hi = buf + (size_t)(2 * r - t) * B;
    for (int64_t q = 0; q < nb; ++q) acc[q] += wt * (lo[q] + hi[q]);
  }
  for (int64_t i = 0; i < n; ++i) {
    const double s = k->inv_norm[i];
    float *restrict dst = base + i * stride;
    const double *restrict a = acc + i * B;
    for (int b = 0; b < width; ++b) dst[b] = (float)(a[b] * s);
  }
}

/* Smooth every line of one axis over all ncomp planes. */
static void smooth_axis(gr_backend *be, const gr_grid *g, float *data, int ncomp, int axis,
                        const smooth_kernel *k, double *scratch, size_t per_thread) {
  (void)be;
  const int64_t nx = g->n[0], ny = g->n[1], nz = g->n[2];
  const int64_t nvox = nx * ny * nz;
  const int64_t nbx = (nx + CPU_SMOOTH_BUNDLE - 1) / CPU_SMOOTH_BUNDLE;
  /* Work items: x lines per plane (y,z); bundles per plane (bx,z) for y, (bx,y) for z. */
  const int64_t per_plane = axis == 0 ? ny * nz : nbx * (axis == 1 ? nz : ny);
  const int64_t items = per_plane * ncomp;
#pragma omp parallel num_threads(cpu_nthreads(be)) if (nvox * ncomp >= CPU_PAR_MIN_ELEMS)
  {
    double *buf = scratch + (size_t)cpu_thread_id() * per_thread;
    memset(buf, 0, per_thread * sizeof *buf); /* the zero padding */
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      float *plane = data + (it / per_plane) * nvox;
      const int64_t l = it % per_plane;
      if (axis == 0) {
        smooth_line_x(plane + l * nx, k, buf, buf + (k->len + 2 * k->r));
      } else {
        const int64_t bx = l % nbx, outer = l / nbx; /* outer = z for axis 1, y for axis 2 */
        const int64_t x0 = bx * CPU_SMOOTH_BUNDLE;
        const int width = (int)(nx - x0 < CPU_SMOOTH_BUNDLE ? nx - x0 : CPU_SMOOTH_BUNDLE);
        float *base = axis == 1 ? plane + outer * nx * ny + x0 : plane + outer * nx + x0;
        smooth_bundle(base, axis == 1 ? nx : nx * ny, width, k, buf);
      }
    }
  }
}

static gr_status check_args(const gr_grid *g, const float *data, int ncomp, const double sigma_vox[3]) {
  if (!g || !data || !sigma_vox) return gr_error(GR_ERR_INVALID_ARG, "smooth: NULL argument");
  if (ncomp < 1) return gr_error(GR_ERR_INVALID_ARG, "smooth: %d components", ncomp);
  for (int a = 0; a < 3; ++a) {
    if (g->n[a] < 1) return gr_error(GR_ERR_INVALID_ARG, "smooth: grid size %lld along axis %d", (long long)g->n[a], a);
    if (!(sigma_vox[a] >= 0.0) || !isfinite(sigma_vox[a]))
      return gr_error(GR_ERR_INVALID_ARG, "smooth: sigma %g voxels along axis %d (must be finite and >= 0)",
                      sigma_vox[a], a);
  }
  return GR_OK;
}

gr_status cpu_smooth(gr_backend *be, const gr_grid *g, float *data, int ncomp, const double sigma_vox[3]) {
  gr_status s = check_args(g, data, ncomp, sigma_vox);
  if (s != GR_OK) return s;
  const int nt = cpu_nthreads(be); /* one scratch line (bundle) per thread */
  for (int axis = 0; axis < 3; ++axis) {
    const int64_t len = g->n[axis];
    /* sigma 0 skips the axis; so does a one-sample axis, whose radius is capped
     * at 0 and whose renormalised kernel is therefore the identity. */
    if (sigma_vox[axis] <= 0.0) continue;
    const int r = kernel_radius(sigma_vox[axis], len);
    if (r == 0) continue;
    const size_t kernel_doubles = (size_t)(2 * r + 1) + (size_t)len;
    smooth_kernel k = {.len = len, .r = r};
    const size_t per_thread = scratch_doubles(axis, &k);
    double *mem = be->ops->alloc(be, (kernel_doubles + per_thread * (size_t)nt) * sizeof(double));
    if (!mem) return GR_ERR_NOMEM; /* alloc recorded the details */
    kernel_build(sigma_vox[axis], len, mem, &k);
    smooth_axis(be, g, data, ncomp, axis, &k, mem + kernel_doubles, per_thread);
    be->ops->free(be, mem);
  }
  return GR_OK;
}
