/* Image I/O: round trips through every format and pixel type, hand-made files
 * exercising reader features (compression, byte order, detached data, RAS
 * NRRD, planar vectors), the shipped test images, and error handling
 * (missing, truncated, corrupt, 2D/4D files; failed writes leave nothing). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "gr_test.h"

static char g_dir[1024];

static const char *tmp_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
  return buf;
}

static uint32_t g_rng = 12345u;
static uint32_t rnd(void) {
  g_rng = g_rng * 1664525u + 1013904223u;
  return g_rng >> 8;
}

/* Rotation from three angles, optionally mirrored (det < 0 exercises qfac). */
static void oblique_geometry(gr_geometry *g, int64_t nx, int64_t ny, int64_t nz, int mirror) {
  gr_geometry_identity(g, nx, ny, nz);
  const double a = 0.3, b = -0.2, c = 0.5;
  const double rx[9] = {1, 0, 0, 0, cos(a), -sin(a), 0, sin(a), cos(a)};
  const double ry[9] = {cos(b), 0, sin(b), 0, 1, 0, -sin(b), 0, cos(b)};
  const double rz[9] = {cos(c), -sin(c), 0, sin(c), cos(c), 0, 0, 0, 1};
  double t[9], r[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      t[i * 3 + j] = 0;
      for (int k = 0; k < 3; ++k) t[i * 3 + j] += ry[i * 3 + k] * rx[k * 3 + j];
    }
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      r[i * 3 + j] = 0;
      for (int k = 0; k < 3; ++k) r[i * 3 + j] += rz[i * 3 + k] * t[k * 3 + j];
    }
  if (mirror)
    for (int i = 0; i < 3; ++i) r[i * 3 + 1] = -r[i * 3 + 1];
  memcpy(g->direction, r, sizeof r);
  g->spacing[0] = 0.7;
  g->spacing[1] = 1.3;
  g->spacing[2] = 2.1;
  g->origin[0] = -12.5;
  g->origin[1] = 33.25;
  g->origin[2] = 7.125;
}

static float random_value(gr_pixel_type t) {
  switch (t) {
    case GR_PIXEL_U8: return (float)(rnd() % 256);
    case GR_PIXEL_I8: return (float)((int)(rnd() % 256) - 128);
    case GR_PIXEL_U16: return (float)(rnd() % 65536);
    case GR_PIXEL_I16: return (float)((int)(rnd() % 65536) - 32768);
    case GR_PIXEL_U32: return (float)(rnd() % 16777216u); /* exactly representable in float */
    case GR_PIXEL_I32: return (float)((int)(rnd() % 16777216u) - 8388608);
    default: return ((float)rnd() / 16777216.0f - 0.5f) * 2000.0f;
  }
}

static gr_image *make_image(int64_t nx, int64_t ny, int64_t nz, int ncomp, gr_pixel_type t, int mirror) {
  gr_geometry g;
  oblique_geometry(&g, nx, ny, nz, mirror);
  gr_image *img = NULL;
  GR_CHECK_OK(gr_image_create(&g, ncomp, &img));
  if (!img) exit(1);
  const int64_t n = gr_image_nvox(img) * ncomp;
  for (int64_t i = 0; i < n; ++i) img->data[i] = random_value(t);
  img->src_type = t;
  return img;
}

static void check_geometry(const gr_geometry *a, const gr_geometry *b, double tol, const char *what) {
  for (int i = 0; i < 3; ++i) {
    GR_CHECK(a->size[i] == b->size[i], "%s: size[%d] %lld vs %lld", what, i, (long long)a->size[i],
             (long long)b->size[i]);
    GR_CHECK(fabs(a->spacing[i] - b->spacing[i]) <= tol, "%s: spacing[%d] %.9g vs %.9g", what, i, a->spacing[i],
             b->spacing[i]);
    GR_CHECK(fabs(a->origin[i] - b->origin[i]) <= tol, "%s: origin[%d] %.9g vs %.9g", what, i, a->origin[i],
             b->origin[i]);
  }
  for (int i = 0; i < 9; ++i)
    GR_CHECK(fabs(a->direction[i] - b->direction[i]) <= tol, "%s: direction[%d] %.9g vs %.9g", what, i, a->direction[i],
             b->direction[i]);
}

static void check_same_values(const gr_image *a, const gr_image *b, const char *what) {
  GR_CHECK(a->ncomp == b->ncomp, "%s: ncomp %d vs %d", what, a->ncomp, b->ncomp);
  if (a->ncomp != b->ncomp || gr_image_nvox(a) != gr_image_nvox(b)) return;
  const int64_t n = gr_image_nvox(a) * a->ncomp;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; ++i)
    if (a->data[i] != b->data[i]) {
      if (first < 0) first = i;
      ++bad;
    }
  GR_CHECK(bad == 0, "%s: %lld values differ (first at %lld: %.9g vs %.9g)", what, (long long)bad, (long long)first,
           first >= 0 ? a->data[first] : 0.0, first >= 0 ? b->data[first] : 0.0);
}

