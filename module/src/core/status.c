#include <stdarg.h>
#include <stdio.h>
#include "gigareg/status.h"

/* Thread-local so that concurrent registrations keep their own diagnostics. */
static _Thread_local char gr_tls_message[1024];

const char *gr_strerror(gr_status s) {
  switch (s) {
    case GR_OK: return "success";
    case GR_ERR_INVALID_ARG: return "invalid argument";
    case GR_ERR_IO: return "I/O error";
    case GR_ERR_FORMAT: return "corrupt or truncated file";
    case GR_ERR_UNSUPPORTED: return "unsupported input";
    case GR_ERR_MISMATCH: return "mismatched grids or sizes";
    case GR_ERR_NONFINITE: return "non-finite values (NaN/Inf)";
    case GR_ERR_EMPTY: return "empty mask or no overlap";
    case GR_ERR_PARAM: return "invalid parameter";
    case GR_ERR_NOMEM: return "out of memory";
    case GR_ERR_DEVICE: return "device error";
    case GR_ERR_COMM: return "communication error";
    case GR_ERR_INTERNAL: return "internal error";
  }
  return "unknown error";
}

gr_status gr_error(gr_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(gr_tls_message, sizeof gr_tls_message, fmt, ap);
  va_end(ap);
  return s;
}

const char *gr_last_error(void) { return gr_tls_message; }
void gr_clear_error(void) { gr_tls_message[0] = '\0'; }
