/* Minimal test harness: each test_*.c is one executable, one CTest test.
 * GR_CHECK records a failure and continues; main returns the failure count.
 * Exit code 77 means "skipped" (CTest SKIP_RETURN_CODE), e.g. no GPU or no data. */
#ifndef GR_TEST_H
#define GR_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/gigareg.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static int gr_test_failures = 0;

#define GR_CHECK(cond, ...)                                                   \
  do {                                                                        \
    if (!(cond)) {                                                            \
      ++gr_test_failures;                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                           \
      fputc('\n', stderr);                                                    \
    }                                                                         \
  } while (0)

#define GR_CHECK_OK(expr)                                                     \
  do {                                                                        \
    gr_status s_ = (expr);                                                    \
    if (s_ != GR_OK) {                                                        \
      ++gr_test_failures;                                                     \
      fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,     \
              gr_strerror(s_), gr_last_error());                              \
    }                                                                         \
  } while (0)

#define GR_CHECK_NEAR(a, b, tol)                                              \
  GR_CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%s=%.9g %s=%.9g tol=%g", \
           #a, (double)(a), #b, (double)(b), (double)(tol))

#define GR_SKIP(...)                                                          \
  do {                                                                        \
    fprintf(stderr, "SKIPPED: " __VA_ARGS__);                                 \
    fputc('\n', stderr);                                                      \
    exit(77);                                                                 \
  } while (0)

#define GR_TEST_RETURN()                                                      \
  do {                                                                        \
    if (gr_test_failures) fprintf(stderr, "%d check(s) failed\n", gr_test_failures); \
    return gr_test_failures ? 1 : 0;                                          \
  } while (0)

/* Paths: GR_TEST_DATA_DIR (test/data, shipped), GR_MRICRON_DIR (Debian mricron-data),
 * GR_TEST_TMP_DIR (build tree scratch). */
static inline const char *gr_test_path(char *buf, size_t n, const char *dir, const char *name) {
  snprintf(buf, n, "%s/%s", dir, name);
  return buf;
}
static inline int gr_test_file_exists(const char *p) {
  FILE *f = fopen(p, "rb");
  if (!f) return 0;
  fclose(f);
  return 1;
}
#endif
