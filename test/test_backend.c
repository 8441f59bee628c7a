/* CPU backend table: accounted allocator, transfers, fill/axpy/minmax, and the
 * device dispatch (gr_device_parse, gr_backend_create). */
#include <stdint.h>
#include "gr_test.h"
#ifdef GIGAREG_HAVE_CUDA
#include "kernels/cuda_entry.h"
#endif

static void test_accounting(gr_backend *be) {
  GR_CHECK(be->bytes_current == 0 && be->bytes_peak == 0, "fresh backend accounts %zu/%zu bytes", be->bytes_current,
           be->bytes_peak);
  void *a = be->ops->alloc(be, 1000);
  GR_CHECK(a != NULL, "alloc 1000");
  GR_CHECK(((uintptr_t)a % 64) == 0, "alignment %p", a);
  GR_CHECK(be->bytes_current == 1000 && be->bytes_peak == 1000, "after a: %zu/%zu", be->bytes_current, be->bytes_peak);
  void *b = be->ops->alloc(be, 513);
  GR_CHECK(b != NULL && ((uintptr_t)b % 64) == 0, "alloc 513 aligned");
  GR_CHECK(be->bytes_current == 1513 && be->bytes_peak == 1513, "after b: %zu/%zu", be->bytes_current, be->bytes_peak);
  memset(a, 0xab, 1000); /* whole payload writable (ASan would catch an overrun) */
  memset(b, 0xcd, 513);
  be->ops->free(be, a);
  GR_CHECK(be->bytes_current == 513 && be->bytes_peak == 1513, "after free a: %zu/%zu", be->bytes_current,
           be->bytes_peak);
  void *c = be->ops->alloc(be, 200);
  GR_CHECK(be->bytes_current == 713 && be->bytes_peak == 1513, "after c: %zu/%zu", be->bytes_current, be->bytes_peak);
  be->ops->free(be, b);
  be->ops->free(be, c);
  be->ops->free(be, NULL);
  GR_CHECK(be->bytes_current == 0 && be->bytes_peak == 1513, "all freed: %zu/%zu", be->bytes_current, be->bytes_peak);

  void *z = be->ops->alloc(be, 0);
  GR_CHECK(z != NULL, "zero-byte alloc gives a unique pointer");
  be->ops->free(be, z);

  gr_clear_error();
  void *huge = be->ops->alloc(be, SIZE_MAX - 16);
  GR_CHECK(huge == NULL, "absurd allocation must fail");
  GR_CHECK(strstr(gr_last_error(), "cannot allocate") != NULL, "message: %s", gr_last_error());
#if !defined(__SANITIZE_ADDRESS__)
  gr_clear_error();
  void *big = be->ops->alloc(be, (size_t)1 << 62); /* beyond any address space: aligned_alloc fails */
  GR_CHECK(big == NULL, "4 EiB allocation must fail");
  GR_CHECK(strstr(gr_last_error(), "bytes in use") != NULL, "message: %s", gr_last_error());
  if (big) be->ops->free(be, big);
#endif
  GR_CHECK(be->bytes_current == 0, "failed allocations are not accounted: %zu", be->bytes_current);
}

static void test_transfers(gr_backend *be) {
  float host[64], back[64];
  for (int i = 0; i < 64; ++i) host[i] = (float)i * 0.5f - 3.0f;
  float *d1 = be->ops->alloc(be, sizeof host), *d2 = be->ops->alloc(be, sizeof host);
  GR_CHECK_OK(be->ops->upload(be, d1, host, sizeof host));
  GR_CHECK_OK(be->ops->copy(be, d2, d1, sizeof host));
  memset(back, 0, sizeof back);
  GR_CHECK_OK(be->ops->download(be, back, d2, sizeof host));
  GR_CHECK(memcmp(host, back, sizeof host) == 0, "upload/copy/download round trip");
  GR_CHECK(be->ops->upload(be, NULL, host, 4) == GR_ERR_INVALID_ARG, "NULL destination");
  GR_CHECK_OK(be->ops->upload(be, NULL, NULL, 0));
  be->ops->free(be, d1);
  be->ops->free(be, d2);
}

