/* CUDA backend: the gr_backend_ops table, device selection, the accounted
 * caching allocator, transfers, fill and axpy, and the two extern "C" entry
 * points of kernels/cuda_entry.h.
 *
 * Streams and ordering: every op is enqueued on one stream per backend
 * (created blocking, so it also orders with work a caller puts on the legacy
 * default stream, e.g. cudaEvent timing in bench_gpu). Ops that hand a value
 * back to the host (download, metric, minmax, adam_direction) wait for the
 * stream; all others return as soon as their kernels are queued.
 *
 * Memory: alloc/free go through a per-backend caching pool (see Impl in
 * cuda_common.cuh). bytes_current/bytes_peak count the bytes callers asked
 * for and hold (like the CPU backend), not the pool's cached blocks; the pool
 * gives its cache back to the driver and retries before reporting an
 * out-of-memory, so cached blocks never cause a failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <new>
#include "cuda_ops.cuh"
#include "kernels/cuda_entry.h"

namespace grcu {

gr_status device_error(cudaError_t e, const char *what) {
  (void)cudaGetLastError(); /* clear a non-sticky error so later calls are not poisoned */
  return gr_error(e == cudaErrorMemoryAllocation ? GR_ERR_NOMEM : GR_ERR_DEVICE, "cuda backend: %s: %s (%s)", what,
                  cudaGetErrorString(e), cudaGetErrorName(e));
}

gr_status enter(gr_backend *be) {
  int cur = -1;
  GRCU_TRY(cudaGetDevice(&cur));
  if (cur != impl_of(be)->device) GRCU_TRY(cudaSetDevice(impl_of(be)->device));
  return GR_OK;
}

/* ---- caching allocator --------------------------------------------------------------- */
/* Capacity granularity: 512 B (cudaMalloc's own alignment is 256 B, so payloads
 * stay aligned for 16-byte vector access). A cached block is reused when its
 * capacity is within 1/8 above the rounded request. */
static const size_t kGranule = 512;

/* Caller holds im->mu. */
static void release_cached(Impl *im) {
  for (auto &kv : im->cached) {
    (void)cudaFree(kv.second);
    im->reserved -= kv.first;
  }
  im->cached.clear();
}

static void *cu_alloc(gr_backend *be, size_t bytes) {
  Impl *im = impl_of(be);
  if (bytes > ((size_t)1 << 62)) { /* beyond any device; also keeps the rounding from wrapping */
    gr_error(GR_ERR_NOMEM, "cuda backend: cannot allocate %zu bytes on device %d (%zu bytes in use)", bytes,
             im->device, be->bytes_current);
    return nullptr;
  }
  if (enter(be) != GR_OK) return nullptr;
  size_t cap = bytes ? (bytes + kGranule - 1) / kGranule * kGranule : kGranule;
  std::lock_guard<std::mutex> lock(im->mu);
  void *p = nullptr;
  auto it = im->cached.lower_bound(cap);
  if (it != im->cached.end() && it->first <= cap + cap / 8) {
    p = it->second;
    cap = it->first;
    im->cached.erase(it);
  } else {
    cudaError_t e = cudaMalloc(&p, cap);
    if (e == cudaErrorMemoryAllocation && !im->cached.empty()) {
      (void)cudaGetLastError();
      release_cached(im); /* cudaFree waits for the device: no queued kernel still uses them */
      e = cudaMalloc(&p, cap);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      size_t fr = 0, tot = 0;
      if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) (void)cudaGetLastError();
      gr_error(e == cudaErrorMemoryAllocation ? GR_ERR_NOMEM : GR_ERR_DEVICE,
               "cuda backend: cannot allocate %zu bytes on device %d (%s): %zu bytes free of %zu; "
               "this backend holds %zu bytes (%zu bytes in use)",
               bytes, im->device, cudaGetErrorString(e), fr, tot, im->reserved, be->bytes_current);
      return nullptr;
    }
    im->reserved += cap;
  }
  im->live[p] = Block{cap, bytes};
  be->bytes_current += bytes;
  if (be->bytes_current > be->bytes_peak) be->bytes_peak = be->bytes_current;
  return p;
}

