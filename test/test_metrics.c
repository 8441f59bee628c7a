/* Fused metrics (cpu_metric): value sanity, d loss / d u and d loss / d [A|t]
 * against central finite differences on an oblique, anisotropic scene, masks
 * and GR_ERR_EMPTY, LNCC zero padding and mask band, and bitwise determinism
 * across OpenMP thread counts. */
#include "gr_test.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static gr_backend *be;

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double urand(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) * (1.0 / 9007199254740992.0);
}
static double srand1(void) { return 2.0 * urand() - 1.0; }

/* ---- scene -------------------------------------------------------------------------- */
typedef struct blobs {
  double c[6][3], sig[6], amp[6], lin[3];
} blobs;

static void blobs_init(blobs *b) {
  for (int k = 0; k < 6; ++k) {
    for (int r = 0; r < 3; ++r) b->c[k][r] = 9.0 * srand1();
    b->sig[k] = 3.0 + 3.0 * urand();
    b->amp[k] = 0.45 * srand1();
  }
  for (int r = 0; r < 3; ++r) b->lin[r] = 0.012 * srand1();
}

static double blobs_eval(const blobs *b, const double p[3]) {
  /* texture at a ~7 mm wavelength: LNCC needs local variance well above its eps */
  double v = 0.5 + b->lin[0] * p[0] + b->lin[1] * p[1] + b->lin[2] * p[2] +
             0.12 * sin(0.9 * p[0] + 0.5 * p[1] + b->lin[0]) * cos(0.7 * p[2] - 0.4 * p[0]);
  for (int k = 0; k < 6; ++k) {
    const double dx = p[0] - b->c[k][0], dy = p[1] - b->c[k][1], dz = p[2] - b->c[k][2];
    v += b->amp[k] * exp(-(dx * dx + dy * dy + dz * dz) / (2.0 * b->sig[k] * b->sig[k]));
  }
  return v;
}

typedef struct scene {
  gr_grid fg, mg;
  int64_t fn, mn;
  float *fixed, *moving, *disp;
  gr_affine T;
  double fmin, fmax, mmin, mmax;
} scene;

static void make_grid(int64_t nx, int64_t ny, int64_t nz, const double sp[3], const double eu[3], const double center[3],
                      gr_grid *grid) {
  gr_geometry g;
  gr_geometry_identity(&g, nx, ny, nz);
  const double p[6] = {eu[0], eu[1], eu[2], 0, 0, 0}, zero[3] = {0, 0, 0};
  gr_affine R;
  gr_euler_to_affine(p, zero, &R);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) g.direction[r * 3 + c] = R.m[r * 4 + c];
  for (int d = 0; d < 3; ++d) g.spacing[d] = sp[d];
  const double half[3] = {(nx - 1) * 0.5, (ny - 1) * 0.5, (nz - 1) * 0.5};
  for (int r = 0; r < 3; ++r) {
    double s = center[r];
    for (int c = 0; c < 3; ++c) s -= g.direction[r * 3 + c] * sp[c] * half[c];
    g.origin[r] = s;
  }
  GR_CHECK_OK(gr_grid_from_geometry(&g, grid));
}

static void idx_to_phys(const gr_grid *g, double i, double j, double k, double p[3]) {
  for (int r = 0; r < 3; ++r) p[r] = g->i2p[r * 4] * i + g->i2p[r * 4 + 1] * j + g->i2p[r * 4 + 2] * k + g->i2p[r * 4 + 3];
}

static int64_t nvox_of(const gr_grid *g) { return g->n[0] * g->n[1] * g->n[2]; }

static void fill(const gr_grid *g, float *img, const blobs *b, int moving) {
  const double delta[3] = {0.7, -0.4, 0.5};
  for (int64_t k = 0; k < g->n[2]; ++k)
    for (int64_t j = 0; j < g->n[1]; ++j)
      for (int64_t i = 0; i < g->n[0]; ++i) {
        double p[3];
        idx_to_phys(g, (double)i, (double)j, (double)k, p);
        double v;
        if (moving) {
          const double q[3] = {p[0] - delta[0], p[1] - delta[1], p[2] - delta[2]};
          v = 0.8 * blobs_eval(b, q) + 0.1 + 0.05 * sin(0.35 * p[0] + 0.2 * p[2]);
        } else {
          v = blobs_eval(b, p);
        }
        img[(k * g->n[1] + j) * g->n[0] + i] = (float)v;
      }
}

