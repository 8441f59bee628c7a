/* CUDA backend against the CPU reference, op by op, on real data.
 *
 * Data: chris_t1 (fixed, 2x downsampled to 94x128x95) and chris_PD (oblique
 * grid, 2x downsampled), intensities mapped to [0, 1] as the registration
 * driver does, plus smooth sinusoidal displacement fields of a few voxels.
 *
 * Tolerances (the CUDA kernels reproduce the CPU's arithmetic operation for
 * operation, so most results are in fact bitwise equal; the tolerances leave
 * room only for the different summation order of reductions):
 *   element-wise ops (resample, smooth, compose, invert, jacobian_det, Adam,
 *     axpy): relative L2 < 1e-5; minmax exact;
 *   metric value: |delta| <= 1e-5 |value|; n_valid equal; MI value and
 *     grad_u bitwise equal (integer histogram, same per-voxel arithmetic);
 *   metric grad_u and grad_affine: relative L2 < 1e-3 (the double LNCC kernel,
 *     GIGAREG_CUDA_LNCC=double, keeps its alpha box sums in float, ~3e-7
 *     expected; the others ~1e-12);
 *   LNCC fast path (the default, cuda_lncc_fast.cu: W stored as float, xy box
 *     sums and window statistics in fp32): value |delta| <= 1e-4 |value|,
 *     grad_u and grad_affine relative L2 < 1e-3. Why: W carries 6e-8
 *     relative rounding and each fp32 box sum ~(2r+1) * 6e-8, which the
 *     cancellation in B = Sff - Sf^2/n (and A, C) amplifies by
 *     (var + mean^2) / var, ~10..100 in textured windows of [0, 1] images, so
 *     cc carries ~1e-6..1e-5 relative error per window; the value is their
 *     mean. Measured on an H100 (2026-11-25): value 6e-8..1.8e-5, grad_u
 *     2.4e-6..9.5e-5, grad_affine 1.4e-7..5.7e-5, so the tolerances leave
 *     ~5x (value) and ~10x (gradients) of margin. Exact-zero regions (zero
 *     padding, zero backgrounds) stay exact (see the kernel's header: a
 *     shifted variant failed there with 1e-2). Radii 1 and 4 are checked too,
 *     and the double kernel (GIGAREG_CUDA_LNCC=double) with the tolerances above;
 *   the metrics on a second head (ch2, mricron-data, when installed) with the
 *     same tolerances;
 *   LNCC's field gradient alone (greedy/SyN iterations): the lean variant
 *     (no warped-image buffer) within the fast path's tolerances and bitwise
 *     the variant with the buffer, at radii 1, 2 (masks) and 3;
 *   16-bit images: pack_u16 equals gr_u16_quantize for every value (out of
 *     range, 0, 1, NaN, the half steps, the T1 image); every metric path with
 *     16-bit fixed and moving images, and with either alone, is bitwise (value,
 *     n_valid, grad_affine, every grad_u float) the GPU call on float images
 *     holding gr_u16_round of the data: LNCC's fast path at r = 1, 2, 3 (field
 *     gradient alone, lean and buffered; with the affine; masks; value only),
 *     MI's (gradients, masks, value only), and the paths given float copies
 *     (MSE, NCC, LNCC r5, LNCC's affine alone, GIGAREG_CUDA_LNCC=double,
 *     GIGAREG_CUDA_LNCC_SAMPLE64=1, GIGAREG_CUDA_EXACT=1);
 *   determinism: two GPU runs of MI, LNCC and NCC give bitwise equal values
 *     and gradients;
 *   registrations (3 levels, fixed iteration counts): greedy LNCC and rigid
 *     MI on chris_t1 at half resolution, CUDA vs CPU fields agree within 0.05
 *     voxel mean.
 * Exit 77 (skipped) without a CUDA build or without a GPU. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stdint.h>
#include "gr_test.h"
#include "registration/reg_internal.h"
#include "kernels/u16.h"
#ifdef GIGAREG_HAVE_CUDA
#include "kernels/cuda_entry.h"
#endif

#define TWO_PI 6.283185307179586

#ifndef GIGAREG_HAVE_CUDA
int main(void) {
  (void)gr_test_failures;
  GR_SKIP("built without the CUDA backend");
}
#else

/* A buffer present on both backends: h (host, CPU backend) and d (GPU). */
typedef struct dual {
  float *h, *d;
  int64_t n;
} dual;

static gr_backend *g_cpu, *g_gpu;

static dual dual_from_host(const float *src, int64_t n) {
  dual x = {NULL, NULL, n};
  x.h = malloc((size_t)n * sizeof(float));
  memcpy(x.h, src, (size_t)n * sizeof(float));
  x.d = g_gpu->ops->alloc(g_gpu, (size_t)n * sizeof(float));
  GR_CHECK(x.d != NULL, "gpu alloc of %lld floats: %s", (long long)n, gr_last_error());
  GR_CHECK_OK(g_gpu->ops->upload(g_gpu, x.d, x.h, (size_t)n * sizeof(float)));
  return x;
}

static void dual_free(dual *x) {
  free(x->h);
  if (x->d) g_gpu->ops->free(g_gpu, x->d);
  x->h = x->d = NULL;
}

static float *download(const float *d, int64_t n) {
  float *h = malloc((size_t)n * sizeof(float));
  GR_CHECK_OK(g_gpu->ops->download(g_gpu, h, d, (size_t)n * sizeof(float)));
  return h;
}

/* Relative L2 difference of a against the reference b; counts NaNs and exact mismatches. */
static double rel_l2(const float *a, const float *b, int64_t n, int64_t *ndiff, int64_t *nnan) {
  double num = 0.0, den = 0.0;
  int64_t nd = 0, nn = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (a[i] != a[i] || b[i] != b[i]) {
      ++nn;
      continue;
    }
    const double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
    nd += a[i] != b[i];
  }
  if (ndiff) *ndiff = nd;
  if (nnan) *nnan = nn;
  return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Returns the number of values that differ. */
static int64_t compare(const char *label, const float *gpu_dev, const float *cpu_host, int64_t n, double tol) {
  float *g = download(gpu_dev, n);
  int64_t nd, nn;
  const double e = rel_l2(g, cpu_host, n, &nd, &nn);
  fprintf(stderr, "  %-44s rel L2 %.3g  (%lld of %lld differ)\n", label, e, (long long)nd, (long long)n);
  GR_CHECK(nn == 0, "%s: %lld NaN values (unwritten output?)", label, (long long)nn);
  GR_CHECK(e <= tol, "%s: relative L2 %.3g > %.1g", label, e, tol);
  free(g);
  return nd;
}

/* ---- data ------------------------------------------------------------------------ */
static gr_image *load_shrunk(const char *dir, const char *name, double shrink) {
  char path[512];
  gr_test_path(path, sizeof path, dir, name);
  gr_image *img = NULL;
  if (!gr_test_file_exists(path) || gr_image_read(path, &img) != GR_OK) return NULL;
  gr_geometry g;
  gr_geometry_shrink(&img->geom, shrink, &g);
  gr_grid src, dst;
  gr_grid_from_geometry(&img->geom, &src);
  gr_grid_from_geometry(&g, &dst);
  gr_image *out = NULL;
  gr_image_create(&g, 1, &out);
  const double sv[3] = {0.5 * shrink, 0.5 * shrink, 0.5 * shrink};
  g_cpu->ops->smooth(g_cpu, &src, img->data, 1, sv);
  g_cpu->ops->resample(g_cpu, &dst, out->data, &src, img->data, 1, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP);
  gr_image_destroy(img);
  return out;
}

static void normalise01(gr_image *img) {
  const int64_t n = gr_image_nvox(img);
  float lo = img->data[0], hi = img->data[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = img->data[i] < lo ? img->data[i] : lo;
    hi = img->data[i] > hi ? img->data[i] : hi;
  }
  for (int64_t i = 0; i < n; ++i) img->data[i] = (float)((img->data[i] - lo) / (double)(hi - lo));
}

/* Smooth sinusoidal displacement of amplitude amp_vox voxels (mm planes). */
static float *make_field(const gr_geometry *geom, double amp_vox, unsigned seed) {
  const int64_t nx = geom->size[0], ny = geom->size[1], nz = geom->size[2], n = nx * ny * nz;
  float *w = malloc((size_t)n * 3 * sizeof(float));
  double ph[3][3];
  for (int c = 0; c < 3; ++c)
    for (int a = 0; a < 3; ++a) ph[c][a] = 0.7 * (double)((seed * 2654435761u + (unsigned)(c * 3 + a) * 40503u) % 1000) / 100.0;
  for (int64_t z = 0; z < nz; ++z)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        const double u = (double)x / nx, v = (double)y / ny, s = (double)z / nz;
        const int64_t i = (z * ny + y) * nx + x;
        for (int c = 0; c < 3; ++c) {
          const double val = sin(TWO_PI * u + ph[c][0]) * sin(TWO_PI * v + ph[c][1]) * sin(TWO_PI * s + ph[c][2]) +
                             0.5 * sin(2 * TWO_PI * u + ph[c][1]) * cos(TWO_PI * s + ph[c][0]);
          w[c * n + i] = (float)(amp_vox * geom->spacing[c] * val / 1.5);
        }
      }
  return w;
}

static float *threshold(const gr_image *img, float thr) {
  const int64_t n = gr_image_nvox(img);
  float *m = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; ++i) m[i] = img->data[i] > thr ? 1.0f : 0.0f;
  return m;
}

/* ---- backend basics ------------------------------------------------------------------ */
static void test_basics(void) {
  fprintf(stderr, "backend basics\n");
  const size_t before = g_gpu->bytes_current;
  float *a = g_gpu->ops->alloc(g_gpu, 1000 * sizeof(float));
  float *b = g_gpu->ops->alloc(g_gpu, 1000 * sizeof(float));
  GR_CHECK(a && b, "alloc");
  GR_CHECK(g_gpu->bytes_current == before + 8000, "accounting %zu", g_gpu->bytes_current - before);
  GR_CHECK_OK(g_gpu->ops->fill(g_gpu, a, 1.5f, 1000));
  GR_CHECK_OK(g_gpu->ops->fill(g_gpu, b, 0.0f, 1000));
  GR_CHECK_OK(g_gpu->ops->copy(g_gpu, b + 1, a, 999 * sizeof(float)));
  float *h = download(b, 1000);
  int ok = h[0] == 0.0f;
  for (int i = 1; i < 1000; ++i) ok &= h[i] == 1.5f;
  GR_CHECK(ok, "fill + copy");
  free(h);
  GR_CHECK_OK(g_gpu->ops->copy(g_gpu, a + 3, a, 500 * sizeof(float))); /* overlapping: memmove semantics */
  g_gpu->ops->free(g_gpu, a);
  g_gpu->ops->free(g_gpu, b);
  GR_CHECK(g_gpu->bytes_current == before, "accounting after free %zu", g_gpu->bytes_current);
  float *c = g_gpu->ops->alloc(g_gpu, 1000 * sizeof(float)); /* comes from the pool */
  GR_CHECK(c != NULL, "pooled alloc");
  g_gpu->ops->free(g_gpu, c);
  gr_clear_error();
  void *huge = g_gpu->ops->alloc(g_gpu, (size_t)1 << 52);
  GR_CHECK(huge == NULL, "4 PiB device allocation must fail");
  GR_CHECK(strstr(gr_last_error(), "free") != NULL, "OOM message gives free bytes: %s", gr_last_error());
  fprintf(stderr, "  OOM message: %s\n", gr_last_error());
  GR_CHECK(g_gpu->bytes_current == before, "failed allocation not accounted");
}

