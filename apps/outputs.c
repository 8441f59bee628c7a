#define _DEFAULT_SOURCE /* realpath */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "outputs.h"

gr_status gr_outdir_open(gr_outdir *o, const char *dir) {
  memset(o, 0, sizeof *o);
  if (strlen(dir) >= sizeof o->final_dir - 64) return gr_error(GR_ERR_INVALID_ARG, "-out path too long: '%s'", dir);
  snprintf(o->final_dir, sizeof o->final_dir, "%s", dir);
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return gr_error(GR_ERR_IO, "-out '%s' exists and is not a folder", dir);
  } else {
    if (mkdir(dir, 0777) != 0) return gr_error(GR_ERR_IO, "cannot create output folder '%s': %s", dir, strerror(errno));
    o->created_final = 1;
  }
  /* Absolute, so the TransformParameters files that name each other (and their
   * fields) work from any working directory, e.g. transformix run elsewhere. */
  char *abs = realpath(dir, NULL);
  if (abs) {
    if (strlen(abs) < sizeof o->final_dir - 64) snprintf(o->final_dir, sizeof o->final_dir, "%s", abs);
    free(abs);
  }
  snprintf(o->stage_dir, sizeof o->stage_dir, "%s/.gigareg-staging-%ld", o->final_dir, (long)getpid());
  if (mkdir(o->stage_dir, 0777) != 0) {
    const int e = errno;
    if (o->created_final) rmdir(dir);
    return gr_error(GR_ERR_IO, "cannot write into output folder '%s': %s", dir, strerror(e));
  }
  return GR_OK;
}

const char *gr_outdir_stage(gr_outdir *o, const char *name, char *buf, size_t n) {
  int known = 0;
  for (int i = 0; i < o->nnames; ++i) known |= !strcmp(o->names[i], name);
  if (!known && o->nnames < 64) snprintf(o->names[o->nnames++], sizeof o->names[0], "%s", name);
  snprintf(buf, n, "%s/%s", o->stage_dir, name);
  return buf;
}

const char *gr_outdir_final(const gr_outdir *o, const char *name, char *buf, size_t n) {
  snprintf(buf, n, "%s/%s", o->final_dir, name);
  return buf;
}

/* A .mhd header names its .raw: publish both. */
static void publish_one(gr_outdir *o, const char *name, gr_status *s) {
  char from[4400], to[4400];
  snprintf(from, sizeof from, "%s/%s", o->stage_dir, name);
  snprintf(to, sizeof to, "%s/%s", o->final_dir, name);
  if (access(from, F_OK) != 0) return;
  if (rename(from, to) != 0 && *s == GR_OK)
    *s = gr_error(GR_ERR_IO, "cannot move '%s' into '%s': %s", name, o->final_dir, strerror(errno));
}

gr_status gr_outdir_publish(gr_outdir *o) {
  gr_status s = GR_OK;
  for (int i = 0; i < o->nnames; ++i) {
    publish_one(o, o->names[i], &s);
    const size_t len = strlen(o->names[i]);
    if (len > 4 && !strcmp(o->names[i] + len - 4, ".mhd")) {
      char raw[160];
      snprintf(raw, sizeof raw, "%.*s.raw", (int)(len - 4), o->names[i]);
      publish_one(o, raw, &s);
      snprintf(raw, sizeof raw, "%.*s.zraw", (int)(len - 4), o->names[i]);
      publish_one(o, raw, &s);
    }
  }
  gr_outdir_abort(o);
  return s;
}

void gr_outdir_abort(gr_outdir *o) {
  for (int i = 0; i < o->nnames; ++i) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", o->stage_dir, o->names[i]);
    unlink(p);
    const size_t len = strlen(p);
    if (len > 4 && !strcmp(p + len - 4, ".mhd")) {
      strcpy(p + len - 4, ".raw");
      unlink(p);
      strcpy(p + len - 4, ".zraw");
      unlink(p);
    }
  }
  rmdir(o->stage_dir);
}
