#include <stdlib.h>
#include <string.h>
#include "plan_cli.h"
#include "cli_stages.h"
#include "gigareg/memory_plan.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* The planner's limit on ranks when looking for the smallest count that fits:
 * far beyond any machine, and a plan is cheap (headers only). */
#define GR_PLAN_MAX_RANKS 4096

typedef struct plan_inputs {
  gr_geometry fixed, moving;
  gr_pixel_type ftype, mtype;
  gr_stage_config stages[GR_CLI_MAX_PARAM_FILES];
  int nstages;
  gr_device_kind kind;
  int index;
} plan_inputs;

static gr_status read_header(const char *path, const char *what, gr_geometry *g, gr_pixel_type *t) {
  int ncomp = 0;
  gr_status s = gr_image_read_header(path, g, &ncomp, t);
  if (s == GR_OK && ncomp != 1)
    s = gr_error(GR_ERR_UNSUPPORTED, "%s '%s' has %d components; a scalar image is required", what, path, ncomp);
  return s;
}

/* AUTO resolves as gr_backend_create does: CUDA when built in and a GPU is present. */
static gr_status resolve_device(const gr_cli_args *a, gr_device_kind *kind, int *index) {
  *kind = GR_DEVICE_AUTO;
  *index = 0;
  if (a->device) {
    gr_status s = gr_device_parse(a->device, kind, index);
    if (s != GR_OK) return s;
  }
  if (*kind == GR_DEVICE_AUTO) {
    gr_memory_budget b;
    *kind = gr_memory_budget_query(GR_DEVICE_AUTO, *index, &b) == GR_OK ? b.kind : GR_DEVICE_CPU;
  }
  return GR_OK;
}

static void plan_options(const gr_cli_args *a, const plan_inputs *in, gr_memory_plan_options *o) {
  gr_memory_plan_options_defaults(o);
  o->device = in->kind;
  o->threads = a->threads;
  o->fixed_mask = a->fixed_mask != NULL;
  o->moving_mask = a->moving_mask != NULL;
  o->with_outputs = 1;
  o->ranks = a->ranks > 0 ? a->ranks : 1;
}

static void print_row(const gr_memory_phase *ph, int nstages) {
  char name[96], grid[40], b[GR_MEM_NKINDS + 2][24];
  if (ph->stage >= 0 && ph->stage < nstages) snprintf(name, sizeof name, "stage %d %s", ph->stage, ph->label);
  else snprintf(name, sizeof name, "%s", ph->label);
  snprintf(grid, sizeof grid, "%lldx%lldx%lld", (long long)ph->grid[0], (long long)ph->grid[1], (long long)ph->grid[2]);
  for (int k = 0; k < GR_MEM_NKINDS; ++k) gr_memory_format_bytes(ph->kind[k], b[k], sizeof b[k]);
  gr_memory_format_bytes(ph->device_peak, b[GR_MEM_NKINDS], sizeof b[0]);
  gr_memory_format_bytes(ph->total_peak, b[GR_MEM_NKINDS + 1], sizeof b[0]);
  printf("  %-62s %-13s", name, grid);
  for (int k = 0; k < GR_MEM_NKINDS + 2; ++k) printf(" %10s", b[k]);
  printf("\n");
}

static void print_plan(const gr_memory_plan *p) {
  printf("  %-62s %-13s", "phase", "grid/rank");
  for (int k = 0; k < GR_MEM_NKINDS; ++k) printf(" %10s", gr_mem_kind_name((gr_mem_kind)k));
  printf(" %10s %10s\n", "device", "+host");
  for (int i = 0; i < p->nphases; ++i) print_row(&p->phase[i], p->nstages);
}

static void describe_image(const char *what, const char *path, const gr_geometry *g, gr_pixel_type t) {
  printf("%-7s %s: %lld x %lld x %lld voxels, %.4g x %.4g x %.4g mm, %s (%lld voxels)\n", what, path,
         (long long)g->size[0], (long long)g->size[1], (long long)g->size[2], g->spacing[0], g->spacing[1],
         g->spacing[2], gr_pixel_type_name(t), (long long)gr_geometry_nvox(g));
}

static gr_status gather(const gr_cli_args *a, FILE *warn, plan_inputs *in) {
  memset(in, 0, sizeof *in);
  gr_status s = read_header(a->fixed, "fixed image", &in->fixed, &in->ftype);
  if (s == GR_OK) s = read_header(a->moving, "moving image", &in->moving, &in->mtype);
  for (int k = 0; s == GR_OK && k < a->nparams; ++k) {
    gr_output_config oc;
    s = gr_cli_load_stage(a, k, warn, &in->stages[k], &oc);
    if (s == GR_OK) gr_stage_config_resolve_grid_spacing(&in->stages[k], &in->fixed);
  }
  in->nstages = a->nparams;
  if (s == GR_OK) s = resolve_device(a, &in->kind, &in->index);
  return s;
}