/* ---- element-wise ops ------------------------------------------------------------------ */
static void test_resample(const gr_image *t1, const gr_image *pd, const gr_affine *T, const dual *U, const dual *PD) {
  fprintf(stderr, "resample (PD oblique grid -> T1 grid, affine + displacement)\n");
  gr_grid fg, mg;
  gr_grid_from_geometry(&t1->geom, &fg);
  gr_grid_from_geometry(&pd->geom, &mg);
  const int64_t n = gr_image_nvox(t1);
  float *out_h = malloc((size_t)n * 3 * sizeof(float));
  float *out_d = g_gpu->ops->alloc(g_gpu, (size_t)n * 3 * sizeof(float));
  for (int interp = 0; interp < 2; ++interp)
    for (int bnd = 0; bnd < 2; ++bnd)
      for (int wd = 0; wd < 2; ++wd) {
        char label[128];
        snprintf(label, sizeof label, "resample %s %s %s", interp ? "nearest" : "linear", bnd ? "clamp" : "zero",
                 wd ? "T+u" : "T");
        GR_CHECK_OK(g_cpu->ops->resample(g_cpu, &fg, out_h, &mg, PD->h, 1, T, wd ? U->h : NULL, (gr_interp)interp,
                                         (gr_boundary)bnd));
        GR_CHECK_OK(g_gpu->ops->fill(g_gpu, out_d, NAN, n));
        GR_CHECK_OK(g_gpu->ops->resample(g_gpu, &fg, out_d, &mg, PD->d, 1, T, wd ? U->d : NULL, (gr_interp)interp,
                                         (gr_boundary)bnd));
        compare(label, out_d, out_h, n, 1e-5);
      }
  /* a 3-component field onto a coarser grid (the pyramid's field resampling) */
  gr_geometry cg;
  gr_geometry_shrink(&t1->geom, 1.7, &cg);
  gr_grid cgr;
  gr_grid_from_geometry(&cg, &cgr);
  const int64_t nc = gr_geometry_nvox(&cg);
  GR_CHECK_OK(g_cpu->ops->resample(g_cpu, &cgr, out_h, &fg, U->h, 3, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP));
  GR_CHECK_OK(g_gpu->ops->resample(g_gpu, &cgr, out_d, &fg, U->d, 3, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP));
  compare("resample 3-component field, clamp", out_d, out_h, nc * 3, 1e-5);
  free(out_h);
  g_gpu->ops->free(g_gpu, out_d);
}

static void test_smooth(const gr_image *t1, const dual *U, const dual *T1) {
  fprintf(stderr, "smooth\n");
  gr_grid g;
  gr_grid_from_geometry(&t1->geom, &g);
  const int64_t n = gr_image_nvox(t1);
  const double sig[5][3] = {{1.0, 1.0, 1.0}, {0.5, 0.5, 0.5}, {0.5, 2.0, 0.0}, {0.0, 0.0, 1.5}, {0.0, 1.0, 0.5}};
  for (int k = 0; k < 5; ++k) {
    dual w = dual_from_host(U->h, 3 * n);
    GR_CHECK_OK(g_cpu->ops->smooth(g_cpu, &g, w.h, 3, sig[k]));
    GR_CHECK_OK(g_gpu->ops->smooth(g_gpu, &g, w.d, 3, sig[k]));
    char label[128];
    snprintf(label, sizeof label, "smooth field sigma (%g, %g, %g)", sig[k][0], sig[k][1], sig[k][2]);
    compare(label, w.d, w.h, 3 * n, 1e-5);
    dual_free(&w);
  }
  const double big[3] = {6.0, 6.0, 2.0}; /* x/y radius 18: the generic per-axis path */
  dual w = dual_from_host(T1->h, n);
  GR_CHECK_OK(g_cpu->ops->smooth(g_cpu, &g, w.h, 1, big));
  GR_CHECK_OK(g_gpu->ops->smooth(g_gpu, &g, w.d, 1, big));
  compare("smooth image sigma (6, 6, 2)", w.d, w.h, n, 1e-5);
  dual_free(&w);

  /* GIGAREG_CUDA_EXACT=1: the double, CPU-order smoothing is bitwise the CPU's */
  setenv("GIGAREG_CUDA_EXACT", "1", 1);
  gr_backend *ex = NULL;
  GR_CHECK_OK(gr_backend_create(GR_DEVICE_CUDA, 0, 0, &ex));
  unsetenv("GIGAREG_CUDA_EXACT");
  if (!ex) return;
  for (int k = 0; k < 5; ++k) {
    float *d = ex->ops->alloc(ex, (size_t)n * 3 * sizeof(float));
    float *h = malloc((size_t)n * 3 * sizeof(float)), *back = malloc((size_t)n * 3 * sizeof(float));
    memcpy(h, U->h, (size_t)n * 3 * sizeof(float));
    GR_CHECK_OK(ex->ops->upload(ex, d, h, (size_t)n * 3 * sizeof(float)));
    GR_CHECK_OK(g_cpu->ops->smooth(g_cpu, &g, h, 3, sig[k]));
    GR_CHECK_OK(ex->ops->smooth(ex, &g, d, 3, sig[k]));
    GR_CHECK_OK(ex->ops->download(ex, back, d, (size_t)n * 3 * sizeof(float)));
    int64_t nd = 0;
    for (int64_t i = 0; i < 3 * n; ++i) nd += memcmp(&h[i], &back[i], sizeof(float)) != 0;
    fprintf(stderr, "  exact smooth sigma (%g, %g, %g): %lld of %lld differ from the CPU\n", sig[k][0], sig[k][1],
            sig[k][2], (long long)nd, (long long)(3 * n));
    GR_CHECK(nd == 0, "GIGAREG_CUDA_EXACT smoothing differs from the CPU in %lld values", (long long)nd);
    ex->ops->free(ex, d);
    free(h);
    free(back);
  }
  gr_backend_destroy(ex);
}

/* n uniform values in [-0.5, 0.5) from the LCG state *seed (advanced) */
static void fill_uniform(float *h, int64_t n, uint32_t *seed) {
  for (int64_t i = 0; i < n; ++i) {
    *seed = *seed * 1664525u + 1013904223u;
    h[i] = (float)((*seed >> 8) & 0xffff) / 65536.0f - 0.5f;
  }
}

/* smooth_to (out of place, x+y+z fused where it can) must leave bitwise what
 * smooth leaves in place on the same backend, on grids that exercise the fused
 * kernel's edges (partial 128-column strips, partial row tiles, z shorter than
 * a chunk, radii 1..4, both tile heights) and the copy-then-smooth fallback
 * (odd rows, anisotropic radii); the source must stay untouched. */
static void test_smooth_to(void) {
  fprintf(stderr, "smooth_to\n");
  const int64_t dims[5][3] = {{64, 48, 40}, {128, 37, 21}, {132, 20, 9}, {256, 16, 70}, {61, 30, 20}};
  const double sig[6][3] = {{0.3, 0.3, 0.3}, {0.5, 0.5, 0.5}, {1.0, 1.0, 1.0}, {1.2, 1.2, 1.2}, {1.0, 0.5, 0.5}, {0.0, 0.5, 0.5}};
  const char *nw[3] = {"8", "12", "16"}; /* 12: the default at R >= 3 (else the default, 16) */
  uint32_t seed = 12345u;
  const int quick = getenv("GR_CUDA_TEST_NO_REG") != NULL; /* the sanitizer runs: two grids, two sigmas */
  for (int gi = 0; gi < (quick ? 2 : 5); ++gi) {
    gr_grid g;
    memset(&g, 0, sizeof g);
    for (int a = 0; a < 3; ++a) g.n[a] = dims[gi][a];
    const int64_t n = dims[gi][0] * dims[gi][1] * dims[gi][2], n3 = 3 * n;
    float *h = malloc((size_t)n3 * sizeof(float));
    fill_uniform(h, n3, &seed);
    dual a = dual_from_host(h, n3), src = dual_from_host(h, n3);
    float *dst = g_gpu->ops->alloc(g_gpu, (size_t)n3 * sizeof(float));
    GR_CHECK(dst != NULL, "gpu alloc: %s", gr_last_error());
    for (int k = quick ? 1 : 0; k < (quick ? 3 : 6); ++k) {
      GR_CHECK_OK(g_gpu->ops->upload(g_gpu, a.d, h, (size_t)n3 * sizeof(float)));
      GR_CHECK_OK(g_gpu->ops->smooth(g_gpu, &g, a.d, 3, sig[k]));
      float *ref = download(a.d, n3);
      for (int w = 0; w < 3; ++w) {
        setenv("GIGAREG_CUDA_SMOOTH_NW", nw[w], 1);
        GR_CHECK_OK(g_gpu->ops->fill(g_gpu, dst, -7.0f, n3));
        GR_CHECK_OK(g_gpu->ops->smooth_to(g_gpu, &g, src.d, dst, 3, sig[k]));
        unsetenv("GIGAREG_CUDA_SMOOTH_NW");
        float *got = download(dst, n3), *left = download(src.d, n3);
        int64_t nd = 0, ns = 0;
        for (int64_t i = 0; i < n3; ++i) {
          nd += memcmp(&got[i], &ref[i], sizeof(float)) != 0;
          ns += memcmp(&left[i], &h[i], sizeof(float)) != 0;
        }
        if (w == 2 || nd)
          fprintf(stderr, "  %lldx%lldx%lld sigma (%g, %g, %g), %s rows/block: %lld of %lld differ from in place\n",
                  (long long)dims[gi][0], (long long)dims[gi][1], (long long)dims[gi][2], sig[k][0], sig[k][1],
                  sig[k][2], nw[w], (long long)nd, (long long)n3);
        GR_CHECK(nd == 0, "smooth_to differs from smooth in %lld values", (long long)nd);
        GR_CHECK(ns == 0, "smooth_to changed %lld source values", (long long)ns);
        free(got);
        free(left);
      }
      free(ref);
    }
    GR_CHECK(g_gpu->ops->smooth_to(g_gpu, &g, src.d, src.d, 3, sig[1]) == GR_ERR_INVALID_ARG,
             "smooth_to accepted overlapping source and destination");
    g_gpu->ops->free(g_gpu, dst);
    dual_free(&a);
    dual_free(&src);
    free(h);
  }
}

