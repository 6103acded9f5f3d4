#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "core_internal.h"
#include "scree/array.h"
#include "scree/error.h"

int64_t scree_array_row_elems(const scree_array *a) {
  int64_t n = 1;
  for (int32_t i = 0; i < a->ndim_inner; i++)
    n *= a->inner[i];
  return n;
}

int64_t scree_offsets_at(const void *offsets, scree_dtype offsets_dtype, int64_t i) {
  if (offsets_dtype == SCREE_INT32)
    return ((const int32_t *)offsets)[i];
  return ((const int64_t *)offsets)[i];
}

int scree_array_check_desc(const scree_array *a, uint64_t *values_bytes,
                           uint64_t *offsets_bytes, char *msg, size_t msg_len) {
  if (a == NULL)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "array descriptor is NULL");
  if (!scree_dtype_valid((int)a->dtype))
    return scree__fail(SCREE_EINVAL, msg, msg_len, "dtype %d is not a scree dtype",
                       (int)a->dtype);
  if (a->offsets_dtype != SCREE_INT64 && a->offsets_dtype != SCREE_INT32)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "offsets dtype %s is not int32 or int64",
                       scree_dtype_name(a->offsets_dtype));
  if (a->ndim_inner < 0 || a->ndim_inner > SCREE_MAX_INNER_DIMS)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "%" PRId32 " inner dims; at most %d are supported",
                       a->ndim_inner, SCREE_MAX_INNER_DIMS);
  if (a->batch_size < 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "batch_size %" PRId64 " is negative",
                       a->batch_size);
  if (a->total_rows < 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "total_rows %" PRId64 " is negative",
                       a->total_rows);
  if (a->offsets_dtype == SCREE_INT32 &&
      (a->total_rows > INT32_MAX || a->batch_size > INT32_MAX - 1))
    return scree__fail(SCREE_EOVERFLOW, msg, msg_len,
                       "total_rows %" PRId64 " does not fit int32 offsets",
                       a->total_rows);

  /* Every product is checked against INT64_MAX so that byte counts can be
   * used as signed sizes (off_t, ptrdiff_t) everywhere downstream. */
  int64_t bytes = (int64_t)scree_dtype_size(a->dtype);
  for (int32_t i = 0; i < a->ndim_inner; i++) {
    int64_t d = a->inner[i];
    if (d < 0)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "inner[%" PRId32 "]=%" PRId64 " is negative", i, d);
    if (d != 0 && bytes > INT64_MAX / d)
      return scree__fail(SCREE_EOVERFLOW, msg, msg_len,
                         "row size overflows at inner[%" PRId32 "]=%" PRId64, i, d);
    bytes *= d;
  }
  if (a->total_rows != 0 && bytes > INT64_MAX / a->total_rows)
    return scree__fail(SCREE_EOVERFLOW, msg, msg_len,
                       "values size overflows: %" PRId64 " rows of %" PRId64 " bytes",
                       a->total_rows, bytes);
  int64_t osize = (int64_t)scree_dtype_size(a->offsets_dtype);
  if (a->batch_size >= INT64_MAX / osize)
    return scree__fail(SCREE_EOVERFLOW, msg, msg_len,
                       "offsets size overflows: batch_size %" PRId64, a->batch_size);
  if (values_bytes != NULL)
    *values_bytes = (uint64_t)(bytes * a->total_rows);
  if (offsets_bytes != NULL)
    *offsets_bytes = (uint64_t)((a->batch_size + 1) * osize);
  return 0;
}

int scree_offsets_validate(const void *offsets, scree_dtype offsets_dtype,
                           int64_t batch_size, int64_t total_rows,
                           int64_t *max_length, char *msg, size_t msg_len) {
  if (offsets_dtype != SCREE_INT64 && offsets_dtype != SCREE_INT32)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "offsets dtype %s is not int32 or int64",
                       scree_dtype_name(offsets_dtype));
  if (batch_size < 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "batch_size %" PRId64 " is negative",
                       batch_size);
  if (offsets == NULL)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "offsets is NULL");

  int64_t first = scree_offsets_at(offsets, offsets_dtype, 0);
  if (first != 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "offsets[0]=%" PRId64 ", expected 0",
                       first);
  int64_t longest = 0;
  int64_t prev = 0;
  for (int64_t i = 1; i <= batch_size; i++) {
    int64_t cur = scree_offsets_at(offsets, offsets_dtype, i);
    if (cur < prev)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "offsets[%" PRId64 "]=%" PRId64 " > offsets[%" PRId64 "]=%" PRId64,
                         i - 1, prev, i, cur);
    if (cur > total_rows)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "offsets[%" PRId64 "]=%" PRId64 " > total_rows=%" PRId64, i, cur,
                         total_rows);
    if (cur - prev > longest)
      longest = cur - prev;
    prev = cur;
  }
  if (prev != total_rows)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "offsets[%" PRId64 "]=%" PRId64 " (the last) != total_rows=%" PRId64,
                       batch_size, prev, total_rows);
  if (max_length != NULL)
    *max_length = longest;
  return 0;
}
