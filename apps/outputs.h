/* Everything `gigareg` writes goes first into a private staging folder inside
 * -out and is renamed into place only when the whole run succeeded, so a
 * failure never leaves a partial result behind. */
#ifndef GIGAREG_CLI_OUTPUTS_H
#define GIGAREG_CLI_OUTPUTS_H
#include <stdio.h>
#include "gigareg/gigareg.h"

typedef struct gr_outdir {
  char final_dir[4096];
  char stage_dir[4200];
  char names[64][128]; /* staged file names to publish */
  int nnames;
  int created_final;   /* we created final_dir (remove it again on failure) */
} gr_outdir;

gr_status gr_outdir_open(gr_outdir *o, const char *dir);
/* Path of `name` inside the staging folder (buf) and records it for publishing. */
const char *gr_outdir_stage(gr_outdir *o, const char *name, char *buf, size_t n);
/* Final path of `name` (what files refer to). */
const char *gr_outdir_final(const gr_outdir *o, const char *name, char *buf, size_t n);
gr_status gr_outdir_publish(gr_outdir *o);
void gr_outdir_abort(gr_outdir *o);
#endif
