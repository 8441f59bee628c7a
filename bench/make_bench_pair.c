/* make_bench_pair: the image pair of the cpu_vs_elastix benchmark, with its known answer.
 *
 *   make_bench_pair [--shrink S] [--amp VOX] [--seed N] [--no-rigid] [--templates DIR] OUT_DIR
 *
 * From Debian's mricron-data Colin27 `ch2` (181x217x181, 1 mm) and the AAL labels on
 * the same grid (DIR defaults to /usr/share/mricron/templates) it writes, in OUT_DIR:
 *
 *   fixed.nii.gz          ch2 (float), optionally shrunk by S (Gaussian sigma 0.5*S voxels,
 *                         then trilinear onto a grid of spacing S mm with the same centre)
 *   moving.nii.gz         moving(y) = fixed(R (y + w(y))): w a smooth displacement of
 *                         amplitude VOX voxels (default 3), built exactly like
 *                         test/reg_fixtures.h fx_smooth_field, and R a small rigid
 *                         transform (about the image centre; 1.0/-0.75/1.5 degrees and a
 *                         (1.5, -1, 2) voxel translation; --no-rigid drops it)
 *   labels_fixed.nii.gz   AAL on the fixed grid (nearest when shrunk)
 *   labels_moving.nii.gz  AAL warped the same way as moving (nearest)
 *   true_field.mha        the true fixed -> moving displacement d (mm, LPS, 3 channels,
 *                         the convention of elastix/transformix deformation fields):
 *                         x -> x + d(x) with d(x) = R^-1 x + v(R^-1 x) - x, v = w^-1
 *                         from the backend's invert op (40 fixed-point iterations)
 *
 * It prints the checks that make the answer trustworthy, inside the head (voxels above
 * 15% of the fixed maximum): the inversion residual |v(x) + w(x + v(x))|, the end-to-end
 * residual |R(y + w(y)) - x| with y = x + d(x), and how well moving(x + d(x)) matches
 * fixed (not 0 even for an exact d: moving was interpolated once and is interpolated again). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench_common.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Same construction as test/reg_fixtures.h fx_smooth_field (kept identical on purpose so the
 * benchmark warp is the one the accuracy tests use): sums of low-frequency sines, amplitude
 * amp_vox voxels per component, Jacobian well above 0 for a few voxels of amplitude. */
static gr_status smooth_field(const gr_geometry *geom, double amp_vox, unsigned seed, gr_image **out) {
  gr_image *w = NULL;
  gr_status s = gr_image_create(geom, 3, &w);
  if (s != GR_OK) return s;
  const int64_t nx = geom->size[0], ny = geom->size[1], nz = geom->size[2], n = nx * ny * nz;
  double ph[3][3];
  for (int c = 0; c < 3; ++c)
    for (int a = 0; a < 3; ++a)
      ph[c][a] = 0.7 * (double)((seed * 2654435761u + (unsigned)(c * 3 + a) * 40503u) % 1000) / 100.0;
  for (int64_t z = 0; z < nz; ++z)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        const double u = (double)x / nx, v = (double)y / ny, t = (double)z / nz;
        const int64_t i = (z * ny + y) * nx + x;
        for (int c = 0; c < 3; ++c) {
          const double val = sin(2 * M_PI * u + ph[c][0]) * sin(2 * M_PI * v + ph[c][1]) * sin(2 * M_PI * t + ph[c][2]) +
                             0.5 * sin(4 * M_PI * u + ph[c][1]) * cos(2 * M_PI * t + ph[c][0]);
          w->data[c * n + i] = (float)(amp_vox * geom->spacing[c] * val / 1.5);
        }
      }
  *out = w;
  return GR_OK;
}

/* Grid of spacing shrink*spacing, size round(n/shrink), same direction and the same
 * physical centre (for ch2 and shrink 2: 91x109x91 at 2 mm with the origin unchanged,
 * numbers that survive elastix's 6-digit TransformParameters files exactly). */
