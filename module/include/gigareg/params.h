/* elastix parameter files: "(Key value value ...)" lines, // comments, quoted
 * strings, numbers, true/false. The map remembers which keys were read so the
 * caller can warn about every key it did not honour (never silently ignore). */
#ifndef GIGAREG_PARAMS_H
#define GIGAREG_PARAMS_H

#include <stddef.h>
#include "gigareg/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gr_param_map gr_param_map;

gr_status gr_param_map_create(gr_param_map **out);
void gr_param_map_destroy(gr_param_map *m);
/* Parse a file; syntax errors name the file, line and problem. */
gr_status gr_param_map_read(const char *path, gr_param_map **out);
/* Parse text already in memory (fuzz target, tests). `origin` names it in errors. */
gr_status gr_param_map_parse(const char *text, size_t len, const char *origin, gr_param_map **out);

/* Number of values of key (0 if absent). Keys are case-sensitive as in elastix. */
int gr_param_count(const gr_param_map *m, const char *key);
/* Raw string value `idx` of key, or NULL. Marks the key as used. */
const char *gr_param_get(const gr_param_map *m, const char *key, int idx);
/* Typed getters: return GR_OK and set *out, leave *out (the default) when the key is
 * absent; GR_ERR_PARAM naming the key and value when the value does not parse.
 * If the key has fewer values than idx+1, the last value is used (elastix
 * convention for per-resolution keys). */
gr_status gr_param_get_double(const gr_param_map *m, const char *key, int idx, double *out);
gr_status gr_param_get_int(const gr_param_map *m, const char *key, int idx, int *out);
gr_status gr_param_get_bool(const gr_param_map *m, const char *key, int idx, int *out);
gr_status gr_param_get_string(const gr_param_map *m, const char *key, int idx, const char **out);

/* Set / replace a key with n string values. */
gr_status gr_param_set(gr_param_map *m, const char *key, const char *const *values, int n);

/* Iterate keys in file order: returns NULL past the end. */
const char *gr_param_key_at(const gr_param_map *m, int i);
int gr_param_key_count(const gr_param_map *m);
/* Whether a getter has touched this key. */
int gr_param_was_used(const gr_param_map *m, const char *key);

#ifdef __cplusplus
}
#endif
#endif