static void roundtrip(const char *name, int ncomp, gr_pixel_type t, int mirror, int64_t nx, int64_t ny, int64_t nz) {
  char path[1200], what[256];
  tmp_path(path, sizeof path, name);
  snprintf(what, sizeof what, "%s (%s, %d comp)", name, gr_pixel_type_name(t), ncomp);
  gr_image *img = make_image(nx, ny, nz, ncomp, t, mirror);
  GR_CHECK_OK(gr_image_write(path, img, t));
  gr_image *back = NULL;
  GR_CHECK_OK(gr_image_read(path, &back));
  if (back) {
    check_geometry(&img->geom, &back->geom, 1e-5, what);
    check_same_values(img, back, what);
    GR_CHECK(back->src_type == t, "%s: src_type %d", what, (int)back->src_type);
    gr_geometry hg;
    int hc = 0;
    gr_pixel_type ht = GR_PIXEL_UNKNOWN;
    GR_CHECK_OK(gr_image_read_header(path, &hg, &hc, &ht));
    check_geometry(&back->geom, &hg, 0.0, "header-only read");
    GR_CHECK(hc == ncomp && ht == t, "%s: header-only ncomp %d type %d", what, hc, (int)ht);
  }
  gr_image_destroy(back);
  gr_image_destroy(img);
}

static void expect_error(const char *path, gr_status want, const char *what) {
  gr_image *img = (gr_image *)0x1;
  gr_clear_error();
  const gr_status s = gr_image_read(path, &img);
  GR_CHECK(s == want, "%s: got %s (%s), want %s", what, gr_strerror(s), gr_last_error(), gr_strerror(want));
  GR_CHECK(img == NULL, "%s: output not cleared", what);
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  GR_CHECK(strstr(gr_last_error(), base) != NULL, "%s: message does not name the file: '%s'", what, gr_last_error());
  gr_image_destroy(img == (gr_image *)0x1 ? NULL : img);
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*n ? *n : 1);
  if (fread(b, 1, *n, f) != *n) {
    perror(path);
    exit(1);
  }
  fclose(f);
  return b;
}

