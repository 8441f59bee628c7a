/* Image file I/O: NIfTI-1/2 (.nii, .nii.gz, via nifticlib), MetaImage
 * (.mha, .mhd + raw, optionally zlib-compressed) and NRRD (.nrrd, .nhdr;
 * raw or gzip). The format is chosen from the file name. Any supported pixel
 * type is converted to float32; src_type records what the file held.
 * Writers write to "<path>.tmp-XXXX" and rename, so no partial file survives an
 * error. Physical space is ITK's (LPS) in memory; NIfTI RAS<->LPS is handled
 * as ITK does (qform/sform selection included). */
#ifndef GIGAREG_IO_H
#define GIGAREG_IO_H

#include "gigareg/image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gr_file_format {
  GR_FORMAT_UNKNOWN = 0, GR_FORMAT_NIFTI, GR_FORMAT_META, GR_FORMAT_NRRD
} gr_file_format;

gr_file_format gr_format_from_path(const char *path);

/* Reads a 3D scalar image or a 3D 3-component vector image (planes in memory). */
gr_status gr_image_read(const char *path, gr_image **out);
/* Header only: geometry, components, pixel type; no voxel data read (memory planner). */
gr_status gr_image_read_header(const char *path, gr_geometry *geom, int *ncomp, gr_pixel_type *type);
/* Writes img converting to `type` (GR_PIXEL_UNKNOWN = img->src_type, or float if unknown).
 * Values are rounded and clamped for integer types. Vector images are written as
 * ITK writes them: NIfTI intent VECTOR (1007) with LPS components, MetaImage
 * ElementNumberOfChannels = 3, NRRD "vector" kind. */
gr_status gr_image_write(const char *path, const gr_image *img, gr_pixel_type type);

/* Parses "float", "short", "unsigned char", ... (elastix ResultImagePixelType names). */
gr_pixel_type gr_pixel_type_from_name(const char *name);
const char *gr_pixel_type_name(gr_pixel_type t);

/* Internal per-format entry points (one file each under module/src/io/). */
gr_status gr_nifti_read(const char *path, int header_only, gr_image **out, gr_geometry *geom, int *ncomp, gr_pixel_type *type);
gr_status gr_nifti_write(const char *path, const gr_image *img, gr_pixel_type type);
gr_status gr_meta_read(const char *path, int header_only, gr_image **out, gr_geometry *geom, int *ncomp, gr_pixel_type *type);
gr_status gr_meta_write(const char *path, const gr_image *img, gr_pixel_type type);
gr_status gr_nrrd_read(const char *path, int header_only, gr_image **out, gr_geometry *geom, int *ncomp, gr_pixel_type *type);
gr_status gr_nrrd_write(const char *path, const gr_image *img, gr_pixel_type type);

#ifdef __cplusplus
}
#endif
#endif
