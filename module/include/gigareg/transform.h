/* Parametric transforms in elastix/ITK convention: they map fixed-image
 * physical points to moving-image physical points. */
#ifndef GIGAREG_TRANSFORM_H
#define GIGAREG_TRANSFORM_H

#include "gigareg/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = A x + t; A row-major. The form every kernel takes. */
typedef struct gr_affine {
  double m[12]; /* row-major 3x4: [A | t] */
} gr_affine;

void gr_affine_identity(gr_affine *a);
/* out = a o b  (apply b first, then a) */
void gr_affine_compose(const gr_affine *a, const gr_affine *b, gr_affine *out);
gr_status gr_affine_invert(const gr_affine *a, gr_affine *out);
void gr_affine_apply(const gr_affine *a, const double x[3], double y[3]);

/* ITK Euler3DTransform (ComputeZYX false): R = Rz * Rx * Ry,
 * y = R (x - c) + c + t; p = {rx, ry, rz, tx, ty, tz} (radians, mm). */
void gr_euler_to_affine(const double p[6], const double center[3], gr_affine *out);
/* Derivative of the 3x4 affine [A | t] with respect to each Euler parameter:
 * dM[k][r*4+c] = d M_rc / d p_k. Chain rule: dL/dp_k = sum dL/dM_rc * dM[k][rc]. */
void gr_euler_affine_jacobian(const double p[6], const double center[3], double dM[6][12]);
/* Closest Euler parameters to a rotation+translation affine (for -t0 and tests). */
void gr_affine_to_euler(const gr_affine *a, const double center[3], double p[6]);

/* elastix AffineTransform: p = {a00 a01 a02 a10 a11 a12 a20 a21 a22 tx ty tz},
 * y = A (x - c) + c + t. */
void gr_affine_params_to_affine(const double p[12], const double center[3], gr_affine *out);
void gr_affine_to_affine_params(const gr_affine *a, const double center[3], double p[12]);

#ifdef __cplusplus
}
#endif
#endif