static void truncated_copy(const char *src, const char *dst, size_t keep) {
  size_t n;
  unsigned char *b = read_bytes(src, &n);
  write_bytes(dst, b, keep < n ? keep : n);
  free(b);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_names(void) {
  GR_CHECK(gr_format_from_path("a.nii") == GR_FORMAT_NIFTI, "nii");
  GR_CHECK(gr_format_from_path("/x/A.NII.GZ") == GR_FORMAT_NIFTI, "NII.GZ");
  GR_CHECK(gr_format_from_path("a.mha") == GR_FORMAT_META, "mha");
  GR_CHECK(gr_format_from_path("a.MHD") == GR_FORMAT_META, "MHD");
  GR_CHECK(gr_format_from_path("a.nrrd") == GR_FORMAT_NRRD, "nrrd");
  GR_CHECK(gr_format_from_path("a.nhdr") == GR_FORMAT_NRRD, "nhdr");
  GR_CHECK(gr_format_from_path("a.gz") == GR_FORMAT_UNKNOWN, "gz");
  GR_CHECK(gr_format_from_path("a.png") == GR_FORMAT_UNKNOWN, "png");
  GR_CHECK(gr_format_from_path("nii") == GR_FORMAT_UNKNOWN, "bare nii");
  const gr_pixel_type all[] = {GR_PIXEL_U8,  GR_PIXEL_I8,  GR_PIXEL_U16, GR_PIXEL_I16,
                               GR_PIXEL_U32, GR_PIXEL_I32, GR_PIXEL_F32, GR_PIXEL_F64};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
    GR_CHECK(gr_pixel_type_from_name(gr_pixel_type_name(all[i])) == all[i], "name round trip %d", (int)all[i]);
  GR_CHECK(!strcmp(gr_pixel_type_name(GR_PIXEL_U16), "unsigned short"), "elastix name");
  GR_CHECK(gr_pixel_type_from_name("unsigned char") == GR_PIXEL_U8, "unsigned char");
  GR_CHECK(gr_pixel_type_from_name(" Float ") == GR_PIXEL_F32, "Float");
  GR_CHECK(gr_pixel_type_from_name("uint8") == GR_PIXEL_U8, "uint8");
  GR_CHECK(gr_pixel_type_from_name("int16") == GR_PIXEL_I16, "int16");
  GR_CHECK(gr_pixel_type_from_name("char") == GR_PIXEL_I8, "char");
  GR_CHECK(gr_pixel_type_from_name("complex") == GR_PIXEL_UNKNOWN, "complex");
  GR_CHECK(gr_pixel_type_from_name(NULL) == GR_PIXEL_UNKNOWN, "NULL");
}

static void test_roundtrips(void) {
  const char *exts[] = {".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr"};
  const gr_pixel_type types[] = {GR_PIXEL_F32, GR_PIXEL_I16, GR_PIXEL_U8, GR_PIXEL_F64};
  char name[128];
  for (size_t e = 0; e < sizeof exts / sizeof exts[0]; ++e) {
    for (size_t t = 0; t < sizeof types / sizeof types[0]; ++t) {
      snprintf(name, sizeof name, "rt_%s%s", gr_pixel_type_name(types[t]), exts[e]);
      for (char *p = name; *p; ++p)
        if (*p == ' ') *p = '_';
      roundtrip(name, 1, types[t], (int)(t & 1), 7, 6, 5);
    }
    /* Vector fields, large enough to cross the I/O chunk size (65536 voxels). */
    snprintf(name, sizeof name, "rt_vec%s", exts[e]);
    roundtrip(name, 3, GR_PIXEL_F32, 0, 70, 41, 25);
    snprintf(name, sizeof name, "rt_vec_short%s", exts[e]);
    roundtrip(name, 3, GR_PIXEL_I16, 1, 9, 8, 7);
  }
  /* Remaining pixel types, on one format of each family. */
  const gr_pixel_type more[] = {GR_PIXEL_I8, GR_PIXEL_U16, GR_PIXEL_U32, GR_PIXEL_I32};
  const char *more_ext[] = {".nii.gz", ".mha", ".nrrd"};
  for (size_t e = 0; e < 3; ++e)
    for (size_t t = 0; t < 4; ++t) {
      snprintf(name, sizeof name, "rt_more_%d%s", (int)more[t], more_ext[e]);
      roundtrip(name, 1, more[t], 0, 5, 4, 3);
    }
  /* Scalar image larger than one chunk; NIfTI-2 for a dimension > 32767. */
  roundtrip("rt_big.mha", 1, GR_PIXEL_F32, 0, 80, 50, 20);
  roundtrip("rt_nifti2.nii", 1, GR_PIXEL_I16, 0, 40000, 2, 1);
}

static void test_conversion(void) {
  char path[1200];
  gr_geometry g;
  gr_geometry_identity(&g, 8, 1, 1);
  gr_image *img = NULL;
  GR_CHECK_OK(gr_image_create(&g, 1, &img));
  const float in[8] = {-5.0f, 3.5f, 300.0f, 2.49f, -2.5f, 254.6f, NAN, 0.5f};
  const float want_u8[8] = {0, 4, 255, 2, 0, 255, 0, 1};
  const float want_i8[8] = {-5, 4, 127, 2, -3, 127, 0, 1};
  memcpy(img->data, in, sizeof in);
  gr_image *back = NULL;
  GR_CHECK_OK(gr_image_write(tmp_path(path, sizeof path, "conv_u8.mha"), img, GR_PIXEL_U8));
  GR_CHECK_OK(gr_image_read(path, &back));
  for (int i = 0; back && i < 8; ++i) GR_CHECK(back->data[i] == want_u8[i], "u8[%d] = %g", i, back->data[i]);
  gr_image_destroy(back);
  back = NULL;
  GR_CHECK_OK(gr_image_write(tmp_path(path, sizeof path, "conv_i8.nrrd"), img, GR_PIXEL_I8));
  GR_CHECK_OK(gr_image_read(path, &back));
  for (int i = 0; back && i < 8; ++i) GR_CHECK(back->data[i] == want_i8[i], "i8[%d] = %g", i, back->data[i]);
  gr_image_destroy(back);
  back = NULL;
  /* GR_PIXEL_UNKNOWN writes the source type. */
  img->data[6] = 1.0f;
  img->src_type = GR_PIXEL_I16;
  GR_CHECK_OK(gr_image_write(tmp_path(path, sizeof path, "conv_src.nii"), img, GR_PIXEL_UNKNOWN));
  GR_CHECK_OK(gr_image_read(path, &back));
  GR_CHECK(back && back->src_type == GR_PIXEL_I16, "src type kept");
  gr_image_destroy(back);
  gr_image_destroy(img);
}

static void test_shipped_images(void) {
  char path[1200];
  gr_image *img = NULL;
  GR_CHECK_OK(gr_image_read(gr_test_path(path, sizeof path, GR_TEST_DATA_DIR, "chris_t1.nii.gz"), &img));
  if (img) {
    GR_CHECK(img->geom.size[0] == 188 && img->geom.size[1] == 256 && img->geom.size[2] == 190, "chris_t1 size");
    for (int i = 0; i < 3; ++i) GR_CHECK_NEAR(img->geom.spacing[i], 0.88, 1e-6);
    GR_CHECK(img->ncomp == 1 && img->src_type == GR_PIXEL_U8, "chris_t1 type");
    /* sform (RAS) origin (-83.12, -118.12, -77.12) -> LPS */
    GR_CHECK_NEAR(img->geom.origin[0], 83.12, 1e-4);
    GR_CHECK_NEAR(img->geom.origin[1], 118.12, 1e-4);
    GR_CHECK_NEAR(img->geom.origin[2], -77.12, 1e-4);
    GR_CHECK_NEAR(img->geom.direction[0], -1.0, 1e-9);
    GR_CHECK_NEAR(img->geom.direction[4], -1.0, 1e-9);
    GR_CHECK_NEAR(img->geom.direction[8], 1.0, 1e-9);
    double sum = 0.0, mx = 0.0;
    for (int64_t i = 0; i < gr_image_nvox(img); ++i) {
      sum += img->data[i];
      if (img->data[i] > mx) mx = img->data[i];
    }
    GR_CHECK(sum > 0.0 && mx <= 255.0, "chris_t1 values");
  }
  gr_image_destroy(img);
  img = NULL;
  GR_CHECK_OK(gr_image_read(gr_test_path(path, sizeof path, GR_TEST_DATA_DIR, "chris_PD.nii.gz"), &img));
  if (img) {
    GR_CHECK(img->geom.size[0] == 191 && img->geom.size[1] == 256 && img->geom.size[2] == 54, "chris_PD size");
    GR_CHECK_NEAR(img->geom.spacing[0], 0.8578751, 1e-6);
    GR_CHECK_NEAR(img->geom.spacing[1], 0.85937494, 1e-6);
    GR_CHECK_NEAR(img->geom.spacing[2], 2.3999972, 1e-6);
    GR_CHECK_NEAR(img->geom.origin[0], 80.8311234, 1e-4);
    GR_CHECK_NEAR(img->geom.origin[1], 131.494125, 1e-4);
    GR_CHECK_NEAR(img->geom.origin[2], -30.3499374, 1e-4);
    /* oblique: third axis column, LPS, from sform column 3 / 2.3733 */
    GR_CHECK_NEAR(img->geom.direction[2], -0.00843399763 / 2.3999972, 1e-5);
    GR_CHECK_NEAR(img->geom.direction[5], -0.35677737 / 2.3999972, 1e-5);
    GR_CHECK_NEAR(img->geom.direction[8], 2.37331533 / 2.3999972, 1e-5);
    /* Format conversion keeps the oblique geometry. */
    const char *exts[] = {"pd.mha", "pd.nrrd", "pd.nii"};
    for (int e = 0; e < 3; ++e) {
      gr_image *back = NULL;
      GR_CHECK_OK(gr_image_write(tmp_path(path, sizeof path, exts[e]), img, GR_PIXEL_UNKNOWN));
      GR_CHECK_OK(gr_image_read(path, &back));
      if (back) {
        check_geometry(&img->geom, &back->geom, 1e-5, exts[e]);
        check_same_values(img, back, exts[e]);
        GR_CHECK(back->src_type == GR_PIXEL_U8, "%s type", exts[e]);
      }
      gr_image_destroy(back);
    }
  }
  gr_image_destroy(img);
}

/* Little-endian host assumed by the hand-made headers below. */
static void test_hand_made_files(void) {
  char path[1200], raw[1200];
  float vals[24];
  for (int i = 0; i < 24; ++i) vals[i] = (float)(i * 3 - 20);

  /* zlib-compressed .mha, big-endian shorts */
  {
    unsigned char be[48];
    for (int i = 0; i < 24; ++i) {
      const int16_t v = (int16_t)vals[i];
      be[2 * i] = (unsigned char)((uint16_t)v >> 8);
      be[2 * i + 1] = (unsigned char)((uint16_t)v & 0xff);
    }
    unsigned char z[256];
    uLongf zn = sizeof z;
    compress2(z, &zn, be, sizeof be, 9);
    char hdr[512];
    const int n = snprintf(hdr, sizeof hdr,
                           "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = True\n"
                           "CompressedData = True\nCompressedDataSize = %lu\n"
                           "TransformMatrix = 0 1 0 -1 0 0 0 0 1\nOffset = 1 2 3\nElementSize = 0.5 0.25 2\n"
                           "DimSize = 2 3 4\nElementType = MET_SHORT\nElementDataFile = LOCAL\n",
                           (unsigned long)zn);
    FILE *f = fopen(tmp_path(path, sizeof path, "hand_z.mha"), "wb");
    fwrite(hdr, 1, (size_t)n, f);
    fwrite(z, 1, zn, f);
    fclose(f);
    gr_image *img = NULL;
    GR_CHECK_OK(gr_image_read(path, &img));
    if (img) {
      for (int i = 0; i < 24; ++i) GR_CHECK(img->data[i] == vals[i], "hand_z[%d] = %g", i, img->data[i]);
      GR_CHECK_NEAR(img->geom.spacing[1], 0.25, 0);
      /* first triple = first axis = column 0 of D */
      GR_CHECK_NEAR(img->geom.direction[0], 0.0, 0);
      GR_CHECK_NEAR(img->geom.direction[3], 1.0, 0);
      GR_CHECK_NEAR(img->geom.direction[1], -1.0, 0);
      GR_CHECK_NEAR(img->geom.origin[2], 3.0, 0);
      GR_CHECK(img->src_type == GR_PIXEL_I16, "hand_z type");
    }
    gr_image_destroy(img);
    /* cut the compressed stream short */
    char cut[1200];
    truncated_copy(path, tmp_path(cut, sizeof cut, "hand_z_cut.mha"), (size_t)n + zn / 2);
    expect_error(cut, GR_ERR_FORMAT, "truncated compressed mha");
  }

  /* .mhd in one folder, data in a subfolder named relative to the header */
  {
    char sub[1200];
    mkdir(tmp_path(sub, sizeof sub, "sub"), 0777);
    write_bytes(tmp_path(raw, sizeof raw, "sub/data.bin"), vals, sizeof vals);
    const char *hdr =
        "NDims = 3\nDimSize = 4 3 2\nElementType = MET_FLOAT\nHeaderSize = 0\nElementDataFile = sub/data.bin\n";
    write_bytes(tmp_path(path, sizeof path, "hand_rel.mhd"), hdr, strlen(hdr));
    gr_image *img = NULL;
    GR_CHECK_OK(gr_image_read(path, &img));
    for (int i = 0; img && i < 24; ++i) GR_CHECK(img->data[i] == vals[i], "hand_rel[%d]", i);
    gr_image_destroy(img);
    /* HeaderSize = -1: data are the last bytes of the file */
    unsigned char padded[8 + sizeof vals];
    memset(padded, 0xAB, 8);
    memcpy(padded + 8, vals, sizeof vals);
    write_bytes(tmp_path(raw, sizeof raw, "sub/padded.bin"), padded, sizeof padded);
    const char *hdr2 =
        "NDims = 3\nDimSize = 4 3 2\nElementType = MET_FLOAT\nHeaderSize = -1\nElementDataFile = sub/padded.bin\n";
    write_bytes(tmp_path(path, sizeof path, "hand_tail.mhd"), hdr2, strlen(hdr2));
    img = NULL;
    GR_CHECK_OK(gr_image_read(path, &img));
    for (int i = 0; img && i < 24; ++i) GR_CHECK(img->data[i] == vals[i], "hand_tail[%d]", i);
    gr_image_destroy(img);
  }

  /* gzip NRRD in RAS space, big-endian floats, with a vector axis last (planar) */
  {
    float comps[3 * 8];
    unsigned char be[sizeof comps];
    for (int i = 0; i < 24; ++i) {
      comps[i] = (float)i * 0.5f - 3.0f;
      uint32_t u;
      memcpy(&u, &comps[i], 4);
      for (int b = 0; b < 4; ++b) be[4 * i + b] = (unsigned char)(u >> (24 - 8 * b));
    }
    unsigned char z[512];
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = be;
    zs.avail_in = sizeof be;
    zs.next_out = z;
    zs.avail_out = sizeof z;
    deflate(&zs, Z_FINISH);
    const size_t zn = sizeof z - zs.avail_out;
    deflateEnd(&zs);
    const char *hdr =
        "NRRD0005\n# comment\ntype: float\ndimension: 4\nspace: right-anterior-superior\nsizes: 2 2 2 3\n"
        "space directions: (0,2,0) (3,0,0) (0,0,4) none\nkinds: domain domain domain vector\n"
        "endian: big\nencoding: gzip\nspace origin: (10,20,30)\nmy key:=my value\n\n";
    FILE *f = fopen(tmp_path(path, sizeof path, "hand_ras.nrrd"), "wb");
    fwrite(hdr, 1, strlen(hdr), f);
    fwrite(z, 1, zn, f);
    fclose(f);
    gr_image *img = NULL;
    GR_CHECK_OK(gr_image_read(path, &img));
    if (img) {
      GR_CHECK(img->ncomp == 3, "planar vector ncomp");
      for (int i = 0; i < 24; ++i) GR_CHECK(img->data[i] == comps[i], "hand_ras[%d] = %g", i, img->data[i]);
      GR_CHECK_NEAR(img->geom.origin[0], -10.0, 0);
      GR_CHECK_NEAR(img->geom.origin[1], -20.0, 0);
      GR_CHECK_NEAR(img->geom.origin[2], 30.0, 0);
      /* axis vectors are columns: axis 0 = RAS (0,2,0) = LPS (0,-2,0) */
      GR_CHECK_NEAR(img->geom.direction[0], 0.0, 0);
      GR_CHECK_NEAR(img->geom.direction[3], -1.0, 0);
      GR_CHECK_NEAR(img->geom.direction[1], -1.0, 0);
      GR_CHECK_NEAR(img->geom.direction[8], 1.0, 0);
      GR_CHECK_NEAR(img->geom.spacing[0], 2.0, 0);
      GR_CHECK_NEAR(img->geom.spacing[1], 3.0, 0);
    }
    gr_image_destroy(img);
  }

  /* detached .nhdr with line/byte skip and spacings instead of directions */
  {
    unsigned char blob[6 + sizeof vals];
    memcpy(blob, "junk\nX", 6);
    memcpy(blob + 6, vals, sizeof vals);
    write_bytes(tmp_path(raw, sizeof raw, "skip.raw"), blob, sizeof blob);
    const char *hdr =
        "NRRD0004\ntype: float\ndimension: 3\nsizes: 4 3 2\nspacings: 1.5 2.5 3.5\n"
        "endian: little\nencoding: raw\nline skip: 1\nbyte skip: 1\ndata file: skip.raw\n";
    write_bytes(tmp_path(path, sizeof path, "hand_skip.nhdr"), hdr, strlen(hdr));
    gr_image *img = NULL;
    GR_CHECK_OK(gr_image_read(path, &img));
    if (img) {
      for (int i = 0; i < 24; ++i) GR_CHECK(img->data[i] == vals[i], "hand_skip[%d]", i);
      GR_CHECK_NEAR(img->geom.spacing[2], 3.5, 0);
      GR_CHECK_NEAR(img->geom.direction[0], 1.0, 0);
    }
    gr_image_destroy(img);
  }
}

/* NIfTI-1 header fields patched in place (little-endian host). */
static void patch_i16(unsigned char *b, size_t off, int16_t v) { memcpy(b + off, &v, 2); }
static void patch_f32(unsigned char *b, size_t off, float v) { memcpy(b + off, &v, 4); }

static void test_nifti_header_variants(void) {
  char path[1200], patched[1200];
  gr_image *img = make_image(6, 5, 4, 1, GR_PIXEL_I16, 0);
  GR_CHECK_OK(gr_image_write(tmp_path(path, sizeof path, "var.nii"), img, GR_PIXEL_I16));
  size_t n;
  unsigned char *orig = read_bytes(path, &n);
  unsigned char *b = malloc(n);

  /* scl_slope/scl_inter are applied, and the result is float */
  memcpy(b, orig, n);
  patch_f32(b, 112, 2.0f);
  patch_f32(b, 116, 1.0f);
  write_bytes(tmp_path(patched, sizeof patched, "var_scaled.nii"), b, n);
  gr_image *back = NULL;
  GR_CHECK_OK(gr_image_read(patched, &back));
  if (back) {
    int bad = 0;
    for (int64_t i = 0; i < gr_image_nvox(back); ++i) bad += back->data[i] != img->data[i] * 2.0f + 1.0f;
    GR_CHECK(bad == 0, "scaled values: %d wrong", bad);
    GR_CHECK(back->src_type == GR_PIXEL_F32, "scaled src_type");
  }
  gr_image_destroy(back);

  /* sform_code 0: geometry from the qform, which must agree */
  memcpy(b, orig, n);
  patch_i16(b, 254, 0);
  write_bytes(tmp_path(patched, sizeof patched, "var_qform.nii"), b, n);
  back = NULL;
  GR_CHECK_OK(gr_image_read(patched, &back));
  if (back) check_geometry(&img->geom, &back->geom, 1e-5, "qform only");
  gr_image_destroy(back);

  /* qform and sform both unknown: origin 0, identity direction (ITK) */
  memcpy(b, orig, n);
  patch_i16(b, 252, 0);
  patch_i16(b, 254, 0);
  write_bytes(tmp_path(patched, sizeof patched, "var_noform.nii"), b, n);
  back = NULL;
  GR_CHECK_OK(gr_image_read(patched, &back));
  if (back) {
    GR_CHECK(back->geom.origin[0] == 0.0 && back->geom.direction[0] == 1.0 && back->geom.direction[1] == 0.0,
             "no form: identity");
    GR_CHECK_NEAR(back->geom.spacing[2], 2.1, 1e-6);
  }
  gr_image_destroy(back);

  /* 2D: dim[0] = 2 */
  memcpy(b, orig, n);
  patch_i16(b, 40, 2);
  write_bytes(tmp_path(patched, sizeof patched, "var_2d.nii"), b, n);
  expect_error(patched, GR_ERR_UNSUPPORTED, "2D nifti");
  GR_CHECK(strstr(gr_last_error(), "2D") != NULL, "2D message: %s", gr_last_error());

  /* 4D time series with the same voxel count: 6x5x2x2 */
  memcpy(b, orig, n);
  patch_i16(b, 40, 4);
  patch_i16(b, 46, 2);
  patch_i16(b, 48, 2);
  write_bytes(tmp_path(patched, sizeof patched, "var_4d.nii"), b, n);
  expect_error(patched, GR_ERR_UNSUPPORTED, "4D nifti");

  /* trailing singleton dims are fine: dim[0] = 4 with dim[4] = 1 */
  memcpy(b, orig, n);
  patch_i16(b, 40, 4);
  patch_i16(b, 48, 1);
  write_bytes(tmp_path(patched, sizeof patched, "var_4d1.nii"), b, n);
  back = NULL;
  GR_CHECK_OK(gr_image_read(patched, &back));
  gr_image_destroy(back);

  /* dim[0] out of range: nifticlib would index past dim[] */
  memcpy(b, orig, n);
  patch_i16(b, 40, 300);
  write_bytes(tmp_path(patched, sizeof patched, "var_dim0.nii"), b, n);
  expect_error(patched, GR_ERR_FORMAT, "dim[0] = 300");

  /* big-endian header and data (a byte-swapped copy) read the same */
  {
    unsigned char *sw = malloc(n);
    memcpy(sw, orig, n);
    /* swap every header field by its size: ints/floats 4, shorts 2 */
    static const struct {
      int off, size, count;
    } fields[] = {
        {0, 4, 1},   {32, 4, 1},  {36, 2, 1},  {40, 2, 8},  {56, 4, 3},  {68, 2, 4},   {76, 4, 8},
        {108, 4, 3}, {120, 2, 1}, {124, 4, 4}, {140, 4, 2}, {252, 2, 2}, {256, 4, 18},
    };
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; ++f)
      for (int c = 0; c < fields[f].count; ++c) {
        unsigned char *p = sw + fields[f].off + c * fields[f].size;
        for (int k = 0; k < fields[f].size / 2; ++k) {
          const unsigned char t = p[k];
          p[k] = p[fields[f].size - 1 - k];
          p[fields[f].size - 1 - k] = t;
        }
      }
    for (size_t off = 352; off + 1 < n; off += 2) {
      const unsigned char t = sw[off];
      sw[off] = sw[off + 1];
      sw[off + 1] = t;
    }
    write_bytes(tmp_path(patched, sizeof patched, "var_be.nii"), sw, n);
    free(sw);
    back = NULL;
    GR_CHECK_OK(gr_image_read(patched, &back));
    if (back) {
      check_geometry(&img->geom, &back->geom, 1e-5, "big-endian nifti");
      check_same_values(img, back, "big-endian nifti");
    }
    gr_image_destroy(back);
  }

  /* unsupported datatype (complex64 = 32, bitpix 64) */
  memcpy(b, orig, n);
  patch_i16(b, 70, 32);
  patch_i16(b, 72, 64);
  write_bytes(tmp_path(patched, sizeof patched, "var_complex.nii"), b, n);
  expect_error(patched, GR_ERR_UNSUPPORTED, "complex nifti");

  /* absurd dimensions on a small file */
  memcpy(b, orig, n);
  patch_i16(b, 42, 32000);
  patch_i16(b, 44, 32000);
  patch_i16(b, 46, 32000);
  write_bytes(tmp_path(patched, sizeof patched, "var_huge.nii"), b, n);
  expect_error(patched, GR_ERR_FORMAT, "huge nifti");

  free(b);
  free(orig);
  gr_image_destroy(img);
}