static void minmax(const float *x, int64_t n, double *lo, double *hi) {
  *lo = INFINITY;
  *hi = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    *lo = fmin(*lo, x[i]);
    *hi = fmax(*hi, x[i]);
  }
}

/* Fixed grid nf^3-ish, oblique; moving grid larger and differently oblique so
 * the warped fixed domain stays strictly inside the moving domain. */
static void scene_init(scene *s, const int64_t fsz[3], const int64_t msz[3], double disp_amp, int same_images) {
  const double fsp[3] = {0.9, 0.8, 1.0}, feu[3] = {0.15, -0.25, 0.3}, fc[3] = {0.5, -0.3, 0.2};
  const double msp[3] = {1.0, 1.2, 0.95}, meu[3] = {-0.3, 0.2, 0.1}, mc[3] = {0.0, 0.4, -0.2};
  blobs b;
  blobs_init(&b);
  make_grid(fsz[0], fsz[1], fsz[2], fsp, feu, fc, &s->fg);
  if (same_images) s->mg = s->fg;
  else make_grid(msz[0], msz[1], msz[2], msp, meu, mc, &s->mg);
  s->fn = nvox_of(&s->fg);
  s->mn = nvox_of(&s->mg);
  s->fixed = malloc((size_t)s->fn * sizeof(float));
  s->moving = malloc((size_t)s->mn * sizeof(float));
  s->disp = malloc(3 * (size_t)s->fn * sizeof(float));
  fill(&s->fg, s->fixed, &b, 0);
  if (same_images) memcpy(s->moving, s->fixed, (size_t)s->fn * sizeof(float));
  else fill(&s->mg, s->moving, &b, 1);
  minmax(s->fixed, s->fn, &s->fmin, &s->fmax);
  minmax(s->moving, s->mn, &s->mmin, &s->mmax);
  double fr[3][3], ph[3];
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) fr[r][c] = 0.25 * srand1();
    ph[r] = 3.0 * srand1();
  }
  for (int64_t k = 0; k < s->fg.n[2]; ++k)
    for (int64_t j = 0; j < s->fg.n[1]; ++j)
      for (int64_t i = 0; i < s->fg.n[0]; ++i) {
        double p[3];
        idx_to_phys(&s->fg, (double)i, (double)j, (double)k, p);
        const int64_t v = (k * s->fg.n[1] + j) * s->fg.n[0] + i;
        for (int r = 0; r < 3; ++r)
          s->disp[r * s->fn + v] = (float)(disp_amp * sin(fr[r][0] * p[0] + fr[r][1] * p[1] + fr[r][2] * p[2] + ph[r]));
      }
  if (same_images) {
    gr_affine_identity(&s->T);
  } else {
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 3; ++c) s->T.m[r * 4 + c] = (r == c ? 1.0 : 0.0) + 0.03 * srand1();
      s->T.m[r * 4 + 3] = 0.5 * srand1();
    }
  }
}

static void scene_free(scene *s) {
  free(s->fixed);
  free(s->moving);
  free(s->disp);
}

static gr_metric_spec make_spec(const scene *s, gr_metric_kind kind, int param) {
  gr_metric_spec sp;
  memset(&sp, 0, sizeof sp);
  sp.kind = kind;
  sp.lncc_radius = kind == GR_METRIC_LNCC ? param : 0;
  sp.mi_bins = kind == GR_METRIC_MI ? param : 0;
  sp.fixed_min = s->fmin;
  sp.fixed_max = s->fmax;
  sp.moving_min = s->mmin;
  sp.moving_max = s->mmax;
  return sp;
}

static const char *kind_name(gr_metric_kind k) {
  switch (k) {
    case GR_METRIC_MSE: return "MSE";
    case GR_METRIC_NCC: return "NCC";
    case GR_METRIC_LNCC: return "LNCC";
    case GR_METRIC_MI: return "MI";
  }
  return "?";
}