static void cu_free(gr_backend *be, void *p) {
  if (!p) return;
  Impl *im = impl_of(be);
  std::lock_guard<std::mutex> lock(im->mu);
  auto it = im->live.find(p);
  if (it == im->live.end()) {
    /* Not ours or freed twice: continuing would corrupt the pool silently. */
    fprintf(stderr, "gigareg cuda backend: free of unknown pointer %p\n", p);
    abort();
  }
  be->bytes_current -= it->second.requested;
  im->cached.emplace(it->second.capacity, p);
  im->live.erase(it);
}

void *scratch_alloc(gr_backend *be, size_t bytes, const char *what) {
  void *p = cu_alloc(be, bytes);
  if (!p) {
    const char *prev = gr_last_error();
    char msg[512];
    snprintf(msg, sizeof msg, "%s", prev);
    gr_error(GR_ERR_NOMEM, "%s (scratch for %s)", msg, what);
  }
  return p;
}

void scratch_free(gr_backend *be, void *p) { cu_free(be, p); }

/* ---- transfers ----------------------------------------------------------------------- */
static gr_status check_copy_args(const void *dst, const void *src, size_t bytes, const char *what) {
  if (bytes && (!dst || !src)) return gr_error(GR_ERR_INVALID_ARG, "cuda %s: NULL pointer for %zu bytes", what, bytes);
  return GR_OK;
}

gr_status fetch(gr_backend *be, void *host, const void *dev, size_t bytes) {
  Impl *im = impl_of(be);
  if (bytes) GRCU_TRY(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, im->stream));
  GRCU_TRY(cudaStreamSynchronize(im->stream));
  return GR_OK;
}

static gr_status cu_upload(gr_backend *be, void *dst, const void *src_host, size_t bytes) {
  gr_status s = check_copy_args(dst, src_host, bytes, "upload");
  if (s != GR_OK || !bytes) return s;
  if ((s = enter(be)) != GR_OK) return s;
  Impl *im = impl_of(be);
  GRCU_TRY(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, im->stream));
  /* The caller may reuse its host buffer as soon as we return. */
  GRCU_TRY(cudaStreamSynchronize(im->stream));
  return GR_OK;
}

static gr_status cu_download(gr_backend *be, void *dst_host, const void *src, size_t bytes) {
  gr_status s = check_copy_args(dst_host, src, bytes, "download");
  if (s != GR_OK || !bytes) return s;
  if ((s = enter(be)) != GR_OK) return s;
  return fetch(be, dst_host, src, bytes);
}

static gr_status cu_copy(gr_backend *be, void *dst, const void *src, size_t bytes) {
  gr_status s = check_copy_args(dst, src, bytes, "copy");
  if (s != GR_OK || !bytes || dst == src) return s;
  if ((s = enter(be)) != GR_OK) return s;
  Impl *im = impl_of(be);
  const char *d = (const char *)dst, *c = (const char *)src;
  if (d < c + bytes && c < d + bytes) { /* overlapping (memmove semantics): go through a scratch copy */
    void *tmp = scratch_alloc(be, bytes, "overlapping copy");
    if (!tmp) return GR_ERR_NOMEM;
    cudaError_t e = cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, im->stream);
    if (e == cudaSuccess) e = cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, im->stream);
    scratch_free(be, tmp);
    if (e != cudaSuccess) return device_error(e, "cudaMemcpyAsync (overlapping copy)");
    return GR_OK;
  }
  GRCU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, im->stream));
  return GR_OK;
}

/* ---- fill / axpy ----------------------------------------------------------------------- */
static gr_status check_vec(int64_t n, const void *x, const char *what) {
  if (n < 0) return gr_error(GR_ERR_INVALID_ARG, "cuda %s: negative length %lld", what, (long long)n);
  if (n > 0 && !x) return gr_error(GR_ERR_INVALID_ARG, "cuda %s: NULL array of %lld floats", what, (long long)n);
  return GR_OK;
}