/* adam_moments_smoothed (the gradient's smoothing fused into the moments
 * pass) must leave bitwise the moments and the max step that smooth + adam_moments
 * leave on the same backend, float and bfloat16 moments, over three steps, on the
 * fused kernel's grids and on the fallback's (odd rows, anisotropic sigma). */
static void test_adam_moments_smoothed(void) {
  fprintf(stderr, "adam_moments_smoothed\n");
  const int64_t dims[4][3] = {{64, 48, 40}, {132, 20, 9}, {256, 16, 70}, {61, 30, 20}};
  const double sig[4][3] = {{1.0, 1.0, 1.0}, {0.5, 0.5, 0.5}, {1.2, 1.2, 1.2}, {1.0, 0.5, 1.0}};
  uint32_t seed = 777u;
  const int quick = getenv("GR_CUDA_TEST_NO_REG") != NULL; /* the sanitizer runs: two grids, two sigmas */
  for (int gi = 0; gi < (quick ? 2 : 4); ++gi) {
    gr_grid g;
    memset(&g, 0, sizeof g);
    for (int a = 0; a < 3; ++a) {
      g.n[a] = dims[gi][a];
      g.p2i[a * 4 + a] = 1.0 / (1.0 + 0.25 * a); /* anisotropic spacing: the max is in voxel units */
    }
    const int64_t n = dims[gi][0] * dims[gi][1] * dims[gi][2], n3 = 3 * n;
    float *h = malloc((size_t)n3 * sizeof(float));
    for (int bf = 0; bf < 2; ++bf)
      for (int k = 0; k < (quick ? 2 : 4); ++k) {
        const size_t mb = gr_moment_bytes(n, bf);
        gr_moments ma = {g_gpu->ops->alloc(g_gpu, mb), g_gpu->ops->alloc(g_gpu, mb), bf};
        gr_moments mb2 = {g_gpu->ops->alloc(g_gpu, mb), g_gpu->ops->alloc(g_gpu, mb), bf};
        float *ga = g_gpu->ops->alloc(g_gpu, (size_t)n3 * sizeof(float));
        float *gb = g_gpu->ops->alloc(g_gpu, (size_t)n3 * sizeof(float));
        GR_CHECK(ma.m && ma.v && mb2.m && mb2.v && ga && gb, "gpu alloc: %s", gr_last_error());
        void *z[4] = {ma.m, ma.v, mb2.m, mb2.v};
        for (int q = 0; q < 4; ++q) GR_CHECK_OK(g_gpu->ops->fill(g_gpu, z[q], 0.0f, (int64_t)(mb / sizeof(float))));
        int64_t nd = 0;
        for (int t = 1; t <= 3; ++t) {
          fill_uniform(h, n3, &seed);
          GR_CHECK_OK(g_gpu->ops->upload(g_gpu, ga, h, (size_t)n3 * sizeof(float)));
          GR_CHECK_OK(g_gpu->ops->upload(g_gpu, gb, h, (size_t)n3 * sizeof(float)));
          double mxa = 0.0, mxb = 0.0;
          GR_CHECK_OK(g_gpu->ops->smooth(g_gpu, &g, ga, 3, sig[k]));
          GR_CHECK_OK(g_gpu->ops->adam_moments(g_gpu, &g, ga, ma, 0.9, 0.999, 1e-8, t, &mxa));
          GR_CHECK_OK(g_gpu->ops->adam_moments_smoothed(g_gpu, &g, gb, sig[k], mb2, 0.9, 0.999, 1e-8, t, &mxb));
          GR_CHECK(memcmp(&mxa, &mxb, sizeof mxa) == 0, "max step %.17g vs %.17g", mxa, mxb);
          GR_CHECK(mxa > 0.0, "max step %g", mxa);
        }
        unsigned char *pa = malloc(mb), *pb = malloc(mb);
        for (int q = 0; q < 2; ++q) {
          GR_CHECK_OK(g_gpu->ops->download(g_gpu, pa, q ? ma.v : ma.m, mb));
          GR_CHECK_OK(g_gpu->ops->download(g_gpu, pb, q ? mb2.v : mb2.m, mb));
          for (size_t i = 0; i < mb; ++i) nd += pa[i] != pb[i];
        }
        fprintf(stderr, "  %lldx%lldx%lld sigma (%g, %g, %g) %s moments, 3 steps: %lld bytes of m, v differ\n",
                (long long)dims[gi][0], (long long)dims[gi][1], (long long)dims[gi][2], sig[k][0], sig[k][1],
                sig[k][2], bf ? "bfloat16" : "float", (long long)nd);
        GR_CHECK(nd == 0, "adam_moments_smoothed differs from smooth + adam_moments");
        free(pa);
        free(pb);
        for (int q = 0; q < 4; ++q) g_gpu->ops->free(g_gpu, z[q]);
        g_gpu->ops->free(g_gpu, ga);
        g_gpu->ops->free(g_gpu, gb);
      }
    free(h);
  }
}

static void test_fields(const gr_image *t1, const dual *U, const dual *U2) {
  fprintf(stderr, "compose / invert / jacobian_det\n");
  gr_grid g;
  gr_grid_from_geometry(&t1->geom, &g);
  const int64_t n = gr_image_nvox(t1);
  float *out_h = malloc((size_t)n * 3 * sizeof(float));
  float *out_d = g_gpu->ops->alloc(g_gpu, (size_t)n * 3 * sizeof(float));
  GR_CHECK_OK(g_cpu->ops->compose(g_cpu, &g, U->h, U2->h, out_h));
  GR_CHECK_OK(g_gpu->ops->compose(g_gpu, &g, U->d, U2->d, out_d));
  compare("compose", out_d, out_h, 3 * n, 1e-5);
  GR_CHECK_OK(g_cpu->ops->invert(g_cpu, &g, U->h, out_h, 10));
  GR_CHECK_OK(g_gpu->ops->invert(g_gpu, &g, U->d, out_d, 10));
  compare("invert (10 iterations)", out_d, out_h, 3 * n, 1e-5);
  GR_CHECK_OK(g_cpu->ops->invert(g_cpu, &g, U->h, out_h, 3));
  GR_CHECK_OK(g_gpu->ops->invert(g_gpu, &g, U->d, out_d, 3));
  compare("invert (3 iterations)", out_d, out_h, 3 * n, 1e-5);
  GR_CHECK_OK(g_cpu->ops->jacobian_det(g_cpu, &g, U->h, out_h));
  GR_CHECK_OK(g_gpu->ops->jacobian_det(g_gpu, &g, U->d, out_d));
  compare("jacobian_det", out_d, out_h, n, 1e-5);
  free(out_h);
  g_gpu->ops->free(g_gpu, out_d);
}

/* bfloat16 moments (GigaRegAdamMoments "bfloat16"): three fused updates on
 * both backends; the stored moments, max_vox and the composed field are
 * bitwise equal (both round through module/src/kernels/bf16.h). */
static void test_bf16_moments(const gr_grid *g, const dual *U, const dual *U2) {
  const int64_t n = g->n[0] * g->n[1] * g->n[2], n3 = 3 * n;
  const size_t mb = gr_moment_bytes(n, 1);
  void *mh = calloc(1, mb), *vh = calloc(1, mb), *md = g_gpu->ops->alloc(g_gpu, mb), *vd = g_gpu->ops->alloc(g_gpu, mb);
  GR_CHECK(md && vd, "gpu alloc of bf16 moments: %s", gr_last_error());
  GR_CHECK_OK(g_gpu->ops->fill(g_gpu, md, 0.0f, (int64_t)(mb / sizeof(float))));
  GR_CHECK_OK(g_gpu->ops->fill(g_gpu, vd, 0.0f, (int64_t)(mb / sizeof(float))));
  float *oh = malloc(sizeof(float) * (size_t)n3), *od = g_gpu->ops->alloc(g_gpu, sizeof(float) * (size_t)n3);
  char *back = malloc(mb);
  for (int t = 1; t <= 3; ++t) {
    const dual *grad = (t % 2) ? U : U2;
    double mx_c = 0.0, mx_g = 0.0;
    GR_CHECK_OK(g_cpu->ops->adam_moments(g_cpu, g, grad->h, (gr_moments){mh, vh, 1}, 0.9, 0.99, 1e-8, t, &mx_c));
    GR_CHECK_OK(g_gpu->ops->adam_moments(g_gpu, g, grad->d, (gr_moments){md, vd, 1}, 0.9, 0.99, 1e-8, t, &mx_g));
    GR_CHECK(mx_c == mx_g, "bf16 adam_moments step %d: max_vox %.17g (gpu) vs %.17g", t, mx_g, mx_c);
    GR_CHECK_OK(g_gpu->ops->download(g_gpu, back, md, mb));
    GR_CHECK(memcmp(back, mh, mb) == 0, "bf16 adam_moments step %d: m differs", t);
    GR_CHECK_OK(g_gpu->ops->download(g_gpu, back, vd, mb));
    GR_CHECK(memcmp(back, vh, mb) == 0, "bf16 adam_moments step %d: v differs", t);
    const float scale = (float)(-0.8 / mx_c);
    GR_CHECK_OK(g_cpu->ops->adam_compose(g_cpu, g, (gr_moments){mh, vh, 1}, 0.9, 0.99, 1e-8, t, scale, U2->h, oh));
    GR_CHECK_OK(g_gpu->ops->adam_compose(g_gpu, g, (gr_moments){md, vd, 1}, 0.9, 0.99, 1e-8, t, scale, U2->d, od));
    char label[64];
    snprintf(label, sizeof label, "adam_compose bf16 moments step %d", t);
    compare(label, od, oh, n3, 0.0);
  }
  free(back);
  free(oh);
  g_gpu->ops->free(g_gpu, od);
  free(mh);
  free(vh);
  g_gpu->ops->free(g_gpu, md);
  g_gpu->ops->free(g_gpu, vd);
}

/* B-spline transforms (bspline_field, bspline_grad): a control grid of ~9 mm
 * (oblique, over the head) after a small affine, random coefficients: the field
 * is bitwise the CPU's (kernels/bspline_eval.h); the chain rule to the
 * coefficients equals it to 1e-13 of the largest coefficient (both sum per
 * B-spline cell, but in different orders, and the GPU forms the weights as
 * polynomials in the cell fraction; measured 1.0e-15 on an H100). */
