/* elx_tool: small helpers of the elastix-component tests and benchmark (on the core's I/O).
 *
 *   elx_tool downsample IN OUT F          box-average F x F x F blocks (voxel centres kept consistent)
 *   elx_tool affine-tp FIXED OUT.txt      a known AffineTransform (6 deg about z, 4 deg about x,
 *                                         scale 1.04, shift (4, -3, 2) mm) about FIXED's centre
 *   elx_tool bspline-tp FIXED OUT.txt AMP GS
 *                                         a known smooth BSplineTransform (|coef| <= AMP mm, grid
 *                                         spacing GS mm) on FIXED's grid
 *   elx_tool epe DEF_A DEF_B REF TOL [COVER]
 *                                         mean / max endpoint error (mm) of two deformation fields
 *                                         (transformix -def all) over the head (REF > 15% of its max)
 *                                         and, with COVER (a moving image resampled onto REF's grid),
 *                                         only where COVER > 5% of its max (inside the moving image's
 *                                         field of view); exit 1 when the mean exceeds TOL
 *   elx_tool dice LAB_A LAB_B MINLABEL [MIN]
 *                                         mean Dice over the labels >= MINLABEL present in A; with
 *                                         MIN: exit 1 when the mean is below MIN
 *   elx_tool compare A B REF TOL [MINEQ]  two images on REF's grid over the head (REF > 15% of its
 *                                         max): mean / max |A - B| relative to B's range there and
 *                                         the fraction of voxels with |A - B| <= 1e-4 of it; exit 1
 *                                         when the mean exceeds TOL or the fraction is below MINEQ
 *   elx_tool resize IN OUT NX NY NZ [REF [SHIFT_MM]]
 *                                         IN sampled trilinearly (CPU backend) on an NX x NY x NZ
 *                                         grid spanning REF's field of view (default IN's), at
 *                                         the points x + (SHIFT_MM, -SHIFT_MM/2, SHIFT_MM/3)
 *                                         (benchmark pairs; OUT as float)
 *   elx_tool mask IN OUT FRAC             binary mask (unsigned char): IN > FRAC * max(IN)
 *
 * TransformParameters files are written as elastix 5.0.1 writes them (the keys
 * transformix needs: docs/elastix-compatibility.md), with float results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/gigareg.h"

#define PI_ 3.14159265358979323846

static int fail(const char *what) {
  fprintf(stderr, "elx_tool: %s: %s\n", what, gr_last_error());
  return 2;
}

static void write_grid_keys(FILE *f, const gr_geometry *g) {
  fprintf(f, "(FixedImageDimension 3)\n(MovingImageDimension 3)\n");
  fprintf(f, "(FixedInternalImagePixelType \"float\")\n(MovingInternalImagePixelType \"float\")\n");
  fprintf(f, "(Size %lld %lld %lld)\n(Index 0 0 0)\n", (long long)g->size[0], (long long)g->size[1],
          (long long)g->size[2]);
  fprintf(f, "(Spacing %.10g %.10g %.10g)\n", g->spacing[0], g->spacing[1], g->spacing[2]);
  fprintf(f, "(Origin %.10g %.10g %.10g)\n", g->origin[0], g->origin[1], g->origin[2]);
  /* elastix writes Direction column by column. */
  fprintf(f, "(Direction");
  for (int c = 0; c < 3; ++c)
    for (int r = 0; r < 3; ++r) fprintf(f, " %.10g", g->direction[r * 3 + c]);
  fprintf(f, ")\n(UseDirectionCosines \"true\")\n");
  fprintf(f, "(ResampleInterpolator \"FinalBSplineInterpolator\")\n(FinalBSplineInterpolationOrder 3)\n");
  fprintf(f, "(Resampler \"DefaultResampler\")\n(DefaultPixelValue 0)\n(ResultImageFormat \"nii.gz\")\n");
  fprintf(f, "(ResultImagePixelType \"float\")\n(CompressResultImage \"false\")\n");
}

