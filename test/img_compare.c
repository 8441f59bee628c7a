/* img_compare A B MAX_MEAN_REL [MASK_REF]: mean |A-B| over voxels (optionally only
 * where MASK_REF > 15% of its max) divided by the intensity range of A.
 * Exit 0 when it is <= MAX_MEAN_REL, 1 otherwise, 2 on errors. With MAX_MEAN_REL
 * = 0 the images must be bitwise equal. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "gigareg/gigareg.h"

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: img_compare A B MAX_MEAN_REL [MASK_REF]\n");
    return 2;
  }
  gr_image *a = NULL, *b = NULL, *m = NULL;
  if (gr_image_read(argv[1], &a) != GR_OK || gr_image_read(argv[2], &b) != GR_OK ||
      (argc > 4 && gr_image_read(argv[4], &m) != GR_OK)) {
    fprintf(stderr, "img_compare: %s\n", gr_last_error());
    return 2;
  }
  if (!gr_geometry_same(&a->geom, &b->geom) || a->ncomp != b->ncomp) {
    fprintf(stderr, "img_compare: grids differ\n");
    return 1;
  }
  const int64_t n = gr_image_nvox(a) * a->ncomp;
  double lo = a->data[0], hi = a->data[0], mmax = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    lo = fmin(lo, a->data[i]);
    hi = fmax(hi, a->data[i]);
  }
  if (m)
    for (int64_t i = 0; i < gr_image_nvox(m); ++i) mmax = fmax(mmax, m->data[i]);
  double s = 0.0, mx = 0.0;
  int64_t cnt = 0, differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (m && m->data[i % gr_image_nvox(m)] <= 0.15 * mmax) continue;
    const double d = fabs((double)a->data[i] - (double)b->data[i]);
    differ += a->data[i] != b->data[i];
    s += d;
    mx = fmax(mx, d);
    ++cnt;
  }
  const double rel = cnt ? s / cnt / (hi > lo ? hi - lo : 1.0) : 0.0;
  const double tol = atof(argv[3]);
  printf("mean |A-B| / range = %.6f (max |A-B| %.4g, %lld of %lld voxels differ)\n", rel, mx, (long long)differ,
         (long long)cnt);
  gr_image_destroy(a);
  gr_image_destroy(b);
  gr_image_destroy(m);
  if (tol == 0.0) return differ == 0 ? 0 : 1;
  return rel <= tol ? 0 : 1;
}
