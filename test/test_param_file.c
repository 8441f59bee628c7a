/* elastix parameter file parser: real-world files, syntax errors with
 * file:line, typed getters, used flags. */
#include "gr_test.h"

static const char *data_path(char *buf, size_t n, const char *name) {
  return gr_test_path(buf, n, GR_TEST_DATA_DIR "/params", name);
}

static gr_param_map *parse(const char *text) {
  gr_param_map *m = NULL;
  gr_status s = gr_param_map_parse(text, strlen(text), "mem.txt", &m);
  GR_CHECK(s == GR_OK, "parse failed: %s", gr_last_error());
  return m;
}

/* Expects a syntax error whose message contains `want`. */
static void expect_error_len(const char *text, size_t len, const char *want) {
  gr_param_map *m = NULL;
  gr_status s = gr_param_map_parse(text, len, "bad.txt", &m);
  GR_CHECK(s == GR_ERR_PARAM, "expected GR_ERR_PARAM for input starting '%.30s', got %d", text, (int)s);
  GR_CHECK(m == NULL, "map returned on error");
  GR_CHECK(strstr(gr_last_error(), want) != NULL, "message '%s' lacks '%s'", gr_last_error(), want);
  gr_param_map_destroy(m);
}

static void expect_error(const char *text, const char *want) { expect_error_len(text, strlen(text), want); }

static void test_affine_file(void) {
  char p[1024];
  gr_param_map *m = NULL;
  GR_CHECK_OK(gr_param_map_read(data_path(p, sizeof p, "Par0000affine.txt"), &m));
  if (!m) return;
  GR_CHECK(gr_param_key_count(m) == 42, "key count %d", gr_param_key_count(m));
  const char *t = NULL;
  GR_CHECK_OK(gr_param_get_string(m, "Transform", 0, &t));
  GR_CHECK(t && strcmp(t, "AffineTransform") == 0, "Transform '%s'", t ? t : "(null)");
  int n = 0, b = -1;
  GR_CHECK_OK(gr_param_get_int(m, "NumberOfResolutions", 0, &n));
  GR_CHECK(n == 4, "NumberOfResolutions %d", n);
  /* per-resolution convention: a single value repeats */
  int it3 = 0;
  GR_CHECK_OK(gr_param_get_int(m, "MaximumNumberOfIterations", 3, &it3));
  GR_CHECK(it3 == 250, "iterations at level 3: %d", it3);
  GR_CHECK_OK(gr_param_get_bool(m, "AutomaticTransformInitialization", 0, &b));
  GR_CHECK(b == 1, "AutomaticTransformInitialization %d", b);
  double a = 0.0;
  GR_CHECK_OK(gr_param_get_double(m, "SP_alpha", 0, &a));
  GR_CHECK_NEAR(a, 0.602, 0);
  GR_CHECK_OK(gr_param_get_double(m, "FixedLimitRangeRatio", 0, &a));
  GR_CHECK_NEAR(a, 0.0, 0);
  /* first and last keys, in file order */
  GR_CHECK(strcmp(gr_param_key_at(m, 0), "FixedInternalImagePixelType") == 0, "key 0 '%s'", gr_param_key_at(m, 0));
  GR_CHECK(strcmp(gr_param_key_at(m, 41), "SP_alpha") == 0, "key 41 '%s'", gr_param_key_at(m, 41));
  GR_CHECK(gr_param_key_at(m, 42) == NULL, "past the end");
  GR_CHECK(gr_param_key_at(m, -1) == NULL, "negative index");
  /* used flags: only the keys read so far */
  GR_CHECK(gr_param_was_used(m, "Transform"), "Transform not marked used");
  GR_CHECK(!gr_param_was_used(m, "ImageSampler"), "ImageSampler marked used");
  GR_CHECK(gr_param_count(m, "ImageSampler") == 1, "count");
  GR_CHECK(!gr_param_was_used(m, "ImageSampler"), "gr_param_count must not mark used");
  GR_CHECK(gr_param_count(m, "NoSuchKey") == 0, "absent count");
  GR_CHECK(gr_param_get(m, "NoSuchKey", 0) == NULL, "absent get");
  gr_param_map_destroy(m);
}

