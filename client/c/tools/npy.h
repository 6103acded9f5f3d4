/* Reading and writing numpy .npy files (format versions 1.0, 2.0 and 3.0),
 * for screectl and its tests.
 *
 * Only little-endian, C-order arrays of these element types are accepted:
 * |b1 (bool), |i1 <i2 <i4 <i8, |u1 <u2, <f2 <f4 <f8, and |V1 |V2 (raw bytes).
 * numpy has no bfloat16 or float8 dtype, so scree's convention is that such
 * values travel as their raw bits: bfloat16 as <u2 and float8 (e4m3, e5m2)
 * as |u1. A reader learns the real type from elsewhere (screectl's --dtype);
 * with ml_dtypes installed, numpy's arr.view(ml_dtypes.bfloat16) recovers it.
 *
 * The reader is strict: every malformed header is rejected with a message
 * naming what is wrong, never a crash, and the data must be exactly as long
 * as the header says. */
#ifndef SCREE_TOOLS_NPY_H
#define SCREE_TOOLS_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "scree/dtype.h"

#define SCREE_NPY_MAX_DIMS 16

typedef enum scree__npy_kind {
  SCREE_NPY_BOOL,
  SCREE_NPY_INT,
  SCREE_NPY_UINT,
  SCREE_NPY_FLOAT,
  SCREE_NPY_VOID, /* raw bytes: the element type must come from elsewhere */
} scree__npy_kind;

typedef struct scree__npy {
  char descr[8];          /* as it appears in the header, such as "<f4" */
  scree__npy_kind kind;
  size_t itemsize;
  /* The scree dtype the descr stands for; for <u2 and |u1 the plain integer
   * types (SCREE_DTYPE_INVALID for <u2, which scree has no dtype for, and
   * for raw bytes). See scree__npy_resolve_dtype for overrides. */
  scree_dtype dtype;
  int ndim;
  int64_t shape[SCREE_NPY_MAX_DIMS];
  void *data;             /* malloc'd, nbytes long; owned by the struct */
  size_t nbytes;
} scree__npy;

/* Parses a whole .npy file image. On success fills *out (free with
 * scree__npy_free) and returns 0; otherwise returns SCREE_EINVAL (malformed
 * or unsupported) or SCREE_ENOMEM, with a message. The data is copied. */
int scree__npy_parse(const void *buf, size_t len, scree__npy *out, char *msg,
                     size_t msg_len);

/* Reads a .npy file. Returns as scree__npy_parse, or SCREE_EIO with the
 * system's reason when the file cannot be read. */
int scree__npy_read(const char *path, scree__npy *out, char *msg, size_t msg_len);

void scree__npy_free(scree__npy *a);

/* The descr scree writes for dtype ("<f4"; "<u2" for bfloat16; "|u1" for
 * the float8 types). NULL for an invalid dtype. */
const char *scree__npy_descr(scree_dtype dtype);

/* Decides the scree dtype of a parsed array: with want == SCREE_DTYPE_INVALID
 * the file's own dtype (an error for <u2 and raw bytes, which need one);
 * otherwise want, which must have the file's item size and be a type the
 * descr can carry (any type for raw bytes of the same size; bfloat16 or
 * float16 for <u2; float8 or uint8/int8/bool for |u1; want equal to the
 * file's dtype otherwise). Returns 0 with *out set, or SCREE_EINVAL with a
 * message. */
int scree__npy_resolve_dtype(const scree__npy *a, scree_dtype want, scree_dtype *out,
                             char *msg, size_t msg_len);

/* Encodes an array as a .npy image into a malloc'd buffer (*out, *out_len).
 * Always format version 1.0 (the headers written are short). Returns 0,
 * SCREE_EINVAL or SCREE_ENOMEM with a message. */
int scree__npy_encode(scree_dtype dtype, int ndim, const int64_t *shape, const void *data,
                      void **out, size_t *out_len, char *msg, size_t msg_len);

/* Writes an array to path (created or truncated), by scree__npy_encode's
 * rules. Returns 0, SCREE_EINVAL, SCREE_ENOMEM or SCREE_EIO with a message. */
int scree__npy_write(const char *path, scree_dtype dtype, int ndim, const int64_t *shape,
                     const void *data, char *msg, size_t msg_len);

#endif /* SCREE_TOOLS_NPY_H */
