#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_args.h"

void gr_cli_usage(FILE *f) {
  fputs(
      "Usage: gigareg -f FIXED -m MOVING -p PARAMS [-p PARAMS ...] -out DIR [options]\n"
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
      "  --help, --version\n",
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

int gr_cli_parse(int argc, char **argv, gr_cli_args *a) {
  memset(a, 0, sizeof *a);
  for (int i = 1; i < argc; ++i) {
    const char *o = argv[i];
    const char **slot = NULL;
    if (!strcmp(o, "--help") || !strcmp(o, "-h") || !strcmp(o, "-help")) { a->help = 1; continue; }
    if (!strcmp(o, "--version") || !strcmp(o, "-version")) { a->version = 1; continue; }
    if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) { a->quiet = 1; continue; }
    if (!strcmp(o, "-f")) slot = &a->fixed;
    else if (!strcmp(o, "-m")) slot = &a->moving;
    else if (!strcmp(o, "-out")) slot = &a->out;
    else if (!strcmp(o, "-fMask")) slot = &a->fixed_mask;
    else if (!strcmp(o, "-mMask")) slot = &a->moving_mask;
    else if (!strcmp(o, "-t0")) slot = &a->t0;
    else if (!strcmp(o, "-device")) slot = &a->device;
    if (slot) {
      if (!need_value(argc, argv, i)) return 2;
      *slot = argv[++i];
      continue;
    }
    if (!strcmp(o, "-p")) {
      if (!need_value(argc, argv, i)) return 2;
      if (a->nparams >= GR_CLI_MAX_PARAM_FILES) {
        fprintf(stderr, "gigareg: error: at most %d -p parameter files\n", GR_CLI_MAX_PARAM_FILES);
        return 2;
      }
      a->params[a->nparams++] = argv[++i];
      continue;
    }
    if (!strcmp(o, "-threads") || !strcmp(o, "-seed")) {
      if (!need_value(argc, argv, i)) return 2;
      long v = 0;
      if (!parse_uint(o, argv[i + 1], o[1] == 't' ? 1 : 0, o[1] == 't' ? 4096 : 2147483647L, &v)) return 2;
      if (o[1] == 't') a->threads = (int)v;
      else a->seed = (unsigned)v;
      ++i;
      continue;
    }
    fprintf(stderr, "gigareg: error: unknown option '%s' (see --help)\n", o);
    return 2;
  }
  if (a->help || a->version) return 0;
  const char *missing = !a->fixed ? "-f" : !a->moving ? "-m" : a->nparams == 0 ? "-p" : !a->out ? "-out" : NULL;
  if (missing) {
    fprintf(stderr, "gigareg: error: missing required option %s (see --help)\n", missing);
    return 2;
  }
  return 0;
}