static void test_bspline_file(void) {
  char p[1024];
  gr_param_map *m = NULL;
  GR_CHECK_OK(gr_param_map_read(data_path(p, sizeof p, "Par0000bspline.txt"), &m));
  if (!m) return;
  GR_CHECK(gr_param_count(m, "ImagePyramidSchedule") == 12, "schedule count %d", gr_param_count(m, "ImagePyramidSchedule"));
  GR_CHECK(gr_param_count(m, "GridSpacingSchedule") == 4, "grid schedule");
  double v = 0.0;
  GR_CHECK_OK(gr_param_get_double(m, "ImagePyramidSchedule", 3, &v));
  GR_CHECK_NEAR(v, 4.0, 0);
  const char *s = NULL;
  GR_CHECK_OK(gr_param_get_string(m, "ResultImagePixelType", 0, &s));
  GR_CHECK(s && strcmp(s, "short") == 0, "ResultImagePixelType '%s'", s ? s : "(null)");
  GR_CHECK_OK(gr_param_get_string(m, "ResultImageFormat", 0, &s));
  GR_CHECK(s && strcmp(s, "nii.gz") == 0, "ResultImageFormat '%s'", s ? s : "(null)");
  gr_param_map_destroy(m);
}

static void test_rigid_and_others(void) {
  const char *files[] = {"Par_rigid_euler.txt", "Par_bspline_multimetric.txt", "Par_gigareg_greedy.txt",
                         "elastix_chain/TransformParameters.0.txt", "elastix_chain/TransformParameters.1.txt",
                         "elastix_chain/TransformParameters.bspline.txt"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; ++i) {
    char p[1024];
    gr_param_map *m = NULL;
    GR_CHECK_OK(gr_param_map_read(data_path(p, sizeof p, files[i]), &m));
    GR_CHECK(m && gr_param_key_count(m) > 5, "%s: too few keys", files[i]);
    gr_param_map_destroy(m);
  }
  char p[1024];
  gr_param_map *m = NULL;
  GR_CHECK_OK(gr_param_map_read(data_path(p, sizeof p, "Par_rigid_euler.txt"), &m));
  if (m) {
    /* two entries on one line */
    GR_CHECK(gr_param_count(m, "FixedImageDimension") == 1 && gr_param_count(m, "MovingImageDimension") == 1, "same-line entries");
    double d = 0;
    GR_CHECK_OK(gr_param_get_double(m, "DefaultPixelValue", 0, &d));
    GR_CHECK_NEAR(d, -1000.0, 0);
    GR_CHECK_OK(gr_param_get_double(m, "MaximumStepLength", 7, &d)); /* past the end -> last */
    GR_CHECK_NEAR(d, 0.5, 0);
  }
  gr_param_map_destroy(m);
  m = NULL;
  GR_CHECK_OK(gr_param_map_read(data_path(p, sizeof p, "elastix_chain/TransformParameters.bspline.txt"), &m));
  if (m) GR_CHECK(gr_param_count(m, "TransformParameters") == 540, "bspline parameter count %d", gr_param_count(m, "TransformParameters"));
  gr_param_map_destroy(m);
}

