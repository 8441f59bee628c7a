/* elastix parameter files: "(Key value value ...)" entries.
 *
 * Grammar (what elastix 5.0.1's itk::ParameterFileParser accepts, made precise):
 *   file    := { blank | comment | entry }
 *   comment := "//" up to the end of the line (outside quotes)
 *   entry   := "(" key value { value } ")"  -- on one line; several per line are fine
 *   key     := [A-Za-z_][A-Za-z0-9_]*
 *   value   := "quoted string" (quotes dropped, no escapes) | bare token
 * Differences from elastix, all in the direction of rejecting less or
 * reporting better: "//" inside quotes is kept (elastix cuts the line there),
 * several entries may share a line, empty quoted strings are kept as values
 * (elastix drops them), and characters elastix forbids in values (,;!@#$%&|<>?)
 * are accepted. Duplicate keys are an error, as in elastix.
 *
 * The parser is a single forward scan over a length-delimited buffer: no
 * recursion, no reads past `len`, NUL and other control bytes are reported as
 * errors (it is fuzzed: fuzz/fuzz_param_file.c). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/params.h"

/* Parameter files are a few kB; refuse anything absurd before reading it all. */
#define GR_PARAM_MAX_FILE_BYTES (64u * 1024u * 1024u)
/* How much of a user-supplied token goes into an error message. */
#define GR_MSG_TOKEN "%.80s"

typedef struct gr_param_entry {
  char *key;
  char **values;
  int nvalues;
  int line; /* 1-based line in the origin, 0 when added by gr_param_set */
} gr_param_entry;

struct gr_param_map {
  gr_param_entry *e;
  int n, cap;
  /* Indices into e (+1; 0 = empty slot), open addressing, power-of-two size.
   * Keeps lookups O(1) so a fuzzed file with 10^5 keys stays fast. */
  int *hash;
  int hash_cap;
  /* "used" flags live behind a pointer so const getters can set them
   * without casting const away. Consequence: one map must not be read from
   * several threads at once (each registration reads its own map). */
  unsigned char *used;
  char *origin;
};

/* ---- small helpers --------------------------------------------------------- */

static char *dup_range(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  if (n) memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static char *dup_str(const char *s) { return dup_range(s, strlen(s)); }

static uint32_t hash_str(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; ++s) {
    h ^= (unsigned char)*s;
    h *= 16777619u;
  }
  return h;
}

static const char *origin_of(const gr_param_map *m) { return (m && m->origin) ? m->origin : "<parameters>"; }

static void entry_free(gr_param_entry *e) {
  free(e->key);
  for (int i = 0; i < e->nvalues; ++i) free(e->values[i]);
  free(e->values);
}

/* ---- map storage ----------------------------------------------------------- */

gr_status gr_param_map_create(gr_param_map **out) {
  if (!out) return gr_error(GR_ERR_INVALID_ARG, "gr_param_map_create: out is NULL");
  *out = calloc(1, sizeof **out);
  if (!*out) return gr_error(GR_ERR_NOMEM, "cannot allocate a parameter map");
  return GR_OK;
}

void gr_param_map_destroy(gr_param_map *m) {
  if (!m) return;
  for (int i = 0; i < m->n; ++i) entry_free(&m->e[i]);
  free(m->e);
  free(m->hash);
  free(m->used);
  free(m->origin);
  free(m);
}

static gr_status set_origin(gr_param_map *m, const char *origin) {
  free(m->origin);
  m->origin = dup_str(origin ? origin : "<parameters>");
  return m->origin ? GR_OK : gr_error(GR_ERR_NOMEM, "cannot allocate a parameter map");
}

static int find_index(const gr_param_map *m, const char *key) {
  if (!m || !key || m->hash_cap == 0) return -1;
  const uint32_t mask = (uint32_t)m->hash_cap - 1u;
  for (uint32_t h = hash_str(key) & mask;; h = (h + 1u) & mask) {
    const int slot = m->hash[h];
    if (slot == 0) return -1;
    if (strcmp(m->e[slot - 1].key, key) == 0) return slot - 1;
  }
}

static void hash_insert(gr_param_map *m, int idx) {
  const uint32_t mask = (uint32_t)m->hash_cap - 1u;
  uint32_t h = hash_str(m->e[idx].key) & mask;
  while (m->hash[h] != 0) h = (h + 1u) & mask;
  m->hash[h] = idx + 1;
}

/* Grow entries / used flags / hash so one more entry fits. Keeps the hash at
 * most half full so probing stays short. */