static void test_errors(void) {
  char path[1200], cut[1200];
  /* missing files */
  const char *missing[] = {"missing.nii", "missing.nii.gz", "missing.mha",
                           "missing.mhd", "missing.nrrd",   "missing.nhdr"};
  for (int i = 0; i < 6; ++i) expect_error(tmp_path(path, sizeof path, missing[i]), GR_ERR_IO, missing[i]);
  expect_error(tmp_path(path, sizeof path, "image.png"), GR_ERR_UNSUPPORTED, "unknown extension");

  /* truncated copies of valid files */
  gr_image *img = make_image(20, 18, 16, 1, GR_PIXEL_F32, 0);
  const char *fmts[] = {"trunc.nii", "trunc.nii.gz", "trunc.mha", "trunc.nrrd"};
  for (int i = 0; i < 4; ++i) {
    GR_CHECK_OK(gr_image_write(tmp_path(path, sizeof path, fmts[i]), img, GR_PIXEL_F32));
    char name[64];
    snprintf(name, sizeof name, "cut_%s", fmts[i]);
    truncated_copy(path, tmp_path(cut, sizeof cut, name), (size_t)file_size(path) * 2 / 3);
    expect_error(cut, GR_ERR_FORMAT, name);
    gr_geometry g;
    /* the header alone is still readable */
    if (i != 1) GR_CHECK_OK(gr_image_read_header(cut, &g, NULL, NULL));
    snprintf(name, sizeof name, "hdrcut_%s", fmts[i]);
    truncated_copy(path, tmp_path(cut, sizeof cut, name), 100);
    expect_error(cut, GR_ERR_FORMAT, name);
  }
  /* .mhd whose raw file is short */
  GR_CHECK_OK(gr_image_write(tmp_path(path, sizeof path, "short.mhd"), img, GR_PIXEL_F32));
  truncated_copy(tmp_path(cut, sizeof cut, "short.raw"), cut, 1000);
  expect_error(path, GR_ERR_FORMAT, "short raw");
  GR_CHECK(strstr(gr_last_error(), "short.raw") != NULL, "names the raw file: %s", gr_last_error());
  remove(cut);
  expect_error(path, GR_ERR_IO, "missing raw");
  gr_image_destroy(img);

  /* garbage and corrupt headers */
  unsigned char junk[4096];
  for (size_t i = 0; i < sizeof junk; ++i) junk[i] = (unsigned char)(rnd() & 0xff);
  const char *junk_names[] = {"junk.nii", "junk.nii.gz", "junk.mha", "junk.nrrd"};
  for (int i = 0; i < 4; ++i) {
    write_bytes(tmp_path(path, sizeof path, junk_names[i]), junk, sizeof junk);
    expect_error(path, GR_ERR_FORMAT, junk_names[i]);
  }
  write_bytes(tmp_path(path, sizeof path, "empty.mha"), "", 0);
  expect_error(path, GR_ERR_FORMAT, "empty mha");
  write_bytes(tmp_path(path, sizeof path, "empty.nii"), "", 0);
  expect_error(path, GR_ERR_FORMAT, "empty nii");

  struct {
    const char *name, *text;
    gr_status want;
  } cases[] = {
      {"dims2.mha", "NDims = 3\nDimSize = 10 10\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n", GR_ERR_FORMAT},
      {"notype.mha", "NDims = 3\nDimSize = 2 2 2\nElementDataFile = LOCAL\n", GR_ERR_FORMAT},
      {"nodata.mha", "NDims = 3\nDimSize = 2 2 2\nElementType = MET_FLOAT\n", GR_ERR_FORMAT},
      {"badnum.mha", "NDims = 3\nDimSize = 2 x 2\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n", GR_ERR_FORMAT},
      {"negsp.mha",
       "NDims = 3\nDimSize = 2 2 2\nElementSpacing = 1 -1 1\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n",
       GR_ERR_FORMAT},
      {"huge.mha", "NDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n",
       GR_ERR_FORMAT},
      {"overflow.mha",
       "NDims = 3\nDimSize = 9223372036854775807 3 3\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n",
       GR_ERR_FORMAT},
      {"hugez.mha",
       "NDims = 3\nCompressedData = True\nDimSize = 100000 100000 1000\nElementType = MET_FLOAT\nElementDataFile = "
       "LOCAL\n",
       GR_ERR_FORMAT},
      {"2d.mha", "NDims = 2\nDimSize = 2 2\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n", GR_ERR_UNSUPPORTED},
      {"4ch.mha",
       "NDims = 3\nDimSize = 2 2 2\nElementNumberOfChannels = 4\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n",
       GR_ERR_UNSUPPORTED},
      {"cplx.mha", "NDims = 3\nDimSize = 2 2 2\nElementType = MET_FLOAT_ARRAY\nElementDataFile = LOCAL\n",
       GR_ERR_UNSUPPORTED},
      {"2d.nrrd", "NRRD0004\ntype: float\ndimension: 2\nsizes: 2 2\nendian: little\nencoding: raw\n\n",
       GR_ERR_UNSUPPORTED},
      {"huge.nrrd",
       "NRRD0004\ntype: float\ndimension: 3\nsizes: 1000000 1000000 1000000\nendian: little\nencoding: raw\n\n",
       GR_ERR_FORMAT},
      {"hugez.nrrd",
       "NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 100\nendian: little\nencoding: gzip\n\nxx",
       GR_ERR_FORMAT},
      {"badz.nrrd", "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: gzip\n\nnot gzip data at all",
       GR_ERR_FORMAT},
      {"noendian.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n12345678", GR_ERR_FORMAT},
      {"badsizes.nrrd", "NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2\nendian: little\nencoding: raw\n\n",
       GR_ERR_FORMAT},
      {"baddir.nrrd",
       "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1 1 1\nspace: left-posterior-superior\n"
       "space directions: (1,0,0) (0,1 (0,0,1)\nencoding: raw\n\nx",
       GR_ERR_FORMAT},
      {"singular.nrrd",
       "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1 1 1\nspace: left-posterior-superior\n"
       "space directions: (1,0,0) (1,0,0) (0,0,1)\nencoding: raw\n\nx",
       GR_ERR_FORMAT},
      {"ascii.nrrd", "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1 1 1\nencoding: ascii\n\n1\n", GR_ERR_UNSUPPORTED},
      {"nomagic.nrrd", "type: uchar\ndimension: 3\n", GR_ERR_FORMAT},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    write_bytes(tmp_path(path, sizeof path, cases[i].name), cases[i].text, strlen(cases[i].text));
    expect_error(path, cases[i].want, cases[i].name);
  }
}

