/* 3D Slicer Execution Model support. Slicer discovers a CLI module by running
 * `gigareg --xml`, builds its GUI from the description, and runs
 *   gigareg --preset P --device D --iterations N --threads T --fixed F --moving M
 *           [--fixedMask ..] [--movingMask ..] [--parameterFile ..]
 *           --outputVolume /tmp/Slicer/..nrrd --outputTransform /tmp/Slicer/..nii.gz
 * (long flags in the order of the XML), then loads the output files and reads
 * progress from stdout (<filter-progress> lines). Element names and rules follow
 * SlicerExecutionModel's ModuleDescriptionParser: flags are one character,
 * long flags and names are C identifiers, images and transforms carry a channel. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "slicer.h"
#include "cli_args.h"

void gr_slicer_print_xml(FILE *f) {
  fprintf(f,
          "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
          "<executable>\n"
          "  <category>Registration</category>\n"
          "  <title>GigaReg</title>\n"
          "  <description><![CDATA[Multimodal rigid, affine and dense deformable (greedy / SyN) registration "
          "of a moving volume to a fixed volume, on the CPU or a CUDA GPU. Stages follow elastix parameter "
          "files; choose a preset or give your own parameter file. The output transform maps fixed to moving "
          "points (resampling convention, LPS) and is written as a displacement field, which Slicer loads as "
          "a grid transform: apply it to the moving volume to see it aligned with the fixed one.]]></description>\n"
          "  <version>%s</version>\n"
          "  <documentation-url>docs/slicer.md in the GigaReg sources</documentation-url>\n"
          "  <license>Apache-2.0</license>\n"
          "  <contributor>The GigaReg developers</contributor>\n"
          "  <acknowledgements><![CDATA[Algorithms after ANTs SyN (Avants et al. 2008), Mattes mutual "
          "information, elastix (Klein et al. 2010) and FireANTs-style fused operations.]]></acknowledgements>\n",
          GIGAREG_VERSION);
  fputs(
      "  <parameters>\n"
      "    <label>Input and output volumes</label>\n"
      "    <description><![CDATA[Volumes to register and where to put the results.]]></description>\n"
      "    <image>\n"
      "      <name>fixedVolume</name>\n"
      "      <label>Fixed volume</label>\n"
      "      <description><![CDATA[Reference volume: the results live on its grid.]]></description>\n"
      "      <channel>input</channel>\n"
      "      <longflag>fixed</longflag>\n"
      "    </image>\n"
      "    <image>\n"
      "      <name>movingVolume</name>\n"
      "      <label>Moving volume</label>\n"
      "      <description><![CDATA[Volume that is aligned to the fixed volume.]]></description>\n"
      "      <channel>input</channel>\n"
      "      <longflag>moving</longflag>\n"
      "    </image>\n"
      "    <image type=\"label\">\n"
      "      <name>fixedMask</name>\n"
      "      <label>Fixed mask</label>\n"
      "      <description><![CDATA[Optional: only voxels of the fixed volume inside this mask (non-zero) drive the "
      "registration. Must share the fixed volume's grid.]]></description>\n"
      "      <channel>input</channel>\n"
      "      <longflag>fixedMask</longflag>\n"
      "    </image>\n"
      "    <image type=\"label\">\n"
      "      <name>movingMask</name>\n"
      "      <label>Moving mask</label>\n"
      "      <description><![CDATA[Optional mask on the moving volume's grid.]]></description>\n"
      "      <channel>input</channel>\n"
      "      <longflag>movingMask</longflag>\n"
      "    </image>\n"
      "    <image reference=\"movingVolume\">\n"
      "      <name>outputVolume</name>\n"
      "      <label>Output volume</label>\n"
      "      <description><![CDATA[The moving volume resampled onto the fixed volume's grid.]]></description>\n"
      "      <channel>output</channel>\n"
      "      <longflag>outputVolume</longflag>\n"
      "    </image>\n"
      "    <transform fileExtensions=\".nii.gz\" type=\"nonlinear\" reference=\"movingVolume\">\n"
      "      <name>outputTransform</name>\n"
      "      <label>Output transform</label>\n"
      "      <description><![CDATA[The whole transform (all stages) as a displacement field on the fixed grid: "
      "ITK DisplacementFieldTransform convention, fixed to moving points in LPS, NIfTI vector intent.]]></description>\n"
      "      <channel>output</channel>\n"
      "      <longflag>outputTransform</longflag>\n"
      "    </transform>\n"
      "  </parameters>\n"
      "  <parameters>\n"
      "    <label>Registration</label>\n"
      "    <description><![CDATA[What to register and where to run.]]></description>\n"
      "    <string-enumeration>\n"
      "      <name>preset</name>\n"
      "      <label>Preset</label>\n"
      "      <description><![CDATA[Stages to run. rigid; affine (rigid then affine); deformable-lncc and "
      "syn-lncc (same modality: rigid, affine, then greedy or symmetric dense deformation with local "
      "correlation); deformable-mi (any modality: mutual information). Ignored when a parameter file is "
      "given.]]></description>\n"
      "      <longflag>preset</longflag>\n"
      "      <default>deformable-mi</default>\n",
      f);
  for (int i = 0; gr_preset_name(i); ++i) fprintf(f, "      <element>%s</element>\n", gr_preset_name(i));
  fputs(
      "    </string-enumeration>\n"
      "    <file fileExtensions=\".txt\">\n"
      "      <name>parameterFile</name>\n"
      "      <label>Parameter file</label>\n"
      "      <description><![CDATA[Optional elastix parameter file for a single stage; replaces the preset. "
      "Existing elastix files run unchanged (see docs/elastix-compatibility.md).]]></description>\n"
      "      <channel>input</channel>\n"
      "      <longflag>parameterFile</longflag>\n"
      "    </file>\n"
      "    <string-enumeration>\n"
      "      <name>device</name>\n"
      "      <label>Device</label>\n"
      "      <description><![CDATA[auto uses a CUDA GPU when this build has one and a GPU is present.]]></description>\n"
      "      <longflag>device</longflag>\n"
      "      <default>auto</default>\n"
      "      <element>auto</element>\n"
      "      <element>cpu</element>\n"
      "      <element>cuda</element>\n"
      "    </string-enumeration>\n"
      "  </parameters>\n"
      "  <parameters advanced=\"true\">\n"
      "    <label>Advanced</label>\n"
      "    <description><![CDATA[Speed controls.]]></description>\n"
      "    <integer>\n"
      "      <name>iterations</name>\n"
      "      <label>Maximum iterations per level</label>\n"
      "      <description><![CDATA[Caps the iterations of every pyramid level of every stage (0 keeps the "
      "preset's or parameter file's values).]]></description>\n"
      "      <longflag>iterations</longflag>\n"
      "      <default>0</default>\n"
      "      <constraints>\n"
      "        <minimum>0</minimum>\n"
      "        <maximum>10000</maximum>\n"
      "        <step>10</step>\n"
      "      </constraints>\n"
      "    </integer>\n"
      "    <integer>\n"
      "      <name>threads</name>\n"
      "      <label>CPU threads</label>\n"
      "      <description><![CDATA[0 uses every core.]]></description>\n"
      "      <longflag>threads</longflag>\n"
      "      <default>0</default>\n"
      "      <constraints>\n"
      "        <minimum>0</minimum>\n"
      "        <maximum>4096</maximum>\n"
      "        <step>1</step>\n"
      "      </constraints>\n"
      "    </integer>\n"
      "  </parameters>\n"
      "</executable>\n",
      f);
}

/* ---- progress ------------------------------------------------------------------ */

