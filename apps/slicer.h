/* 3D Slicer integration (docs/slicer.md): the Execution Model XML that
 * `gigareg --xml` prints, progress in Slicer's <filter-*> format, and the
 * helpers for the files Slicer asks for (--outputVolume, --outputTransform). */
#ifndef GIGAREG_CLI_SLICER_H
#define GIGAREG_CLI_SLICER_H
#include <stdio.h>
#include "gigareg/gigareg.h"

void gr_slicer_print_xml(FILE *f);

/* Progress state for one run (lives in the run, not in a global). */
typedef struct gr_slicer_progress {
  FILE *out;
  double t0;
  int stage, level;   /* last reported, -1 before the first */
  double last;        /* last overall fraction printed */
} gr_slicer_progress;

void gr_slicer_start(gr_slicer_progress *p, FILE *out, const char *comment);
/* Registration progress maps onto [0, 0.95]: the rest is writing outputs. */
void gr_slicer_report(gr_slicer_progress *p, const gr_progress_info *info, const char *stage_name);
void gr_slicer_comment(gr_slicer_progress *p, const char *comment, double fraction);
void gr_slicer_end(gr_slicer_progress *p);

/* Output files Slicer names are written beside their final path under a
 * temporary name and renamed when the whole run succeeded. Detached formats
 * (.mhd, .nhdr), whose header names its data file, are written in place. */
const char *gr_direct_tmp_path(const char *final_path, char *buf, size_t n);
/* ITK transform file (.tfm/.txt) of a linear transform fixed -> moving (LPS),
 * AffineTransform_double_3_3 as ITK writes it. Atomic. */
gr_status gr_write_itk_affine(const char *path, const gr_affine *A);
/* 1 when path ends with .tfm or .txt (an ITK transform file, linear only). */
int gr_is_itk_transform_path(const char *path);
#endif