__global__ void fill_kernel(float *__restrict__ x, float value, long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (((uintptr_t)x & 15) == 0) { /* 16-byte stores when the array is aligned */
    float4 *x4 = reinterpret_cast<float4 *>(x);
    const long long n4 = n / 4;
    const float4 v = make_float4(value, value, value, value);
    for (long long k = i; k < n4; k += stride) x4[k] = v;
    for (long long k = n4 * 4 + i; k < n; k += stride) x[k] = value;
  } else {
    for (; i < n; i += stride) x[i] = value;
  }
}

static gr_status cu_fill(gr_backend *be, float *x, float value, int64_t n) {
  gr_status s = check_vec(n, x, "fill");
  if (s != GR_OK || n == 0) return s;
  if ((s = enter(be)) != GR_OK) return s;
  Impl *im = impl_of(be);
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  if (bits == 0) { /* +0.0f: the copy engine's memset is the fastest way */
    GRCU_TRY(cudaMemsetAsync(x, 0, (size_t)n * sizeof(float), im->stream));
    return GR_OK;
  }
  fill_kernel<<<flat_blocks((n + 3) / 4), kBlock, 0, im->stream>>>(x, value, n);
  GRCU_LAUNCHED("fill kernel");
  return GR_OK;
}

/* y = a x + y in float, product and sum rounded separately like the CPU. */
__global__ void axpy_kernel(long long n, float a, const float *__restrict__ x, float *__restrict__ y) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if ((((uintptr_t)x | (uintptr_t)y) & 15) == 0) {
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    float4 *y4 = reinterpret_cast<float4 *>(y);
    const long long n4 = n / 4;
    for (long long k = i; k < n4; k += stride) {
      const float4 xv = __ldg(x4 + k);
      float4 yv = y4[k];
      yv.x = __fadd_rn(__fmul_rn(a, xv.x), yv.x);
      yv.y = __fadd_rn(__fmul_rn(a, xv.y), yv.y);
      yv.z = __fadd_rn(__fmul_rn(a, xv.z), yv.z);
      yv.w = __fadd_rn(__fmul_rn(a, xv.w), yv.w);
      y4[k] = yv;
    }
    for (long long k = n4 * 4 + i; k < n; k += stride) y[k] = __fadd_rn(__fmul_rn(a, x[k]), y[k]);
  } else {
    for (; i < n; i += stride) y[i] = __fadd_rn(__fmul_rn(a, x[i]), y[i]);
  }
}

static gr_status cu_axpy(gr_backend *be, int64_t n, float a, const float *x, float *y) {
  gr_status s = check_vec(n, x, "axpy");
  if (s == GR_OK) s = check_vec(n, y, "axpy");
  if (s != GR_OK || n == 0) return s;
  if ((s = enter(be)) != GR_OK) return s;
  axpy_kernel<<<flat_blocks((n + 3) / 4), kBlock, 0, impl_of(be)->stream>>>(n, a, x, y);
  GRCU_LAUNCHED("axpy kernel");
  return GR_OK;
}

/* ---- lifetime ----------------------------------------------------------------------------- */
static void cu_destroy(gr_backend *be) {
  if (!be) return;
  Impl *im = impl_of(be);
  if (im) {
    if (cudaSetDevice(im->device) != cudaSuccess) (void)cudaGetLastError();
    if (im->stream && cudaStreamSynchronize(im->stream) != cudaSuccess) (void)cudaGetLastError();
    {
      std::lock_guard<std::mutex> lock(im->mu);
      for (auto &kv : im->live) (void)cudaFree(kv.first); /* blocks the caller never freed */
      im->live.clear();
      release_cached(im);
    }
    if (im->stream) (void)cudaStreamDestroy(im->stream);
    (void)cudaGetLastError();
    delete im;
  }
  free(be);
}

/* Grid Parallel entries: cuda_slab.cu (sample_slab, slab_finalize) and
 * cuda_metric_region.cu (metric_region). */
gr_status sample_slab(gr_backend *be, gr_slab_sample *a);
gr_status slab_finalize(gr_backend *be, int64_t n, const double *acc, const float *base, double scale, float *out);
gr_status metric_region(gr_backend *be, const gr_metric_spec *spec, gr_metric_region *reg, const gr_grid *fixed_grid,
                        const float *fixed, const float *fixed_mask, const gr_grid *moving_grid, const float *moving,
                        const float *moving_mask, const gr_affine *T, const float *disp, gr_metric_result *res,
                        float *grad_u);

