#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_args.h"

void gr_cli_usage(FILE *f) {
  fputs(
      "Usage: gigareg -f FIXED -m MOVING -p PARAMS [-p PARAMS ...] -out DIR [options]\n"
      "       gigareg --plan -f FIXED -m MOVING -p PARAMS [...] [-np N] [-device cpu|cuda]\n"
      "       gigareg --xml\n"
      "\n"
      "Registers MOVING to FIXED with one stage per elastix parameter file (rigid, affine,\n"
      "B-spline/greedy or SyN), writing elastix-compatible results into DIR:\n"
      "  result.N.<fmt>, TransformParameters.N.txt (applied by elastix's transformix),\n"
      "  deformationField.N.mha / inverseDeformationField.N.mha for deformable stages, elastix.log\n"
      "\n"
      "Options (elastix's):\n"
      "  -f FILE        fixed image (.nii, .nii.gz, .mha, .mhd, .nrrd)\n"
      "  -m FILE        moving image\n"
      "  -p FILE        elastix parameter file; repeat for several stages\n"
      "  -out DIR       output folder (created if missing)\n"
      "  -fMask FILE    fixed-image mask (same grid as the fixed image)\n"
      "  -mMask FILE    moving-image mask\n"
      "  -t0 FILE       initial transform (elastix TransformParameters file)\n"
      "  -threads N     CPU threads\n"
      "Options (GigaReg):\n"
      "  -device D      cpu | cuda | cuda:N | auto (default auto)\n"
      "  -seed N        random seed (results are deterministic for a fixed seed)\n"
      "  -q             quiet: no progress on stderr\n"
      "  -qa            quality-assurance PNGs in -out: checkerboards and overlays before/after,\n"
      "                 Jacobian determinant, metric per iteration\n"
      "  --plan         print the memory each stage and level needs (headers only) and exit\n"
      "  -np N          with --plan: ranks of a Grid Parallel slab split (default 1)\n"
      "  -shards N      Grid Parallel: split the run into N z-slab shards (threads of this process;\n"
      "                 same result as one shard). Under mpirun -np N each rank is one shard.\n"
      "  -comm C        under mpirun: auto | mpi | nccl (default auto: NCCL between GPUs when the\n"
      "                 backend is CUDA and NCCL is available, else MPI)\n"
      "  -slabs         under mpirun: each rank reads only its z-slab of the inputs (offset reads of\n"
      "                 .nii/.mha) and writes its slab of the fields and result images (.mha/.nii at\n"
      "                 offsets): no rank holds a whole image. Outputs equal the default mode's.\n"
      "  -comm-stats    every rank prints the bytes it sent (halos, ring slabs, collectives) and the\n"
      "                 time it spent inside communication calls (not hidden behind computation)\n"
      "  --xml          print the 3D Slicer module description (Slicer runs this)\n"
      "  --help, --version\n"
      "3D Slicer style (docs/slicer.md; may be mixed with the above):\n"
      "  --fixed, --moving, --fixedMask, --movingMask FILE\n"
      "  --preset NAME  rigid | affine | deformable-lncc | deformable-mi | syn-lncc\n"
      "                 (embedded parameter files; ignored when parameter files are given)\n"
      "  --parameterFile FILE   same as -p\n"
      "  --outputVolume FILE    the moving image resampled onto the fixed grid\n"
      "  --outputTransform FILE the whole transform, fixed -> moving in LPS (ITK convention):\n"
      "                 displacement field (.nii.gz, .nrrd, .mha), or ITK .tfm when all stages are linear\n"
      "  --outputDirectory DIR  same as -out (optional when an output file is given)\n"
      "  --device D, --threads N (0 = default), --iterations N (cap per level; 0 = keep)\n"
      "  --slicer-progress      progress as Slicer <filter-progress> lines on stdout (automatic\n"
      "                 with --outputVolume / --outputTransform)\n",
      f);
}

static int need_value(int argc, char **argv, int i) {
  if (i + 1 >= argc || argv[i + 1][0] == '\0') {
    fprintf(stderr, "gigareg: error: option %s needs a value\n", argv[i]);
    return 0;
  }
  return 1;
}

static int parse_uint(const char *opt, const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  const long v = strtol(s, &end, 10);
  if (!end || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "gigareg: error: %s '%s' must be an integer in %ld..%ld\n", opt, s, lo, hi);
    return 0;
  }
  *out = v;
  return 1;
}

static int add_param(gr_cli_args *a, const char *path, const char *text) {
  if (a->nparams >= GR_CLI_MAX_PARAM_FILES) {
    fprintf(stderr, "gigareg: error: at most %d parameter files\n", GR_CLI_MAX_PARAM_FILES);
    return 0;
  }
  a->param_text[a->nparams] = text;
  a->params[a->nparams++] = path;
  return 1;
}

/* Options taking one value, in both spellings. */
static const char **value_slot(gr_cli_args *a, const char *o) {
  static const struct { const char *flag; size_t offset; } table[] = {
      {"-f", offsetof(gr_cli_args, fixed)},           {"--fixed", offsetof(gr_cli_args, fixed)},
      {"-m", offsetof(gr_cli_args, moving)},          {"--moving", offsetof(gr_cli_args, moving)},
      {"-out", offsetof(gr_cli_args, out)},           {"--outputDirectory", offsetof(gr_cli_args, out)},
      {"-fMask", offsetof(gr_cli_args, fixed_mask)},  {"--fixedMask", offsetof(gr_cli_args, fixed_mask)},
      {"-mMask", offsetof(gr_cli_args, moving_mask)}, {"--movingMask", offsetof(gr_cli_args, moving_mask)},
      {"-t0", offsetof(gr_cli_args, t0)},             {"--initialTransform", offsetof(gr_cli_args, t0)},
      {"-device", offsetof(gr_cli_args, device)},     {"--device", offsetof(gr_cli_args, device)},
      {"-comm", offsetof(gr_cli_args, comm)},
      {"--preset", offsetof(gr_cli_args, preset)},
      {"--outputVolume", offsetof(gr_cli_args, output_volume)},
      {"--outputTransform", offsetof(gr_cli_args, output_transform)},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; ++i)
    if (!strcmp(o, table[i].flag)) return (const char **)((char *)a + table[i].offset);
  return NULL;
}