static int cmd_downsample(const char *in, const char *out, int F) {
  gr_image *a = NULL, *b = NULL;
  if (gr_image_read(in, &a) != GR_OK) return fail(in);
  gr_geometry g = a->geom;
  for (int d = 0; d < 3; ++d) {
    g.size[d] = a->geom.size[d] / F;
    g.spacing[d] = a->geom.spacing[d] * F;
  }
  /* centre of block (0,0,0) = index (F-1)/2 of the input */
  const double c[3] = {(F - 1) / 2.0, (F - 1) / 2.0, (F - 1) / 2.0};
  gr_geometry_index_to_phys(&a->geom, c, g.origin);
  if (gr_image_create(&g, 1, &b) != GR_OK) return fail("create");
  const int64_t nx = a->geom.size[0], ny = a->geom.size[1];
  for (int64_t k = 0; k < g.size[2]; ++k)
    for (int64_t j = 0; j < g.size[1]; ++j)
      for (int64_t i = 0; i < g.size[0]; ++i) {
        double s = 0;
        for (int z = 0; z < F; ++z)
          for (int y = 0; y < F; ++y)
            for (int x = 0; x < F; ++x) s += a->data[((k * F + z) * ny + (j * F + y)) * nx + (i * F + x)];
        b->data[(k * g.size[1] + j) * g.size[0] + i] = (float)(s / (F * F * F));
      }
  if (gr_image_write(out, b, GR_PIXEL_F32) != GR_OK) return fail(out);
  gr_image_destroy(a);
  gr_image_destroy(b);
  return 0;
}

static int cmd_affine_tp(const char *fixed, const char *out) {
  gr_geometry g;
  int nc;
  gr_pixel_type t;
  if (gr_image_read_header(fixed, &g, &nc, &t) != GR_OK) return fail(fixed);
  double c[3];
  gr_geometry_center(&g, c);
  const double az = 6.0 * PI_ / 180, ax = 4.0 * PI_ / 180, s = 1.04;
  const double Rz[9] = {cos(az), -sin(az), 0, sin(az), cos(az), 0, 0, 0, 1};
  const double Rx[9] = {1, 0, 0, 0, cos(ax), -sin(ax), 0, sin(ax), cos(ax)};
  double A[9];
  for (int r = 0; r < 3; ++r)
    for (int q = 0; q < 3; ++q) {
      double v = 0;
      for (int k = 0; k < 3; ++k) v += Rz[r * 3 + k] * Rx[k * 3 + q];
      A[r * 3 + q] = s * v;
    }
  FILE *f = fopen(out, "w");
  if (!f) return 2;
  fprintf(f, "(Transform \"AffineTransform\")\n(NumberOfParameters 12)\n(TransformParameters");
  for (int i = 0; i < 9; ++i) fprintf(f, " %.10f", A[i]);
  fprintf(f, " 4.0 -3.0 2.0)\n(InitialTransformParametersFileName \"NoInitialTransform\")\n");
  fprintf(f, "(HowToCombineTransforms \"Compose\")\n");
  fprintf(f, "(CenterOfRotationPoint %.10g %.10g %.10g)\n", c[0], c[1], c[2]);
  write_grid_keys(f, &g);
  fclose(f);
  return 0;
}