static void test_syntax(void) {
  /* comments anywhere, CRLF, tabs, several entries per line, quotes keep "//" */
  gr_param_map *m = parse("// header\r\n"
                          "(A 1 2\t3) (B \"x y\")  // trailing comment\r\n"
                          "   (C \"http://host/a\") // c\n"
                          "(D \"\")\n"
                          "(E 1e-3 -2.5E+2 +4 .5 5.)\n"
                          "\n"
                          "(F\"q\"r)\n");
  if (m) {
    GR_CHECK(gr_param_count(m, "A") == 3, "A count %d", gr_param_count(m, "A"));
    const char *s = gr_param_get(m, "B", 0);
    GR_CHECK(s && strcmp(s, "x y") == 0, "B '%s'", s ? s : "(null)");
    s = gr_param_get(m, "C", 0);
    GR_CHECK(s && strcmp(s, "http://host/a") == 0, "C '%s'", s ? s : "(null)");
    s = gr_param_get(m, "D", 0);
    GR_CHECK(s && s[0] == '\0', "D should be one empty value");
    double e[5];
    for (int i = 0; i < 5; ++i) GR_CHECK_OK(gr_param_get_double(m, "E", i, &e[i]));
    GR_CHECK_NEAR(e[0], 1e-3, 0);
    GR_CHECK_NEAR(e[1], -250.0, 0);
    GR_CHECK_NEAR(e[2], 4.0, 0);
    GR_CHECK_NEAR(e[3], 0.5, 0);
    GR_CHECK_NEAR(e[4], 5.0, 0);
    GR_CHECK(gr_param_count(m, "F") == 2, "F count %d", gr_param_count(m, "F"));
  }
  gr_param_map_destroy(m);

  /* an empty file and a comment-only file are valid, empty maps */
  m = parse("");
  GR_CHECK(m && gr_param_key_count(m) == 0, "empty");
  gr_param_map_destroy(m);
  m = parse("// nothing\n\n   // here\n");
  GR_CHECK(m && gr_param_key_count(m) == 0, "comments only");
  gr_param_map_destroy(m);
  /* UTF-8 byte order mark */
  m = parse("\xEF\xBB\xBF(A 1)\n");
  GR_CHECK(m && gr_param_count(m, "A") == 1, "BOM");
  gr_param_map_destroy(m);
}

static void test_syntax_errors(void) {
  expect_error("(A 1)\n(B \"abc)\n", "bad.txt:2: unterminated string");
  expect_error("(A 1)\n\n(B 1 2\n(C 3)\n", "bad.txt:3: unbalanced parenthesis");
  expect_error("(A (B 1))\n", "bad.txt:1: unbalanced parenthesis: '(' inside");
  expect_error("(A 1))\n", "bad.txt:1: unbalanced parenthesis: ')' without '('");
  expect_error("(A 1)\nTransform \"Euler\"\n", "bad.txt:2: unexpected 'T' outside parentheses");
  expect_error("()\n", "bad.txt:1: empty parameter name");
  expect_error("(\"\" 1)\n", "bad.txt:1: empty parameter name");
  expect_error("(   )\n", "bad.txt:1: empty parameter name");
  expect_error("(A)\n", "bad.txt:1: parameter 'A' has no value");
  expect_error("(\"A\" 1)\n", "invalid parameter name 'A'");
  expect_error("(A-b 1)\n", "invalid parameter name 'A-b'");
  expect_error("(1A 1)\n", "invalid parameter name '1A'");
  expect_error("(A 1)\n// x\n(B 2)\n(A 3)\n", "bad.txt:4: parameter 'A' is specified more than once (first at line 1)");
  expect_error("(A 1 // comment swallows the )\n", "bad.txt:1: unbalanced parenthesis");
  expect_error_len("(A 1)\n(B \0)\n", 12, "bad.txt:2: invalid byte 0x00");
  expect_error_len("(A \"x\0y\")\n", 10, "bad.txt:1: invalid byte 0x00");
  expect_error("(A 1)\x01", "invalid byte 0x01");
  expect_error("\xff\xfe(A 1)", "unexpected byte 0xff");
  expect_error("(A \"1", "bad.txt:1: unterminated string");
  expect_error("(A 1", "bad.txt:1: unbalanced parenthesis");
  /* an unterminated string does not run into the next line */
  expect_error("(A \"1\n\")\n", "bad.txt:1: unterminated string");
}

