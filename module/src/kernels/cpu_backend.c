/* CPU backend: the gr_backend_ops table, the accounted allocator and the
 * simple vector ops (copy/fill/axpy/minmax). The heavy kernels live in the
 * other cpu_*.c files (see cpu_kernels.h). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_threads.h"

/* ---- accounted allocator --------------------------------------------------------
 * Every block carries a 64-byte header in front of the returned pointer holding
 * the requested size, so free() can update the accounting without a lookup
 * table, and the payload stays 64-byte aligned (cache line / AVX-512).
 *
 * The driver allocates from one thread, but nothing stops a caller from sharing
 * a backend between threads (or a kernel from allocating inside a parallel
 * region), so the counters are updated with atomic builtins; the peak is a
 * CAS-max, so it is never lower than any value bytes_current actually held. */
#define CPU_ALIGN ((size_t)64)
#define CPU_HEADER CPU_ALIGN
#define CPU_MAGIC ((uint64_t)0x4752435055414c4cull) /* "GRCPUALL": catches foreign pointers */

typedef struct cpu_block_header {
  size_t bytes;
  uint64_t magic;
} cpu_block_header;

_Static_assert(sizeof(cpu_block_header) <= CPU_HEADER, "header must fit in the alignment pad");

static size_t acct_add(gr_backend *be, size_t bytes) {
#if defined(__GNUC__)
  const size_t now = __atomic_add_fetch(&be->bytes_current, bytes, __ATOMIC_RELAXED);
  size_t peak = __atomic_load_n(&be->bytes_peak, __ATOMIC_RELAXED);
  while (now > peak &&
         !__atomic_compare_exchange_n(&be->bytes_peak, &peak, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return now;
#else /* no atomics: valid because the driver allocates from one thread only */
  be->bytes_current += bytes;
  if (be->bytes_current > be->bytes_peak) be->bytes_peak = be->bytes_current;
  return be->bytes_current;
#endif
}

static void acct_sub(gr_backend *be, size_t bytes) {
#if defined(__GNUC__)
  __atomic_sub_fetch(&be->bytes_current, bytes, __ATOMIC_RELAXED);
#else
  be->bytes_current -= bytes;
#endif
}

static size_t acct_current(const gr_backend *be) {
#if defined(__GNUC__)
  return __atomic_load_n(&be->bytes_current, __ATOMIC_RELAXED);
#else
  return be->bytes_current;
#endif
}

static void *cpu_alloc(gr_backend *be, size_t bytes) {
  /* Round the total up to the alignment, as aligned_alloc requires; reject sizes
   * whose rounding would wrap. A zero-byte request still gets a unique pointer. */
  if (bytes > SIZE_MAX - CPU_HEADER - CPU_ALIGN) {
    gr_error(GR_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes (%zu bytes in use)", bytes, acct_current(be));
    return NULL;
  }
  const size_t total = (CPU_HEADER + bytes + CPU_ALIGN - 1) & ~(CPU_ALIGN - 1);
  unsigned char *raw = aligned_alloc(CPU_ALIGN, total);
  if (!raw) {
    gr_error(GR_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes (%zu bytes in use)", bytes, acct_current(be));
    return NULL;
  }
  cpu_block_header *h = (cpu_block_header *)raw;
  h->bytes = bytes;
  h->magic = CPU_MAGIC;
  acct_add(be, bytes);
  return raw + CPU_HEADER;
}

static void cpu_free(gr_backend *be, void *p) {
  if (!p) return;
  unsigned char *raw = (unsigned char *)p - CPU_HEADER;
  cpu_block_header *h = (cpu_block_header *)raw;
  if (h->magic != CPU_MAGIC) abort(); /* not ours or freed twice: corrupting the heap silently is worse */
  h->magic = 0;
  acct_sub(be, h->bytes);
  free(raw);
}

/* ---- transfers: host memory on both sides, so plain copies ------------------- */
static gr_status check_copy_args(const void *dst, const void *src, size_t bytes, const char *what) {
  if (bytes && (!dst || !src)) return gr_error(GR_ERR_INVALID_ARG, "cpu %s: NULL pointer for %zu bytes", what, bytes);
  return GR_OK;
}

static gr_status cpu_upload(gr_backend *be, void *dst, const void *src_host, size_t bytes) {
  (void)be;
  const gr_status s = check_copy_args(dst, src_host, bytes, "upload");
  if (s == GR_OK && bytes) memcpy(dst, src_host, bytes);
  return s;
}

static gr_status cpu_download(gr_backend *be, void *dst_host, const void *src, size_t bytes) {
  (void)be;
  const gr_status s = check_copy_args(dst_host, src, bytes, "download");
  if (s == GR_OK && bytes) memcpy(dst_host, src, bytes);
  return s;
}

static gr_status cpu_copy(gr_backend *be, void *dst, const void *src, size_t bytes) {
  (void)be;
  const gr_status s = check_copy_args(dst, src, bytes, "copy");
  if (s == GR_OK && bytes && dst != src) memmove(dst, src, bytes); /* device-to-device may overlap */
  return s;
}

/* ---- vector ops ----------------------------------------------------------------- */
static gr_status check_vec(int64_t n, const void *x, const char *what) {
  if (n < 0) return gr_error(GR_ERR_INVALID_ARG, "cpu %s: negative length %lld", what, (long long)n);
  if (n > 0 && !x) return gr_error(GR_ERR_INVALID_ARG, "cpu %s: NULL array of %lld floats", what, (long long)n);
  return GR_OK;
}

static gr_status cpu_fill(gr_backend *be, float *x, float value, int64_t n) {
  (void)be;
  const gr_status s = check_vec(n, x, "fill");
  if (s != GR_OK) return s;
#pragma omp parallel for simd schedule(static) num_threads(cpu_nthreads(be)) if (n >= CPU_PAR_MIN_ELEMS)
  for (int64_t i = 0; i < n; ++i) x[i] = value;
  return GR_OK;
}

static gr_status cpu_axpy(gr_backend *be, int64_t n, float a, const float *x, float *y) {
  (void)be;
  gr_status s = check_vec(n, x, "axpy");
  if (s == GR_OK) s = check_vec(n, y, "axpy");
  if (s != GR_OK) return s;
  const float *restrict xr = x;
  float *restrict yr = y;
#pragma omp parallel for simd schedule(static) num_threads(cpu_nthreads(be)) if (n >= CPU_PAR_MIN_ELEMS)
  for (int64_t i = 0; i < n; ++i) yr[i] = a * xr[i] + yr[i];
  return GR_OK;
}

/* min and max are exact and order-independent, so the OpenMP reduction gives the
 * same answer for any thread count. NaNs are skipped (comparisons with NaN are
 * false); an empty selection is an error rather than a silent +-inf. */
static gr_status cpu_minmax(gr_backend *be, int64_t n, const float *x, const float *mask, double *mn, double *mx) {
  (void)be;
  gr_status s = check_vec(n, x, "minmax");
  if (s != GR_OK) return s;
  if (!mn || !mx) return gr_error(GR_ERR_INVALID_ARG, "cpu minmax: NULL output");
  float lo = INFINITY, hi = -INFINITY;
  int64_t count = 0;
  if (mask) {
#pragma omp parallel for schedule(static) num_threads(cpu_nthreads(be)) if (n >= CPU_PAR_MIN_ELEMS) \
    reduction(min : lo) reduction(max : hi) reduction(+ : count)
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      if (mask[i] > 0.5f && v == v) {
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        ++count;
      }
    }
  } else {
#pragma omp parallel for schedule(static) num_threads(cpu_nthreads(be)) if (n >= CPU_PAR_MIN_ELEMS) \
    reduction(min : lo) reduction(max : hi) reduction(+ : count)
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      if (v == v) {
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        ++count;
      }
    }
  }
  if (count == 0) {
    *mn = *mx = 0.0;
    return gr_error(GR_ERR_EMPTY, "cpu minmax: no %svalues among %lld elements",
                    mask ? "masked non-NaN " : "non-NaN ", (long long)n);
  }
  *mn = lo;
  *mx = hi;
  return GR_OK;
}

static void cpu_destroy(gr_backend *be) { free(be); }

static const gr_backend_ops cpu_ops = {
  .name = "cpu",
  .alloc = cpu_alloc,
  .free = cpu_free,
  .upload = cpu_upload,
  .download = cpu_download,
  .copy = cpu_copy,
  .fill = cpu_fill,
  .resample = cpu_resample,
  .metric = cpu_metric,
  .smooth = cpu_smooth,
  .compose = cpu_compose,
  .adam_direction = cpu_adam_direction,
  .axpy = cpu_axpy,
  .minmax = cpu_minmax,
  .jacobian_det = cpu_jacobian_det,
  .invert = cpu_invert,
  .destroy = cpu_destroy,
  .sample_slab = cpu_sample_slab,
  .slab_finalize = cpu_slab_finalize,
  .metric_region = cpu_metric_region,
  .adam_moments = cpu_adam_moments,
  .adam_compose = cpu_adam_compose,
  .bspline_field = cpu_bspline_field,
  .bspline_grad = cpu_bspline_grad,
};

gr_status gr_backend_cpu_create(int threads, gr_backend **out) {
  if (!out) return gr_error(GR_ERR_INVALID_ARG, "gr_backend_cpu_create: NULL output pointer");
  *out = NULL;
  if (threads < 0) return gr_error(GR_ERR_INVALID_ARG, "cpu backend: thread count %d (must be >= 0; 0 = OpenMP default)", threads);
  gr_backend *be = calloc(1, sizeof *be);
  if (!be) return gr_error(GR_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes for the backend", sizeof *be);
  be->ops = &cpu_ops;
  be->impl = NULL; /* no private state: everything a kernel needs is in its arguments */
  be->threads = threads;
  *out = be;
  return GR_OK;
}