/* The deformable stages of in switched to 16-bit storage (moments: bfloat16
 * Adam moments; else 16-bit images); 0 when all had it already. */
static int stages_16bit(plan_inputs *in, int moments) {
  int changed = 0;
  for (int k = 0; k < in->nstages; ++k) {
    gr_stage_config *c = &in->stages[k];
    int *flag = moments ? &c->adam_moments_bf16 : &c->image_u16;
    if ((c->kind == GR_STAGE_GREEDY || c->kind == GR_STAGE_SYN) && !*flag) *flag = changed = 1;
  }
  return changed;
}

/* What-ifs for a plan that does not fit (or for sizing a bigger machine). */
static void print_alternatives(const plan_inputs *in, const gr_memory_plan_options *base, size_t budget,
                               int have_budget) {
  gr_memory_plan *p = malloc(sizeof *p);
  if (!p) return;
  char b1[32], b2[32];
  printf("options that lower the need (at %d rank%s):\n", base->ranks, base->ranks > 1 ? "s" : "");
  /* Coarser field: deformable stages stop at half resolution (a parameter-file change that works today). */
  plan_inputs alt = *in;
  int any_def = 0;
  for (int k = 0; k < alt.nstages; ++k) {
    gr_stage_config *c = &alt.stages[k];
    if (c->kind != GR_STAGE_GREEDY && c->kind != GR_STAGE_SYN) continue;
    any_def = 1;
    if (c->shrink[c->levels - 1] < 2.0) c->shrink[c->levels - 1] = 2.0;
  }
  gr_memory_plan_options o = *base;
  if (any_def && gr_memory_plan_compute(&in->fixed, &in->moving, alt.stages, alt.nstages, &o, p) == GR_OK)
    printf("  coarser field (ImagePyramidSchedule ending in 2 2 2 for the deformable stages): %s%s\n",
           gr_memory_format_bytes(gr_memory_plan_need(p), b1, sizeof b1),
           have_budget ? (gr_memory_plan_need(p) <= budget ? "  fits" : "  does not fit") : "");
  static const char *const what16[2] = {
      "16-bit images ((GigaRegImageStorage \"uint16\") in the deformable stages; stored in 16 bits by the CUDA "
      "backend in greedy LNCC/MI stages)",
      "bfloat16 Adam moments ((GigaRegAdamMoments \"bfloat16\") in the deformable stages; a run that does not fit "
      "with float moments switches to them by itself)"};
  for (int moments = 1; moments >= 0; --moments) {
    alt = *in;
    if (stages_16bit(&alt, moments) &&
        gr_memory_plan_compute(&in->fixed, &in->moving, alt.stages, alt.nstages, &o, p) == GR_OK)
      printf("  %s: %s (%zu bytes)%s\n", what16[moments], gr_memory_format_bytes(gr_memory_plan_need(p), b1, sizeof b1),
             gr_memory_plan_need(p), have_budget ? (gr_memory_plan_need(p) <= budget ? "  fits" : "  does not fit") : "");
  }
  if (have_budget) {
    o.ranks = 1;
    const int n = gr_memory_plan_min_ranks(&in->fixed, &in->moving, in->stages, in->nstages, &o, budget,
                                           GR_PLAN_MAX_RANKS);
    if (n > 0) {
      o.ranks = n;
      if (gr_memory_plan_compute(&in->fixed, &in->moving, in->stages, in->nstages, &o, p) == GR_OK)
        printf("  smallest rank count that fits: %d (%s per rank; Grid Parallel slab split, halo %d planes)%s\n", n,
               gr_memory_format_bytes(gr_memory_plan_need(p), b2, sizeof b2), p->halo_planes,
               n > 1 ? " -- run with mpirun -np N (one rank per GPU), or -shards N on one machine" : "");
    } else {
      printf("  no rank count up to %d fits\n", GR_PLAN_MAX_RANKS);
    }
  }
  free(p);
}

