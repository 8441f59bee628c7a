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

/* Planes [z0, z1) of a 3D image (scalar or vector), read with offset reads:
 * uncompressed NIfTI (.nii) and MetaImage (.mha, .mhd + raw) only; anything
 * else (.nii.gz, compressed data, NRRD) is GR_ERR_UNSUPPORTED so that the
 * caller can read the whole file instead. (*out)->geom is the slab's
 * geometry (gr_geometry_slab); *whole (may be NULL) the whole image's. */
gr_status gr_image_read_slab(const char *path, int64_t z0, int64_t z1, gr_image **out, gr_geometry *whole);

/* One uncompressed file (.mha with LOCAL data, or .nii) written in z-slabs by
 * several writers (processes or threads). create: the header, and the file
 * sized to hold every voxel (a sparse file); write: one slab's planes at their
 * offsets (disjoint writers never overlap); the caller renames tmp_path into
 * place once every writer succeeded. The format comes from final_path. */
gr_status gr_slab_file_create(const char *tmp_path, const char *final_path, const gr_geometry *whole, int ncomp,
                              gr_pixel_type t);
gr_status gr_slab_file_write(const char *tmp_path, const char *final_path, const gr_geometry *whole,
                             const gr_image *slab, int64_t z0, gr_pixel_type t);
/* True for the paths gr_slab_file_* can write. */
int gr_slab_file_supported(const char *final_path);

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
