/* 3D images in ITK's physical space (LPS): x_phys = origin + D * diag(spacing) * index.
 * Voxels are x-fastest. Multi-component images (displacement fields) are stored
 * as planes (component c of voxel i at data[c * nvox + i]); I/O converts to the
 * interleaved layout files use. */
#ifndef GIGAREG_IMAGE_H
#define GIGAREG_IMAGE_H

#include <stdint.h>
#include "gigareg/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gr_pixel_type {
  GR_PIXEL_UNKNOWN = 0,
  GR_PIXEL_U8, GR_PIXEL_I8, GR_PIXEL_U16, GR_PIXEL_I16,
  GR_PIXEL_U32, GR_PIXEL_I32, GR_PIXEL_F32, GR_PIXEL_F64
} gr_pixel_type;

typedef struct gr_geometry {
  int64_t size[3];
  double spacing[3];
  double origin[3];
  double direction[9]; /* row-major 3x3, columns are the axis directions */
} gr_geometry;

typedef struct gr_image {
  gr_geometry geom;
  int ncomp;              /* 1 (scalar) or 3 (vector field) */
  gr_pixel_type src_type; /* pixel type the file had; integer types mean labels survive exactly */
  float *data;            /* ncomp planes of nvox floats, owned */
} gr_image;

/* Precomputed index<->physical maps; what kernels take. Row-major 3x4:
 * phys = i2p[0..2 | 3] * idx + i2p[3], idx = p2i * phys + p2i[3]. */
typedef struct gr_grid {
  int64_t n[3];
  double i2p[12];
  double p2i[12];
} gr_grid;

void gr_geometry_identity(gr_geometry *g, int64_t nx, int64_t ny, int64_t nz);
int64_t gr_geometry_nvox(const gr_geometry *g);
/* GR_OK when sizes are positive, spacings positive and finite, direction invertible. */
gr_status gr_geometry_validate(const gr_geometry *g, const char *what);
/* True when both grids describe the same voxels within a tolerance (as ITK's 1e-6 * spacing). */
int gr_geometry_same(const gr_geometry *a, const gr_geometry *b);
void gr_geometry_index_to_phys(const gr_geometry *g, const double idx[3], double phys[3]);
void gr_geometry_phys_to_index(const gr_geometry *g, const double phys[3], double idx[3]);
/* Planes [z0, z1) of g as a geometry of their own (origin at plane z0): a
 * z-slab, as Grid Parallel ranks and slab reads/writes hold them. */
void gr_geometry_slab(const gr_geometry *g, int64_t z0, int64_t z1, gr_geometry *out);
/* Physical centre of the voxel grid. */
void gr_geometry_center(const gr_geometry *g, double c[3]);
gr_status gr_grid_from_geometry(const gr_geometry *g, gr_grid *out);

gr_status gr_image_create(const gr_geometry *g, int ncomp, gr_image **out); /* zero-filled */
void gr_image_destroy(gr_image *img);
gr_status gr_image_clone(const gr_image *src, gr_image **out);
int64_t gr_image_nvox(const gr_image *img);
/* GR_ERR_NONFINITE naming `what` and the first bad voxel index if any voxel is NaN/Inf. */
gr_status gr_image_check_finite(const gr_image *img, const char *what);

#ifdef __cplusplus
}
#endif
#endif