static void test_bspline(const gr_image *t1, const dual *U) {
  fprintf(stderr, "bspline_field / bspline_grad\n");
  gr_grid g;
  gr_grid_from_geometry(&t1->geom, &g);
  const int64_t n = gr_image_nvox(t1);
  gr_bspline bs;
  memset(&bs, 0, sizeof bs);
  const double h = 9.0 / t1->geom.spacing[0], cr = cos(0.15), sr = sin(0.15);
  for (int a = 0; a < 3; ++a) bs.size[a] = (int64_t)(g.n[a] / h) + 4;
  /* c = R idx / h + 1.5 (rotation about z), zA: 1% scaling about the origin */
  const double cA[12] = {cr / h, -sr / h, 0, 1.5 + 0.2 * bs.size[0] * sr, sr / h, cr / h, 0, 1.5, 0, 0, 1.0 / h, 1.5};
  memcpy(bs.cA, cA, sizeof cA);
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 4; ++k) bs.zA[r * 4 + k] = r == k ? 0.01 * t1->geom.spacing[r] : 0.0;
  GR_CHECK_OK(gr_bspline_prepare(&bs));
  const int64_t G = bs.size[0] * bs.size[1] * bs.size[2];
  double *coef = malloc(sizeof(double) * 3 * G), *dc_c = malloc(sizeof(double) * 3 * G), *dc_g = malloc(sizeof(double) * 3 * G);
  uint32_t st = 99u;
  for (int64_t q = 0; q < 3 * G; ++q) {
    st = st * 1664525u + 1013904223u;
    coef[q] = ((st >> 8) * (1.0 / 16777216.0) - 0.5) * 6.0;
  }
  double *coef_d = g_gpu->ops->alloc(g_gpu, sizeof(double) * 3 * G), *dc_d = g_gpu->ops->alloc(g_gpu, sizeof(double) * 3 * G);
  GR_CHECK_OK(g_gpu->ops->upload(g_gpu, coef_d, coef, sizeof(double) * 3 * G));
  gr_bspline bs_d = bs;
  bs.coef = coef;
  bs_d.coef = coef_d;
  float *u_c = malloc(sizeof(float) * 3 * n), *u_d = g_gpu->ops->alloc(g_gpu, sizeof(float) * 3 * n);
  GR_CHECK_OK(g_cpu->ops->bspline_field(g_cpu, &g, &bs, u_c));
  GR_CHECK_OK(g_gpu->ops->bspline_field(g_gpu, &g, &bs_d, u_d));
  compare("bspline_field", u_d, u_c, 3 * n, 0.0);
  GR_CHECK_OK(g_cpu->ops->bspline_grad(g_cpu, &g, &bs, U->h, dc_c));
  GR_CHECK_OK(g_gpu->ops->bspline_grad(g_gpu, &g, &bs_d, U->d, dc_d));
  GR_CHECK_OK(g_gpu->ops->download(g_gpu, dc_g, dc_d, sizeof(double) * 3 * G));
  int64_t differ = 0, nonzero = 0;
  double big = 0.0, err = 0.0;
  for (int64_t q = 0; q < 3 * G; ++q) big = fmax(big, fabs(dc_c[q]));
  for (int64_t q = 0; q < 3 * G; ++q) {
    differ += memcmp(&dc_g[q], &dc_c[q], sizeof(double)) != 0;
    nonzero += dc_c[q] != 0.0;
    err = fmax(err, fabs(dc_g[q] - dc_c[q]) / big);
  }
  fprintf(stderr, "  %-44s %lld control points, %lld of %lld coefficients differ, max %.3g of the largest (%lld non-zero)\n",
          "bspline_grad", (long long)G, (long long)differ, (long long)(3 * G), err, (long long)nonzero);
  GR_CHECK(err <= 1e-13 && nonzero > G, "bspline_grad: max difference %.3g of the largest (%lld non-zero)", err,
           (long long)nonzero);
  free(coef);
  free(dc_c);
  free(dc_g);
  free(u_c);
  g_gpu->ops->free(g_gpu, coef_d);
  g_gpu->ops->free(g_gpu, dc_d);
  g_gpu->ops->free(g_gpu, u_d);
}

static void test_adam_axpy_minmax(const gr_image *t1, const dual *U, const dual *U2, const dual *T1, const dual *FM) {
  fprintf(stderr, "adam_direction / adam_moments / adam_compose / axpy / minmax\n");
  gr_grid g;
  gr_grid_from_geometry(&t1->geom, &g);
  const int64_t n = gr_image_nvox(t1), n3 = 3 * n;
  float *zeros = calloc((size_t)n3, sizeof(float));
  dual m = dual_from_host(zeros, n3), v = dual_from_host(zeros, n3), dir = dual_from_host(zeros, n3);
  free(zeros);
  for (int t = 1; t <= 3; ++t) {
    const dual *grad = (t % 2) ? U : U2;
    double mx_c = 0.0, mx_g = 0.0;
    GR_CHECK_OK(g_cpu->ops->adam_direction(g_cpu, &g, grad->h, m.h, v.h, dir.h, 0.9, 0.99, 1e-8, t, &mx_c));
    GR_CHECK_OK(g_gpu->ops->adam_direction(g_gpu, &g, grad->d, m.d, v.d, dir.d, 0.9, 0.99, 1e-8, t, &mx_g));
    char label[96];
    snprintf(label, sizeof label, "adam step %d: m", t);
    compare(label, m.d, m.h, n3, 1e-5);
    snprintf(label, sizeof label, "adam step %d: v", t);
    compare(label, v.d, v.h, n3, 1e-5);
    snprintf(label, sizeof label, "adam step %d: dir", t);
    compare(label, dir.d, dir.h, n3, 1e-5);
    fprintf(stderr, "  adam step %d: max_vox cpu %.17g gpu %.17g\n", t, mx_c, mx_g);
    GR_CHECK(fabs(mx_c - mx_g) <= 1e-12 * mx_c, "adam max_vox %.17g vs %.17g", mx_g, mx_c);
  }
  { /* the fused update: moments + max, then the step formed inside compose */
    double mx_c = 0.0, mx_g = 0.0;
    GR_CHECK_OK(g_cpu->ops->adam_moments(g_cpu, &g, U->h, (gr_moments){m.h, v.h, 0}, 0.9, 0.99, 1e-8, 4, &mx_c));
    GR_CHECK_OK(g_gpu->ops->adam_moments(g_gpu, &g, U->d, (gr_moments){m.d, v.d, 0}, 0.9, 0.99, 1e-8, 4, &mx_g));
    compare("adam_moments step 4: m", m.d, m.h, n3, 1e-5);
    compare("adam_moments step 4: v", v.d, v.h, n3, 1e-5);
    GR_CHECK(fabs(mx_c - mx_g) <= 1e-12 * mx_c, "adam_moments max_vox %.17g vs %.17g", mx_g, mx_c);
    const float scale = (float)(-0.8 / mx_c);
    GR_CHECK_OK(g_cpu->ops->adam_compose(g_cpu, &g, (gr_moments){m.h, v.h, 0}, 0.9, 0.99, 1e-8, 4, scale, U2->h, dir.h));
    GR_CHECK_OK(g_gpu->ops->adam_compose(g_gpu, &g, (gr_moments){m.d, v.d, 0}, 0.9, 0.99, 1e-8, 4, scale, U2->d, dir.d));
    compare("adam_compose (fused update)", dir.d, dir.h, n3, 1e-5);
  }
  test_bf16_moments(&g, U, U2);
  dual y = dual_from_host(U2->h, n3);
  GR_CHECK_OK(g_cpu->ops->axpy(g_cpu, n3, -0.37f, U->h, y.h));
  GR_CHECK_OK(g_gpu->ops->axpy(g_gpu, n3, -0.37f, U->d, y.d));
  compare("axpy", y.d, y.h, n3, 1e-6);
  GR_CHECK_OK(g_cpu->ops->axpy(g_cpu, n3 - 3, 2.5f, U->h + 1, y.h + 2)); /* unaligned: scalar path */
  GR_CHECK_OK(g_gpu->ops->axpy(g_gpu, n3 - 3, 2.5f, U->d + 1, y.d + 2));
  compare("axpy unaligned", y.d, y.h, n3, 1e-6);
  for (int k = 0; k < 3; ++k) {
    const dual *x = k == 2 ? U : T1;
    const int64_t nn = k == 2 ? n3 : n;
    const float *mk_h = k == 1 ? FM->h : NULL, *mk_d = k == 1 ? FM->d : NULL;
    double a0, a1, b0, b1;
    GR_CHECK_OK(g_cpu->ops->minmax(g_cpu, nn, x->h, mk_h, &a0, &a1));
    GR_CHECK_OK(g_gpu->ops->minmax(g_gpu, nn, x->d, mk_d, &b0, &b1));
    fprintf(stderr, "  minmax %d: cpu [%.9g, %.9g] gpu [%.9g, %.9g]\n", k, a0, a1, b0, b1);
    GR_CHECK(a0 == b0 && a1 == b1, "minmax %d differs", k);
  }
  dual_free(&m);
  dual_free(&v);
  dual_free(&dir);
  dual_free(&y);
}

/* ---- metrics ------------------------------------------------------------------------------ */
typedef struct metric_case {
  const gr_grid *fg, *mg;
  const dual *F, *FM, *M, *MM, *U;
  const gr_affine *T;
} metric_case;

static const char *metric_name(gr_metric_kind k) {
  return k == GR_METRIC_MSE ? "MSE" : k == GR_METRIC_NCC ? "NCC" : k == GR_METRIC_LNCC ? "LNCC" : "MI";
}

/* A metric spec for the test images (intensities in [0, 1]): kind, LNCC radius,
 * 32 MI bins, which gradients are wanted. */
static gr_metric_spec spec_of(gr_metric_kind kind, int radius, int field_grad, int affine_grad) {
  gr_metric_spec s;
  memset(&s, 0, sizeof s);
  s.kind = kind;
  s.lncc_radius = radius;
  s.mi_bins = 32;
  s.fixed_max = s.moving_max = 1.0;
  s.want_field_grad = field_grad;
  s.want_affine_grad = affine_grad;
  return s;
}

/* Tolerances of check_metric: value relative, grad_u and grad_affine relative L2. */
static double g_tol_value = 1e-5, g_tol_grad = 1e-3;

