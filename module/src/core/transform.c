#include <math.h>
#include <string.h>
#include "gigareg/transform.h"
#include "core/mat3.h"

void gr_affine_identity(gr_affine *a) {
  memset(a, 0, sizeof *a);
  a->m[0] = a->m[5] = a->m[10] = 1.0;
}

void gr_affine_compose(const gr_affine *a, const gr_affine *b, gr_affine *out) {
  gr_affine r;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 4; ++j) {
      double s = (j == 3) ? a->m[i * 4 + 3] : 0.0;
      for (int k = 0; k < 3; ++k) s += a->m[i * 4 + k] * b->m[k * 4 + j];
      r.m[i * 4 + j] = s;
    }
  }
  *out = r;
}

gr_status gr_affine_invert(const gr_affine *a, gr_affine *out) {
  double m[9], inv[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) m[i * 3 + j] = a->m[i * 4 + j];
  if (!gr_mat3_inverse(m, inv)) return gr_error(GR_ERR_INVALID_ARG, "affine matrix is singular");
  gr_affine r;
  for (int i = 0; i < 3; ++i) {
    double t = 0.0;
    for (int j = 0; j < 3; ++j) {
      r.m[i * 4 + j] = inv[i * 3 + j];
      t -= inv[i * 3 + j] * a->m[j * 4 + 3];
    }
    r.m[i * 4 + 3] = t;
  }
  *out = r;
  return GR_OK;
}

void gr_affine_apply(const gr_affine *a, const double x[3], double y[3]) {
  double r[3];
  for (int i = 0; i < 3; ++i) r[i] = a->m[i * 4] * x[0] + a->m[i * 4 + 1] * x[1] + a->m[i * 4 + 2] * x[2] + a->m[i * 4 + 3];
  y[0] = r[0]; y[1] = r[1]; y[2] = r[2];
}

/* Build [A | t] from a 3x3 matrix applied about a centre plus a translation. */
static void about_center(const double A[9], const double c[3], const double t[3], gr_affine *out) {
  for (int i = 0; i < 3; ++i) {
    double Ac = 0.0;
    for (int j = 0; j < 3; ++j) {
      out->m[i * 4 + j] = A[i * 3 + j];
      Ac += A[i * 3 + j] * c[j];
    }
    out->m[i * 4 + 3] = c[i] - Ac + t[i];
  }
}

static void rot_xyz(double rx, double ry, double rz, double Rx[9], double Ry[9], double Rz[9]) {
  const double cx = cos(rx), sx = sin(rx), cy = cos(ry), sy = sin(ry), cz = cos(rz), sz = sin(rz);
  const double X[9] = {1, 0, 0, 0, cx, -sx, 0, sx, cx};
  const double Y[9] = {cy, 0, sy, 0, 1, 0, -sy, 0, cy};
  const double Z[9] = {cz, -sz, 0, sz, cz, 0, 0, 0, 1};
  memcpy(Rx, X, sizeof X); memcpy(Ry, Y, sizeof Y); memcpy(Rz, Z, sizeof Z);
}

/* d/dtheta of the elementary rotations. */
static void drot_xyz(double rx, double ry, double rz, double dX[9], double dY[9], double dZ[9]) {
  const double cx = cos(rx), sx = sin(rx), cy = cos(ry), sy = sin(ry), cz = cos(rz), sz = sin(rz);
  const double X[9] = {0, 0, 0, 0, -sx, -cx, 0, cx, -sx};
  const double Y[9] = {-sy, 0, cy, 0, 0, 0, -cy, 0, -sy};
  const double Z[9] = {-sz, -cz, 0, cz, -sz, 0, 0, 0, 0};
  memcpy(dX, X, sizeof X); memcpy(dY, Y, sizeof Y); memcpy(dZ, Z, sizeof Z);
}

static void euler_matrix(const double p[6], double R[9]) {
  double X[9], Y[9], Z[9], ZX[9];
  rot_xyz(p[0], p[1], p[2], X, Y, Z);
  gr_mat3_mul(Z, X, ZX);
  gr_mat3_mul(ZX, Y, R);
}

void gr_euler_to_affine(const double p[6], const double center[3], gr_affine *out) {
  double R[9];
  euler_matrix(p, R);
  about_center(R, center, p + 3, out);
}

void gr_euler_affine_jacobian(const double p[6], const double center[3], double dM[6][12]) {
  double X[9], Y[9], Z[9], dX[9], dY[9], dZ[9], t1[9], dR[3][9];
  rot_xyz(p[0], p[1], p[2], X, Y, Z);
  drot_xyz(p[0], p[1], p[2], dX, dY, dZ);
  gr_mat3_mul(Z, dX, t1); gr_mat3_mul(t1, Y, dR[0]);
  gr_mat3_mul(Z, X, t1);  gr_mat3_mul(t1, dY, dR[1]);
  gr_mat3_mul(dZ, X, t1); gr_mat3_mul(t1, Y, dR[2]);
  memset(dM, 0, sizeof(double) * 6 * 12);
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 3; ++i) {
      double dRc = 0.0;
      for (int j = 0; j < 3; ++j) {
        dM[k][i * 4 + j] = dR[k][i * 3 + j];
        dRc += dR[k][i * 3 + j] * center[j];
      }
      dM[k][i * 4 + 3] = -dRc;
    }
  }
  for (int k = 0; k < 3; ++k) dM[3 + k][k * 4 + 3] = 1.0;
}

void gr_affine_to_euler(const gr_affine *a, const double center[3], double p[6]) {
  const double *m = a->m;
  /* R = Rz Rx Ry: R21 = sin(rx), R20 = -cx sy, R22 = cx cy, R01 = -sz cx, R11 = cz cx. */
  double s = m[2 * 4 + 1];
  if (s > 1.0) s = 1.0;
  if (s < -1.0) s = -1.0;
  p[0] = asin(s);
  p[1] = atan2(-m[2 * 4 + 0], m[2 * 4 + 2]);
  p[2] = atan2(-m[0 * 4 + 1], m[1 * 4 + 1]);
  double R[9];
  euler_matrix(p, R);
  for (int i = 0; i < 3; ++i) {
    double Rc = 0.0;
    for (int j = 0; j < 3; ++j) Rc += R[i * 3 + j] * center[j];
    p[3 + i] = m[i * 4 + 3] - center[i] + Rc;
  }
}

void gr_affine_params_to_affine(const double p[12], const double center[3], gr_affine *out) {
  about_center(p, center, p + 9, out);
}

void gr_affine_to_affine_params(const gr_affine *a, const double center[3], double p[12]) {
  for (int i = 0; i < 3; ++i) {
    double Ac = 0.0;
    for (int j = 0; j < 3; ++j) {
      p[i * 3 + j] = a->m[i * 4 + j];
      Ac += a->m[i * 4 + j] * center[j];
    }
    p[9 + i] = a->m[i * 4 + 3] - center[i] + Ac;
  }
}
