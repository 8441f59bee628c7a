/* bench_bspline: times the CUDA backend's bspline_field and bspline_grad
 * (backend.h gr_bspline) and compares bspline_grad with the CPU backend's on
 * the same input. Cases: 400^3 with a control-point spacing of 40 voxels
 * (13^3 control points: elastix's 20 mm grid on a 400^3 level) and 128^3 with
 * spacing 16, axis-aligned, plus 128^3 spacing 16 on a grid rotated 0.15 rad
 * about z (bounding boxes wider than the cells). Random coefficients and
 * d loss/d u in [-0.5, 0.5). Median of 10 timed calls after 2 warm-ups
 * (CUDA events on the legacy stream, which orders with the backend's stream).
 * Prints ms and max |GPU - CPU| / max |CPU| over the 3 G coefficients.
 * Usage: bench_bspline [reps]. Not a test. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/gigareg.h"
#include "bench_common.h"


static uint32_t lcg = 12345u;
static double urand(void) {
  lcg = lcg * 1664525u + 1013904223u;
  return (lcg >> 8) * (1.0 / 16777216.0);
}

#define CHECK(expr)                                                                             \
  do {                                                                                          \
    gr_status s_ = (expr);                                                                      \
    if (s_ != GR_OK) {                                                                          \
      fprintf(stderr, "bench_bspline: %s: %s: %s\n", #expr, gr_strerror(s_), gr_last_error()); \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

static void run_case(gr_backend *cpu, gr_backend *gpu, int n, double h, double angle, int reps) {
  gr_grid g;
  memset(&g, 0, sizeof g);
  for (int a = 0; a < 3; ++a) g.n[a] = n;
  gr_bspline bs;
  memset(&bs, 0, sizeof bs);
  const double cr = cos(angle), sr = sin(angle);
  for (int a = 0; a < 3; ++a) bs.size[a] = (int64_t)ceil(n / h) + 3 + (angle != 0.0 ? 2 : 0);
  /* c = R idx / h + offset (rotation about z; offsets keep the image inside the valid region) */
  const double ox = angle != 0.0 ? 2.0 + (n / h) * (sr > 0 ? sr : 0) : 1.0 + 0.25 / h, oy = angle != 0.0 ? 2.0 : 1.0 + 0.25 / h;
  const double cA[12] = {cr / h, -sr / h, 0, ox, sr / h, cr / h, 0, oy, 0, 0, 1.0 / h, 1.0 + 0.25 / h};
  memcpy(bs.cA, cA, sizeof cA);
  CHECK(gr_bspline_prepare(&bs));
  const int64_t G = bs.size[0] * bs.size[1] * bs.size[2], nv = (int64_t)n * n * n;
  double *coef = malloc(sizeof(double) * 3 * G), *dc_c = malloc(sizeof(double) * 3 * G), *dc_g = malloc(sizeof(double) * 3 * G),
         *dc_g2 = malloc(sizeof(double) * 3 * G);
  float *gu = malloc(sizeof(float) * 3 * nv);
  for (int64_t q = 0; q < 3 * G; ++q) coef[q] = (urand() - 0.5) * 4.0;
  for (int64_t v = 0; v < 3 * nv; ++v) gu[v] = (float)(urand() - 0.5);
  double *coef_d = gpu->ops->alloc(gpu, sizeof(double) * 3 * G), *dc_d = gpu->ops->alloc(gpu, sizeof(double) * 3 * G);
  float *gu_d = gpu->ops->alloc(gpu, sizeof(float) * 3 * nv), *u_d = gpu->ops->alloc(gpu, sizeof(float) * 3 * nv);
  if (!coef_d || !dc_d || !gu_d || !u_d) {
    fprintf(stderr, "bench_bspline: device allocation failed\n");
    exit(1);
  }
  CHECK(gpu->ops->upload(gpu, coef_d, coef, sizeof(double) * 3 * G));
  CHECK(gpu->ops->upload(gpu, gu_d, gu, sizeof(float) * 3 * nv));
  gr_bspline bs_d = bs;
  bs_d.coef = coef_d;
  bs.coef = coef;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  double tf[64], tg[64];
  if (reps > 64) reps = 64;
  for (int it = 0; it < reps + 2; ++it) {
    float ms;
    cudaEventRecord(e0, 0);
    CHECK(gpu->ops->bspline_field(gpu, &g, &bs_d, u_d));
    cudaEventRecord(e1, 0);
    cudaEventSynchronize(e1);
    cudaEventElapsedTime(&ms, e0, e1);
    if (it >= 2) tf[it - 2] = ms;
    cudaEventRecord(e0, 0);
    CHECK(gpu->ops->bspline_grad(gpu, &g, &bs_d, gu_d, dc_d));
    cudaEventRecord(e1, 0);
    cudaEventSynchronize(e1);
    cudaEventElapsedTime(&ms, e0, e1);
    if (it >= 2) tg[it - 2] = ms;
    if (it == 0) CHECK(gpu->ops->download(gpu, dc_g, dc_d, sizeof(double) * 3 * G));
  }
  CHECK(gpu->ops->download(gpu, dc_g2, dc_d, sizeof(double) * 3 * G));
  const int repeat_same = memcmp(dc_g, dc_g2, sizeof(double) * 3 * G) == 0;
  CHECK(cpu->ops->bspline_grad(cpu, &g, &bs, gu, dc_c));
  double big = 0.0, err = 0.0;
  int64_t differ = 0;
  for (int64_t q = 0; q < 3 * G; ++q) big = fmax(big, fabs(dc_c[q]));
  for (int64_t q = 0; q < 3 * G; ++q) {
    err = fmax(err, fabs(dc_g[q] - dc_c[q]));
    differ += memcmp(&dc_g[q], &dc_c[q], sizeof(double)) != 0;
  }
  printf("%4d^3 spacing %4.1f%s G %lld (%lldx%lldx%lld): bspline_field %8.3f ms  bspline_grad %8.3f ms (min %.3f)  "
         "|GPU-CPU| max %.3g = %.3g of max|coef grad| %.3g (%lld of %lld differ); runs bitwise equal: %s\n",
         n, h, angle != 0.0 ? " rotated" : "", (long long)G, (long long)bs.size[0], (long long)bs.size[1],
         (long long)bs.size[2], bench_median(tf, reps), bench_median(tg, reps), tg[0], err, big > 0 ? err / big : 0.0, big,
         (long long)differ, (long long)(3 * G), repeat_same ? "yes" : "NO");
  fflush(stdout);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  gpu->ops->free(gpu, coef_d);
  gpu->ops->free(gpu, dc_d);
  gpu->ops->free(gpu, gu_d);
  gpu->ops->free(gpu, u_d);
  free(coef);
  free(dc_c);
  free(dc_g);
  free(dc_g2);
  free(gu);
}

int main(int argc, char **argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 10;
  gr_backend *cpu = NULL, *gpu = NULL;
  CHECK(gr_backend_create(GR_DEVICE_CPU, 0, 0, &cpu));
  if (gr_backend_create(GR_DEVICE_CUDA, 0, 0, &gpu) != GR_OK) {
    fprintf(stderr, "bench_bspline: no CUDA backend: %s\n", gr_last_error());
    return 77;
  }
  if (!gpu->ops->bspline_grad || !cpu->ops->bspline_grad) {
    fprintf(stderr, "bench_bspline: backend without bspline_grad\n");
    return 1;
  }
  run_case(cpu, gpu, 400, 40.0, 0.0, reps);
  run_case(cpu, gpu, 128, 16.0, 0.0, reps);
  run_case(cpu, gpu, 128, 16.0, 0.15, reps);
  gr_backend_destroy(gpu);
  gr_backend_destroy(cpu);
  return 0;
}