static gr_status reserve_one(gr_param_map *m) {
  if (m->n == INT_MAX / 4) return gr_error(GR_ERR_PARAM, "%s: too many parameters", origin_of(m));
  if (m->n == m->cap) {
    const int cap = m->cap ? m->cap * 2 : 32;
    gr_param_entry *e = realloc(m->e, (size_t)cap * sizeof *e);
    if (!e) return gr_error(GR_ERR_NOMEM, "cannot grow the parameter map");
    m->e = e;
    unsigned char *u = realloc(m->used, (size_t)cap);
    if (!u) return gr_error(GR_ERR_NOMEM, "cannot grow the parameter map");
    memset(u + m->cap, 0, (size_t)(cap - m->cap));
    m->used = u;
    m->cap = cap;
  }
  if (2 * (m->n + 1) > m->hash_cap) {
    const int hcap = m->hash_cap ? m->hash_cap * 2 : 64;
    int *h = calloc((size_t)hcap, sizeof *h);
    if (!h) return gr_error(GR_ERR_NOMEM, "cannot grow the parameter map");
    free(m->hash);
    m->hash = h;
    m->hash_cap = hcap;
    for (int i = 0; i < m->n; ++i) hash_insert(m, i);
  }
  return GR_OK;
}

/* Takes ownership of key and values (also on failure). */
static gr_status append_entry(gr_param_map *m, char *key, char **values, int n, int line) {
  gr_param_entry tmp = {key, values, n, line};
  gr_status s = reserve_one(m);
  if (s != GR_OK) {
    entry_free(&tmp);
    return s;
  }
  m->e[m->n] = tmp;
  m->used[m->n] = 0;
  hash_insert(m, m->n);
  m->n++;
  return GR_OK;
}

static int valid_key(const char *k) {
  if (!k || !*k) return 0;
  if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_')) return 0;
  for (const char *p = k; *p; ++p)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) return 0;
  return 1;
}

gr_status gr_param_set(gr_param_map *m, const char *key, const char *const *values, int n) {
  if (!m || !key || n < 0 || (n > 0 && !values)) return gr_error(GR_ERR_INVALID_ARG, "gr_param_set: bad argument");
  if (!valid_key(key)) return gr_error(GR_ERR_PARAM, "%s: invalid parameter name '" GR_MSG_TOKEN "'", origin_of(m), key);
  char **v = n ? calloc((size_t)n, sizeof *v) : NULL;
  if (n && !v) return gr_error(GR_ERR_NOMEM, "cannot allocate parameter values");
  for (int i = 0; i < n; ++i) {
    v[i] = dup_str(values[i] ? values[i] : "");
    if (!v[i]) {
      for (int j = 0; j < i; ++j) free(v[j]);
      free(v);
      return gr_error(GR_ERR_NOMEM, "cannot allocate parameter values");
    }
  }
  const int idx = find_index(m, key);
  if (idx >= 0) {
    gr_param_entry *e = &m->e[idx];
    for (int i = 0; i < e->nvalues; ++i) free(e->values[i]);
    free(e->values);
    e->values = v;
    e->nvalues = n;
    return GR_OK;
  }
  char *k = dup_str(key);
  if (!k) {
    for (int j = 0; j < n; ++j) free(v[j]);
    free(v);
    return gr_error(GR_ERR_NOMEM, "cannot allocate a parameter name");
  }
  return append_entry(m, k, v, n, 0);
}

/* ---- tokenizer ------------------------------------------------------------- */

typedef struct gr_lexer {
  const char *s;
  size_t len, pos;
  int line;
  const char *origin;
} gr_lexer;

static int at(const gr_lexer *lx, size_t off) {
  return lx->pos + off < lx->len ? (unsigned char)lx->s[lx->pos + off] : -1;
}

