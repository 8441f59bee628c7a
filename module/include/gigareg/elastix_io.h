/* elastix TransformParameters files: writing them in the exact form elastix
 * 5.0.1 writes (so Debian's transformix 5.0.1 applies them), and reading a
 * chain of linear ones back as one affine (for -t0).
 *
 * Composition (measured with transformix 5.0.1, see docs/elastix-compatibility.md):
 * a file whose InitialTransformParametersFileName names another file, with
 * HowToCombineTransforms "Compose", maps a fixed point x to
 *     T_current( T_initial(x) )
 * i.e. the initial transform is applied FIRST. */
#ifndef GIGAREG_ELASTIX_IO_H
#define GIGAREG_ELASTIX_IO_H

#include "gigareg/image.h"
#include "gigareg/transform.h"
#include "gigareg/registration.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the resampler part of a TransformParameters file says (and what the
 * CLI does with the result image). */
typedef struct gr_output_config {
  int write_result_image;          /* WriteResultImage (default 1) */
  char result_format[16];          /* ResultImageFormat without dot: "mhd" (elastix default), "mha", "nii", "nii.gz", "nrrd", "nhdr" */
  gr_pixel_type result_pixel_type; /* ResultImagePixelType (default float; elastix's own default "short" truncates) */
  double default_pixel_value;      /* DefaultPixelValue (default 0) */
  int final_bspline_order;         /* FinalBSplineInterpolationOrder 0..5 (default 3; 0 = nearest, 1 = linear) */
  int compress_result_image;       /* CompressResultImage (default 0) */
} gr_output_config;

void gr_output_config_defaults(gr_output_config *oc);

/* elastix/ITK pixel type names ("float", "short", "unsigned char", ...). */
const char *gr_elastix_pixel_type_name(gr_pixel_type t);
/* GR_PIXEL_UNKNOWN for names GigaReg cannot write ("long", "unsigned long", unknown). */
gr_pixel_type gr_elastix_pixel_type_from_name(const char *name);

/* Writes TransformParameters for one stage result, atomically (temp file +
 * rename). fixed_geom defines the output grid (Size/Index/Spacing/Origin/Direction).
 * initial_path: the previous file in the chain, or NULL for "NoInitialTransform";
 * it is written exactly as given (transformix resolves it against its working
 * directory, so pass an absolute path or one relative to where transformix runs).
 * field_path: the displacement field file of a deformable stage (required for
 * GR_STAGE_GREEDY / GR_STAGE_SYN, ignored otherwise), written as given.
 * oc may be NULL (defaults). Non-finite parameters are refused (GR_ERR_NONFINITE). */
gr_status gr_transform_parameters_write(const char *path, const gr_stage_result *r, const gr_geometry *fixed_geom,
                                        const char *initial_path, const char *field_path,
                                        const gr_output_config *oc);

/* Reads a TransformParameters file and the chain of InitialTransformParametersFileName
 * (or elastix >= 5.2's InitialTransformParameterFileName) behind it as one affine
 * mapping fixed to moving points. Relative initial paths are tried as given
 * (transformix's rule: relative to the working directory), then relative to the
 * folder of the file naming them. Chains longer than 32 or cycles are
 * GR_ERR_PARAM. Supports TranslationTransform, EulerTransform (ComputeZYX
 * false/true), AffineTransform, SimilarityTransform, with "Compose" or "Add".
 * Deformable transforms (BSplineTransform, DeformationFieldTransform, ...) are
 * GR_ERR_UNSUPPORTED naming the transform; missing keys GR_ERR_PARAM naming
 * file and key. */
gr_status gr_transform_parameters_read_affine(const char *path, gr_affine *out);

#ifdef __cplusplus
}
#endif
#endif