static void check_metric(const char *label, const gr_metric_spec *spec, const metric_case *mc) {
  const int64_t n = mc->fg->n[0] * mc->fg->n[1] * mc->fg->n[2];
  float *gh = malloc((size_t)n * 3 * sizeof(float));
  for (int64_t i = 0; i < 3 * n; ++i) gh[i] = NAN;
  float *gd = g_gpu->ops->alloc(g_gpu, (size_t)n * 3 * sizeof(float));
  GR_CHECK_OK(g_gpu->ops->fill(g_gpu, gd, NAN, 3 * n));
  gr_metric_result rc, rg;
  const gr_status sc = g_cpu->ops->metric(g_cpu, spec, mc->fg, mc->F->h, mc->FM ? mc->FM->h : NULL, mc->mg, mc->M->h,
                                          mc->MM ? mc->MM->h : NULL, mc->T, mc->U ? mc->U->h : NULL, &rc, gh);
  const gr_status sg = g_gpu->ops->metric(g_gpu, spec, mc->fg, mc->F->d, mc->FM ? mc->FM->d : NULL, mc->mg, mc->M->d,
                                          mc->MM ? mc->MM->d : NULL, mc->T, mc->U ? mc->U->d : NULL, &rg, gd);
  GR_CHECK(sc == sg, "%s: status cpu %s gpu %s (%s)", label, gr_strerror(sc), gr_strerror(sg), gr_last_error());
  if (sc == GR_OK && sg == GR_OK) {
    const double dv = fabs(rg.value - rc.value);
    fprintf(stderr, "  %-40s value cpu %.12g gpu %.12g |d| %.2g  n %lld/%lld\n", label, rc.value, rg.value, dv,
            (long long)rc.n_valid, (long long)rg.n_valid);
    GR_CHECK(rc.n_valid == rg.n_valid, "%s: n_valid %lld vs %lld", label, (long long)rg.n_valid, (long long)rc.n_valid);
    fprintf(stderr, "  %-40s value rel err %.3g\n", label, dv / (fabs(rc.value) + 1e-300));
    GR_CHECK(dv <= g_tol_value * fabs(rc.value) + 1e-12, "%s: value %.12g vs %.12g", label, rg.value, rc.value);
    const int mi = spec->kind == GR_METRIC_MI; /* MI repeats the CPU's arithmetic: bitwise */
    GR_CHECK(!mi || memcmp(&rg.value, &rc.value, sizeof rc.value) == 0, "%s: MI value %a vs the CPU's %a (not bitwise)",
             label, rg.value, rc.value);
    if (spec->want_field_grad) {
      char l2[160];
      snprintf(l2, sizeof l2, "%s grad_u", label);
      const int64_t nd = compare(l2, gd, gh, 3 * n, g_tol_grad);
      GR_CHECK(!mi || nd == 0, "%s: %lld values differ from the CPU's (MI: bitwise)", l2, (long long)nd);
    }
    if (spec->want_affine_grad) {
      double num = 0.0, den = 0.0;
      for (int q = 0; q < 12; ++q) {
        num += (rg.grad_affine[q] - rc.grad_affine[q]) * (rg.grad_affine[q] - rc.grad_affine[q]);
        den += rc.grad_affine[q] * rc.grad_affine[q];
      }
      const double e = den > 0 ? sqrt(num / den) : sqrt(num);
      fprintf(stderr, "  %-40s grad_affine rel L2 %.3g\n", label, e);
      GR_CHECK(e <= g_tol_grad, "%s: grad_affine relative L2 %.3g", label, e);
    }
  }
  free(gh);
  g_gpu->ops->free(g_gpu, gd);
}

static void test_metrics(const metric_case *mono, const metric_case *multi) {
  fprintf(stderr, "metrics (value, grad_u, grad_affine; masks; displacement; oblique)\n");
  const gr_metric_kind kinds[4] = {GR_METRIC_MSE, GR_METRIC_NCC, GR_METRIC_LNCC, GR_METRIC_MI};
  for (int ki = 0; ki < 4; ++ki) {
    for (int pair = 0; pair < 2; ++pair) {
      for (int variant = 0; variant < 4; ++variant) {
        metric_case mc = pair ? *multi : *mono;
        /* 0: grad_u + affine, with u; 1: masks, grad_u + affine; 2: value only, no u; 3: affine only, other radius/bins */
        gr_metric_spec spec = spec_of(kinds[ki], variant == 3 ? 3 : 2, variant <= 1, variant != 2);
        spec.mi_bins = variant == 3 ? 48 : 32;
        if (variant != 1) mc.FM = mc.MM = NULL;
        if (variant == 2) mc.U = NULL;
        char label[96];
        snprintf(label, sizeof label, "%s %s %s", metric_name(kinds[ki]), pair ? "T1/PD oblique" : "T1/T1 warped",
                 variant == 0 ? "grad" : variant == 1 ? "masks" : variant == 2 ? "value" : "affine r3/b48");
        if (kinds[ki] == GR_METRIC_LNCC) { /* the fast fp32 path (default) */
          g_tol_value = 1e-4;
          g_tol_grad = 1e-3;
        }
        check_metric(label, &spec, &mc);
        g_tol_value = 1e-5;
        g_tol_grad = 1e-3;
        if (kinds[ki] == GR_METRIC_LNCC) { /* the double kernel (GIGAREG_CUDA_LNCC=double) */
          char l2[112];
          snprintf(l2, sizeof l2, "%s [double]", label);
          setenv("GIGAREG_CUDA_LNCC", "double", 1);
          check_metric(l2, &spec, &mc);
          unsetenv("GIGAREG_CUDA_LNCC");
        }
      }
    }
  }
  /* LNCC fast path at the other templated radii: 1 and 4 with gradient + affine (4 with masks), and
   * 1, 2 and 4 with the affine gradient alone (its own gather inside the fused kernel) */
  for (int pair = 0; pair < 2; ++pair)
    for (int ri = 0; ri < 5; ++ri) {
      metric_case mc = pair ? *multi : *mono;
      if (ri != 1) mc.FM = mc.MM = NULL;
      const int radius[5] = {1, 4, 1, 2, 4};
      const gr_metric_spec spec = spec_of(GR_METRIC_LNCC, radius[ri], ri < 2, 1);
      char label[96];
      snprintf(label, sizeof label, "LNCC %s r%d%s", pair ? "T1/PD oblique" : "T1/T1 warped", spec.lncc_radius,
               ri == 1 ? " masks" : ri >= 2 ? " affine" : "");
      g_tol_value = 1e-4;
      g_tol_grad = 1e-3;
      check_metric(label, &spec, &mc);
      g_tol_value = 1e-5;
      g_tol_grad = 1e-3;
    }
}

/* The fast LNCC's field gradient without the affine one (greedy and SyN
 * iterations): the lean variant (W and dL/dW in grad_u's planes, grad W
 * sampled again; forced with GIGAREG_CUDA_LNCC_LEAN=1, taken automatically
 * when W's buffer does not fit) against the CPU with the fast path's
 * tolerances, and bit for bit against the variant with W's own buffer
 * (GIGAREG_CUDA_LNCC_LEAN=0): which one runs must never change a result. */
static float *gpu_lncc_grad(const gr_metric_spec *spec, const metric_case *mc, const char *lean, gr_metric_result *r) {
  const int64_t n = mc->fg->n[0] * mc->fg->n[1] * mc->fg->n[2];
  float *gd = g_gpu->ops->alloc(g_gpu, (size_t)n * 3 * sizeof(float));
  float *gh = malloc((size_t)n * 3 * sizeof(float));
  setenv("GIGAREG_CUDA_LNCC_LEAN", lean, 1);
  GR_CHECK_OK(g_gpu->ops->fill(g_gpu, gd, NAN, 3 * n));
  GR_CHECK_OK(g_gpu->ops->metric(g_gpu, spec, mc->fg, mc->F->d, mc->FM ? mc->FM->d : NULL, mc->mg, mc->M->d,
                                 mc->MM ? mc->MM->d : NULL, mc->T, mc->U ? mc->U->d : NULL, r, gd));
  unsetenv("GIGAREG_CUDA_LNCC_LEAN");
  GR_CHECK_OK(g_gpu->ops->download(g_gpu, gh, gd, (size_t)n * 3 * sizeof(float)));
  g_gpu->ops->free(g_gpu, gd);
  return gh;
}

static void test_lncc_lean(const metric_case *mono, const metric_case *multi) {
  fprintf(stderr, "LNCC field gradient alone: lean variant vs CPU, and bitwise vs W in its own buffer\n");
  for (int pair = 0; pair < 2; ++pair)
    for (int vi = 0; vi < 3; ++vi) {
      metric_case mc = pair ? *multi : *mono;
      if (vi != 2) mc.FM = mc.MM = NULL;
      const gr_metric_spec spec = spec_of(GR_METRIC_LNCC, vi == 0 ? 3 : vi == 1 ? 1 : 2, 1, 0);
      char label[96];
      snprintf(label, sizeof label, "LNCC lean %s r%d%s", pair ? "T1/PD oblique" : "T1/T1 warped", spec.lncc_radius,
               vi == 2 ? " masks" : "");
      g_tol_value = 1e-4;
      g_tol_grad = 1e-3;
      setenv("GIGAREG_CUDA_LNCC_LEAN", "1", 1);
      check_metric(label, &spec, &mc);
      unsetenv("GIGAREG_CUDA_LNCC_LEAN");
      g_tol_value = 1e-5;
      gr_metric_result r1, r0;
      float *g1 = gpu_lncc_grad(&spec, &mc, "1", &r1), *g0 = gpu_lncc_grad(&spec, &mc, "0", &r0);
      const int64_t n3 = 3 * mc.fg->n[0] * mc.fg->n[1] * mc.fg->n[2];
      int64_t nd = 0;
      for (int64_t i = 0; i < n3; ++i) nd += memcmp(&g1[i], &g0[i], sizeof g1[i]) != 0;
      fprintf(stderr, "  %-40s lean vs own W buffer: value %a vs %a, %lld of %lld grad_u values differ\n", label,
              r1.value, r0.value, (long long)nd, (long long)n3);
      GR_CHECK(nd == 0 && memcmp(&r1.value, &r0.value, sizeof r1.value) == 0 && r1.n_valid == r0.n_valid,
               "%s: the lean variant is not bitwise the buffered one", label);
      free(g1);
      free(g0);
    }
}

/* ---- 16-bit images (gr_metric_spec.fixed_u16 / moving_u16, op pack_u16) --------------------
 * The contract: a metric on 16-bit images is bitwise the same metric on float
 * images holding gr_u16_round of the data. Here the 16-bit images are packed
 * on the GPU from the float data and the reference images are rounded on the
 * host, so pack_u16, the fast paths' 16-bit reads and the dispatcher's float
 * copies for the other paths are all checked against the shared rule. */
static uint16_t *gpu_pack(const dual *x) {
  uint16_t *q = g_gpu->ops->alloc(g_gpu, (size_t)x->n * sizeof(uint16_t));
  GR_CHECK(q != NULL, "gpu alloc of %lld uint16: %s", (long long)x->n, gr_last_error());
  if (q) GR_CHECK_OK(g_gpu->ops->pack_u16(g_gpu, x->n, x->d, q));
  return q;
}

static dual rounded_dual(const dual *x) {
  float *h = malloc((size_t)x->n * sizeof(float));
  for (int64_t i = 0; i < x->n; ++i) h[i] = gr_u16_round(x->h[i]);
  dual r = dual_from_host(h, x->n);
  free(h);
  return r;
}

/* Values of pack_u16 (GPU) that differ from gr_u16_quantize (host). */
static int64_t pack_diffs(const float *h, const float *d, int64_t n) {
  uint16_t *q = g_gpu->ops->alloc(g_gpu, (size_t)n * sizeof(uint16_t));
  uint16_t *back = malloc((size_t)n * sizeof(uint16_t));
  GR_CHECK_OK(g_gpu->ops->pack_u16(g_gpu, n, d, q));
  GR_CHECK_OK(g_gpu->ops->download(g_gpu, back, q, (size_t)n * sizeof(uint16_t)));
  int64_t nd = 0;
  for (int64_t i = 0; i < n; ++i) nd += back[i] != gr_u16_quantize(h[i]);
  g_gpu->ops->free(g_gpu, q);
  free(back);
  return nd;
}