int gr_cli_plan(const gr_cli_args *a) {
  plan_inputs *in = malloc(sizeof *in);
  gr_memory_plan *p = malloc(sizeof *p);
  if (!in || !p) {
    free(in);
    free(p);
    fprintf(stderr, "gigareg: error: out of memory\n");
    return 1;
  }
  gr_status s = gather(a, NULL, in);
  gr_memory_plan_options o;
  if (s == GR_OK) {
    plan_options(a, in, &o);
    s = gr_memory_plan_compute(&in->fixed, &in->moving, in->stages, in->nstages, &o, p);
  }
  if (s != GR_OK) {
    const char *msg = gr_last_error();
    fprintf(stderr, "gigareg: error: %s\n", msg[0] ? msg : gr_strerror(s));
    free(in);
    free(p);
    return 1;
  }
  char b1[32], b2[32], b3[32];
  printf("gigareg memory plan (image headers and parameter files only; no voxel data read)\n");
  describe_image("fixed", a->fixed, &in->fixed, in->ftype);
  describe_image("moving", a->moving, &in->moving, in->mtype);
  for (int k = 0; k < in->nstages; ++k) printf("stage %d: %s\n", k, a->params[k]);
  printf("device: %s backend", in->kind == GR_DEVICE_CUDA ? "cuda" : "cpu");
  if (in->kind == GR_DEVICE_CUDA) printf(" (cuda:%d)", in->index);
  int threads = a->threads > 0 ? a->threads : 1;
#ifdef _OPENMP
  if (a->threads <= 0) threads = omp_get_max_threads(); /* what the CPU backend will use; sizes its scratch */
#endif
  if (in->kind != GR_DEVICE_CUDA) printf(" (%d thread%s)", threads, threads > 1 ? "s" : "");
  printf(", %d rank%s", o.ranks, o.ranks > 1 ? "s (Grid Parallel slab split along z; a model of issue 5's design)" : "");
  printf("\nbytes per rank; 'device' = backend allocations (what the backend reports as bytes_peak), "
         "'+host' = device plus the CLI's host images and results:\n");
  print_plan(p);
  const gr_memory_phase *dp = &p->phase[p->device_peak_phase];
  char where[96];
  if (dp->stage >= 0 && dp->stage < p->nstages) snprintf(where, sizeof where, "stage %d %s", dp->stage, dp->label);
  else snprintf(where, sizeof where, "%s", dp->label);
  printf("peak backend memory: %s (%zu bytes) in %s\n", gr_memory_format_bytes(p->device_peak, b1, sizeof b1),
         p->device_peak, where);
  printf("peak host memory: %s (%zu bytes)\n", gr_memory_format_bytes(p->host_peak, b1, sizeof b1), p->host_peak);
  printf("peak of backend + host: %s (%zu bytes)\n", gr_memory_format_bytes(p->total_peak, b1, sizeof b1),
         p->total_peak);

  /* Against the machine. */
  gr_memory_budget ram, gpu;
  const int have_ram = gr_memory_budget_query(GR_DEVICE_CPU, 0, &ram) == GR_OK;
  int have_gpu = 0, fits = 1;
  size_t budget = 0;
  if (in->kind == GR_DEVICE_CUDA) {
    have_gpu = gr_memory_budget_query(GR_DEVICE_CUDA, in->index, &gpu) == GR_OK;
    if (have_gpu) {
      fits = p->device_peak <= gpu.available;
      budget = gpu.available;
      printf("GPU cuda:%d: %s available of %s (%s): %s\n", in->index, gr_memory_format_bytes(gpu.available, b1, sizeof b1),
             gr_memory_format_bytes(gpu.total, b2, sizeof b2), gpu.source, fits ? "fits" : "DOES NOT FIT");
    } else {
      printf("GPU: %s; planned for a CUDA device anyway\n", gr_last_error());
    }
    if (have_ram) {
      const int hf = p->host_peak <= ram.available;
      fits &= hf;
      printf("CPU RAM (host side): %s available of %s (%s): %s\n", gr_memory_format_bytes(ram.available, b1, sizeof b1),
             gr_memory_format_bytes(ram.total, b2, sizeof b2), ram.source, hf ? "fits" : "DOES NOT FIT");
    }
  } else {
    if (have_ram) {
      fits = p->total_peak <= ram.available;
      budget = ram.available;
      printf("CPU RAM: %s available of %s (%s): %s (needs %s)\n", gr_memory_format_bytes(ram.available, b1, sizeof b1),
             gr_memory_format_bytes(ram.total, b2, sizeof b2), ram.source, fits ? "fits" : "DOES NOT FIT",
             gr_memory_format_bytes(p->total_peak, b3, sizeof b3));
    }
#ifdef GIGAREG_HAVE_CUDA
    if (gr_memory_budget_query(GR_DEVICE_CUDA, 0, &gpu) == GR_OK)
      printf("GPU cuda:0 also present: %s free (plan for it with -device cuda)\n",
             gr_memory_format_bytes(gpu.available, b1, sizeof b1));
#else
    printf("GPU: this build has no CUDA backend (CPU only)\n");
#endif
  }
  print_alternatives(in, &o, budget, have_gpu || (in->kind != GR_DEVICE_CUDA && have_ram));
  free(in);
  free(p);
  return 0;
}

