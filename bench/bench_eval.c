/* bench_eval: accuracy of an estimated fixed -> moving displacement field against the
 * known answer written by make_bench_pair (the cpu_vs_elastix benchmark).
 *
 *   bench_eval FIELD TRUE_FIELD FIXED LABELS_FIXED LABELS_MOVING
 *
 * FIELD: x -> x + d(x) in mm (LPS), as gigareg's deformationField.N.mha or
 * transformix -def all writes it; any supported format (NIfTI vector, MetaImage, NRRD).
 * If its grid is not the fixed grid it is resampled onto it (trilinear; a note says so).
 *
 * Prints "key value" lines on stdout:
 *   epe_mean, epe_median, epe_p95, epe_max   endpoint error |d - d_true| in voxels of
 *                                            the fixed grid, inside the head (fixed > 15%
 *                                            of its maximum); head_voxels counts them
 *   epe_identity_mean                        the same for d = 0 (the size of the problem)
 *   dice_gen_before / dice_gen_after         generalised Dice over all labels > 0
 *                                            (2 sum_l |A_l & B_l| / sum_l (|A_l| + |B_l|))
 *   dice_mean_before / dice_mean_after       mean per-label Dice over labels of LABELS_FIXED
 *   jac_min, jac_nonpos_percent              Jacobian determinant of x -> x + d(x) in the head
 * "after" warps LABELS_MOVING by FIELD with the backend's resample op (nearest, zero outside);
 * "before" compares LABELS_MOVING with LABELS_FIXED as they are. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench_common.h"

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Value at quantile q (0..1) of sorted v[0..n-1] (nearest rank). */
static double quantile(const float *v, int64_t n, double q) {
  if (n <= 0) return NAN;
  int64_t k = (int64_t)ceil(q * (double)n) - 1;
  if (k < 0) k = 0;
  if (k >= n) k = n - 1;
  return v[k];
}

typedef struct dice_result {
  double gen, mean;
  int nlabels;
} dice_result;

static dice_result dice(const gr_image *ref, const gr_image *seg) {
  const int64_t n = gr_image_nvox(ref);
  long maxl = 0;
  for (int64_t i = 0; i < n; ++i) {
    const long a = lrintf(ref->data[i]), b = lrintf(seg->data[i]);
    if (a > maxl) maxl = a;
    if (b > maxl) maxl = b;
  }
  int64_t *cnt = calloc((size_t)(3 * (maxl + 1)), sizeof *cnt); /* |A_l|, |B_l|, |A_l & B_l| */
  if (!cnt) BENCH_TRY(gr_error(GR_ERR_NOMEM, "dice: %ld labels", maxl));
  for (int64_t i = 0; i < n; ++i) {
    const long a = lrintf(ref->data[i]), b = lrintf(seg->data[i]);
    if (a > 0) ++cnt[3 * a];
    if (b > 0) ++cnt[3 * b + 1];
    if (a > 0 && a == b) ++cnt[3 * a + 2];
  }
  dice_result r = {0.0, 0.0, 0};
  double inter = 0.0, sum = 0.0;
  for (long l = 1; l <= maxl; ++l) {
    inter += (double)cnt[3 * l + 2];
    sum += (double)(cnt[3 * l] + cnt[3 * l + 1]);
    if (cnt[3 * l] > 0) {
      r.mean += 2.0 * (double)cnt[3 * l + 2] / (double)(cnt[3 * l] + cnt[3 * l + 1]);
      ++r.nlabels;
    }
  }
  r.gen = sum > 0 ? 2.0 * inter / sum : NAN;
  r.mean = r.nlabels ? r.mean / r.nlabels : NAN;
  free(cnt);
  return r;
}