static void shrunk_geometry(const gr_geometry *g, double shrink, gr_geometry *out) {
  *out = *g;
  if (shrink <= 1.0) return;
  double c[3];
  gr_geometry_center(g, c);
  for (int a = 0; a < 3; ++a) {
    int64_t n = (int64_t)floor((double)g->size[a] / shrink + 0.5);
    out->size[a] = n < 1 ? 1 : n;
    out->spacing[a] = g->spacing[a] * shrink;
  }
  for (int r = 0; r < 3; ++r) {
    double s = 0.0;
    for (int a = 0; a < 3; ++a) s += out->direction[r * 3 + a] * out->spacing[a] * 0.5 * (double)(out->size[a] - 1);
    out->origin[r] = c[r] - s;
  }
}

static gr_image *shrink_image(gr_backend *be, const gr_image *src, const gr_geometry *g, double shrink, gr_interp interp) {
  gr_image *out = NULL;
  BENCH_TRY(gr_image_create(g, 1, &out));
  out->src_type = src->src_type;
  if (interp == GR_INTERP_LINEAR) {
    /* Anti-aliasing as the registration pyramid does: sigma 0.5*shrink fine voxels. */
    gr_grid sg;
    BENCH_TRY(gr_grid_from_geometry(&src->geom, &sg));
    gr_image *tmp = NULL;
    BENCH_TRY(gr_image_clone(src, &tmp));
    float *d = bench_upload(be, tmp);
    const double sv[3] = {0.5 * shrink, 0.5 * shrink, 0.5 * shrink};
    BENCH_TRY(be->ops->smooth(be, &sg, d, 1, sv));
    bench_download(be, tmp, d);
    be->ops->free(be, d);
    bench_resample(be, out, tmp, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP);
    gr_image_destroy(tmp);
  } else {
    bench_resample(be, out, src, NULL, NULL, interp, GR_BOUNDARY_CLAMP);
  }
  return out;
}

static double head_threshold(const gr_image *img) {
  double mx = 0.0;
  const int64_t n = gr_image_nvox(img);
  for (int64_t i = 0; i < n; ++i)
    if (img->data[i] > mx) mx = img->data[i];
  return 0.15 * mx;
}

/* Mean and max over head voxels of |f| in voxel units (3-component f). */
static void field_norm_stats(const gr_image *f, const gr_image *ref, double thr, double *mean, double *mx) {
  const int64_t n = gr_image_nvox(ref);
  double s = 0.0, m = 0.0;
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (ref->data[i] <= thr) continue;
    double e2 = 0.0;
    for (int c = 0; c < 3; ++c) {
      const double d = f->data[c * n + i] / ref->geom.spacing[c];
      e2 += d * d;
    }
    const double e = sqrt(e2);
    s += e;
    if (e > m) m = e;
    ++cnt;
  }
  *mean = cnt ? s / (double)cnt : 0.0;
  *mx = m;
}

static double mean_abs_diff(const gr_image *a, const gr_image *b, const gr_image *ref, double thr) {
  const int64_t n = gr_image_nvox(ref);
  double s = 0.0;
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; ++i)
    if (ref->data[i] > thr) {
      s += fabs((double)a->data[i] - (double)b->data[i]);
      ++cnt;
    }
  return cnt ? s / (double)cnt : 0.0;
}

static void usage(void) {
  fprintf(stderr, "usage: make_bench_pair [--shrink S] [--amp VOX] [--seed N] [--no-rigid] [--templates DIR] OUT_DIR\n");
}

