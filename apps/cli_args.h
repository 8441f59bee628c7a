/* Command-line arguments of `gigareg` (elastix's interface plus a few of our own). */
#ifndef GIGAREG_CLI_ARGS_H
#define GIGAREG_CLI_ARGS_H
#include <stdio.h>

#define GR_CLI_MAX_PARAM_FILES 16

typedef struct gr_cli_args {
  const char *fixed, *moving, *out, *fixed_mask, *moving_mask, *t0, *device;
  const char *params[GR_CLI_MAX_PARAM_FILES];
  int nparams;
  int threads;     /* 0 = default */
  int quiet;
  unsigned seed;
  int help, version;
} gr_cli_args;

/* Returns 0 on success; on error prints one line to stderr and returns 2. */
int gr_cli_parse(int argc, char **argv, gr_cli_args *a);
void gr_cli_usage(FILE *f);
#endif
