/* Writes the small inputs the CLI tests use into a folder: a real T1/PD pair
 * shrunk 4x, a known-warped T1, masks, and a set of deliberately broken files. */
#include <stdint.h>
#include "reg_fixtures.h"

static void write_or_die(const char *dir, const char *name, const gr_image *img, gr_pixel_type t) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  if (gr_image_write(p, img, t) != GR_OK) {
    fprintf(stderr, "cannot write %s: %s\n", p, gr_last_error());
    exit(1);
  }
}

static void write_text(const char *dir, const char *name, const char *text) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  if (!f) exit(1);
  fputs(text, f);
  fclose(f);
}

/* First `keep` bytes of src copied to dst. */
static void truncate_copy(const char *dir, const char *src, const char *dst, long keep) {
  char a[1024], b[1024];
  snprintf(a, sizeof a, "%s/%s", dir, src);
  snprintf(b, sizeof b, "%s/%s", dir, dst);
  FILE *in = fopen(a, "rb"), *out = fopen(b, "wb");
  if (!in || !out) exit(1);
  for (long i = 0; i < keep; ++i) {
    const int c = fgetc(in);
    if (c == EOF) break;
    fputc(c, out);
  }
  fclose(in);
  fclose(out);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: make_cli_inputs DATA_DIR OUT_DIR\n");
    return 2;
  }
  const char *data = argv[1], *out = argv[2];
  gr_backend *be = NULL;
  gr_backend_cpu_create(0, &be);
  char p[1024];
  snprintf(p, sizeof p, "%s/chris_t1.nii.gz", data);
  gr_image *t1 = fx_load(be, p, 4.0);
  snprintf(p, sizeof p, "%s/chris_PD.nii.gz", data);
  gr_image *pd = fx_load(be, p, 3.0);
  if (!t1 || !pd) return 1;
  write_or_die(out, "t1.nii.gz", t1, GR_PIXEL_F32);
  write_or_die(out, "pd.mha", pd, GR_PIXEL_F32);
  /* Known smooth warp + small rigid offset of the T1 as a same-modality moving image. */
  gr_image *w = fx_smooth_field(&t1->geom, 1.5, 3);
  gr_image *t1w = fx_warp_field(be, t1, w, GR_INTERP_LINEAR);
  write_or_die(out, "t1_warped.nrrd", t1w, GR_PIXEL_F32);
  /* Masks: head (> 15% of max) on each grid; an empty one; one on the wrong grid. */
  gr_image *mask = NULL, *empty = NULL, *wrong = NULL;
  gr_image_create(&t1->geom, 1, &mask);
  gr_image_create(&t1->geom, 1, &empty);
  gr_image_create(&pd->geom, 1, &wrong);
  const float thr = fx_otsu_like_threshold(t1);
  for (int64_t i = 0; i < gr_image_nvox(t1); ++i) mask->data[i] = t1->data[i] > thr ? 1.0f : 0.0f;
  write_or_die(out, "t1_mask.nii.gz", mask, GR_PIXEL_U8);
  write_or_die(out, "empty_mask.nii.gz", empty, GR_PIXEL_U8);
  write_or_die(out, "wrong_grid_mask.nii.gz", wrong, GR_PIXEL_U8);
  /* NaN voxel. */
  gr_image *nan = NULL;
  gr_image_clone(t1, &nan);
  nan->data[gr_image_nvox(nan) / 2] = NAN;
  write_or_die(out, "nan.nii", nan, GR_PIXEL_F32);
  /* Truncated and corrupt files. */
  write_or_die(out, "t1.nii", t1, GR_PIXEL_F32);
  truncate_copy(out, "t1.nii", "truncated.nii", 352 + 1000);
  write_text(out, "corrupt.mha", "ObjectType = Image\nNDims = 3\nDimSize = 10 10\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n");
  write_text(out, "zero_spacing.mha",
             "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementSpacing = 0 1 1\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
             "\x01\x02\x03\x04\x05\x06\x07\x08");
  write_text(out, "image2d.mha", "ObjectType = Image\nNDims = 2\nDimSize = 2 2\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n\x01\x02\x03\x04");
  /* Parameter files: fast presets plus broken ones. */
  write_text(out, "rigid.txt", "(Transform \"EulerTransform\")\n(Metric \"AdvancedMattesMutualInformation\")\n"
             "(NumberOfResolutions 2)\n(MaximumNumberOfIterations 60 40)\n(ResultImagePixelType \"float\")\n(ResultImageFormat \"nii.gz\")\n(FinalBSplineInterpolationOrder 1)\n");
  write_text(out, "greedy.txt", "(Transform \"BSplineTransform\")\n(Metric \"AdvancedMattesMutualInformation\")\n"
             "(NumberOfResolutions 2)\n(ImagePyramidSchedule 2 2 2 1 1 1)\n(MaximumNumberOfIterations 40 30)\n"
             "(FinalGridSpacingInPhysicalUnits 8)\n(ResultImagePixelType \"float\")\n(ResultImageFormat \"mha\")\n(FinalBSplineInterpolationOrder 1)\n(ImageSampler \"RandomCoordinate\")\n");
  write_text(out, "bad_syntax.txt", "(Transform \"EulerTransform\"\n(Metric \"AdvancedMeanSquares\")\n");
  write_text(out, "negative_iterations.txt", "(Transform \"EulerTransform\")\n(MaximumNumberOfIterations -5)\n");
  write_text(out, "unknown_transform.txt", "(Transform \"WarpDriveTransform\")\n");
  gr_image_destroy(t1); gr_image_destroy(pd); gr_image_destroy(w); gr_image_destroy(t1w);
  gr_image_destroy(mask); gr_image_destroy(empty); gr_image_destroy(wrong); gr_image_destroy(nan);
  gr_backend_destroy(be);
  return 0;
}
