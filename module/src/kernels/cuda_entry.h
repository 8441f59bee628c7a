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

#ifdef __cplusplus
}
#endif
#endif