static void test_vector_ops(gr_backend *be) {
  const int64_t n = 100003; /* above the parallel threshold, odd length */
  float *x = be->ops->alloc(be, (size_t)n * sizeof(float));
  float *y = be->ops->alloc(be, (size_t)n * sizeof(float));
  float *mask = be->ops->alloc(be, (size_t)n * sizeof(float));
  GR_CHECK_OK(be->ops->fill(be, y, 2.5f, n));
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += y[i] != 2.5f;
  GR_CHECK(bad == 0, "fill: %d wrong", bad);

  for (int64_t i = 0; i < n; ++i) x[i] = (float)((i * 37) % 1001) - 500.0f;
  GR_CHECK_OK(be->ops->axpy(be, n, -0.5f, x, y));
  bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += y[i] != 2.5f - 0.5f * x[i];
  GR_CHECK(bad == 0, "axpy: %d wrong", bad);

  double mn = 0, mx = 0;
  GR_CHECK_OK(be->ops->minmax(be, n, x, NULL, &mn, &mx));
  GR_CHECK(mn == -500.0 && mx == 500.0, "minmax unmasked: %g %g", mn, mx);

  /* mask selects i % 10 == 3 and leaves out the extremes elsewhere */
  for (int64_t i = 0; i < n; ++i) mask[i] = (i % 10 == 3) ? 1.0f : 0.0f;
  double rmn = INFINITY, rmx = -INFINITY;
  for (int64_t i = 3; i < n; i += 10) {
    rmn = fmin(rmn, x[i]);
    rmx = fmax(rmx, x[i]);
  }
  x[5] = 1e6f;          /* outside the mask: must be ignored */
  x[13] = (float)NAN;   /* inside the mask: NaN is skipped */
  x[23] = -1234.0f;     /* inside the mask: new minimum */
  rmn = fmin(rmn, -1234.0);
  GR_CHECK_OK(be->ops->minmax(be, n, x, mask, &mn, &mx));
  GR_CHECK(mn == rmn && mx == rmx, "minmax masked: %g %g (want %g %g)", mn, mx, rmn, rmx);
  mask[13] = 0.4f; /* <= 0.5 is outside */
  GR_CHECK_OK(be->ops->minmax(be, n, x, mask, &mn, &mx));
  GR_CHECK(mn == rmn && mx == rmx, "minmax mask threshold");

  GR_CHECK_OK(be->ops->fill(be, mask, 0.0f, n));
  GR_CHECK(be->ops->minmax(be, n, x, mask, &mn, &mx) == GR_ERR_EMPTY, "empty mask -> GR_ERR_EMPTY");
  GR_CHECK(be->ops->minmax(be, 0, x, NULL, &mn, &mx) == GR_ERR_EMPTY, "n = 0 -> GR_ERR_EMPTY");
  GR_CHECK(be->ops->fill(be, x, 0.0f, -1) == GR_ERR_INVALID_ARG, "negative length");
  be->ops->free(be, x);
  be->ops->free(be, y);
  be->ops->free(be, mask);
}