static int count_temp_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, ".tmp-")) {
      fprintf(stderr, "leftover temp file: %s/%s\n", dir, e->d_name);
      ++n;
    }
  closedir(d);
  return n;
}

static void test_failed_writes(void) {
  char path[1200];
  gr_image *img = make_image(4, 4, 4, 1, GR_PIXEL_F32, 0);
  const char *exts[] = {".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr"};
  for (int i = 0; i < 6; ++i) {
    char name[128];
    snprintf(name, sizeof name, "no_such_dir/out%s", exts[i]);
    tmp_path(path, sizeof path, name);
    gr_clear_error();
    const gr_status s = gr_image_write(path, img, GR_PIXEL_F32);
    GR_CHECK(s == GR_ERR_IO, "%s: %s", name, gr_strerror(s));
    GR_CHECK(strstr(gr_last_error(), "no_such_dir") != NULL, "%s: message '%s'", name, gr_last_error());
    GR_CHECK(file_size(path) < 0, "%s exists after a failed write", name);
  }
  char nodir[1200];
  GR_CHECK(file_size(tmp_path(nodir, sizeof nodir, "no_such_dir")) < 0, "directory created by a failed write");

  /* The final rename fails when the target is a directory: the temp file must go. */
  for (int i = 0; i < 6; ++i) {
    char name[128];
    snprintf(name, sizeof name, "target_is_dir%s", exts[i]);
    mkdir(tmp_path(path, sizeof path, name), 0777);
    const gr_status s = gr_image_write(path, img, GR_PIXEL_F32);
    GR_CHECK(s == GR_ERR_IO, "%s: %s", name, gr_strerror(s));
    GR_CHECK(strstr(gr_last_error(), name) != NULL, "%s: message '%s'", name, gr_last_error());
  }
  GR_CHECK(count_temp_files(g_dir) == 0, "temp files left behind");
  /* .mhd/.nhdr: the data file committed before the failed header is removed too */
  GR_CHECK(file_size(tmp_path(path, sizeof path, "target_is_dir.raw")) < 0, "orphan raw file left behind");

  /* Overwriting an existing file replaces it completely. */
  GR_CHECK_OK(gr_image_write(tmp_path(path, sizeof path, "overwrite.mha"), img, GR_PIXEL_F64));
  GR_CHECK_OK(gr_image_write(path, img, GR_PIXEL_U8));
  gr_image *back = NULL;
  GR_CHECK_OK(gr_image_read(path, &back));
  GR_CHECK(back && back->src_type == GR_PIXEL_U8, "overwritten type");
  gr_image_destroy(back);

  /* invalid arguments */
  GR_CHECK(gr_image_write(path, NULL, GR_PIXEL_F32) == GR_ERR_INVALID_ARG, "NULL image");
  GR_CHECK(gr_image_write(tmp_path(path, sizeof path, "x.tiff"), img, GR_PIXEL_F32) == GR_ERR_UNSUPPORTED, "tiff");
  gr_image_destroy(img);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "%s/io_roundtrip", GR_TEST_TMP_DIR);
  mkdir(g_dir, 0777);
  test_names();
  test_roundtrips();
  test_conversion();
  test_shipped_images();
  test_hand_made_files();
  test_nifti_header_variants();
  test_errors();
  test_failed_writes();
  GR_CHECK(count_temp_files(g_dir) == 0, "temp files left behind");
  GR_TEST_RETURN();
}
