/* Device memory seen by the communicators (gigareg/comm.h gr_comm_memory):
 * the thread-group communicator copies device messages with gr_cuda_copy_any,
 * the MPI communicator stages device buffers through host memory, the NCCL
 * communicator tells device from host buffers with gr_cuda_pointer_is_device.
 *
 * Ordering. The backend's stream is a blocking stream, so the legacy default
 * stream orders with it: a cudaMemcpy issued on the legacy stream starts after
 * every kernel queued before it on the backend stream (which may still be
 * writing the source), and later backend work starts after the copy. The copy
 * is also made host-synchronous (legacy stream synchronised) so that a host
 * buffer involved may be reused or freed as soon as it returns. */
#include <cuda_runtime.h>
#include "gigareg/status.h"
#include "kernels/cuda_entry.h"

extern "C" int gr_cuda_pointer_is_device(const void *p) {
  if (!p) return 0;
  cudaPointerAttributes attr;
  const cudaError_t e = cudaPointerGetAttributes(&attr, p);
  if (e != cudaSuccess) { /* not a pointer the runtime knows (or no device): host memory */
    (void)cudaGetLastError();
    return 0;
  }
  return attr.type == cudaMemoryTypeDevice;
}

extern "C" gr_status gr_cuda_copy_any(void *dst, const void *src, size_t bytes) {
  if (!bytes) return GR_OK;
  cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDefault);
  if (e == cudaSuccess) e = cudaStreamSynchronize(cudaStreamLegacy);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return gr_error(GR_ERR_DEVICE, "cuda copy of %zu bytes between shards: %s (%s)", bytes, cudaGetErrorString(e),
                    cudaGetErrorName(e));
  }
  return GR_OK;
}

extern "C" gr_status gr_cuda_sync_all(void) {
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return gr_error(GR_ERR_DEVICE, "cudaDeviceSynchronize: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
  }
  return GR_OK;
}
