/* Test helper for io_nibabel_check.py (not a CTest test by itself).
 *   io_dump IMAGE                 geometry (LPS), a few voxels and the sum as JSON
 *   io_dump --write-vector OUT    writes a synthetic 3-component field, then
 *                                 dumps it; value of component c at (i,j,k) is
 *                                 c * 1000 + i + 10 j + 100 k - 0.25 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/gigareg.h"

static void print_array(const char *key, const double *v, int n, int last) {
  printf("  \"%s\": [", key);
  for (int i = 0; i < n; ++i) printf("%s%.17g", i ? ", " : "", v[i]);
  printf("]%s\n", last ? "" : ",");
}

static int64_t clamp_index(double f, int64_t n) {
  int64_t i = (int64_t)floor(f * (double)(n - 1));
  return i < 0 ? 0 : i >= n ? n - 1 : i;
}

static void dump(const gr_image *img) {
  const gr_geometry *g = &img->geom;
  const int64_t nvox = gr_image_nvox(img);
  const double size[3] = {(double)g->size[0], (double)g->size[1], (double)g->size[2]};
  printf("{\n");
  print_array("size", size, 3, 0);
  print_array("spacing", g->spacing, 3, 0);
  print_array("origin", g->origin, 3, 0);
  print_array("direction", g->direction, 9, 0);
  printf("  \"ncomp\": %d,\n  \"type\": \"%s\",\n", img->ncomp, gr_pixel_type_name(img->src_type));
  double sum = 0.0;
  int64_t argmax = 0;
  for (int64_t i = 0; i < nvox * img->ncomp; ++i) sum += img->data[i];
  for (int64_t i = 1; i < nvox; ++i)
    if (img->data[i] > img->data[argmax]) argmax = i;
  printf("  \"sum\": %.17g,\n  \"samples\": [", sum);
  static const double fr[][3] = {{0, 0, 0},         {1, 1, 1},         {0.5, 0.5, 0.5},   {0.25, 0.5, 0.73},
                                 {0.73, 0.25, 0.5}, {0.5, 0.73, 0.25}, {0.33, 0.66, 0.5}, {0.6, 0.4, 0.45},
                                 {1, 0, 0.5},       {0.1, 0.9, 0.3}};
  int first = 1;
  for (size_t s = 0; s < sizeof fr / sizeof fr[0] + 1; ++s) {
    int64_t idx[3];
    if (s < sizeof fr / sizeof fr[0]) {
      for (int a = 0; a < 3; ++a) idx[a] = clamp_index(fr[s][a], g->size[a]);
    } else {
      idx[0] = argmax % g->size[0];
      idx[1] = (argmax / g->size[0]) % g->size[1];
      idx[2] = argmax / (g->size[0] * g->size[1]);
    }
    const int64_t lin = idx[0] + g->size[0] * (idx[1] + g->size[1] * idx[2]);
    for (int c = 0; c < img->ncomp; ++c) {
      printf("%s\n    {\"index\": [%lld, %lld, %lld], \"c\": %d, \"value\": %.9g}", first ? "" : ",", (long long)idx[0],
             (long long)idx[1], (long long)idx[2], c, (double)img->data[c * nvox + lin]);
      first = 0;
    }
  }
  printf("\n  ]\n}\n");
}

static int write_vector(const char *path) {
  gr_geometry g;
  gr_geometry_identity(&g, 11, 9, 7);
  const double a = 0.4, b = 0.3;
  /* rotation about z then x, with anisotropic spacing and an offset origin */
  const double rz[9] = {cos(a), -sin(a), 0, sin(a), cos(a), 0, 0, 0, 1};
  const double rx[9] = {1, 0, 0, 0, cos(b), -sin(b), 0, sin(b), cos(b)};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += rx[i * 3 + k] * rz[k * 3 + j];
      g.direction[i * 3 + j] = s;
    }
  g.spacing[0] = 1.5;
  g.spacing[1] = 0.75;
  g.spacing[2] = 2.25;
  g.origin[0] = -20.5;
  g.origin[1] = 14.0;
  g.origin[2] = 3.75;
  gr_image *img = NULL;
  gr_status s = gr_image_create(&g, 3, &img);
  if (s != GR_OK) {
    fprintf(stderr, "%s\n", gr_last_error());
    return 1;
  }
  const int64_t nvox = gr_image_nvox(img);
  for (int c = 0; c < 3; ++c)
    for (int64_t k = 0; k < g.size[2]; ++k)
      for (int64_t j = 0; j < g.size[1]; ++j)
        for (int64_t i = 0; i < g.size[0]; ++i)
          img->data[c * nvox + i + g.size[0] * (j + g.size[1] * k)] = (float)(c * 1000 + i + 10 * j + 100 * k) - 0.25f;
  img->src_type = GR_PIXEL_F32;
  s = gr_image_write(path, img, GR_PIXEL_F32);
  if (s != GR_OK) {
    fprintf(stderr, "io_dump: %s: %s\n", gr_strerror(s), gr_last_error());
    gr_image_destroy(img);
    return 1;
  }
  dump(img);
  gr_image_destroy(img);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--write-vector")) return write_vector(argv[2]);
  if (argc != 2) {
    fprintf(stderr, "usage: io_dump IMAGE | io_dump --write-vector OUT.nii[.gz]\n");
    return 2;
  }
  gr_image *img = NULL;
  const gr_status s = gr_image_read(argv[1], &img);
  if (s != GR_OK) {
    fprintf(stderr, "io_dump: %s: %s\n", gr_strerror(s), gr_last_error());
    return 1;
  }
  dump(img);
  gr_image_destroy(img);
  return 0;
}