/* A plan that does not fit but fits with bfloat16 Adam moments: the run switches its
 * deformable stages to them (stages is updated) and says so, instead of failing. */
static int fits_with_bf16(const gr_cli_args *a, const plan_inputs *in, const gr_memory_plan_options *o,
                          const gr_memory_budget *dev, const gr_memory_budget *host, size_t need32,
                          gr_stage_config *stages, int nstages) {
  plan_inputs *alt = malloc(sizeof *alt);
  gr_memory_plan *p = malloc(sizeof *p);
  if (alt) *alt = *in;
  int ok = alt && p && stages_16bit(alt, 1) &&
           gr_memory_plan_compute(&alt->fixed, &alt->moving, alt->stages, nstages, o, p) == GR_OK &&
           gr_memory_plan_check(p, dev, host, 1) == GR_OK;
  if (!ok) gr_clear_error();
  if (ok) {
    for (int k = 0; k < nstages; ++k) stages[k].adam_moments_bf16 = alt->stages[k].adam_moments_bf16;
    char b1[32], b2[32], b3[32];
    if (!a->quiet)
      fprintf(stderr,
              "gigareg: note: the run needs %s with float Adam moments and %s are available (%s): storing them as "
              "bfloat16 instead, %s (as (GigaRegAdamMoments \"bfloat16\"))\n",
              gr_memory_format_bytes(need32, b1, sizeof b1), gr_memory_format_bytes(dev->available, b2, sizeof b2),
              dev->source, gr_memory_format_bytes(gr_memory_plan_need(p), b3, sizeof b3));
  }
  free(p);
  free(alt);
  return ok;
}

gr_status gr_cli_memory_check(const gr_cli_args *a, gr_stage_config *stages, int nstages, int ranks) {
  plan_inputs *in = malloc(sizeof *in);
  gr_memory_plan *p = malloc(sizeof *p);
  gr_status s = (in && p) ? GR_OK : gr_error(GR_ERR_NOMEM, "memory check: out of memory");
  if (s == GR_OK) {
    memset(in, 0, sizeof *in);
    /* Unreadable headers: the image loaders report them with their own messages. */
    if (read_header(a->fixed, "fixed image", &in->fixed, &in->ftype) != GR_OK ||
        read_header(a->moving, "moving image", &in->moving, &in->mtype) != GR_OK ||
        resolve_device(a, &in->kind, &in->index) != GR_OK) {
      gr_clear_error();
      free(in);
      free(p);
      return GR_OK;
    }
    memcpy(in->stages, stages, sizeof(gr_stage_config) * (size_t)nstages);
    for (int k = 0; k < nstages; ++k) gr_stage_config_resolve_grid_spacing(&in->stages[k], &in->fixed);
    in->nstages = nstages;
    gr_memory_plan_options o;
    gr_cli_args one = *a;
    one.ranks = ranks > 1 ? ranks : 1;
    plan_options(&one, in, &o);
    s = gr_memory_plan_compute(&in->fixed, &in->moving, in->stages, nstages, &o, p);
    if (s != GR_OK) {
      /* Invalid stages are reported by gr_register with their own messages. */
      gr_clear_error();
      s = GR_OK;
    } else {
      gr_memory_budget dev, host;
      s = gr_memory_budget_query(in->kind, in->index, &dev);
      if (s == GR_OK && in->kind == GR_DEVICE_CUDA) s = gr_memory_budget_query(GR_DEVICE_CPU, 0, &host);
      const gr_memory_budget *hp = in->kind == GR_DEVICE_CUDA ? &host : NULL;
      if (s == GR_OK && gr_memory_plan_check(p, &dev, hp, 1) != GR_OK) {
        gr_clear_error();
        if (fits_with_bf16(a, in, &o, &dev, hp, gr_memory_plan_need(p), stages, nstages)) {
          s = GR_OK;
        } else {
          const int n = gr_memory_plan_need(p) > dev.available
                            ? gr_memory_plan_min_ranks(&in->fixed, &in->moving, in->stages, nstages, &o,
                                                       dev.available, GR_PLAN_MAX_RANKS)
                            : 1;
          s = gr_memory_plan_check(p, &dev, hp, n);
        }
      }
    }
  }
  free(in);
  free(p);
  return s;
}