/* Integer options: flag, range, destination (unsigned seed handled apart). */
static int int_option(gr_cli_args *a, const char *o, long *lo, long *hi, int **dst) {
  if (!strcmp(o, "-threads")) { *lo = 1; *hi = 4096; *dst = &a->threads; return 1; }
  if (!strcmp(o, "--threads")) { *lo = 0; *hi = 4096; *dst = &a->threads; return 1; } /* Slicer's default 0 = automatic */
  if (!strcmp(o, "--iterations")) { *lo = 0; *hi = 10000000; *dst = &a->iterations; return 1; }
  if (!strcmp(o, "-np")) { *lo = 1; *hi = 1 << 20; *dst = &a->ranks; return 1; }
  if (!strcmp(o, "-shards")) { *lo = 1; *hi = 4096; *dst = &a->shards; return 1; }
  return 0;
}

int gr_cli_parse(int argc, char **argv, gr_cli_args *a) {
  memset(a, 0, sizeof *a);
  a->ranks = 1;
  int nfiles = 0;
  for (int i = 1; i < argc; ++i) {
    const char *o = argv[i];
    if (!strcmp(o, "--help") || !strcmp(o, "-h") || !strcmp(o, "-help")) { a->help = 1; continue; }
    if (!strcmp(o, "--version") || !strcmp(o, "-version")) { a->version = 1; continue; }
    if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) { a->quiet = 1; continue; }
    if (!strcmp(o, "--xml")) { a->xml = 1; continue; }
    if (!strcmp(o, "--plan")) { a->plan = 1; continue; }
    if (!strcmp(o, "-qa") || !strcmp(o, "--qa")) { a->qa = 1; continue; }
    if (!strcmp(o, "--slicer-progress")) { a->slicer_progress = 1; continue; }
    if (!strcmp(o, "-slabs") || !strcmp(o, "--slabs")) { a->slabs = 1; continue; }
    if (!strcmp(o, "-comm-stats") || !strcmp(o, "--comm-stats")) { a->comm_stats = 1; continue; }
    const char **slot = value_slot(a, o);
    if (slot) {
      if (!need_value(argc, argv, i)) return 2;
      *slot = argv[++i];
      continue;
    }
    if (!strcmp(o, "-p") || !strcmp(o, "--parameterFile")) {
      if (!need_value(argc, argv, i)) return 2;
      if (!add_param(a, argv[++i], NULL)) return 2;
      ++nfiles;
      continue;
    }
    long lo = 0, hi = 0, v = 0;
    int *dst = NULL;
    if (int_option(a, o, &lo, &hi, &dst)) {
      if (!need_value(argc, argv, i)) return 2;
      if (!parse_uint(o, argv[i + 1], lo, hi, &v)) return 2;
      *dst = (int)v;
      ++i;
      continue;
    }
    if (!strcmp(o, "-seed")) {
      if (!need_value(argc, argv, i)) return 2;
      if (!parse_uint(o, argv[i + 1], 0, 2147483647L, &v)) return 2;
      a->seed = (unsigned)v;
      ++i;
      continue;
    }
    fprintf(stderr, "gigareg: error: unknown option '%s' (see --help)\n", o);
    return 2;
  }
  if (a->help || a->version || a->xml) return 0;
  /* A preset stands in for parameter files only when none were given: Slicer
   * always passes the preset's default, and an explicit file must win. */
  if (a->preset && nfiles == 0) {
    const char *names[GR_CLI_MAX_PARAM_FILES], *texts[GR_CLI_MAX_PARAM_FILES];
    const int n = gr_preset_stages(a->preset, names, texts, GR_CLI_MAX_PARAM_FILES);
    if (n == 0) {
      fprintf(stderr, "gigareg: error: unknown --preset '%s' (rigid, affine, deformable-lncc, deformable-mi, syn-lncc)\n",
              a->preset);
      return 2;
    }
    for (int k = 0; k < n; ++k)
      if (!add_param(a, names[k], texts[k])) return 2;
  }
  if (a->output_volume || a->output_transform) a->slicer_progress = 1;
  const int has_output = a->out || a->output_volume || a->output_transform;
  const char *missing = !a->fixed ? "-f (--fixed)" : !a->moving ? "-m (--moving)"
                      : a->nparams == 0 ? "-p (--parameterFile or --preset)"
                      : (!a->plan && !has_output) ? "-out (or --outputVolume / --outputTransform)" : NULL;
  if (missing) {
    fprintf(stderr, "gigareg: error: missing required option %s (see --help)\n", missing);
    return 2;
  }
  if (a->qa && !a->out && !a->plan) {
    fprintf(stderr, "gigareg: error: -qa writes its PNGs into -out: give -out DIR\n");
    return 2;
  }
  if (a->comm && strcmp(a->comm, "auto") && strcmp(a->comm, "mpi") && strcmp(a->comm, "nccl")) {
    fprintf(stderr, "gigareg: error: -comm %s: expected auto, mpi or nccl\n", a->comm);
    return 2;
  }
  if (a->ranks > 1 && !a->plan) {
    fprintf(stderr, "gigareg: error: -np is only used with --plan (run Grid Parallel with mpirun -np N gigareg ... or -shards N)\n");
    return 2;
  }
  return 0;
}