static void test_pack_u16(const dual *T1) {
  fprintf(stderr, "pack_u16 (GPU) vs gr_u16_quantize (host)\n");
  GR_CHECK(g_gpu->ops->pack_u16 != NULL, "the CUDA backend has no pack_u16");
  if (!g_gpu->ops->pack_u16) return;
  /* the edges: out of range, exactly 0 and 1, signed zeros, NaN, infinities,
   * the half steps (k + 1/2) / 65535 and their float neighbours, the float
   * just below 1; then uniform values on [-0.25, 1.25) (an odd count: the
   * grid-stride loop's tail) */
  const int64_t n = 1000003;
  float *h = malloc((size_t)n * sizeof(float));
  int64_t k = 0;
  const float edge[] = {0.0f, -0.0f, 1.0f, -1.0f, 2.0f, -1e-30f, 1e-30f, 1e-45f, NAN, -NAN, INFINITY, -INFINITY,
                        nextafterf(1.0f, 0.0f), nextafterf(1.0f, 2.0f), nextafterf(0.0f, 1.0f), 1e6f, -1e6f};
  for (size_t i = 0; i < sizeof edge / sizeof edge[0]; ++i) h[k++] = edge[i];
  for (int q = 0; q < 65535 && k + 3 <= n; q += 7) {
    const float half = (float)(((double)q + 0.5) / 65535.0);
    h[k++] = half;
    h[k++] = nextafterf(half, 0.0f);
    h[k++] = nextafterf(half, 1.0f);
  }
  uint32_t seed = 12345u;
  for (int64_t i = k; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    h[i] = (float)((double)(seed >> 8) * (1.5 / 16777216.0) - 0.25);
  }
  dual x = dual_from_host(h, n);
  free(h);
  const int64_t nd = pack_diffs(x.h, x.d, n);
  fprintf(stderr, "  %-44s %lld of %lld values differ\n", "edges, half steps, uniform [-0.25, 1.25)", (long long)nd,
          (long long)n);
  GR_CHECK(nd == 0, "pack_u16: %lld values differ from gr_u16_quantize", (long long)nd);
  dual_free(&x);
  const int64_t nt = pack_diffs(T1->h, T1->d, T1->n);
  fprintf(stderr, "  %-44s %lld of %lld values differ\n", "T1 image", (long long)nt, (long long)T1->n);
  GR_CHECK(nt == 0, "pack_u16 of the T1 image: %lld values differ", (long long)nt);
  GR_CHECK_OK(g_gpu->ops->pack_u16(g_gpu, 0, NULL, NULL));
  GR_CHECK(g_gpu->ops->pack_u16(g_gpu, -1, NULL, NULL) == GR_ERR_INVALID_ARG, "pack_u16: negative length accepted");
  gr_clear_error();
}

/* The images of one pair in the three forms the comparison needs. */
typedef struct u16_pair {
  const dual *F, *M;     /* the float data */
  dual rF, rM;           /* gr_u16_round of it (host), uploaded */
  uint16_t *qF, *qM;     /* pack_u16 of it (GPU) */
} u16_pair;

static void u16_pair_make(u16_pair *p, const metric_case *mc) {
  p->F = mc->F;
  p->M = mc->M;
  p->rF = rounded_dual(mc->F);
  p->rM = rounded_dual(mc->M);
  p->qF = gpu_pack(mc->F);
  p->qM = gpu_pack(mc->M);
}

static void u16_pair_free(u16_pair *p) {
  dual_free(&p->rF);
  dual_free(&p->rM);
  g_gpu->ops->free(g_gpu, p->qF);
  g_gpu->ops->free(g_gpu, p->qM);
}

/* The backend u16_run calls (g_gpu, or one created with GIGAREG_CUDA_EXACT=1). */
static gr_backend *g_u16_be;

/* One GPU metric call; grad_u (NaN-filled before) downloaded when wanted. */
static float *u16_run(const gr_metric_spec *spec, const metric_case *mc, const float *F, const float *M,
                      gr_metric_result *r, gr_status *st) {
  const int64_t n3 = 3 * mc->fg->n[0] * mc->fg->n[1] * mc->fg->n[2];
  float *gd = g_gpu->ops->alloc(g_gpu, (size_t)n3 * sizeof(float)), *gh = NULL;
  GR_CHECK_OK(g_gpu->ops->fill(g_gpu, gd, NAN, n3));
  *st = g_u16_be->ops->metric(g_u16_be, spec, mc->fg, F, mc->FM ? mc->FM->d : NULL, mc->mg, M, mc->MM ? mc->MM->d : NULL,
                           mc->T, mc->U ? mc->U->d : NULL, r, gd);
  if (*st == GR_OK && spec->want_field_grad) gh = download(gd, n3);
  g_gpu->ops->free(g_gpu, gd);
  return gh;
}

/* 16-bit fixed and moving, fixed only, moving only: each bitwise the float
 * call on the rounded images (value, n_valid, every grad_u float, grad_affine). */
static void u16_check(const char *label, const gr_metric_spec *spec, const metric_case *mc, const u16_pair *p) {
  const int64_t n3 = 3 * mc->fg->n[0] * mc->fg->n[1] * mc->fg->n[2];
  static const char *which[3] = {"F+M 16-bit", "F 16-bit", "M 16-bit"};
  for (int w = 0; w < 3; ++w) {
    const int f16 = w != 2, m16 = w != 1;
    gr_metric_spec s16 = *spec;
    s16.fixed_u16 = f16 ? p->qF : NULL;
    s16.moving_u16 = m16 ? p->qM : NULL;
    gr_metric_result r0, r1;
    gr_status st0, st1;
    float *g0 = u16_run(spec, mc, f16 ? p->rF.d : p->F->d, m16 ? p->rM.d : p->M->d, &r0, &st0);
    /* the float pointer of a 16-bit image is not read: NULL */
    float *g1 = u16_run(&s16, mc, f16 ? NULL : p->F->d, m16 ? NULL : p->M->d, &r1, &st1);
    GR_CHECK(st0 == GR_OK && st1 == GR_OK, "%s %s: status float %s, 16-bit %s (%s)", label, which[w],
             gr_strerror(st0), gr_strerror(st1), gr_last_error());
    int64_t nd = 0;
    if (st0 == GR_OK && st1 == GR_OK) {
      nd += memcmp(&r0.value, &r1.value, sizeof r0.value) != 0;
      nd += r0.n_valid != r1.n_valid;
      for (int q = 0; q < 12; ++q) nd += memcmp(&r0.grad_affine[q], &r1.grad_affine[q], sizeof(double)) != 0;
      if (g0 && g1)
        for (int64_t i = 0; i < n3; ++i) nd += memcmp(&g0[i], &g1[i], sizeof(float)) != 0;
    }
    fprintf(stderr, "  %-40s %-10s value %.12g n %lld: %lld values differ\n", label, which[w], r1.value,
            (long long)r1.n_valid, (long long)nd);
    GR_CHECK(nd == 0, "%s %s: %lld of value, n_valid, grad_affine and grad_u differ from the float call on rounded "
             "images", label, which[w], (long long)nd);
    free(g0);
    free(g1);
  }
}

static void test_u16_metrics(const metric_case *mono, const metric_case *multi) {
  fprintf(stderr, "16-bit images: every metric path bitwise the float call on gr_u16_round images\n");
  if (!g_gpu->ops->pack_u16) return;
  g_u16_be = g_gpu;
  gr_backend *ex = NULL; /* GIGAREG_CUDA_EXACT=1: LNCC through the windowed kernel, given float copies */
  setenv("GIGAREG_CUDA_EXACT", "1", 1);
  GR_CHECK_OK(gr_backend_create(GR_DEVICE_CUDA, 0, 0, &ex));
  unsetenv("GIGAREG_CUDA_EXACT");
  u16_pair pairs[2];
  u16_pair_make(&pairs[0], mono);
  u16_pair_make(&pairs[1], multi);
  for (int pair = 0; pair < 2; ++pair) {
    const char *pn = pair ? "T1/PD oblique" : "T1/T1 warped";
    /* LNCC fast path: r 1..3; 0/1 field gradient alone (lean forced / W's own buffer), 2 + affine,
     * 3 masks + field gradient alone (lean), 4 masks + affine, 5 value only */
    for (int r = 1; r <= 3; ++r)
      for (int v = 0; v < 6; ++v) {
        metric_case mc = pair ? *multi : *mono;
        if (v != 3 && v != 4) mc.FM = mc.MM = NULL;
        const gr_metric_spec spec = spec_of(GR_METRIC_LNCC, r, v != 5, v == 2 || v == 4);
        static const char *vn[6] = {"grad lean", "grad buffered", "grad+affine", "masks grad lean", "masks grad+affine",
                                    "value"};
        char label[96];
        snprintf(label, sizeof label, "LNCC %s r%d %s", pn, r, vn[v]);
        if (v == 0 || v == 3) setenv("GIGAREG_CUDA_LNCC_LEAN", "1", 1);
        if (v == 1) setenv("GIGAREG_CUDA_LNCC_LEAN", "0", 1);
        u16_check(label, &spec, &mc, &pairs[pair]);
        unsetenv("GIGAREG_CUDA_LNCC_LEAN");
      }
    /* MI fast path: 0 grad_u + affine, 1 masks, 2 value only */
    for (int v = 0; v < 3; ++v) {
      metric_case mc = pair ? *multi : *mono;
      if (v != 1) mc.FM = mc.MM = NULL;
      const gr_metric_spec spec = spec_of(GR_METRIC_MI, 0, v != 2, v != 2);
      char label[96];
      snprintf(label, sizeof label, "MI %s %s", pn, v == 0 ? "grad+affine" : v == 1 ? "masks" : "value");
      u16_check(label, &spec, &mc, &pairs[pair]);
    }
    /* the float copies (cuda_metric.cu): MSE, NCC, LNCC r5 (double kernel), LNCC affine without grad_u,
     * GIGAREG_CUDA_LNCC=double, GIGAREG_CUDA_LNCC_SAMPLE64=1; then GIGAREG_CUDA_EXACT=1 (masks) */
    for (int v = 0; v < 6; ++v) {
      metric_case mc = pair ? *multi : *mono;
      mc.FM = mc.MM = NULL;
      const gr_metric_kind kind = v == 0 ? GR_METRIC_MSE : v == 1 ? GR_METRIC_NCC : GR_METRIC_LNCC;
      const gr_metric_spec spec = spec_of(kind, v == 2 ? 5 : 2, v != 3, 1);
      static const char *vn[6] = {"MSE", "NCC", "LNCC r5", "LNCC affine only", "LNCC [double]", "LNCC [sample64]"};
      char label[96];
      snprintf(label, sizeof label, "%s %s", vn[v], pn);
      if (v == 4) setenv("GIGAREG_CUDA_LNCC", "double", 1);
      if (v == 5) setenv("GIGAREG_CUDA_LNCC_SAMPLE64", "1", 1);
      u16_check(label, &spec, &mc, &pairs[pair]);
      unsetenv("GIGAREG_CUDA_LNCC");
      unsetenv("GIGAREG_CUDA_LNCC_SAMPLE64");
    }
    if (ex) {
      metric_case mc = pair ? *multi : *mono;
      const gr_metric_spec spec = spec_of(GR_METRIC_LNCC, 2, 1, 1);
      char label[96];
      snprintf(label, sizeof label, "LNCC %s masks [exact]", pn);
      g_u16_be = ex;
      u16_check(label, &spec, &mc, &pairs[pair]);
      g_u16_be = g_gpu;
    }
  }
  gr_backend_destroy(ex);
  u16_pair_free(&pairs[0]);
  u16_pair_free(&pairs[1]);
}

