/* Command-line arguments of `gigareg`: elastix's interface, a few of our own,
 * and the long flags 3D Slicer passes (its Execution Model, see apps/slicer.c
 * and docs/slicer.md). Both styles may be mixed. */
#ifndef GIGAREG_CLI_ARGS_H
#define GIGAREG_CLI_ARGS_H
#include <stdio.h>

#define GR_CLI_MAX_PARAM_FILES 16

typedef struct gr_cli_args {
  const char *fixed, *moving, *out, *fixed_mask, *moving_mask, *t0, *device;
  const char *params[GR_CLI_MAX_PARAM_FILES];
  /* Embedded parameter text of a preset stage (params[k] then names it), or
   * NULL when params[k] is a file to read. */
  const char *param_text[GR_CLI_MAX_PARAM_FILES];
  int nparams;
  int threads;     /* 0 = default */
  int quiet;
  unsigned seed;
  int help, version;
  /* Slicer / planner / QA */
  const char *preset;           /* --preset NAME (expanded into params when no parameter file is given) */
  const char *output_volume;    /* --outputVolume: the last stage's result image */
  const char *output_transform; /* --outputTransform: whole transform as a displacement field (or .tfm when linear) */
  int iterations;               /* --iterations N: cap per pyramid level (0 = keep) */
  int xml;                      /* --xml: print the Slicer module description */
  int plan;                     /* --plan: print the memory plan and exit */
  int ranks;                    /* -np N: ranks for --plan (slab split) */
  int qa;                       /* -qa: QA PNGs into -out */
  int slicer_progress;          /* progress as Slicer's <filter-progress> lines on stdout */
  int shards;                   /* -shards N: Grid Parallel shards as threads of this process (0 = not given) */
  const char *comm;             /* -comm auto|mpi|nccl: communicator under mpirun (NULL = auto) */
  int slabs;                    /* -slabs: under mpirun, read and write slabs (no whole image on any rank) */
  int comm_stats;               /* -comm-stats: every rank prints its communication totals at the end */
} gr_cli_args;

/* Returns 0 on success; on error prints one line to stderr and returns 2. */
int gr_cli_parse(int argc, char **argv, gr_cli_args *a);
void gr_cli_usage(FILE *f);

/* Presets (apps/presets.c): stage parameter texts compiled into the binary
 * from the apps/params files, so a preset works wherever the executable is copied. */
typedef struct gr_embedded_param {
  const char *name; /* file name in apps/params */
  const char *text;
} gr_embedded_param;
extern const gr_embedded_param gr_embedded_params[];
extern const int gr_embedded_param_count;
/* Fills names/texts with the preset's stages; returns their count, 0 if unknown. */
int gr_preset_stages(const char *preset, const char **names, const char **texts, int max);
/* "rigid, affine, ..." for messages and the XML. */
const char *gr_preset_name(int i); /* NULL past the end */
#endif