static int is_blank(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* Control bytes other than white space (NUL included) cannot be part of a text
 * parameter file; reporting them beats silently truncating at a NUL. */
static int is_bad_byte(int c) { return c >= 0 && ((c < 0x20 && !is_blank(c) && c != '\n') || c == 0x7f); }

static gr_status lex_error(const gr_lexer *lx, const char *what) {
  return gr_error(GR_ERR_PARAM, "%s:%d: %s", lx->origin, lx->line, what);
}

static gr_status bad_byte_error(const gr_lexer *lx, int c) {
  return gr_error(GR_ERR_PARAM, "%s:%d: invalid byte 0x%02x (not a text parameter file?)", lx->origin, lx->line, c);
}

/* Values of one entry, grown as tokens arrive. */
typedef struct gr_tokens {
  char **v;
  int n, cap;
} gr_tokens;

static void tokens_free(gr_tokens *t) {
  for (int i = 0; i < t->n; ++i) free(t->v[i]);
  free(t->v);
  t->v = NULL;
  t->n = t->cap = 0;
}

static gr_status tokens_push(gr_tokens *t, const char *s, size_t n) {
  if (t->n == t->cap) {
    if (t->cap >= INT_MAX / 4) return gr_error(GR_ERR_PARAM, "too many values in one parameter");
    const int cap = t->cap ? t->cap * 2 : 8;
    char **v = realloc(t->v, (size_t)cap * sizeof *v);
    if (!v) return gr_error(GR_ERR_NOMEM, "cannot allocate parameter values");
    t->v = v;
    t->cap = cap;
  }
  char *d = dup_range(s, n);
  if (!d) return gr_error(GR_ERR_NOMEM, "cannot allocate parameter values");
  t->v[t->n++] = d;
  return GR_OK;
}

/* Reads one token at lx->pos (not a blank, ')' or '('). Quoted tokens must end
 * on the same line. *quoted tells the caller whether quotes were present. */
static gr_status lex_token(gr_lexer *lx, gr_tokens *t, int *quoted) {
  if (at(lx, 0) == '"') {
    *quoted = 1;
    const size_t start = ++lx->pos;
    for (;;) {
      const int c = at(lx, 0);
      if (c < 0 || c == '\n') return lex_error(lx, "unterminated string (missing closing '\"')");
      if (is_bad_byte(c)) return bad_byte_error(lx, c);
      if (c == '"') break;
      lx->pos++;
    }
    gr_status s = tokens_push(t, lx->s + start, lx->pos - start);
    lx->pos++; /* closing quote */
    return s;
  }
  *quoted = 0;
  const size_t start = lx->pos;
  for (;;) {
    const int c = at(lx, 0);
    if (c < 0 || c == '\n' || is_blank(c) || c == '(' || c == ')' || c == '"') break;
    if (c == '/' && at(lx, 1) == '/') break;
    if (is_bad_byte(c)) return bad_byte_error(lx, c);
    lx->pos++;
  }
  return tokens_push(t, lx->s + start, lx->pos - start);
}

/* Parses "(Key v ...)" starting at '('; adds it to m. */
static gr_status lex_entry(gr_lexer *lx, gr_param_map *m) {
  gr_tokens t = {0};
  int key_quoted = 0;
  gr_status s = GR_OK;
  lx->pos++; /* '(' */
  for (;;) {
    while (is_blank(at(lx, 0))) lx->pos++;
    const int c = at(lx, 0);
    if (c < 0 || c == '\n' || (c == '/' && at(lx, 1) == '/')) {
      s = lex_error(lx, "unbalanced parenthesis: missing ')' before the end of the line");
      break;
    }
    if (is_bad_byte(c)) {
      s = bad_byte_error(lx, c);
      break;
    }
    if (c == '(') {
      s = lex_error(lx, "unbalanced parenthesis: '(' inside an entry (entries cannot nest)");
      break;
    }
    if (c == ')') {
      lx->pos++;
      break;
    }
    int quoted = 0;
    s = lex_token(lx, &t, &quoted);
    if (s != GR_OK) break;
    if (t.n == 1) key_quoted = quoted;
  }
  if (s == GR_OK) {
    if (t.n == 0 || t.v[0][0] == '\0') {
      s = lex_error(lx, "empty parameter name in '(...)'");
    } else if (key_quoted || !valid_key(t.v[0])) {
      s = gr_error(GR_ERR_PARAM, "%s:%d: invalid parameter name '" GR_MSG_TOKEN "' (letters, digits and '_' only)",
                   lx->origin, lx->line, t.v[0]);
    } else if (t.n == 1) {
      s = gr_error(GR_ERR_PARAM, "%s:%d: parameter '" GR_MSG_TOKEN "' has no value", lx->origin, lx->line, t.v[0]);
    } else {
      const int dup = find_index(m, t.v[0]);
      if (dup >= 0) {
        s = gr_error(GR_ERR_PARAM, "%s:%d: parameter '" GR_MSG_TOKEN "' is specified more than once (first at line %d)",
                     lx->origin, lx->line, t.v[0], m->e[dup].line);
      } else {
        char *key = t.v[0];
        char **values = t.v;
        const int n = t.n - 1;
        memmove(values, values + 1, (size_t)n * sizeof *values);
        t.v = NULL;
        t.n = t.cap = 0;
        return append_entry(m, key, values, n, lx->line);
      }
    }
  }
  tokens_free(&t);
  return s;
}

static gr_status lex_file(gr_lexer *lx, gr_param_map *m) {
  while (lx->pos < lx->len) {
    const int c = at(lx, 0);
    if (c == '\n') {
      if (lx->line < INT_MAX) lx->line++;
      lx->pos++;
    } else if (is_blank(c)) {
      lx->pos++;
    } else if (c == '/' && at(lx, 1) == '/') {
      while (lx->pos < lx->len && lx->s[lx->pos] != '\n') lx->pos++;
    } else if (c == '(') {
      gr_status s = lex_entry(lx, m);
      if (s != GR_OK) return s;
    } else if (c == ')') {
      return lex_error(lx, "unbalanced parenthesis: ')' without '('");
    } else if (is_bad_byte(c)) {
      return bad_byte_error(lx, c);
    } else if (c == 0xEF && at(lx, 1) == 0xBB && at(lx, 2) == 0xBF && lx->pos == 0) {
      lx->pos += 3; /* UTF-8 byte order mark written by some editors */
    } else if (c >= 0x20 && c < 0x7f) {
      return gr_error(GR_ERR_PARAM, "%s:%d: unexpected '%c' outside parentheses (entries look like (Key value ...))",
                      lx->origin, lx->line, c);
    } else {
      return gr_error(GR_ERR_PARAM, "%s:%d: unexpected byte 0x%02x outside parentheses (entries look like (Key value ...))",
                      lx->origin, lx->line, c);
    }
  }
  return GR_OK;
}

gr_status gr_param_map_parse(const char *text, size_t len, const char *origin, gr_param_map **out) {
  if (!out || (!text && len)) return gr_error(GR_ERR_INVALID_ARG, "gr_param_map_parse: bad argument");
  *out = NULL;
  gr_param_map *m = NULL;
  gr_status s = gr_param_map_create(&m);
  if (s == GR_OK) s = set_origin(m, origin);
  if (s == GR_OK) {
    gr_lexer lx = {text, len, 0, 1, m->origin};
    s = lex_file(&lx, m);
  }
  if (s != GR_OK) {
    gr_param_map_destroy(m);
    return s;
  }
  *out = m;
  return GR_OK;
}

gr_status gr_param_map_read(const char *path, gr_param_map **out) {
  if (!path || !out) return gr_error(GR_ERR_INVALID_ARG, "gr_param_map_read: bad argument");
  *out = NULL;
  FILE *fp = fopen(path, "rb");
  if (!fp) return gr_error(GR_ERR_IO, "cannot open parameter file '%s': %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0, cap = 0;
  gr_status s = GR_OK;
  for (;;) {
    if (cap - len < 4096) {
      if (cap >= GR_PARAM_MAX_FILE_BYTES) {
        s = gr_error(GR_ERR_PARAM, "%s: larger than %u bytes; not a parameter file", path, GR_PARAM_MAX_FILE_BYTES);
        break;
      }
      const size_t ncap = cap ? cap * 2 : 16384;
      char *nb = realloc(buf, ncap);
      if (!nb) {
        s = gr_error(GR_ERR_NOMEM, "cannot allocate %zu bytes to read '%s'", ncap, path);
        break;
      }
      buf = nb;
      cap = ncap;
    }
    const size_t got = fread(buf + len, 1, cap - len, fp);
    len += got;
    if (got == 0) {
      if (ferror(fp)) s = gr_error(GR_ERR_IO, "error reading parameter file '%s'", path);
      break;
    }
  }
  fclose(fp);
  if (s == GR_OK) s = gr_param_map_parse(buf, len, path, out);
  free(buf);
  return s;
}

/* ---- queries --------------------------------------------------------------- */

int gr_param_count(const gr_param_map *m, const char *key) {
  const int i = find_index(m, key);
  return i < 0 ? 0 : m->e[i].nvalues;
}

int gr_param_key_count(const gr_param_map *m) { return m ? m->n : 0; }

const char *gr_param_key_at(const gr_param_map *m, int i) {
  return (m && i >= 0 && i < m->n) ? m->e[i].key : NULL;
}

int gr_param_was_used(const gr_param_map *m, const char *key) {
  const int i = find_index(m, key);
  return i < 0 ? 0 : m->used[i];
}

/* Value idx (clamped to the last one, elastix's per-resolution convention).
 * Marks the key used. NULL when the key is absent or has no values. */
static const char *value_at(const gr_param_map *m, const char *key, int idx, int *line) {
  const int i = find_index(m, key);
  if (i < 0) return NULL;
  m->used[i] = 1;
  const gr_param_entry *e = &m->e[i];
  if (line) *line = e->line;
  if (e->nvalues == 0 || idx < 0) return NULL;
  return e->values[idx < e->nvalues ? idx : e->nvalues - 1];
}

const char *gr_param_get(const gr_param_map *m, const char *key, int idx) {
  const int i = find_index(m, key);
  if (i < 0) return NULL;
  m->used[i] = 1;
  const gr_param_entry *e = &m->e[i];
  return (idx >= 0 && idx < e->nvalues) ? e->values[idx] : NULL;
}

gr_status gr_param_get_string(const gr_param_map *m, const char *key, int idx, const char **out) {
  if (!out || idx < 0) return gr_error(GR_ERR_INVALID_ARG, "gr_param_get_string: bad argument");
  const char *v = value_at(m, key, idx, NULL);
  if (v) *out = v;
  return GR_OK;
}

/* Strict decimal number: [+-] digits [. digits] [e [+-] digits], at least one
 * digit in the mantissa. Rejects hex, "inf", "nan", trailing junk: elastix reads
 * numbers with a C++ stream, which accepts none of those either. */
static int is_decimal(const char *s) {
  const char *p = s;
  if (*p == '+' || *p == '-') ++p;
  int digits = 0;
  while (*p >= '0' && *p <= '9') { ++p; ++digits; }
  if (*p == '.') {
    ++p;
    while (*p >= '0' && *p <= '9') { ++p; ++digits; }
  }
  if (!digits) return 0;
  if (*p == 'e' || *p == 'E') {
    ++p;
    if (*p == '+' || *p == '-') ++p;
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') ++p;
  }
  return *p == '\0';
}

/* strtod honours LC_NUMERIC; parameter files always use '.', so swap it for the
 * locale's decimal point when an application has set, e.g., a German locale. */
static int parse_decimal(const char *s, double *out) {
  if (!is_decimal(s)) return 0;
  const size_t n = strlen(s);
  char small[128];
  char *buf = n < sizeof small ? small : malloc(n + 1); /* long only when fuzzed or zero-padded */
  if (!buf) return 0;
  memcpy(buf, s, n + 1);
  const struct lconv *lc = localeconv();
  if (lc && lc->decimal_point && lc->decimal_point[0] && lc->decimal_point[0] != '.' && lc->decimal_point[1] == '\0') {
    char *dot = strchr(buf, '.');
    if (dot) *dot = lc->decimal_point[0];
  }
  char *end = NULL;
  const double d = strtod(buf, &end);
  const int ok = end && *end == '\0' && isfinite(d);
  if (buf != small) free(buf);
  if (ok) *out = d;
  return ok;
}

static gr_status bad_value(const gr_param_map *m, const char *key, int line, const char *v, const char *what) {
  if (line > 0)
    return gr_error(GR_ERR_PARAM, "%s:%d: %s: value '" GR_MSG_TOKEN "' is not %s", origin_of(m), line, key, v, what);
  return gr_error(GR_ERR_PARAM, "%s: %s: value '" GR_MSG_TOKEN "' is not %s", origin_of(m), key, v, what);
}

gr_status gr_param_get_double(const gr_param_map *m, const char *key, int idx, double *out) {
  if (!out || idx < 0) return gr_error(GR_ERR_INVALID_ARG, "gr_param_get_double: bad argument");
  int line = 0;
  const char *v = value_at(m, key, idx, &line);
  if (!v) return GR_OK;
  double d;
  if (!parse_decimal(v, &d)) return bad_value(m, key, line, v, "a finite number");
  *out = d;
  return GR_OK;
}

gr_status gr_param_get_int(const gr_param_map *m, const char *key, int idx, int *out) {
  if (!out || idx < 0) return gr_error(GR_ERR_INVALID_ARG, "gr_param_get_int: bad argument");
  int line = 0;
  const char *v = value_at(m, key, idx, &line);
  if (!v) return GR_OK;
  double d;
  if (!parse_decimal(v, &d) || d != floor(d) || d < (double)INT_MIN || d > (double)INT_MAX)
    return bad_value(m, key, line, v, "an integer");
  *out = (int)d;
  return GR_OK;
}

gr_status gr_param_get_bool(const gr_param_map *m, const char *key, int idx, int *out) {
  if (!out || idx < 0) return gr_error(GR_ERR_INVALID_ARG, "gr_param_get_bool: bad argument");
  int line = 0;
  const char *v = value_at(m, key, idx, &line);
  if (!v) return GR_OK;
  /* elastix accepts exactly these two spellings. */
  if (strcmp(v, "true") == 0) *out = 1;
  else if (strcmp(v, "false") == 0) *out = 0;
  else return bad_value(m, key, line, v, "a boolean (\"true\" or \"false\")");
  return GR_OK;
}
