/* libFuzzer target: the elastix parameter file parser and the mapping of a
 * parsed map onto a stage (with every getter the mapping uses).
 * Built with -fsanitize=fuzzer by fuzz/CMakeLists.txt (clang), or with
 * fuzz_driver_main.c as a plain program that replays corpus files (any
 * compiler; test/cmake/fuzz_regression.cmake). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "gigareg/params.h"
#include "gigareg/param_map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gr_param_map *m = NULL;
  if (gr_param_map_parse((const char *)data, size, "fuzz", &m) != GR_OK) return 0;
  /* Typed getters on every key and a few value positions. */
  const int n = gr_param_key_count(m);
  for (int i = 0; i < n; ++i) {
    const char *k = gr_param_key_at(m, i);
    double d = 0.0;
    int v = 0;
    const char *s = NULL;
    for (int idx = 0; idx < 3; ++idx) {
      (void)gr_param_get_double(m, k, idx, &d);
      (void)gr_param_get_int(m, k, idx, &v);
      (void)gr_param_get_bool(m, k, idx, &v);
      (void)gr_param_get_string(m, k, idx, &s);
      (void)gr_param_get(m, k, idx);
    }
    (void)gr_param_count(m, k);
  }
  gr_stage_config st;
  gr_output_config oc;
  (void)gr_stage_config_from_params(m, "fuzz", &st, &oc, NULL);
  gr_param_map_destroy(m);
  return 0;
}