int main(int argc, char **argv) {
  double shrink = 1.0, amp = 3.0;
  unsigned seed = 7;
  int rigid = 1;
  const char *templates = "/usr/share/mricron/templates", *outdir = NULL;
  for (int i = 1; i < argc; ++i) {
    const char *o = argv[i];
    if (!strcmp(o, "--no-rigid")) rigid = 0;
    else if (i + 1 < argc && !strcmp(o, "--shrink")) shrink = atof(argv[++i]);
    else if (i + 1 < argc && !strcmp(o, "--amp")) amp = atof(argv[++i]);
    else if (i + 1 < argc && !strcmp(o, "--seed")) seed = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (i + 1 < argc && !strcmp(o, "--templates")) templates = argv[++i];
    else if (o[0] != '-' && !outdir) outdir = o;
    else {
      usage();
      return 2;
    }
  }
  if (!outdir || !(shrink >= 1.0) || !(amp >= 0.0)) {
    usage();
    return 2;
  }
  gr_backend *be = NULL;
  BENCH_TRY(gr_backend_cpu_create(0, &be));
  char p[4096];
  snprintf(p, sizeof p, "%s/ch2.nii.gz", templates);
  gr_image *ch2 = bench_read(p);
  snprintf(p, sizeof p, "%s/aal.nii.gz", templates);
  gr_image *aal = bench_read(p);
  if (ch2->ncomp != 1 || aal->ncomp != 1 || !gr_geometry_same(&ch2->geom, &aal->geom)) {
    fprintf(stderr, "make_bench_pair: ch2 and aal must be scalar images on the same grid\n");
    return 1;
  }

  /* Fixed grid and images. */
  gr_geometry g;
  shrunk_geometry(&ch2->geom, shrink, &g);
  gr_image *fixed = shrink_image(be, ch2, &g, shrink, GR_INTERP_LINEAR);
  gr_image *lfixed = shrink_image(be, aal, &g, shrink, GR_INTERP_NEAREST);
  gr_image_destroy(ch2);
  gr_image_destroy(aal);
  const int64_t n = gr_image_nvox(fixed);

  /* The applied warp: moving(y) = fixed(R (y + w(y))). */
  gr_image *w = NULL;
  BENCH_TRY(smooth_field(&g, amp, seed, &w));
  gr_affine R, Rinv;
  double centre[3];
  gr_geometry_center(&g, centre);
  const double deg = M_PI / 180.0;
  const double ep[6] = {rigid ? 1.0 * deg : 0.0, rigid ? -0.75 * deg : 0.0, rigid ? 1.5 * deg : 0.0,
                        rigid ? 1.5 * g.spacing[0] : 0.0, rigid ? -1.0 * g.spacing[1] : 0.0,
                        rigid ? 2.0 * g.spacing[2] : 0.0};
  gr_euler_to_affine(ep, centre, &R);
  BENCH_TRY(gr_affine_invert(&R, &Rinv));

  gr_image *moving = NULL, *lmoving = NULL;
  BENCH_TRY(gr_image_create(&g, 1, &moving));
  BENCH_TRY(gr_image_create(&g, 1, &lmoving));
  bench_resample(be, moving, fixed, &R, w, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
  bench_resample(be, lmoving, lfixed, &R, w, GR_INTERP_NEAREST, GR_BOUNDARY_ZERO);
  moving->src_type = fixed->src_type;
  lmoving->src_type = lfixed->src_type;

  /* v = w^-1 (v(x) = -w(x + v(x))) and the inversion residual v + w o (id + v). */
  gr_grid gg;
  BENCH_TRY(gr_grid_from_geometry(&g, &gg));
  gr_image *v = NULL, *resid = NULL;
  BENCH_TRY(gr_image_create(&g, 3, &v));
  BENCH_TRY(gr_image_create(&g, 3, &resid));
  {
    float *dw = bench_upload(be, w), *dv = bench_alloc(be, 3 * n), *dr = bench_alloc(be, 3 * n);
    BENCH_TRY(be->ops->invert(be, &gg, dw, dv, 40));
    BENCH_TRY(be->ops->compose(be, &gg, dw, dv, dr));
    bench_download(be, v, dv);
    bench_download(be, resid, dr);
    be->ops->free(be, dw);
    be->ops->free(be, dv);
    be->ops->free(be, dr);
  }

  /* d(x) = R^-1 x + v(R^-1 x) - x. */
  gr_image *d = NULL;
  BENCH_TRY(gr_image_create(&g, 3, &d));
  bench_resample(be, d, v, &Rinv, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP);
  for (int64_t k = 0; k < g.size[2]; ++k)
    for (int64_t j = 0; j < g.size[1]; ++j)
      for (int64_t i = 0; i < g.size[0]; ++i) {
        const int64_t q = (k * g.size[1] + j) * g.size[0] + i;
        const double idx[3] = {(double)i, (double)j, (double)k};
        double x[3], z[3];
        gr_geometry_index_to_phys(&g, idx, x);
        gr_affine_apply(&Rinv, x, z);
        for (int c = 0; c < 3; ++c) d->data[c * n + q] += (float)(z[c] - x[c]);
      }
  d->src_type = GR_PIXEL_F32;

  /* Checks: how exact the answer is, and how big the problem is. End to end: with
   * y = x + d(x), R (y + w(y)) must give back x (w sampled trilinearly at y). */
  const double thr = head_threshold(fixed);
  double rmean, rmax, dmean, dmax, emean, emax;
  field_norm_stats(resid, fixed, thr, &rmean, &rmax);
  field_norm_stats(d, fixed, thr, &dmean, &dmax);
  gr_image *wd = NULL;
  BENCH_TRY(gr_image_create(&g, 3, &wd));
  bench_resample(be, wd, w, NULL, d, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP);
  for (int64_t k = 0; k < g.size[2]; ++k)
    for (int64_t j = 0; j < g.size[1]; ++j)
      for (int64_t i = 0; i < g.size[0]; ++i) {
        const int64_t q = (k * g.size[1] + j) * g.size[0] + i;
        const double idx[3] = {(double)i, (double)j, (double)k};
        double x[3], y[3], z[3];
        gr_geometry_index_to_phys(&g, idx, x);
        for (int c = 0; c < 3; ++c) y[c] = x[c] + d->data[c * n + q] + wd->data[c * n + q];
        gr_affine_apply(&R, y, z);
        for (int c = 0; c < 3; ++c) wd->data[c * n + q] = (float)(z[c] - x[c]);
      }
  field_norm_stats(wd, fixed, thr, &emean, &emax);
  gr_image_destroy(wd);
  gr_image *back = NULL;
  BENCH_TRY(gr_image_create(&g, 1, &back));
  bench_resample(be, back, moving, NULL, d, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
  printf("make_bench_pair: grid %lldx%lldx%lld spacing %g %g %g mm (%.2f Mvox), shrink %g, amplitude %g voxels, seed %u, rigid %s\n",
         (long long)g.size[0], (long long)g.size[1], (long long)g.size[2], g.spacing[0], g.spacing[1], g.spacing[2],
         (double)n / 1e6, shrink, amp, seed, rigid ? "on" : "off");
  printf("make_bench_pair: true |d| inside the head: mean %.3f, max %.3f voxels\n", dmean, dmax);
  printf("make_bench_pair: inversion residual |v + w o (id + v)|: mean %.2e, max %.2e voxels\n", rmean, rmax);
  printf("make_bench_pair: end-to-end residual |R(y + w(y)) - x|, y = x + d(x): mean %.2e, max %.2e voxels\n", emean, emax);
  printf("make_bench_pair: mean |fixed - moving| inside the head: before %.3f, after warping moving by the true field %.3f\n",
         mean_abs_diff(fixed, moving, fixed, thr), mean_abs_diff(fixed, back, fixed, thr));

  snprintf(p, sizeof p, "%s/fixed.nii.gz", outdir);
  bench_write(p, fixed, GR_PIXEL_F32);
  snprintf(p, sizeof p, "%s/moving.nii.gz", outdir);
  bench_write(p, moving, GR_PIXEL_F32);
  snprintf(p, sizeof p, "%s/labels_fixed.nii.gz", outdir);
  bench_write(p, lfixed, GR_PIXEL_UNKNOWN);
  snprintf(p, sizeof p, "%s/labels_moving.nii.gz", outdir);
  bench_write(p, lmoving, GR_PIXEL_UNKNOWN);
  snprintf(p, sizeof p, "%s/true_field.mha", outdir);
  bench_write(p, d, GR_PIXEL_F32);

  gr_image_destroy(fixed); gr_image_destroy(moving); gr_image_destroy(lfixed); gr_image_destroy(lmoving);
  gr_image_destroy(w); gr_image_destroy(v); gr_image_destroy(resid); gr_image_destroy(d); gr_image_destroy(back);
  gr_backend_destroy(be);
  return 0;
}