static int cmd_bspline_tp(const char *fixed, const char *out, double amp, double gs) {
  gr_geometry g;
  int nc;
  gr_pixel_type t;
  if (gr_image_read_header(fixed, &g, &nc, &t) != GR_OK) return fail(fixed);
  int64_t n[3];
  double o[3], sp[3] = {gs, gs, gs};
  /* Grid as elastix lays it out: one node beyond the image on each side plus the cubic support. */
  double shift[3];
  for (int d = 0; d < 3; ++d) {
    const double ext = (g.size[d] - 1) * g.spacing[d];
    n[d] = (int64_t)ceil(ext / gs) + 3;
    shift[d] = -gs;
  }
  for (int r = 0; r < 3; ++r) {
    o[r] = g.origin[r];
    for (int c = 0; c < 3; ++c) o[r] += g.direction[r * 3 + c] * shift[c];
  }
  FILE *f = fopen(out, "w");
  if (!f) return 2;
  const int64_t P = n[0] * n[1] * n[2];
  fprintf(f, "(Transform \"BSplineTransform\")\n(NumberOfParameters %lld)\n(TransformParameters",
          (long long)(3 * P));
  for (int a = 0; a < 3; ++a)
    for (int64_t k = 0; k < n[2]; ++k)
      for (int64_t j = 0; j < n[1]; ++j)
        for (int64_t i = 0; i < n[0]; ++i) {
          const double ph = 1.3 * a + 0.7;
          const double v = amp * sin(2 * PI_ * (0.11 * i + 0.07 * j + 0.05 * k) + ph) *
                           cos(2 * PI_ * (0.06 * i - 0.09 * j + 0.08 * k) + 0.5 * a);
          fprintf(f, " %.6f", v);
        }
  fprintf(f, ")\n(InitialTransformParametersFileName \"NoInitialTransform\")\n");
  fprintf(f, "(HowToCombineTransforms \"Compose\")\n");
  fprintf(f, "(GridSize %lld %lld %lld)\n(GridIndex 0 0 0)\n", (long long)n[0], (long long)n[1], (long long)n[2]);
  fprintf(f, "(GridSpacing %.10g %.10g %.10g)\n", sp[0], sp[1], sp[2]);
  fprintf(f, "(GridOrigin %.10g %.10g %.10g)\n(GridDirection", o[0], o[1], o[2]);
  for (int c = 0; c < 3; ++c)
    for (int r = 0; r < 3; ++r) fprintf(f, " %.10g", g.direction[r * 3 + c]);
  fprintf(f, ")\n(BSplineTransformSplineOrder 3)\n(UseCyclicTransform \"false\")\n");
  write_grid_keys(f, &g);
  fclose(f);
  return 0;
}

static int cmd_epe(const char *pa, const char *pb, const char *pref, double tol, const char *pcover) {
  gr_image *a = NULL, *b = NULL, *r = NULL, *cv = NULL;
  if (gr_image_read(pa, &a) != GR_OK) return fail(pa);
  if (gr_image_read(pb, &b) != GR_OK) return fail(pb);
  if (gr_image_read(pref, &r) != GR_OK) return fail(pref);
  if (pcover && gr_image_read(pcover, &cv) != GR_OK) return fail(pcover);
  if (cv && (cv->ncomp != 1 || !gr_geometry_same(&cv->geom, &r->geom))) {
    fprintf(stderr, "elx_tool epe: COVER must be a scalar image on the reference grid\n");
    return 2;
  }
  if (a->ncomp != 3 || b->ncomp != 3 || !gr_geometry_same(&a->geom, &b->geom) ||
      !gr_geometry_same(&a->geom, &r->geom)) {
    fprintf(stderr, "elx_tool epe: fields must be 3-component on the reference grid\n");
    return 2;
  }
  const int64_t n = gr_image_nvox(r);
  double mx = 0, cmx = 0;
  for (int64_t i = 0; i < n; ++i) mx = fmax(mx, r->data[i]);
  if (cv)
    for (int64_t i = 0; i < n; ++i) cmx = fmax(cmx, cv->data[i]);
  double s = 0, worst = 0;
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (r->data[i] <= 0.15 * mx) continue;
    if (cv && cv->data[i] <= 0.05 * cmx) continue;
    double e2 = 0;
    for (int c = 0; c < 3; ++c) {
      const double d = (double)a->data[c * n + i] - (double)b->data[c * n + i];
      e2 += d * d;
    }
    const double e = sqrt(e2);
    s += e;
    worst = fmax(worst, e);
    ++cnt;
  }
  const double mean = cnt ? s / cnt : 0;
  printf("endpoint error over the head%s (%lld voxels): mean %.3f mm, max %.3f mm (tolerance %.3f)\n",
         cv ? " inside the moving image's field of view" : "", (long long)cnt, mean, worst, tol);
  return mean <= tol ? 0 : 1;
}