static gr_status eval(const scene *s, const gr_metric_spec *spec, const gr_affine *T, const float *disp,
                      const float *fmask, const float *mmask, gr_metric_result *res, float *grad_u) {
  return be->ops->metric(be, spec, &s->fg, s->fixed, fmask, &s->mg, s->moving, mmask, T, disp, res, grad_u);
}

static double loss_of(const scene *s, const gr_metric_spec *spec0, const gr_affine *T, const float *disp,
                      const float *fmask) {
  gr_metric_spec spec = *spec0;
  spec.want_field_grad = spec.want_affine_grad = 0;
  gr_metric_result r;
  GR_CHECK_OK(eval(s, &spec, T, disp, fmask, NULL, &r, NULL));
  return r.value;
}

/* Continuous moving index of fixed voxel v under (T, disp). */
static void moving_index(const scene *s, const gr_affine *T, const float *disp, int64_t v, double c[3]) {
  const int64_t nx = s->fg.n[0], ny = s->fg.n[1];
  const int64_t i = v % nx, j = (v / nx) % ny, k = v / (nx * ny);
  double x[3], y[3];
  idx_to_phys(&s->fg, (double)i, (double)j, (double)k, x);
  gr_affine_apply(T, x, y);
  for (int r = 0; r < 3; ++r) y[r] += disp[r * s->fn + v];
  for (int r = 0; r < 3; ++r)
    c[r] = s->mg.p2i[r * 4] * y[0] + s->mg.p2i[r * 4 + 1] * y[1] + s->mg.p2i[r * 4 + 2] * y[2] + s->mg.p2i[r * 4 + 3];
}

/* Away from trilinear kinks (integer index planes) so the central difference
 * does not straddle one. */
static int off_kinks(const double c[3]) {
  for (int r = 0; r < 3; ++r) {
    const double f = c[r] - floor(c[r]);
    if (f < 0.02 || f > 0.98) return 0;
  }
  return 1;
}

static double worst_rel; /* largest relative error of the accepted comparisons, for the log */

static int grad_close(double an, double fd, double scale) {
  const double d = fabs(an - fd);
  const int ok = d <= 1e-2 * fmax(fabs(an), fabs(fd)) || d <= 1e-6 * scale;
  const double mag = fmax(fabs(an), fabs(fd));
  if (ok && mag > 1e-3 * scale) worst_rel = fmax(worst_rel, d / mag);
  return ok;
}

/* d loss / d u at one voxel, 3 components, by central differences. */
static int fd_voxel(const scene *s, const gr_metric_spec *spec, const float *fmask, int64_t v, const float *grad,
                    double scale, const char *what) {
  const double h = 1e-3;
  float *disp = malloc(3 * (size_t)s->fn * sizeof(float));
  memcpy(disp, s->disp, 3 * (size_t)s->fn * sizeof(float));
  int bad = 0;
  for (int r = 0; r < 3; ++r) {
    const float u0 = s->disp[r * s->fn + v];
    const double an = grad[r * s->fn + v];
    double fd = 0;
    int ok = 0;
    /* two step sizes: the second (h/4) separates truncation error from a wrong gradient */
    for (int pass = 0; pass < 2 && !ok; ++pass) {
      const double hh = pass ? h / 4 : h;
      const float up = (float)(u0 + hh), um = (float)(u0 - hh);
      disp[r * s->fn + v] = up;
      const double lp = loss_of(s, spec, &s->T, disp, fmask);
      disp[r * s->fn + v] = um;
      const double lm = loss_of(s, spec, &s->T, disp, fmask);
      disp[r * s->fn + v] = u0;
      fd = (lp - lm) / ((double)up - (double)um);
      ok = grad_close(an, fd, scale);
    }
    if (!ok) {
      ++bad;
      fprintf(stderr, "  %s voxel %lld comp %d: analytic %.9g fd %.9g (scale %.3g)\n", what, (long long)v, r, an, fd,
              scale);
    }
  }
  free(disp);
  return bad;
}

static double max_abs(const float *x, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = fmax(m, fabs(x[i]));
  return m;
}