static void test_parse(void) {
  gr_device_kind k = GR_DEVICE_AUTO;
  int idx = -1;
  GR_CHECK_OK(gr_device_parse("cpu", &k, &idx));
  GR_CHECK(k == GR_DEVICE_CPU && idx == 0, "cpu -> %d %d", (int)k, idx);
  GR_CHECK_OK(gr_device_parse("auto", &k, &idx));
  GR_CHECK(k == GR_DEVICE_AUTO && idx == 0, "auto -> %d %d", (int)k, idx);
  GR_CHECK_OK(gr_device_parse("cuda", &k, &idx));
  GR_CHECK(k == GR_DEVICE_CUDA && idx == 0, "cuda -> %d %d", (int)k, idx);
  GR_CHECK_OK(gr_device_parse("cuda:3", &k, &idx));
  GR_CHECK(k == GR_DEVICE_CUDA && idx == 3, "cuda:3 -> %d %d", (int)k, idx);
  GR_CHECK_OK(gr_device_parse("CUDA:12", &k, &idx));
  GR_CHECK(k == GR_DEVICE_CUDA && idx == 12, "CUDA:12 -> %d %d", (int)k, idx);
  GR_CHECK_OK(gr_device_parse("CPU", &k, &idx));
  GR_CHECK(k == GR_DEVICE_CPU, "CPU is case-insensitive");
  const char *bad[] = {"", "gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda:1x", "cuda: 1", "cuda:99999999999", "cpu:0",
                       "cpux", "cu"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    gr_clear_error();
    GR_CHECK(gr_device_parse(bad[i], &k, &idx) == GR_ERR_INVALID_ARG, "'%s' must be rejected", bad[i]);
    GR_CHECK(strstr(gr_last_error(), "unknown device") != NULL, "message for '%s': %s", bad[i], gr_last_error());
  }
  GR_CHECK(gr_device_parse(NULL, &k, &idx) == GR_ERR_INVALID_ARG, "NULL string");
}

static void test_create(void) {
  gr_backend *be = NULL;
  GR_CHECK(gr_backend_create(GR_DEVICE_CPU, 0, -1, &be) == GR_ERR_INVALID_ARG && be == NULL, "negative threads");
  GR_CHECK(gr_backend_create(GR_DEVICE_CPU, -1, 0, &be) == GR_ERR_INVALID_ARG, "negative device index");
  GR_CHECK(gr_backend_create((gr_device_kind)42, 0, 0, &be) == GR_ERR_INVALID_ARG, "unknown kind");

  gr_clear_error();
  const gr_status s = gr_backend_create(GR_DEVICE_CUDA, 0, 0, &be);
#ifndef GIGAREG_HAVE_CUDA
  GR_CHECK(s == GR_ERR_UNSUPPORTED && be == NULL, "cuda in a CPU-only build: %s", gr_strerror(s));
  GR_CHECK(strstr(gr_last_error(), "no CUDA backend") != NULL, "message: %s", gr_last_error());
  GR_CHECK_OK(gr_backend_create(GR_DEVICE_AUTO, 0, 1, &be));
  GR_CHECK(be && strcmp(be->ops->name, "cpu") == 0, "auto without CUDA picks cpu");
  gr_backend_destroy(be);
#else
  if (gr_cuda_device_count() == 0) {
    GR_CHECK(s == GR_ERR_DEVICE && be == NULL, "cuda without a GPU: %s", gr_strerror(s));
    GR_CHECK(strstr(gr_last_error(), "no CUDA device") != NULL, "message: %s", gr_last_error());
  } else {
    GR_CHECK(s == GR_OK && be != NULL, "cuda with a GPU: %s: %s", gr_strerror(s), gr_last_error());
    gr_backend_destroy(be);
    be = NULL;
    GR_CHECK(gr_backend_create(GR_DEVICE_CUDA, gr_cuda_device_count(), 0, &be) == GR_ERR_DEVICE,
             "device index past the last GPU");
  }
#endif
  gr_backend_destroy(NULL);
}

int main(void) {
  gr_backend *be = NULL;
  GR_CHECK_OK(gr_backend_create(GR_DEVICE_CPU, 0, 2, &be));
  if (!be) GR_TEST_RETURN();
  GR_CHECK(strcmp(be->ops->name, "cpu") == 0, "name %s", be->ops->name);
  GR_CHECK(be->threads == 2, "threads %d", be->threads);
  test_accounting(be);
  test_transfers(be);
  test_vector_ops(be);
  GR_CHECK(be->bytes_current == 0, "leak: %zu bytes", be->bytes_current);
  gr_backend_destroy(be);
  test_parse();
  test_create();
  GR_TEST_RETURN();
}
