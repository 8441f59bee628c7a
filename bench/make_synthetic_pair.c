/* make_synthetic_pair N OUTDIR [NZ]: an N x N x NZ (default N^3) pair for the
 * multi-GPU benchmark (bench/multi_gpu.sh), written as uncompressed NIfTI so
 * that ranks can read their slabs at offsets:
 *   OUTDIR/fixed.nii          F(x): smooth texture (sines) plus ellipsoidal shells, 1 mm voxels
 *   OUTDIR/moving_uni.nii     F(x + w(x))                  (same modality: LNCC)
 *   OUTDIR/moving_multi.nii   g(F(x + w(x))), g non-monotone (different modality: MI)
 * w: smooth displacement of up to 4 voxels along every axis, so warped points
 * cross z-slab borders. Generated analytically (no resampling), in parallel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench_common.h"

static double texture(double x, double y, double z, double n) {
  const double k = 6.283185307179586 / n;
  const double cx = x - 0.5 * n, cy = y - 0.5 * n, cz = z - 0.5 * n;
  const double r = sqrt(cx * cx / 0.16 + cy * cy / 0.12 + cz * cz / 0.10) / n; /* ellipsoid radius */
  const double shells = r < 1.0 ? 0.5 + 0.3 * cos(9.0 * r * 6.283185307179586) : 0.0;
  return shells + 0.15 * sin(7 * k * x) * cos(5 * k * y) + 0.15 * sin(6 * k * z + 0.7) + 0.1 * cos(11 * k * (x - y + z));
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: make_synthetic_pair N OUTDIR [NZ]\n");
    return 2;
  }
  const int64_t n = atoll(argv[1]), nz = argc > 3 ? atoll(argv[3]) : n;
  if (n < 8 || nz < 8) {
    fprintf(stderr, "make_synthetic_pair: size %lld x %lld too small\n", (long long)n, (long long)nz);
    return 2;
  }
  gr_geometry g;
  gr_geometry_identity(&g, n, n, nz);
  gr_image *f = NULL, *mu = NULL, *mm = NULL;
  BENCH_TRY(gr_image_create(&g, 1, &f));
  BENCH_TRY(gr_image_create(&g, 1, &mu));
  BENCH_TRY(gr_image_create(&g, 1, &mm));
  const double k = 6.283185307179586 / (double)n;
#pragma omp parallel for schedule(static)
  for (int64_t z = 0; z < nz; ++z)
    for (int64_t y = 0; y < n; ++y)
      for (int64_t x = 0; x < n; ++x) {
        const int64_t i = (z * n + y) * n + x;
        const double w0 = 4.0 * sin(k * x + 0.3) * sin(k * y) * cos(k * z);
        const double w1 = 4.0 * cos(k * x) * sin(k * y + 0.5) * sin(k * z + 0.2);
        const double w2 = 4.0 * sin(k * x + 1.0) * cos(k * y) * sin(k * z);
        const double fv = texture((double)x, (double)y, (double)z, (double)n);
        const double mv = texture(x + w0, y + w1, z + w2, (double)n);
        f->data[i] = (float)fv;
        mu->data[i] = (float)mv;
        mm->data[i] = (float)(1.0 - 2.5 * (mv - 0.4) * (mv - 0.4)); /* non-monotone: T1 vs PD-like */
      }
  char path[4096];
  const char *names[3] = {"fixed.nii", "moving_uni.nii", "moving_multi.nii"};
  gr_image *imgs[3] = {f, mu, mm};
  for (int q = 0; q < 3; ++q) {
    snprintf(path, sizeof path, "%s/%s", argv[2], names[q]);
    BENCH_TRY(gr_image_write(path, imgs[q], GR_PIXEL_F32));
    gr_image_destroy(imgs[q]);
  }
  printf("make_synthetic_pair: %lld x %lld x %lld (%.2f Gvox) in %s\n", (long long)n, (long long)n, (long long)nz,
         (double)(n * n * nz) / 1e9, argv[2]);
  return 0;
}