static void test_getters(void) {
  gr_param_map *m = parse("(I 3 3.0 -7 3.5 abc 1e3 99999999999)\n(B \"true\" \"false\" \"yes\" 1)\n"
                          "(D 0.25 nan inf 0x10 1,5 \"\" 1e400)\n(S \"a b\" c)\n");
  if (!m) return;
  int i = -1;
  GR_CHECK_OK(gr_param_get_int(m, "I", 0, &i));
  GR_CHECK(i == 3, "I0 %d", i);
  GR_CHECK_OK(gr_param_get_int(m, "I", 1, &i));
  GR_CHECK(i == 3, "'3.0' as int %d", i);
  GR_CHECK_OK(gr_param_get_int(m, "I", 2, &i));
  GR_CHECK(i == -7, "I2 %d", i);
  GR_CHECK_OK(gr_param_get_int(m, "I", 5, &i));
  GR_CHECK(i == 1000, "1e3 as int %d", i);
  i = 42;
  GR_CHECK(gr_param_get_int(m, "I", 3, &i) == GR_ERR_PARAM, "3.5 must fail");
  GR_CHECK(i == 42, "output changed on error");
  GR_CHECK(strstr(gr_last_error(), "mem.txt:1: I: value '3.5' is not an integer") != NULL, "msg '%s'", gr_last_error());
  GR_CHECK(gr_param_get_int(m, "I", 4, &i) == GR_ERR_PARAM, "abc must fail");
  GR_CHECK(strstr(gr_last_error(), "I: value 'abc'") != NULL, "msg '%s'", gr_last_error());
  GR_CHECK(gr_param_get_int(m, "I", 6, &i) == GR_ERR_PARAM, "overflow must fail");

  int b = -1;
  GR_CHECK_OK(gr_param_get_bool(m, "B", 0, &b));
  GR_CHECK(b == 1, "true");
  GR_CHECK_OK(gr_param_get_bool(m, "B", 1, &b));
  GR_CHECK(b == 0, "false");
  GR_CHECK(gr_param_get_bool(m, "B", 2, &b) == GR_ERR_PARAM, "yes must fail");
  GR_CHECK(strstr(gr_last_error(), "B: value 'yes' is not a boolean") != NULL, "msg '%s'", gr_last_error());
  GR_CHECK(gr_param_get_bool(m, "B", 3, &b) == GR_ERR_PARAM, "1 must fail (elastix accepts only true/false)");

  double d = -1;
  GR_CHECK_OK(gr_param_get_double(m, "D", 0, &d));
  GR_CHECK_NEAR(d, 0.25, 0);
  for (int k = 1; k <= 6; ++k) {
    d = 7.0;
    GR_CHECK(gr_param_get_double(m, "D", k, &d) == GR_ERR_PARAM, "D[%d] must fail", k);
    GR_CHECK(d == 7.0, "D[%d] output changed", k);
  }

  const char *s = NULL;
  GR_CHECK_OK(gr_param_get_string(m, "S", 0, &s));
  GR_CHECK(s && strcmp(s, "a b") == 0, "S0");
  GR_CHECK_OK(gr_param_get_string(m, "S", 9, &s));
  GR_CHECK(s && strcmp(s, "c") == 0, "S past end -> last");
  GR_CHECK(gr_param_get(m, "S", 9) == NULL, "raw get past end is NULL");

  /* absent keys leave defaults and succeed */
  i = 11; d = 2.5; b = 1; s = "dflt";
  GR_CHECK_OK(gr_param_get_int(m, "Nope", 0, &i));
  GR_CHECK_OK(gr_param_get_double(m, "Nope", 0, &d));
  GR_CHECK_OK(gr_param_get_bool(m, "Nope", 0, &b));
  GR_CHECK_OK(gr_param_get_string(m, "Nope", 0, &s));
  GR_CHECK(i == 11 && d == 2.5 && b == 1 && strcmp(s, "dflt") == 0, "defaults changed");
  GR_CHECK(gr_param_get_int(m, "I", -1, &i) == GR_ERR_INVALID_ARG, "negative index");

  /* set: replace keeps position, new keys are appended */
  const char *vals[] = {"5", "6"};
  GR_CHECK_OK(gr_param_set(m, "I", vals, 2));
  GR_CHECK(gr_param_count(m, "I") == 2 && strcmp(gr_param_key_at(m, 0), "I") == 0, "replace");
  GR_CHECK_OK(gr_param_set(m, "New", vals, 1));
  GR_CHECK(strcmp(gr_param_key_at(m, gr_param_key_count(m) - 1), "New") == 0, "append");
  GR_CHECK(gr_param_set(m, "bad key", vals, 1) == GR_ERR_PARAM, "bad key");
  gr_param_map_destroy(m);

  /* a map made from scratch */
  gr_param_map *e = NULL;
  GR_CHECK_OK(gr_param_map_create(&e));
  GR_CHECK_OK(gr_param_set(e, "K", vals, 1));
  GR_CHECK_OK(gr_param_get_int(e, "K", 0, &i));
  GR_CHECK(i == 5 && gr_param_was_used(e, "K"), "scratch map");
  gr_param_map_destroy(e);
  gr_param_map_destroy(NULL);
}