static const gr_backend_ops cuda_ops_table = {
    "cuda",          /* name */
    cu_alloc,        /* alloc */
    cu_free,         /* free */
    cu_upload,       /* upload */
    cu_download,     /* download */
    cu_copy,         /* copy */
    cu_fill,         /* fill */
    resample,        /* resample */
    metric,          /* metric */
    smooth,          /* smooth */
    compose,         /* compose */
    adam_direction,  /* adam_direction */
    cu_axpy,         /* axpy */
    minmax,          /* minmax */
    jacobian_det,    /* jacobian_det */
    invert,          /* invert */
    cu_destroy,      /* destroy */
    sample_slab,     /* sample_slab */
    slab_finalize,   /* slab_finalize */
    metric_region,   /* metric_region */
    adam_moments,    /* adam_moments */
    adam_compose,    /* adam_compose */
    bspline_field,   /* bspline_field */
    bspline_grad,    /* bspline_grad */
    smooth_to,       /* smooth_to */
    adam_moments_smoothed, /* adam_moments_smoothed */
    pack_u16,        /* pack_u16 */
};

}  // namespace grcu

extern "C" int gr_cuda_device_count(void) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) { /* no driver, no device, driver too old: "no GPU", never an error */
    (void)cudaGetLastError();
    return 0;
  }
  return n > 0 ? n : 0;
}

extern "C" gr_status gr_backend_cuda_create(int device, gr_backend **out) {
  using namespace grcu;
  if (!out) return gr_error(GR_ERR_INVALID_ARG, "gr_backend_cuda_create: NULL output pointer");
  *out = nullptr;
  const int count = gr_cuda_device_count();
  if (count <= 0) return gr_error(GR_ERR_DEVICE, "no CUDA device found");
  if (device < 0 || device >= count)
    return gr_error(GR_ERR_DEVICE, "CUDA device %d requested but only %d device(s) found", device, count);
  GRCU_TRY(cudaSetDevice(device));
  cudaDeviceProp prop;
  GRCU_TRY(cudaGetDeviceProperties(&prop, device));
  int optin = 0;
  GRCU_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  /* A build without code for this GPU fails here, with a clear message, rather
   * than at the first kernel launch. */
  cudaFuncAttributes fa;
  const cudaError_t probe = cudaFuncGetAttributes(&fa, fill_kernel);
  if (probe != cudaSuccess) {
    (void)cudaGetLastError();
    return gr_error(GR_ERR_DEVICE,
                    "cuda backend: device %d (%s, compute capability %d.%d) cannot run this build's kernels: %s "
                    "(rebuild with CMAKE_CUDA_ARCHITECTURES including %d%d)",
                    device, prop.name, prop.major, prop.minor, cudaGetErrorString(probe), prop.major, prop.minor);
  }
  gr_backend *be = (gr_backend *)calloc(1, sizeof *be);
  if (!be) return gr_error(GR_ERR_NOMEM, "cuda backend: cannot allocate %zu bytes for the backend", sizeof *be);
  Impl *im = new (std::nothrow) Impl();
  if (!im) {
    free(be);
    return gr_error(GR_ERR_NOMEM, "cuda backend: cannot allocate its state");
  }
  im->device = device;
  im->num_sms = prop.multiProcessorCount;
  im->smem_optin = (size_t)optin;
  {
    const char *ex = getenv("GIGAREG_CUDA_EXACT");
    im->exact = ex && ex[0] && strcmp(ex, "0") != 0;
    const char *mb = getenv("GIGAREG_CUDA_REGION_CHUNK_MB");
    if (mb && atol(mb) > 0) im->region_chunk_bytes = (size_t)atol(mb) << 20;
  }
  snprintf(im->name, sizeof im->name, "%s", prop.name);
  const cudaError_t e = cudaStreamCreateWithFlags(&im->stream, cudaStreamDefault);
  if (e != cudaSuccess) {
    delete im;
    free(be);
    return device_error(e, "cudaStreamCreateWithFlags");
  }
  be->ops = &cuda_ops_table;
  be->impl = im;
  be->threads = 0;
  *out = be;
  return GR_OK;
}