static int cmd_dice(const char *pa, const char *pb, int minlabel, double min_dice) {
  gr_image *a = NULL, *b = NULL;
  if (gr_image_read(pa, &a) != GR_OK) return fail(pa);
  if (gr_image_read(pb, &b) != GR_OK) return fail(pb);
  const int64_t n = gr_image_nvox(a);
  if (gr_image_nvox(b) != n) return 2;
  enum { L = 256 };
  double na[L] = {0}, nb[L] = {0}, nab[L] = {0};
  for (int64_t i = 0; i < n; ++i) {
    const int la = (int)lround(a->data[i]), lb = (int)lround(b->data[i]);
    if (la >= 0 && la < L) na[la] += 1;
    if (lb >= 0 && lb < L) nb[lb] += 1;
    if (la == lb && la >= 0 && la < L) nab[la] += 1;
  }
  double s = 0;
  int k = 0;
  for (int l = minlabel; l < L; ++l)
    if (na[l] > 0) {
      s += 2 * nab[l] / (na[l] + nb[l]);
      ++k;
    }
  const double mean = k ? s / k : 0;
  printf("mean Dice over %d labels: %.4f", k, mean);
  if (min_dice > 0) printf(" (threshold %.3f)", min_dice);
  printf("\n");
  gr_image_destroy(a);
  gr_image_destroy(b);
  return k > 0 && mean >= min_dice ? 0 : 1;
}

static int cmd_compare(const char *pa, const char *pb, const char *pref, double tol, double mineq) {
  gr_image *a = NULL, *b = NULL, *r = NULL;
  if (gr_image_read(pa, &a) != GR_OK) return fail(pa);
  if (gr_image_read(pb, &b) != GR_OK) return fail(pb);
  if (gr_image_read(pref, &r) != GR_OK) return fail(pref);
  if (a->ncomp != 1 || b->ncomp != 1 || !gr_geometry_same(&a->geom, &b->geom) ||
      !gr_geometry_same(&a->geom, &r->geom)) {
    fprintf(stderr, "elx_tool compare: images must be scalar on the reference grid\n");
    return 2;
  }
  const int64_t n = gr_image_nvox(r);
  double mx = 0, lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = fmax(mx, r->data[i]);
  for (int64_t i = 0; i < n; ++i)
    if (r->data[i] > 0.15 * mx) {
      lo = fmin(lo, b->data[i]);
      hi = fmax(hi, b->data[i]);
    }
  const double range = hi > lo ? hi - lo : 1.0;
  double s = 0, worst = 0;
  int64_t cnt = 0, eq = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (r->data[i] <= 0.15 * mx) continue;
    const double d = fabs((double)a->data[i] - (double)b->data[i]) / range;
    s += d;
    worst = fmax(worst, d);
    eq += d <= 1e-4;
    ++cnt;
  }
  const double mean = cnt ? s / cnt : 0, frac = cnt ? (double)eq / (double)cnt : 0;
  printf("image difference over the head (%lld voxels): mean %.2e, max %.2e of the range %.4g; "
         "equal (<= 1e-4) %.4f (tolerance mean %.2e, equal >= %.4f)\n",
         (long long)cnt, mean, worst, range, frac, tol, mineq);
  gr_image_destroy(a);
  gr_image_destroy(b);
  gr_image_destroy(r);
  return cnt > 0 && mean <= tol && frac >= mineq ? 0 : 1;
}