/* A scalar (or vector) image on `geom`: img itself if already there, else a trilinear resampling. */
static gr_image *on_grid(gr_backend *be, gr_image *img, const gr_geometry *geom, const char *what, gr_interp interp) {
  if (gr_geometry_same(&img->geom, geom)) return img;
  fprintf(stderr, "bench_eval: note: %s is not on the fixed grid (%lldx%lldx%lld); resampling it onto the fixed grid\n",
          what, (long long)img->geom.size[0], (long long)img->geom.size[1], (long long)img->geom.size[2]);
  gr_image *out = NULL;
  BENCH_TRY(gr_image_create(geom, img->ncomp, &out));
  out->src_type = img->src_type;
  bench_resample(be, out, img, NULL, NULL, interp, GR_BOUNDARY_CLAMP);
  gr_image_destroy(img);
  return out;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: bench_eval FIELD TRUE_FIELD FIXED LABELS_FIXED LABELS_MOVING\n");
    return 2;
  }
  gr_backend *be = NULL;
  BENCH_TRY(gr_backend_cpu_create(0, &be));
  gr_image *fixed = bench_read(argv[3]);
  const gr_geometry *g = &fixed->geom;
  gr_image *field = on_grid(be, bench_read(argv[1]), g, argv[1], GR_INTERP_LINEAR);
  gr_image *truth = on_grid(be, bench_read(argv[2]), g, argv[2], GR_INTERP_LINEAR);
  gr_image *lf = on_grid(be, bench_read(argv[4]), g, argv[4], GR_INTERP_NEAREST);
  gr_image *lm = on_grid(be, bench_read(argv[5]), g, argv[5], GR_INTERP_NEAREST);
  if (field->ncomp != 3 || truth->ncomp != 3 || fixed->ncomp != 1 || lf->ncomp != 1 || lm->ncomp != 1) {
    fprintf(stderr, "bench_eval: FIELD and TRUE_FIELD must have 3 components, the others 1\n");
    return 1;
  }
  BENCH_TRY(gr_image_check_finite(field, "estimated field"));
  const int64_t n = gr_image_nvox(fixed);
  gr_grid grid;
  BENCH_TRY(gr_grid_from_geometry(g, &grid));

  /* Head mask and endpoint errors in voxel units (p2i's linear part maps mm to voxels). */
  double mx = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (fixed->data[i] > mx) mx = fixed->data[i];
  const double thr = 0.15 * mx;
  float *err = malloc((size_t)n * sizeof *err);
  if (!err) BENCH_TRY(gr_error(GR_ERR_NOMEM, "cannot allocate the error buffer"));
  int64_t m = 0;
  double esum = 0.0, isum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (fixed->data[i] <= thr) continue;
    double e[3], t[3];
    for (int c = 0; c < 3; ++c) {
      e[c] = (double)field->data[c * n + i] - (double)truth->data[c * n + i];
      t[c] = truth->data[c * n + i];
    }
    double e2 = 0.0, t2 = 0.0;
    for (int r = 0; r < 3; ++r) {
      const double ev = grid.p2i[r * 4] * e[0] + grid.p2i[r * 4 + 1] * e[1] + grid.p2i[r * 4 + 2] * e[2];
      const double tv = grid.p2i[r * 4] * t[0] + grid.p2i[r * 4 + 1] * t[1] + grid.p2i[r * 4 + 2] * t[2];
      e2 += ev * ev;
      t2 += tv * tv;
    }
    err[m++] = (float)sqrt(e2);
    esum += sqrt(e2);
    isum += sqrt(t2);
  }
  if (m == 0) BENCH_TRY(gr_error(GR_ERR_EMPTY, "no voxel of FIXED is above 15%% of its maximum"));
  qsort(err, (size_t)m, sizeof *err, cmp_float);

  /* Jacobian determinant of the estimated map inside the head. */
  gr_image *jac = NULL;
  BENCH_TRY(gr_image_create(g, 1, &jac));
  {
    float *du = bench_upload(be, field), *dj = bench_alloc(be, n);
    BENCH_TRY(be->ops->jacobian_det(be, &grid, du, dj));
    bench_download(be, jac, dj);
    be->ops->free(be, du);
    be->ops->free(be, dj);
  }
  double jmin = INFINITY;
  int64_t jneg = 0;
  for (int64_t i = 0; i < n; ++i)
    if (fixed->data[i] > thr) {
      if (jac->data[i] < jmin) jmin = jac->data[i];
      if (jac->data[i] <= 0.0f) ++jneg;
    }

  /* Labels: before, and after warping the moving labels by the estimated field. */
  gr_image *warped = NULL;
  BENCH_TRY(gr_image_create(g, 1, &warped));
  bench_resample(be, warped, lm, NULL, field, GR_INTERP_NEAREST, GR_BOUNDARY_ZERO);
  const dice_result before = dice(lf, lm), after = dice(lf, warped);

  printf("head_voxels %lld\n", (long long)m);
  printf("epe_identity_mean %.4f\n", isum / (double)m);
  printf("epe_mean %.4f\n", esum / (double)m);
  printf("epe_median %.4f\n", quantile(err, m, 0.5));
  printf("epe_p95 %.4f\n", quantile(err, m, 0.95));
  printf("epe_max %.4f\n", (double)err[m - 1]);
  printf("dice_gen_before %.4f\n", before.gen);
  printf("dice_gen_after %.4f\n", after.gen);
  printf("dice_mean_before %.4f\n", before.mean);
  printf("dice_mean_after %.4f\n", after.mean);
  printf("labels %d\n", before.nlabels);
  printf("jac_min %.4f\n", jmin);
  printf("jac_nonpos_percent %.4f\n", 100.0 * (double)jneg / (double)m);

  free(err);
  gr_image_destroy(fixed); gr_image_destroy(field); gr_image_destroy(truth);
  gr_image_destroy(lf); gr_image_destroy(lm); gr_image_destroy(jac); gr_image_destroy(warped);
  gr_backend_destroy(be);
  return 0;
}