void gr_slicer_start(gr_slicer_progress *p, FILE *out, const char *comment) {
  memset(p, 0, sizeof *p);
  p->out = out;
  p->stage = p->level = -1;
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  p->t0 = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
  fprintf(out, "<filter-start>\n<filter-name>gigareg</filter-name>\n<filter-comment>%s</filter-comment>\n</filter-start>\n",
          comment);
  fflush(out);
}

void gr_slicer_comment(gr_slicer_progress *p, const char *comment, double fraction) {
  fprintf(p->out, "<filter-comment>%s</filter-comment>\n<filter-progress>%.4f</filter-progress>\n", comment, fraction);
  fflush(p->out);
  p->last = fraction;
}

void gr_slicer_report(gr_slicer_progress *p, const gr_progress_info *i, const char *stage_name) {
  /* Within a stage, level l costs ~8^l of the coarsest (voxel count), as gr_report's ETA assumes. */
  double done = 0.0, total = 0.0, w = 1.0;
  for (int l = 0; l < i->nlevels; ++l, w *= 8.0) {
    total += w;
    if (l < i->level) done += w;
    else if (l == i->level && i->niterations > 0) done += w * (double)(i->iteration + 1) / i->niterations;
  }
  const double stage_frac = total > 0 ? done / total : 0.0;
  const double overall = 0.95 * ((double)i->stage + stage_frac) / (double)(i->nstages > 0 ? i->nstages : 1);
  const int changed = i->stage != p->stage || i->level != p->level;
  if (changed) {
    fprintf(p->out, "<filter-comment>stage %d/%d (%s), level %d/%d</filter-comment>\n", i->stage + 1, i->nstages,
            stage_name, i->level + 1, i->nlevels);
    p->stage = i->stage;
    p->level = i->level;
  }
  /* A line per half percent is smooth in Slicer's progress bar without flooding its log. */
  if (!changed && overall - p->last < 0.005) return;
  fprintf(p->out, "<filter-progress>%.4f</filter-progress>\n<filter-stage-progress>%.4f</filter-stage-progress>\n",
          overall, stage_frac);
  fflush(p->out);
  p->last = overall;
}

