/* Memory planner: how many bytes a registration needs, per device, before any
 * voxel is loaded. It replays the allocation sequence of gr_register (driver.c,
 * pyramid.c, greedy_stage.c, syn_stage.c, field_ops.c) and of the backend
 * kernels' scratch (CPU: cpu_lncc.c rings, cpu_mi.c histograms, cpu_smooth.c
 * lines, cpu_field.c inversion; CUDA: the scratch blocks of module/cuda) on
 * image headers and stage configurations only, so its peak is the peak that
 * be->bytes_peak would report (tested within 10% on the CPU backend).
 *
 * Host memory (the CLI's input images, the stage results kept on the host and
 * the output writers) is simulated alongside: on the CPU backend host and
 * backend share the same RAM, so what must fit is their sum over time.
 *
 * Ranks > 1 model Grid Parallel's slab split of every grid along z (issue 5):
 * each rank holds ceil(nz / N) planes plus halo planes on both sides (width
 * from the kernels that read neighbours: LNCC radius, 3 sigma of each Gaussian,
 * 1 for trilinear), and one extra moving-image shard in flight for the ring
 * sampler while a metric runs; results and outputs as slabs too (issue 5's
 * distributed I/O; the first Grid Parallel code gathers whole fields instead).
 * That part is a model of a design still landing, not a measurement. */
#ifndef GIGAREG_MEMORY_PLAN_H
#define GIGAREG_MEMORY_PLAN_H

#include <stddef.h>
#include <stdio.h>
#include "gigareg/backend.h"
#include "gigareg/registration.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gr_mem_kind {
  GR_MEM_IMAGES = 0, /* intensity-normalised images and their pyramid levels */
  GR_MEM_MASKS,      /* masks and their pyramid levels */
  GR_MEM_FIELDS,     /* displacement fields (u, SyN halves, inverses) */
  GR_MEM_OPTIMIZER,  /* gradient, Adam moments, step */
  GR_MEM_SCRATCH,    /* compose buffer, smoothing copies, warped image, kernel scratch */
  GR_MEM_HALO,       /* halo planes and the ring sampler's in-flight moving shard (ranks > 1) */
  GR_MEM_NKINDS
} gr_mem_kind;

const char *gr_mem_kind_name(gr_mem_kind k);

#define GR_PLAN_MAX_PHASES 160

/* One phase of the run: preparation, one pyramid level of one stage, a stage's
 * finish (field brought to full resolution and inverted), or the CLI outputs. */
typedef struct gr_memory_phase {
  int stage;                 /* -1: inputs and preparation; nstages: CLI outputs */
  int level;                 /* pyramid level, -1 when the phase is not a level */
  char label[64];            /* e.g. "greedy level 3/3 (shrink 1)" */
  int64_t grid[3];           /* fixed grid of the phase, per rank (z = slab planes + halos) */
  size_t device_peak;        /* backend bytes at this phase's peak (one rank) */
  size_t kind[GR_MEM_NKINDS];/* breakdown of device_peak */
  size_t host_at_peak;       /* host bytes at that moment */
  size_t total_peak;         /* peak of backend + host bytes during the phase */
} gr_memory_phase;

typedef struct gr_memory_plan_options {
  gr_device_kind device;     /* GR_DEVICE_CPU or GR_DEVICE_CUDA: whose kernel scratch is modelled (AUTO = CPU) */
  int ranks;                 /* >= 1 */
  int threads;               /* CPU backend threads (0 = OpenMP default, as the backend) */
  int fixed_mask, moving_mask;
  int with_outputs;          /* also model the CLI's output writing (result images, exported fields) */
  int image_bytes;           /* bytes per image voxel on the device: 4 (float, what the backends use) or 2 (fp16 what-if) */
} gr_memory_plan_options;

void gr_memory_plan_options_defaults(gr_memory_plan_options *o);

typedef struct gr_memory_plan {
  gr_memory_plan_options opt;
  int nstages;
  int nphases;
  gr_memory_phase phase[GR_PLAN_MAX_PHASES];
  size_t device_peak;        /* max backend bytes (what be->bytes_peak reports) */
  int device_peak_phase;
  size_t host_peak;          /* max host bytes */
  size_t total_peak;         /* max of backend + host bytes at the same moment */
  int total_peak_phase;
  int halo_planes;           /* largest halo width used (0 for one rank) */
  int float_moment_stages;   /* deformable stages keeping float Adam moments (bfloat16 would save 12 B/voxel) */
  int float_image_stages;    /* greedy LNCC/MI stages keeping float images (16-bit would save 4 B/voxel on CUDA) */
} gr_memory_plan;

/* Fills *out. stages are what gr_register would get (after
 * gr_stage_config_resolve_grid_spacing). Errors: invalid geometry or stage. */
gr_status gr_memory_plan_compute(const gr_geometry *fixed, const gr_geometry *moving, const gr_stage_config *stages,
                                 int nstages, const gr_memory_plan_options *opt, gr_memory_plan *out);

/* Bytes one device must provide: CPU backend: total_peak (host and backend share
 * RAM); CUDA: device_peak (host RAM is checked against host_peak separately). */
size_t gr_memory_plan_need(const gr_memory_plan *p);

/* Memory a device offers. GIGAREG_MEMORY_LIMIT_BYTES, when set, replaces what
 * is detected (simulate a small machine; applies to CPU RAM and GPU alike). */
typedef struct gr_memory_budget {
  gr_device_kind kind;       /* CPU or CUDA */
  int index;                 /* CUDA device */
  size_t available;          /* MemAvailable, or free GPU memory */
  size_t total;              /* MemTotal, or GPU memory */
  char source[96];           /* where the numbers come from */
} gr_memory_budget;

/* kind AUTO resolves as gr_backend_create does (CUDA when built and present).
 * CUDA without a CUDA build or device is GR_ERR_UNSUPPORTED / GR_ERR_DEVICE. */
gr_status gr_memory_budget_query(gr_device_kind kind, int index, gr_memory_budget *out);

/* GR_OK when the plan fits the budget(s); otherwise GR_ERR_NOMEM with one
 * message quoting the planner's numbers (need, peak phase and its breakdown,
 * available, and the smallest rank count that would fit when one does).
 * host may be NULL (CPU plans use device only, as host and backend share RAM). */
gr_status gr_memory_plan_check(const gr_memory_plan *p, const gr_memory_budget *device, const gr_memory_budget *host,
                               int min_ranks);

/* Smallest rank count in 1..max_ranks whose need fits `budget` bytes, 0 if none.
 * Plans are computed with *opt except ranks. */
int gr_memory_plan_min_ranks(const gr_geometry *fixed, const gr_geometry *moving, const gr_stage_config *stages,
                             int nstages, const gr_memory_plan_options *opt, size_t budget, int max_ranks);

/* "1.50 GiB" style, into buf. */
const char *gr_memory_format_bytes(size_t bytes, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