/* Gradient w.r.t. u at `nvox_check` random voxels (selected by `pick`), and
 * w.r.t. [A|t] on all 12 entries. */
typedef int (*pick_fn)(const scene *s, int64_t v, const double c[3]);

static int pick_interior(const scene *s, int64_t v, const double c[3]) {
  (void)v;
  for (int r = 0; r < 3; ++r)
    if (!(c[r] > 0.05 && c[r] < (double)s->mg.n[r] - 1.05)) return 0;
  return off_kinks(c);
}

static int pick_fade(const scene *s, int64_t v, const double c[3]) {
  (void)v;
  int fade = 0;
  for (int r = 0; r < 3; ++r) {
    if (c[r] <= -0.98 || c[r] >= (double)s->mg.n[r] - 0.02) return 0;
    fade |= c[r] < -0.02 || c[r] > (double)s->mg.n[r] - 1 + 0.02;
  }
  return fade && off_kinks(c);
}

static void check_gradients(const scene *s, const gr_metric_spec *spec0, const float *fmask, pick_fn pick,
                            int nvox_check, int check_affine, const char *what) {
  gr_metric_spec spec = *spec0;
  spec.want_field_grad = 1;
  spec.want_affine_grad = 1;
  float *grad = malloc(3 * (size_t)s->fn * sizeof(float));
  gr_metric_result res;
  GR_CHECK_OK(eval(s, &spec, &s->T, s->disp, fmask, NULL, &res, grad));
  const double scale = max_abs(grad, 3 * s->fn);
  GR_CHECK(scale > 0.0, "%s: gradient is identically zero", what);
  worst_rel = 0.0;
  int bad = 0, checked = 0;
  for (int tries = 0; tries < 200000 && checked < nvox_check; ++tries) {
    const int64_t v = (int64_t)(urand() * (double)s->fn);
    if (fmask && !(fmask[v] > 0.5f)) continue;
    double c[3];
    moving_index(s, &s->T, s->disp, v, c);
    if (!pick(s, v, c)) continue;
    bad += fd_voxel(s, &spec, fmask, v, grad, scale, what);
    ++checked;
  }
  GR_CHECK(checked == nvox_check, "%s: only %d voxels could be checked", what, checked);
  GR_CHECK(bad == 0, "%s: %d of %d grad_u components disagree with finite differences", what, bad, 3 * checked);
  printf("%-26s grad_u: %2d components, worst relative error %.1e\n", what, 3 * checked, worst_rel);
  worst_rel = 0.0;

  if (check_affine) {
    double ascale = 0;
    for (int q = 0; q < 12; ++q) ascale = fmax(ascale, fabs(res.grad_affine[q]));
    int abad = 0;
    for (int q = 0; q < 12; ++q) {
      double fd = 0;
      int ok = 0;
      for (int pass = 0; pass < 2 && !ok; ++pass) {
        const double h = ((q % 4 == 3) ? 1e-4 : 1e-5) / (pass ? 4 : 1);
        gr_affine Tp = s->T, Tm = s->T;
        Tp.m[q] += h;
        Tm.m[q] -= h;
        fd = (loss_of(s, &spec, &Tp, s->disp, fmask) - loss_of(s, &spec, &Tm, s->disp, fmask)) / (2 * h);
        ok = grad_close(res.grad_affine[q], fd, ascale);
      }
      if (!ok) {
        ++abad;
        fprintf(stderr, "  %s grad_affine[%d]: analytic %.9g fd %.9g\n", what, q, res.grad_affine[q], fd);
      }
    }
    GR_CHECK(abad == 0, "%s: %d of 12 grad_affine entries disagree with finite differences", what, abad);
    printf("%-26s grad_affine: 12 entries, worst relative error %.1e\n", what, worst_rel);
  }
  free(grad);
}

/* ---- tests -------------------------------------------------------------------------- */
typedef struct metric_case {
  gr_metric_kind kind;
  int param;
} metric_case;

