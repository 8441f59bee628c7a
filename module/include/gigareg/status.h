/* Error codes shared by every layer. Functions return gr_status; the details
 * (file name, key, sizes) go to a thread-local message so concurrent
 * registrations in one process never overwrite each other's diagnostics. */
#ifndef GIGAREG_STATUS_H
#define GIGAREG_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gr_status {
  GR_OK = 0,
  GR_ERR_INVALID_ARG,   /* caller passed an impossible value */
  GR_ERR_IO,            /* file missing, unreadable, unwritable */
  GR_ERR_FORMAT,        /* file readable but corrupt or truncated */
  GR_ERR_UNSUPPORTED,   /* valid but not supported (dimension, pixel type) */
  GR_ERR_MISMATCH,      /* grids/sizes that must agree do not */
  GR_ERR_NONFINITE,     /* NaN or Inf where finite data is required */
  GR_ERR_EMPTY,         /* empty mask / no overlap */
  GR_ERR_PARAM,         /* bad parameter file key or value */
  GR_ERR_NOMEM,         /* host or device allocation failed */
  GR_ERR_DEVICE,        /* accelerator error */
  GR_ERR_COMM,          /* communication layer error */
  GR_ERR_INTERNAL
} gr_status;

/* Static English description of a code. */
const char *gr_strerror(gr_status s);

/* Record a detailed message for the calling thread and return s, so call
 * sites read `return gr_error(GR_ERR_IO, "cannot open '%s'", path);`. */
gr_status gr_error(gr_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Last message recorded by gr_error on this thread ("" if none). */
const char *gr_last_error(void);
void gr_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