static void test_many_keys(void) {
  /* 20000 keys exercise hash growth; duplicates found at the end */
  const int n = 20000;
  size_t cap = (size_t)n * 24 + 64, len = 0;
  char *buf = malloc(cap);
  for (int k = 0; k < n; ++k) len += (size_t)snprintf(buf + len, cap - len, "(K%d %d)\n", k, k);
  gr_param_map *m = NULL;
  GR_CHECK_OK(gr_param_map_parse(buf, len, "many", &m));
  if (m) {
    GR_CHECK(gr_param_key_count(m) == n, "count %d", gr_param_key_count(m));
    int v = 0;
    GR_CHECK_OK(gr_param_get_int(m, "K12345", 0, &v));
    GR_CHECK(v == 12345, "K12345 %d", v);
  }
  gr_param_map_destroy(m);
  len += (size_t)snprintf(buf + len, cap - len, "(K777 1)\n");
  m = NULL;
  GR_CHECK(gr_param_map_parse(buf, len, "many", &m) == GR_ERR_PARAM, "duplicate among many");
  GR_CHECK(strstr(gr_last_error(), "many:20001: parameter 'K777' is specified more than once (first at line 778)") != NULL,
           "msg '%s'", gr_last_error());
  free(buf);
}

static void test_file_errors(void) {
  char p[1024];
  gr_param_map *m = NULL;
  GR_CHECK(gr_param_map_read("/nonexistent/dir/p.txt", &m) == GR_ERR_IO, "missing file");
  GR_CHECK(strstr(gr_last_error(), "/nonexistent/dir/p.txt") != NULL, "msg '%s'", gr_last_error());
  gr_test_path(p, sizeof p, GR_TEST_TMP_DIR, "param_bad_line.txt");
  FILE *f = fopen(p, "w");
  if (!f) GR_SKIP("cannot write %s", p);
  fputs("// ok\n(Transform \"EulerTransform\")\n\n(Metric \"AdvancedMeanSquares\"\n", f);
  fclose(f);
  GR_CHECK(gr_param_map_read(p, &m) == GR_ERR_PARAM, "syntax error in file");
  char want[1100];
  snprintf(want, sizeof want, "%s:4: unbalanced parenthesis", p);
  GR_CHECK(strstr(gr_last_error(), want) != NULL, "msg '%s' lacks '%s'", gr_last_error(), want);
  GR_CHECK(m == NULL, "no map on error");
  remove(p);
}

int main(void) {
  test_affine_file();
  test_bspline_file();
  test_rigid_and_others();
  test_syntax();
  test_syntax_errors();
  test_getters();
  test_many_keys();
  test_file_errors();
  GR_TEST_RETURN();
}
