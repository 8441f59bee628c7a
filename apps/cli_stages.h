/* Stage configurations from the command line: parameter files or embedded
 * preset texts, with --iterations applied. Shared by the run and --plan. */
#ifndef GIGAREG_CLI_STAGES_H
#define GIGAREG_CLI_STAGES_H
#include <stdio.h>
#include "gigareg/gigareg.h"
#include "gigareg/param_map.h"
#include "cli_args.h"

/* Stage k of the command line. warn: where parameter-map warnings go (NULL: nowhere). */
gr_status gr_cli_load_stage(const gr_cli_args *a, int k, FILE *warn, gr_stage_config *stage, gr_output_config *out);
#endif