static int cmd_resize(const char *in, const char *out, const int64_t sz[3], const char *pref, double shift) {
  gr_image *a = NULL, *r = NULL, *b = NULL;
  if (gr_image_read(in, &a) != GR_OK) return fail(in);
  if (a->ncomp != 1) return 2;
  if (pref && gr_image_read(pref, &r) != GR_OK) return fail(pref);
  const gr_geometry *rg = r ? &r->geom : &a->geom;
  gr_geometry g = *rg;
  for (int d = 0; d < 3; ++d) {
    g.size[d] = sz[d];
    g.spacing[d] = rg->spacing[d] * (double)rg->size[d] / (double)sz[d];
  }
  /* the same field of view: first voxel centre half a new voxel inside REF's first voxel's corner */
  double c[3];
  for (int d = 0; d < 3; ++d) c[d] = -0.5 + 0.5 * g.spacing[d] / rg->spacing[d];
  gr_geometry_index_to_phys(rg, c, g.origin);
  if (gr_image_create(&g, 1, &b) != GR_OK) return fail("create");
  gr_backend *be = NULL;
  if (gr_backend_cpu_create(0, &be) != GR_OK) return fail("backend");
  gr_grid og, ig;
  if (gr_grid_from_geometry(&g, &og) != GR_OK || gr_grid_from_geometry(&a->geom, &ig) != GR_OK) return fail("grid");
  gr_affine T;
  memset(&T, 0, sizeof(T));
  T.m[0] = T.m[5] = T.m[10] = 1.0;
  T.m[3] = shift;
  T.m[7] = -shift / 2;
  T.m[11] = shift / 3;
  if (be->ops->resample(be, &og, b->data, &ig, a->data, 1, &T, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO) != GR_OK)
    return fail("resample");
  gr_backend_destroy(be);
  if (gr_image_write(out, b, GR_PIXEL_F32) != GR_OK) return fail(out);
  printf("%s: %lldx%lldx%lld, spacing %.4g %.4g %.4g mm\n", out, (long long)sz[0], (long long)sz[1],
         (long long)sz[2], g.spacing[0], g.spacing[1], g.spacing[2]);
  gr_image_destroy(a);
  gr_image_destroy(b);
  if (r) gr_image_destroy(r);
  return 0;
}

static int cmd_mask(const char *in, const char *out, double frac) {
  gr_image *a = NULL;
  if (gr_image_read(in, &a) != GR_OK) return fail(in);
  const int64_t n = gr_image_nvox(a);
  double mx = 0;
  for (int64_t i = 0; i < n; ++i) mx = fmax(mx, a->data[i]);
  for (int64_t i = 0; i < n; ++i) a->data[i] = a->data[i] > frac * mx ? 1.0f : 0.0f;
  if (gr_image_write(out, a, GR_PIXEL_U8) != GR_OK) return fail(out);
  gr_image_destroy(a);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 5 && !strcmp(argv[1], "downsample")) return cmd_downsample(argv[2], argv[3], atoi(argv[4]));
  if (argc >= 4 && !strcmp(argv[1], "affine-tp")) return cmd_affine_tp(argv[2], argv[3]);
  if (argc >= 6 && !strcmp(argv[1], "bspline-tp"))
    return cmd_bspline_tp(argv[2], argv[3], atof(argv[4]), atof(argv[5]));
  if (argc >= 6 && !strcmp(argv[1], "epe"))
    return cmd_epe(argv[2], argv[3], argv[4], atof(argv[5]), argc > 6 ? argv[6] : NULL);
  if (argc >= 5 && !strcmp(argv[1], "mask")) return cmd_mask(argv[2], argv[3], atof(argv[4]));
  if (argc >= 5 && !strcmp(argv[1], "dice"))
    return cmd_dice(argv[2], argv[3], atoi(argv[4]), argc > 5 ? atof(argv[5]) : 0.0);
  if (argc >= 6 && !strcmp(argv[1], "compare"))
    return cmd_compare(argv[2], argv[3], argv[4], atof(argv[5]), argc > 6 ? atof(argv[6]) : 0.0);
  if (argc >= 7 && !strcmp(argv[1], "resize")) {
    const int64_t sz[3] = {atoll(argv[4]), atoll(argv[5]), atoll(argv[6])};
    return cmd_resize(argv[2], argv[3], sz, argc > 7 && strcmp(argv[7], "-") ? argv[7] : NULL,
                      argc > 8 ? atof(argv[8]) : 0.0);
  }
  fprintf(stderr, "usage: see the comment at the top of test/elastix/elx_tool.c\n");
  return 2;
}