/* The metrics on a second head, Colin27's ch2 (Debian mricron-data, the
 * configured GR_MRICRON_DIR; its cases are reported SKIPPED when it is not
 * installed): ch2 against itself warped by a smooth field, with an oblique
 * affine and a displacement, with and without masks, the field gradient alone
 * too; the tolerances of test_metrics (MI bitwise). */
static void test_ch2(double shrink) {
  gr_image *ch2 = load_shrunk(GR_MRICRON_DIR, "ch2.nii.gz", shrink);
  if (!ch2) {
    fprintf(stderr, "ch2: %s/ch2.nii.gz not found (mricron-data): its cases SKIPPED\n", GR_MRICRON_DIR);
    return;
  }
  normalise01(ch2);
  const int64_t n = gr_image_nvox(ch2);
  fprintf(stderr, "metrics on ch2 %lldx%lldx%lld\n", (long long)ch2->geom.size[0], (long long)ch2->geom.size[1],
          (long long)ch2->geom.size[2]);
  gr_grid g;
  gr_grid_from_geometry(&ch2->geom, &g);
  float *w = make_field(&ch2->geom, 1.5, 13), *mv = malloc((size_t)n * sizeof(float));
  g_cpu->ops->resample(g_cpu, &g, mv, &g, ch2->data, 1, NULL, w, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
  float *u = make_field(&ch2->geom, 2.0, 7), *fm = threshold(ch2, 0.1f);
  float *mm = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; ++i) mm[i] = mv[i] > 0.1f ? 1.0f : 0.0f;
  dual F = dual_from_host(ch2->data, n), M = dual_from_host(mv, n), U = dual_from_host(u, 3 * n);
  dual FM = dual_from_host(fm, n), MM = dual_from_host(mm, n);
  double c[3];
  gr_geometry_center(&ch2->geom, c);
  const double p[6] = {-0.04, 0.06, 0.03, -1.5, 2.0, 1.0};
  gr_affine T;
  gr_euler_to_affine(p, c, &T);
  const gr_metric_kind kinds[4] = {GR_METRIC_MSE, GR_METRIC_NCC, GR_METRIC_LNCC, GR_METRIC_MI};
  for (int ki = 0; ki < 4; ++ki)
    for (int v = 0; v < 3; ++v) { /* 0: grad_u + affine; 1: masks, grad_u + affine; 2: grad_u alone */
      const metric_case mc = {&g, &g, &F, v == 1 ? &FM : NULL, &M, v == 1 ? &MM : NULL, &U, &T};
      const gr_metric_spec spec = spec_of(kinds[ki], 2, 1, v != 2);
      char label[96];
      snprintf(label, sizeof label, "%s ch2 %s", metric_name(kinds[ki]),
               v == 0 ? "grad+affine" : v == 1 ? "masks" : "grad");
      if (kinds[ki] == GR_METRIC_LNCC) g_tol_value = 1e-4; /* the fast fp32 path, as in test_metrics */
      check_metric(label, &spec, &mc);
      g_tol_value = 1e-5;
    }
  dual_free(&F);
  dual_free(&M);
  dual_free(&U);
  dual_free(&FM);
  dual_free(&MM);
  free(w);
  free(mv);
  free(u);
  free(fm);
  free(mm);
  gr_image_destroy(ch2);
}

/* GIGAREG_CUDA_EXACT=1: LNCC (value, N, affine and field gradients) bitwise the CPU's. */
static void test_exact_lncc(const metric_case *mono, const metric_case *multi) {
  fprintf(stderr, "exact LNCC (GIGAREG_CUDA_EXACT=1, bitwise the CPU)\n");
  setenv("GIGAREG_CUDA_EXACT", "1", 1);
  gr_backend *ex = NULL;
  GR_CHECK_OK(gr_backend_create(GR_DEVICE_CUDA, 0, 0, &ex));
  unsetenv("GIGAREG_CUDA_EXACT");
  if (!ex) return;
  for (int pair = 0; pair < 2; ++pair)
    for (int masks = 0; masks < 2; ++masks) {
      metric_case mc = pair ? *multi : *mono;
      if (!masks) mc.FM = mc.MM = NULL;
      const gr_metric_spec spec = spec_of(GR_METRIC_LNCC, 2, 1, 1);
      const int64_t n = mc.fg->n[0] * mc.fg->n[1] * mc.fg->n[2];
      float *gh = malloc((size_t)n * 3 * sizeof(float)), *back = malloc((size_t)n * 3 * sizeof(float));
      float *gd = ex->ops->alloc(ex, (size_t)n * 3 * sizeof(float));
      gr_metric_result rc, rg;
      GR_CHECK_OK(g_cpu->ops->metric(g_cpu, &spec, mc.fg, mc.F->h, mc.FM ? mc.FM->h : NULL, mc.mg, mc.M->h,
                                     mc.MM ? mc.MM->h : NULL, mc.T, mc.U->h, &rc, gh));
      GR_CHECK_OK(ex->ops->metric(ex, &spec, mc.fg, mc.F->d, mc.FM ? mc.FM->d : NULL, mc.mg, mc.M->d,
                                  mc.MM ? mc.MM->d : NULL, mc.T, mc.U->d, &rg, gd));
      GR_CHECK_OK(ex->ops->download(ex, back, gd, (size_t)n * 3 * sizeof(float)));
      int64_t nd = 0;
      for (int64_t i = 0; i < 3 * n; ++i) nd += memcmp(&gh[i], &back[i], sizeof(float)) != 0;
      const int aff_same = memcmp(rc.grad_affine, rg.grad_affine, sizeof rc.grad_affine) == 0;
      fprintf(stderr, "  LNCC %s%s: value cpu %.17g gpu %.17g, n %lld/%lld, grad_u %lld of %lld differ, affine %s\n",
              pair ? "T1/PD oblique" : "T1/T1 warped", masks ? " masks" : "", rc.value, rg.value,
              (long long)rc.n_valid, (long long)rg.n_valid, (long long)nd, (long long)(3 * n),
              aff_same ? "bitwise" : "differs");
      GR_CHECK(rc.value == rg.value && rc.n_valid == rg.n_valid && nd == 0 && aff_same,
               "exact LNCC differs from the CPU");
      ex->ops->free(ex, gd);
      free(gh);
      free(back);
    }
  gr_backend_destroy(ex);
}

/* Two GPU runs, bitwise equal. */
static void test_determinism(const metric_case *multi) {
  fprintf(stderr, "determinism (two GPU runs bitwise equal)\n");
  const gr_metric_kind kinds[3] = {GR_METRIC_MI, GR_METRIC_LNCC, GR_METRIC_NCC};
  const int64_t n = multi->fg->n[0] * multi->fg->n[1] * multi->fg->n[2];
  float *g1 = g_gpu->ops->alloc(g_gpu, (size_t)n * 3 * sizeof(float));
  float *g2 = g_gpu->ops->alloc(g_gpu, (size_t)n * 3 * sizeof(float));
  for (int ki = 0; ki < 3; ++ki) {
    const gr_metric_spec spec = spec_of(kinds[ki], 2, 1, 1);
    gr_metric_result r1, r2;
    GR_CHECK_OK(g_gpu->ops->metric(g_gpu, &spec, multi->fg, multi->F->d, NULL, multi->mg, multi->M->d, NULL, multi->T,
                                   multi->U->d, &r1, g1));
    GR_CHECK_OK(g_gpu->ops->metric(g_gpu, &spec, multi->fg, multi->F->d, NULL, multi->mg, multi->M->d, NULL, multi->T,
                                   multi->U->d, &r2, g2));
    float *h1 = download(g1, 3 * n), *h2 = download(g2, 3 * n);
    const int same = memcmp(&r1.value, &r2.value, sizeof r1.value) == 0 &&
                     memcmp(r1.grad_affine, r2.grad_affine, sizeof r1.grad_affine) == 0 &&
                     memcmp(h1, h2, (size_t)n * 3 * sizeof(float)) == 0;
    fprintf(stderr, "  %-6s %s\n", metric_name(kinds[ki]), same ? "bitwise equal" : "DIFFERENT");
    GR_CHECK(same, "%s: two GPU runs differ (value %.17g vs %.17g)", metric_name(kinds[ki]), r1.value, r2.value);
    free(h1);
    free(h2);
  }
  g_gpu->ops->free(g_gpu, g1);
  g_gpu->ops->free(g_gpu, g2);
}

/* ---- registrations ------------------------------------------------------------------------- */
static double field_mean_diff_vox(const gr_image *a, const gr_image *b, const float *mask, double *mx) {
  const int64_t n = gr_image_nvox(a);
  double s = 0.0, m = 0.0;
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (mask && !(mask[i] > 0.5f)) continue;
    double e2 = 0.0;
    for (int c = 0; c < 3; ++c) {
      const double d = (a->data[c * n + i] - b->data[c * n + i]) / a->geom.spacing[c];
      e2 += d * d;
    }
    const double e = sqrt(e2);
    s += e;
    m = e > m ? e : m;
    ++cnt;
  }
  *mx = m;
  return cnt ? s / (double)cnt : INFINITY;
}