static const metric_case cases[] = {
  {GR_METRIC_MSE, 0}, {GR_METRIC_NCC, 0}, {GR_METRIC_LNCC, 1}, {GR_METRIC_LNCC, 2}, {GR_METRIC_MI, 32}, {GR_METRIC_MI, 16},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static void case_name(const metric_case *c, char *buf, size_t n) {
  if (c->kind == GR_METRIC_LNCC) snprintf(buf, n, "LNCC r=%d", c->param);
  else if (c->kind == GR_METRIC_MI) snprintf(buf, n, "MI %d bins", c->param);
  else snprintf(buf, n, "%s", kind_name(c->kind));
}

/* Fixed-image entropy with the MI binning (box kernel), an upper bound of MI. */
static double fixed_entropy(const scene *s, int B) {
  double h[1024] = {0};
  const double d = (s->fmax - s->fmin) / (B - 5);
  for (int64_t v = 0; v < s->fn; ++v) {
    double xi = (s->fixed[v] - s->fmin) / d + 2.0;
    xi = xi < 2 ? 2 : xi > B - 3 ? B - 3 : xi;
    h[(int)floor(xi + 0.5)] += 1.0;
  }
  double e = 0;
  for (int b = 0; b < B; ++b)
    if (h[b] > 0) e -= h[b] / s->fn * log(h[b] / s->fn);
  return e;
}

static void test_values(void) {
  const int64_t sz[3] = {22, 20, 24};
  scene same, diff;
  scene_init(&same, sz, sz, 0.0, 1);
  const int64_t msz[3] = {44, 40, 44};
  scene_init(&diff, sz, msz, 0.4, 0);
  for (int ci = 0; ci < NCASES; ++ci) {
    char name[64];
    case_name(&cases[ci], name, sizeof name);
    gr_metric_spec sp = make_spec(&same, cases[ci].kind, cases[ci].param);
    gr_metric_result r, rd;
    GR_CHECK_OK(eval(&same, &sp, NULL, NULL, NULL, NULL, &r, NULL));
    GR_CHECK(r.n_valid == same.fn, "%s: n_valid %lld, expected %lld", name, (long long)r.n_valid, (long long)same.fn);
    gr_metric_spec spd = make_spec(&diff, cases[ci].kind, cases[ci].param);
    GR_CHECK_OK(eval(&diff, &spd, &diff.T, diff.disp, NULL, NULL, &rd, NULL));
    printf("%-12s identical %.9f   different %.9f\n", name, r.value, rd.value);
    switch (cases[ci].kind) {
      case GR_METRIC_MSE: GR_CHECK(r.value < 1e-12 && r.value >= 0, "%s identical = %g", name, r.value); break;
      case GR_METRIC_NCC: GR_CHECK_NEAR(r.value, -1.0, 1e-9); break;
      case GR_METRIC_LNCC:
        GR_CHECK(r.value < -0.97 && r.value >= -1.0, "%s identical = %.9f (expect about -1)", name, r.value);
        break;
      case GR_METRIC_MI: {
        const double hf = fixed_entropy(&same, cases[ci].param);
        printf("             fixed entropy %.6f\n", hf);
        GR_CHECK(-r.value <= hf + 1e-9, "%s: MI %.9f exceeds H(fixed) %.9f", name, -r.value, hf);
        GR_CHECK(-r.value > 0.4 * hf, "%s: MI of identical images %.9f is far below H(fixed) %.9f", name, -r.value, hf);
        break;
      }
    }
    GR_CHECK(r.value < rd.value, "%s: identical images (%.9f) do not beat different ones (%.9f)", name, r.value, rd.value);
  }
  scene_free(&same);
  scene_free(&diff);
}

static void test_gradients(void) {
  const int64_t fsz[3] = {20, 22, 24}, msz[3] = {44, 40, 44};
  scene s;
  scene_init(&s, fsz, msz, 0.4, 0);
  for (int ci = 0; ci < NCASES; ++ci) {
    char name[64];
    case_name(&cases[ci], name, sizeof name);
    const gr_metric_spec sp = make_spec(&s, cases[ci].kind, cases[ci].param);
    check_gradients(&s, &sp, NULL, pick_interior, 10, 1, name);
  }
  scene_free(&s);
}

/* LNCC: zero padding across the moving border (the scene is shifted so part of
 * the fixed grid maps outside), and the exact gradient in the band around a
 * fixed mask. */
static void test_lncc_special(void) {
  const int64_t fsz[3] = {20, 22, 24}, msz[3] = {24, 22, 24};
  scene s;
  scene_init(&s, fsz, msz, 0.4, 0);
  s.T.m[3] += 4.0;
  s.T.m[7] -= 3.0;
  for (int r = 1; r <= 2; ++r) {
    char name[64];
    snprintf(name, sizeof name, "LNCC r=%d zero padding", r);
    const gr_metric_spec sp = make_spec(&s, GR_METRIC_LNCC, r);
    gr_metric_result res;
    GR_CHECK_OK(eval(&s, &sp, &s.T, s.disp, NULL, NULL, &res, NULL));
    GR_CHECK(res.n_valid == s.fn, "%s: n_valid %lld, expected every voxel %lld", name, (long long)res.n_valid,
             (long long)s.fn);
    check_gradients(&s, &sp, NULL, pick_fade, 8, 1, name);
    /* MSE on the same partially overlapping scene counts fewer voxels */
    gr_metric_spec ms = make_spec(&s, GR_METRIC_MSE, 0);
    GR_CHECK_OK(eval(&s, &ms, &s.T, s.disp, NULL, NULL, &res, NULL));
    GR_CHECK(res.n_valid > 0 && res.n_valid < s.fn, "partial overlap: MSE n_valid %lld of %lld", (long long)res.n_valid,
             (long long)s.fn);
  }
  scene_free(&s);

  const int64_t msz2[3] = {44, 40, 44};
  scene t;
  scene_init(&t, fsz, msz2, 0.4, 0);
  float *mask = malloc((size_t)t.fn * sizeof(float));
  const int64_t nx = t.fg.n[0];
  for (int64_t v = 0; v < t.fn; ++v) mask[v] = (v % nx) < nx / 2 ? 1.0f : 0.0f;
  for (int r = 1; r <= 2; ++r) {
    char name[64];
    snprintf(name, sizeof name, "LNCC r=%d fixed mask", r);
    gr_metric_spec sp = make_spec(&t, GR_METRIC_LNCC, r);
    check_gradients(&t, &sp, mask, pick_interior, 8, 1, name);
    /* voxels just outside the mask (within r) carry gradient; farther ones none */
    sp.want_field_grad = 1;
    float *grad = malloc(3 * (size_t)t.fn * sizeof(float));
    gr_metric_result res;
    GR_CHECK_OK(eval(&t, &sp, &t.T, t.disp, mask, NULL, &res, grad));
    double band = 0, beyond = 0;
    for (int64_t v = 0; v < t.fn; ++v) {
      const int64_t i = v % nx;
      const double g = fabs(grad[v]) + fabs(grad[t.fn + v]) + fabs(grad[2 * t.fn + v]);
      if (i >= nx / 2 && i < nx / 2 + r) band += g;
      if (i >= nx / 2 + r) beyond += g;
    }
    GR_CHECK(band > 0 && beyond == 0, "%s: gradient mass in band %g, beyond %g", name, band, beyond);
    int bad = 0, checked = 0;
    const double scale = max_abs(grad, 3 * t.fn);
    for (int tries = 0; tries < 100000 && checked < 4; ++tries) {
      const int64_t v = (int64_t)(urand() * (double)t.fn);
      if (v % nx != nx / 2 + r - 1) continue;
      double c[3];
      moving_index(&t, &t.T, t.disp, v, c);
      if (!pick_interior(&t, v, c)) continue;
      bad += fd_voxel(&t, &sp, mask, v, grad, scale, name);
      ++checked;
    }
    GR_CHECK(checked == 4 && bad == 0, "%s: band voxels: %d bad of %d checked", name, bad, checked);
    free(grad);
  }
  free(mask);
  scene_free(&t);
}

static void test_masks(void) {
  const int64_t fsz[3] = {20, 22, 24}, msz[3] = {44, 40, 44};
  scene s;
  scene_init(&s, fsz, msz, 0.4, 0);
  float *fmask = malloc((size_t)s.fn * sizeof(float)), *mones = malloc((size_t)s.mn * sizeof(float));
  float *zeros = calloc((size_t)(s.fn > s.mn ? s.fn : s.mn), sizeof(float));
  float *grad = malloc(3 * (size_t)s.fn * sizeof(float));
  int64_t count = 0;
  for (int64_t v = 0; v < s.fn; ++v) {
    fmask[v] = (v / s.fg.n[0]) % 3 == 0 ? 1.0f : 0.0f;
    count += fmask[v] > 0.5f;
  }
  for (int64_t v = 0; v < s.mn; ++v) mones[v] = 1.0f;
  for (int ci = 0; ci < NCASES; ++ci) {
    char name[64];
    case_name(&cases[ci], name, sizeof name);
    gr_metric_spec sp = make_spec(&s, cases[ci].kind, cases[ci].param);
    sp.want_field_grad = 1;
    gr_metric_result r;
    GR_CHECK_OK(eval(&s, &sp, &s.T, s.disp, NULL, mones, &r, grad));
    GR_CHECK(r.n_valid == s.fn, "%s: all-ones moving mask: n_valid %lld of %lld", name, (long long)r.n_valid,
             (long long)s.fn);
    GR_CHECK_OK(eval(&s, &sp, &s.T, s.disp, fmask, NULL, &r, grad));
    GR_CHECK(r.n_valid == count, "%s: fixed mask: n_valid %lld, expected %lld", name, (long long)r.n_valid,
             (long long)count);
    if (cases[ci].kind != GR_METRIC_LNCC) {
      int nonzero = 0;
      for (int64_t v = 0; v < s.fn; ++v)
        if (!(fmask[v] > 0.5f)) nonzero += grad[v] != 0 || grad[s.fn + v] != 0 || grad[2 * s.fn + v] != 0;
      GR_CHECK(nonzero == 0, "%s: %d voxels outside the fixed mask have a gradient", name, nonzero);
    }
    gr_clear_error();
    GR_CHECK(eval(&s, &sp, &s.T, s.disp, zeros, NULL, &r, grad) == GR_ERR_EMPTY, "%s: empty fixed mask accepted", name);
    GR_CHECK(strstr(gr_last_error(), "no overlap") != NULL, "%s: message '%s'", name, gr_last_error());
    GR_CHECK(eval(&s, &sp, &s.T, s.disp, NULL, zeros, &r, grad) == GR_ERR_EMPTY, "%s: empty moving mask accepted", name);
    /* no overlap at all: far translation */
    gr_affine far = s.T;
    far.m[3] += 500.0;
    const gr_status st = eval(&s, &sp, &far, s.disp, NULL, NULL, &r, grad);
    if (cases[ci].kind == GR_METRIC_LNCC) {
      GR_CHECK(st == GR_OK && r.n_valid == s.fn && fabs(r.value) < 1e-12, "%s far away: status %d n %lld value %g", name,
               (int)st, (long long)r.n_valid, r.value);
    } else {
      GR_CHECK(st == GR_ERR_EMPTY, "%s: no overlap gave status %d", name, (int)st);
    }
  }
  free(fmask);
  free(mones);
  free(zeros);
  free(grad);
  scene_free(&s);
}

static void test_determinism(void) {
#ifdef _OPENMP
  /* planes of >= 8192 voxels so LNCC runs its sweep with the team too */
  const int64_t fsz[3] = {96, 90, 12}, msz[3] = {100, 90, 20};
  scene s;
  scene_init(&s, fsz, msz, 0.4, 0);
  float *fmask = malloc((size_t)s.fn * sizeof(float)), *mmask = malloc((size_t)s.mn * sizeof(float));
  for (int64_t v = 0; v < s.fn; ++v) fmask[v] = (v % 7) != 0 ? 1.0f : 0.0f;
  for (int64_t v = 0; v < s.mn; ++v) mmask[v] = (v % 11) != 0 ? 1.0f : 0.0f;
  float *g1 = malloc(3 * (size_t)s.fn * sizeof(float)), *g2 = malloc(3 * (size_t)s.fn * sizeof(float));
  const int saved = omp_get_max_threads();
  for (int masked = 0; masked < 2; ++masked) {
    for (int ci = 0; ci < NCASES; ++ci) {
      char name[64];
      case_name(&cases[ci], name, sizeof name);
      gr_metric_spec sp = make_spec(&s, cases[ci].kind, cases[ci].param);
      sp.want_field_grad = sp.want_affine_grad = 1;
      gr_metric_result r1, r2;
      omp_set_num_threads(1);
      GR_CHECK_OK(eval(&s, &sp, &s.T, s.disp, masked ? fmask : NULL, masked ? mmask : NULL, &r1, g1));
      omp_set_num_threads(2);
      GR_CHECK_OK(eval(&s, &sp, &s.T, s.disp, masked ? fmask : NULL, masked ? mmask : NULL, &r2, g2));
      GR_CHECK(memcmp(&r1.value, &r2.value, sizeof(double)) == 0, "%s: value %.17g vs %.17g", name, r1.value, r2.value);
      GR_CHECK(r1.n_valid == r2.n_valid, "%s: n_valid differs", name);
      GR_CHECK(memcmp(r1.grad_affine, r2.grad_affine, sizeof r1.grad_affine) == 0, "%s: grad_affine differs", name);
      GR_CHECK(memcmp(g1, g2, 3 * (size_t)s.fn * sizeof(float)) == 0, "%s: grad_u differs", name);
    }
  }
  omp_set_num_threads(saved);
  free(fmask);
  free(mmask);
  free(g1);
  free(g2);
  scene_free(&s);
#else
  printf("determinism: built without OpenMP, nothing to compare\n");
#endif
}

/* Scratch goes through the backend allocator and is returned. */
static void test_accounting(void) {
  const int64_t fsz[3] = {20, 22, 24}, msz[3] = {44, 40, 44};
  scene s;
  scene_init(&s, fsz, msz, 0.4, 0);
  float *grad = malloc(3 * (size_t)s.fn * sizeof(float));
  for (int ci = 0; ci < NCASES; ++ci) {
    char name[64];
    case_name(&cases[ci], name, sizeof name);
    gr_metric_spec sp = make_spec(&s, cases[ci].kind, cases[ci].param);
    sp.want_field_grad = sp.want_affine_grad = 1;
    const size_t before = be->bytes_current;
    be->bytes_peak = before;
    gr_metric_result r;
    GR_CHECK_OK(eval(&s, &sp, &s.T, s.disp, NULL, NULL, &r, grad));
    GR_CHECK(be->bytes_current == before, "%s: scratch leaked (%zu -> %zu bytes)", name, before, be->bytes_current);
    printf("%-12s scratch peak %zu bytes (%.3f B/voxel)\n", name, be->bytes_peak - before,
           (double)(be->bytes_peak - before) / (double)s.fn);
  }
  free(grad);
  scene_free(&s);
}

static void test_bad_args(void) {
  const int64_t sz[3] = {6, 6, 6};
  scene s;
  scene_init(&s, sz, sz, 0.0, 1);
  gr_metric_spec sp = make_spec(&s, GR_METRIC_MI, 5);
  gr_metric_result r;
  GR_CHECK(eval(&s, &sp, NULL, NULL, NULL, NULL, &r, NULL) == GR_ERR_INVALID_ARG, "MI with 5 bins accepted");
  sp = make_spec(&s, GR_METRIC_MSE, 0);
  sp.want_field_grad = 1;
  GR_CHECK(eval(&s, &sp, NULL, NULL, NULL, NULL, &r, NULL) == GR_ERR_INVALID_ARG, "want_field_grad without buffer");
  sp = make_spec(&s, (gr_metric_kind)42, 0);
  GR_CHECK(eval(&s, &sp, NULL, NULL, NULL, NULL, &r, NULL) == GR_ERR_INVALID_ARG, "unknown kind accepted");
  scene_free(&s);
}

int main(void) {
  GR_CHECK_OK(gr_backend_cpu_create(0, &be));
  if (!be) return 1;
  test_values();
  test_gradients();
  test_lncc_special();
  test_masks();
  test_determinism();
  test_accounting();
  test_bad_args();
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
