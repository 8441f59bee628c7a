/* Backend selection: gr_backend_create / gr_backend_destroy / gr_device_parse.
 * The only file that knows which backends a build contains. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include "gigareg/backend.h"
#ifdef GIGAREG_HAVE_CUDA
#include "kernels/cuda_entry.h"
#endif

static gr_status create_cuda(int device_index, gr_backend **out) {
#ifdef GIGAREG_HAVE_CUDA
  const int count = gr_cuda_device_count();
  if (count <= 0) return gr_error(GR_ERR_DEVICE, "no CUDA device found");
  if (device_index >= count)
    return gr_error(GR_ERR_DEVICE, "CUDA device %d requested but only %d device(s) found", device_index, count);
  return gr_backend_cuda_create(device_index, out);
#else
  (void)device_index;
  (void)out;
  return gr_error(GR_ERR_UNSUPPORTED, "this build has no CUDA backend (rebuild with CUDA)");
#endif
}

int gr_cuda_devices(void) {
#ifdef GIGAREG_HAVE_CUDA
  const int n = gr_cuda_device_count();
  return n > 0 ? n : 0;
#else
  return 0;
#endif
}

static int cuda_available(void) { return gr_cuda_devices() > 0; }

gr_status gr_backend_create(gr_device_kind kind, int device_index, int threads, gr_backend **out) {
  if (!out) return gr_error(GR_ERR_INVALID_ARG, "gr_backend_create: NULL output pointer");
  *out = NULL;
  if (device_index < 0) return gr_error(GR_ERR_INVALID_ARG, "device index %d (must be >= 0)", device_index);
  if (threads < 0) return gr_error(GR_ERR_INVALID_ARG, "thread count %d (must be >= 0; 0 = default)", threads);
  switch (kind) {
    case GR_DEVICE_CPU: return gr_backend_cpu_create(threads, out);
    case GR_DEVICE_CUDA: return create_cuda(device_index, out);
    case GR_DEVICE_AUTO:
      /* A present GPU that then fails to initialise is reported, not hidden
       * behind a silent CPU fallback that would be orders of magnitude slower. */
      return cuda_available() ? create_cuda(device_index, out) : gr_backend_cpu_create(threads, out);
  }
  return gr_error(GR_ERR_INVALID_ARG, "unknown device kind %d", (int)kind);
}

void gr_backend_destroy(gr_backend *be) {
  if (be && be->ops && be->ops->destroy) be->ops->destroy(be);
}

static int equals_nocase(const char *a, const char *b) {
  for (; *a && *b; ++a, ++b)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
  return *a == *b;
}

static int prefix_nocase(const char *s, const char *prefix) {
  for (; *prefix; ++s, ++prefix)
    if (!*s || tolower((unsigned char)*s) != tolower((unsigned char)*prefix)) return 0;
  return 1;
}

/* "cuda:N" with N a plain decimal (no sign, no spaces, fits in int). */
static int parse_index(const char *s, int *index) {
  if (!isdigit((unsigned char)*s)) return 0;
  errno = 0;
  char *end = NULL;
  const long v = strtol(s, &end, 10);
  if (errno || *end != '\0' || v < 0 || v > INT_MAX) return 0;
  *index = (int)v;
  return 1;
}

gr_status gr_device_parse(const char *s, gr_device_kind *kind, int *index) {
  if (!s || !kind || !index) return gr_error(GR_ERR_INVALID_ARG, "gr_device_parse: NULL argument");
  int idx = 0;
  gr_device_kind k;
  if (equals_nocase(s, "cpu")) {
    k = GR_DEVICE_CPU;
  } else if (equals_nocase(s, "auto")) {
    k = GR_DEVICE_AUTO;
  } else if (equals_nocase(s, "cuda")) {
    k = GR_DEVICE_CUDA;
  } else if (prefix_nocase(s, "cuda:") && parse_index(s + 5, &idx)) {
    k = GR_DEVICE_CUDA;
  } else {
    return gr_error(GR_ERR_INVALID_ARG, "unknown device '%s' (expected cpu, cuda, cuda:N or auto)", s);
  }
  *kind = k;
  *index = idx;
  return GR_OK;
}
