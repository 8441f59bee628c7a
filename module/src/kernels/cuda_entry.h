/* Entry points of the CUDA backend (module/cuda), called by backend_dispatch.c
 * only when the build defines GIGAREG_HAVE_CUDA. Kept out of the public
 * headers so a CPU-only build never names a CUDA symbol. */
#ifndef GIGAREG_CUDA_ENTRY_H
#define GIGAREG_CUDA_ENTRY_H
#include "gigareg/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Create a backend on CUDA device `device` (0-based). */
gr_status gr_backend_cuda_create(int device, gr_backend **out);
/* Number of usable CUDA devices; 0 when there is no driver or no GPU (never fails). */
int gr_cuda_device_count(void);

/* Device memory for the communicators (module/cuda/cuda_comm_memory.cu;
 * gigareg/comm.h gr_comm_memory): whether p is device memory, a synchronous
 * copy between any two of host and device memory (cudaMemcpyDefault, after all
 * queued device work), and a device-wide synchronisation. */
int gr_cuda_pointer_is_device(const void *p);
gr_status gr_cuda_copy_any(void *dst, const void *src, size_t bytes);
gr_status gr_cuda_sync_all(void);

#ifdef __cplusplus
}
#endif
#endif