void gr_slicer_end(gr_slicer_progress *p) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  const double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec - p->t0;
  fprintf(p->out, "<filter-progress>1</filter-progress>\n<filter-end>\n<filter-name>gigareg</filter-name>\n"
                  "<filter-time>%.2f</filter-time>\n</filter-end>\n", t);
  fflush(p->out);
}

/* ---- output files ---------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
  const size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

const char *gr_direct_tmp_path(const char *final_path, char *buf, size_t n) {
  if (ends_with(final_path, ".mhd") || ends_with(final_path, ".nhdr")) {
    snprintf(buf, n, "%s", final_path);
    return buf;
  }
  const char *slash = strrchr(final_path, '/');
  const int dir_len = slash ? (int)(slash - final_path + 1) : 0;
  snprintf(buf, n, "%.*s.gigareg-%ld-%s", dir_len, final_path, (long)getpid(), slash ? slash + 1 : final_path);
  return buf;
}

int gr_is_itk_transform_path(const char *path) { return ends_with(path, ".tfm") || ends_with(path, ".txt"); }

gr_status gr_write_itk_affine(const char *path, const gr_affine *A) {
  for (int i = 0; i < 12; ++i)
    if (!isfinite(A->m[i])) return gr_error(GR_ERR_NONFINITE, "transform for '%s' is not finite", path);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return gr_error(GR_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  /* ITK: T(x) = M (x - c) + c + t with FixedParameters c; c = 0 gives y = M x + t directly. */
  fprintf(f, "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\nParameters:");
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) fprintf(f, " %.17g", A->m[r * 4 + c]);
  for (int r = 0; r < 3; ++r) fprintf(f, " %.17g", A->m[r * 4 + 3]);
  fprintf(f, "\nFixedParameters: 0 0 0\n");
  const int bad = ferror(f);
  if (fclose(f) != 0 || bad) {
    unlink(tmp);
    return gr_error(GR_ERR_IO, "cannot write '%s'", path);
  }
  if (rename(tmp, path) != 0) {
    const int e = errno;
    unlink(tmp);
    return gr_error(GR_ERR_IO, "cannot write '%s': %s", path, strerror(e));
  }
  return GR_OK;
}
