/* `gigareg --plan` and the memory check a run makes before it allocates
 * (both on top of the library's planner, gigareg/memory_plan.h). */
#ifndef GIGAREG_CLI_PLAN_H
#define GIGAREG_CLI_PLAN_H
#include "gigareg/gigareg.h"
#include "cli_args.h"

/* Prints the plan on stdout; returns the process exit code (0, 1 on error). */
int gr_cli_plan(const gr_cli_args *a);

/* Before any voxel is read: GR_ERR_NOMEM with the planner's numbers when the
 * run would not fit the device (GIGAREG_MEMORY_LIMIT_BYTES simulates a small
 * one). Headers that cannot be read are left to the loaders to report, so
 * bad inputs keep their own one-line errors. A run that fits only with
 * bfloat16 Adam moments gets them (its deformable stages in `stages` are
 * switched, with a note on stderr unless -q) instead of failing. */
/* ranks: MPI ranks of the run (the plan is per rank; ranks sharing one host's
 * RAM are each checked against all of it, so that case is not caught). */
gr_status gr_cli_memory_check(const gr_cli_args *a, gr_stage_config *stages, int nstages, int ranks);
#endif