static void test_registration(const gr_image *t1, gr_comm *comm) {
  fprintf(stderr, "registrations: CUDA vs CPU (chris_t1 half resolution, 3 levels)\n");
  const int64_t n = gr_image_nvox(t1);
  gr_grid g;
  gr_grid_from_geometry(&t1->geom, &g);
  float *head = threshold(t1, 0.15f);

  /* greedy LNCC: moving = t1 o (x + w) */
  {
    float *w = make_field(&t1->geom, 2.5, 7);
    gr_image *mov = NULL;
    gr_image_create(&t1->geom, 1, &mov);
    g_cpu->ops->resample(g_cpu, &g, mov->data, &g, t1->data, 1, NULL, w, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
    gr_stage_config cfg;
    gr_stage_config_defaults(GR_STAGE_GREEDY, &cfg);
    cfg.metric.kind = GR_METRIC_LNCC;
    cfg.convergence_window = 0; /* fixed iteration counts: no early-stop decision can differ */
    gr_reg_options opt;
    memset(&opt, 0, sizeof opt);
    gr_stage_result rc, rg;
    double t0 = gr_wall_seconds();
    const gr_status sc = gr_register(g_cpu, comm, t1, mov, NULL, NULL, NULL, &cfg, 1, &opt, &rc);
    const double tc = gr_wall_seconds() - t0;
    t0 = gr_wall_seconds();
    const gr_status sg = gr_register(g_gpu, comm, t1, mov, NULL, NULL, NULL, &cfg, 1, &opt, &rg);
    const double tg = gr_wall_seconds() - t0;
    GR_CHECK(sc == GR_OK && sg == GR_OK, "greedy registration: cpu %s gpu %s: %s", gr_strerror(sc), gr_strerror(sg),
             gr_last_error());
    if (sc == GR_OK && sg == GR_OK) {
      double mx, mxi;
      const double d = field_mean_diff_vox(rg.field, rc.field, head, &mx);
      const double di = field_mean_diff_vox(rg.inverse_field, rc.inverse_field, head, &mxi);
      fprintf(stderr, "  greedy LNCC: cpu %.1f s, gpu %.1f s, final loss cpu %.6f gpu %.6f\n", tc, tg, rc.final_metric,
              rg.final_metric);
      fprintf(stderr, "  greedy LNCC: field mean |cuda - cpu| %.4f voxel (max %.4f); inverse %.4f (max %.4f)\n", d, mx,
              di, mxi);
      GR_CHECK(d <= 0.05, "greedy LNCC fields differ by %.4f voxel mean", d);
      GR_CHECK(di <= 0.05, "greedy LNCC inverse fields differ by %.4f voxel mean", di);
    }
    gr_stage_result_clear(&rc);
    gr_stage_result_clear(&rg);
    gr_image_destroy(mov);
    free(w);
  }

  /* rigid MI: moving = t1 under a known rigid motion */
  {
    double c[3];
    gr_geometry_center(&t1->geom, c);
    const double p[6] = {0.06, -0.04, 0.05, 3.0, -2.0, 4.0};
    gr_affine T, Ti;
    gr_euler_to_affine(p, c, &T);
    gr_affine_invert(&T, &Ti);
    gr_image *mov = NULL;
    gr_image_create(&t1->geom, 1, &mov);
    g_cpu->ops->resample(g_cpu, &g, mov->data, &g, t1->data, 1, &Ti, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
    gr_stage_config cfg;
    gr_stage_config_defaults(GR_STAGE_RIGID, &cfg);
    cfg.metric.kind = GR_METRIC_MI;
    gr_reg_options opt;
    memset(&opt, 0, sizeof opt);
    gr_stage_result rc, rg;
    double t0 = gr_wall_seconds();
    const gr_status sc = gr_register(g_cpu, comm, t1, mov, NULL, NULL, NULL, &cfg, 1, &opt, &rc);
    const double tc = gr_wall_seconds() - t0;
    t0 = gr_wall_seconds();
    const gr_status sg = gr_register(g_gpu, comm, t1, mov, NULL, NULL, NULL, &cfg, 1, &opt, &rg);
    const double tg = gr_wall_seconds() - t0;
    GR_CHECK(sc == GR_OK && sg == GR_OK, "rigid registration: cpu %s gpu %s: %s", gr_strerror(sc), gr_strerror(sg),
             gr_last_error());
    if (sc == GR_OK && sg == GR_OK) {
      gr_affine Ac, Ag;
      gr_chain_affine(NULL, &rc, 1, 1, &Ac);
      gr_chain_affine(NULL, &rg, 1, 1, &Ag);
      /* mean over the voxels of |A_cuda x - A_cpu x| in voxels */
      double s = 0.0, mx = 0.0;
      for (int64_t z = 0; z < t1->geom.size[2]; ++z)
        for (int64_t y = 0; y < t1->geom.size[1]; ++y)
          for (int64_t x = 0; x < t1->geom.size[0]; ++x) {
            const double idx[3] = {(double)x, (double)y, (double)z};
            double ph[3], yc[3], yg[3];
            gr_geometry_index_to_phys(&t1->geom, idx, ph);
            gr_affine_apply(&Ac, ph, yc);
            gr_affine_apply(&Ag, ph, yg);
            double e2 = 0.0;
            for (int a = 0; a < 3; ++a) e2 += pow((yc[a] - yg[a]) / t1->geom.spacing[a], 2);
            s += sqrt(e2);
            mx = sqrt(e2) > mx ? sqrt(e2) : mx;
          }
      const double d = s / (double)n;
      fprintf(stderr, "  rigid MI: cpu %.1f s, gpu %.1f s; params cpu (%.5f %.5f %.5f %.3f %.3f %.3f) gpu (%.5f %.5f %.5f %.3f %.3f %.3f)\n",
              tc, tg, rc.params[0], rc.params[1], rc.params[2], rc.params[3], rc.params[4], rc.params[5], rg.params[0],
              rg.params[1], rg.params[2], rg.params[3], rg.params[4], rg.params[5]);
      fprintf(stderr, "  rigid MI: transform mean |cuda - cpu| %.5f voxel (max %.5f); true params (%.3f %.3f %.3f %.1f %.1f %.1f)\n",
              d, mx, p[0], p[1], p[2], p[3], p[4], p[5]);
      GR_CHECK(d <= 0.05, "rigid MI transforms differ by %.4f voxel mean", d);
    }
    gr_stage_result_clear(&rc);
    gr_stage_result_clear(&rg);
    gr_image_destroy(mov);
  }
  free(head);
}

int main(void) {
  if (gr_cuda_device_count() == 0) GR_SKIP("no CUDA device");
  GR_CHECK_OK(gr_backend_cpu_create(0, &g_cpu));
  GR_CHECK_OK(gr_backend_create(GR_DEVICE_CUDA, 0, 0, &g_gpu));
  if (!g_cpu || !g_gpu) GR_TEST_RETURN();
  gr_comm *comm = NULL;
  GR_CHECK_OK(gr_comm_local_create(&comm));

  /* GR_CUDA_TEST_SHRINK (default 2) and GR_CUDA_TEST_NO_REG: a quicker run for
   * development (e.g. under a CUDA emulator); CTest uses the defaults. */
  const char *env_shrink = getenv("GR_CUDA_TEST_SHRINK");
  const double shrink = env_shrink && atof(env_shrink) >= 1.0 ? atof(env_shrink) : 2.0;
  gr_image *t1 = load_shrunk(GR_TEST_DATA_DIR, "chris_t1.nii.gz", shrink);
  gr_image *pd = load_shrunk(GR_TEST_DATA_DIR, "chris_PD.nii.gz", shrink);
  if (!t1 || !pd) GR_SKIP("chris_t1 / chris_PD missing");
  gr_image *t1_raw = NULL;
  gr_image_clone(t1, &t1_raw);
  normalise01(t1);
  normalise01(pd);
  const int64_t n = gr_image_nvox(t1);
  fprintf(stderr, "T1 %lldx%lldx%lld, PD %lldx%lldx%lld (oblique)\n", (long long)t1->geom.size[0],
          (long long)t1->geom.size[1], (long long)t1->geom.size[2], (long long)pd->geom.size[0],
          (long long)pd->geom.size[1], (long long)pd->geom.size[2]);

  gr_grid fg, mg;
  gr_grid_from_geometry(&t1->geom, &fg);
  gr_grid_from_geometry(&pd->geom, &mg);
  float *u_h = make_field(&t1->geom, 2.0, 3), *u2_h = make_field(&t1->geom, 1.5, 11);
  float *fm_h = threshold(t1, 0.1f), *mm_h = threshold(pd, 0.05f);
  /* moving for the mono-modal pair: t1 o (x + w) */
  float *t1w_h = malloc((size_t)n * sizeof(float));
  {
    float *w = make_field(&t1->geom, 1.5, 5);
    g_cpu->ops->resample(g_cpu, &fg, t1w_h, &fg, t1->data, 1, NULL, w, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
    free(w);
  }
  float *t1m_h = threshold(t1, 0.12f); /* mask on the mono-modal moving grid */
  dual T1 = dual_from_host(t1->data, n), PD = dual_from_host(pd->data, gr_image_nvox(pd));
  dual U = dual_from_host(u_h, 3 * n), U2 = dual_from_host(u2_h, 3 * n);
  dual FM = dual_from_host(fm_h, n), MM = dual_from_host(mm_h, gr_image_nvox(pd));
  dual T1W = dual_from_host(t1w_h, n), T1M = dual_from_host(t1m_h, n);
  free(u_h);
  free(u2_h);
  free(fm_h);
  free(mm_h);
  free(t1w_h);
  free(t1m_h);

  /* an oblique affine (rotation about the centre + translation) for the multi-modal pair */
  double c[3];
  gr_geometry_center(&t1->geom, c);
  const double p[6] = {0.05, -0.03, 0.08, 2.0, -3.0, 1.5};
  gr_affine T;
  gr_euler_to_affine(p, c, &T);

  test_basics();
  test_resample(t1, pd, &T, &U, &PD);
  test_smooth(t1, &U, &T1);
  test_smooth_to();
  test_adam_moments_smoothed();
  test_fields(t1, &U, &U2);
  test_adam_axpy_minmax(t1, &U, &U2, &T1, &FM);
  test_bspline(t1, &U);
  const metric_case mono = {&fg, &fg, &T1, &FM, &T1W, &T1M, &U, NULL};
  const metric_case multi = {&fg, &mg, &T1, &FM, &PD, &MM, &U, &T};
  test_metrics(&mono, &multi);
  test_ch2(shrink);
  test_lncc_lean(&mono, &multi);
  test_pack_u16(&T1);
  test_u16_metrics(&mono, &multi);
  test_exact_lncc(&mono, &multi);
  test_determinism(&multi);

  dual_free(&T1);
  dual_free(&PD);
  dual_free(&U);
  dual_free(&U2);
  dual_free(&FM);
  dual_free(&MM);
  dual_free(&T1W);
  dual_free(&T1M);
  fprintf(stderr, "gpu bytes in use after the op tests: %zu (peak %zu)\n", g_gpu->bytes_current, g_gpu->bytes_peak);
  GR_CHECK(g_gpu->bytes_current == 0, "GPU memory leaked by the tests or the backend: %zu bytes", g_gpu->bytes_current);

  if (!getenv("GR_CUDA_TEST_NO_REG")) test_registration(t1_raw, comm);

  gr_image_destroy(t1);
  gr_image_destroy(t1_raw);
  gr_image_destroy(pd);
  gr_comm_destroy(comm);
  gr_backend_destroy(g_gpu);
  gr_backend_destroy(g_cpu);
  GR_TEST_RETURN();
}
#endif
