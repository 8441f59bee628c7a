/* Thread count for the CPU backend's OpenMP regions. Every parallel region uses
 * num_threads(cpu_nthreads(be)) instead of omp_set_num_threads(), so two
 * backends with different thread counts can coexist in one process without
 * touching process-global OpenMP state. Functions whose only use of `be` is
 * that clause say (void)be, because a build without OpenMP drops the pragma. */
#ifndef GIGAREG_CPU_THREADS_H
#define GIGAREG_CPU_THREADS_H
#include "gigareg/backend.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* Work below this many elements runs serially: forking costs more than it saves. */
#define CPU_PAR_MIN_ELEMS ((int64_t)32768)

static inline int cpu_nthreads(const gr_backend *be) {
#ifdef _OPENMP
  return (be && be->threads > 0) ? be->threads : omp_get_max_threads();
#else
  (void)be;
  return 1;
#endif
}

static inline int cpu_thread_id(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
#endif
