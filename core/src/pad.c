/* CPU conversions between packed ragged arrays and dense padded buffers. */
#include <inttypes.h>
#include <string.h>

#include "core_internal.h"
#include "scree/array.h"
#include "scree/error.h"

static void fill_elems(char *dst, int64_t count, const void *elem, size_t elem_size) {
  if (elem == NULL) {
    memset(dst, 0, (size_t)count * elem_size);
    return;
  }
  for (int64_t i = 0; i < count; i++)
    memcpy(dst + (size_t)i * elem_size, elem, elem_size);
}

int scree_pad(const scree_array *a, void *padded, int64_t padded_len,
              const void *pad_value, scree_padding_side side, char *msg,
              size_t msg_len) {
  int rc = scree_array_check_desc(a, NULL, NULL, msg, msg_len);
  if (rc != 0)
    return rc;
  if (a->device.type != SCREE_DEVICE_CPU)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "scree_pad needs host memory");
  if (padded_len < a->max_length || padded_len < 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "padded_len %" PRId64 " is shorter than max_length %" PRId64,
                       padded_len, a->max_length);
  if (padded == NULL || (a->total_rows > 0 && a->values == NULL) || a->offsets == NULL)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "NULL buffer");

  size_t elem = scree_dtype_size(a->dtype);
  int64_t row_elems = scree_array_row_elems(a);
  size_t row_bytes = (size_t)row_elems * elem;
  const char *src = a->values;
  char *dst = padded;
  for (int64_t b = 0; b < a->batch_size; b++) {
    int64_t start = scree_offsets_at(a->offsets, a->offsets_dtype, b);
    int64_t len = scree_offsets_at(a->offsets, a->offsets_dtype, b + 1) - start;
    if (len < 0 || len > padded_len)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "row %" PRId64 " has length %" PRId64 " outside [0, %" PRId64 "]",
                         b, len, padded_len);
    char *row = dst + (size_t)b * (size_t)padded_len * row_bytes;
    int64_t pad = padded_len - len;
    char *real = side == SCREE_PAD_LEFT ? row + (size_t)pad * row_bytes : row;
    char *fill = side == SCREE_PAD_LEFT ? row : row + (size_t)len * row_bytes;
    memcpy(real, src + (size_t)start * row_bytes, (size_t)len * row_bytes);
    fill_elems(fill, pad * row_elems, pad_value, elem);
  }
  return 0;
}

static int mask_bit(const void *mask, scree_dtype dtype, int64_t i, int64_t *v) {
  switch (dtype) {
  case SCREE_BOOL:
  case SCREE_UINT8:
    *v = ((const uint8_t *)mask)[i];
    return 0;
  case SCREE_INT8:
    *v = ((const int8_t *)mask)[i];
    return 0;
  case SCREE_INT16:
    *v = ((const int16_t *)mask)[i];
    return 0;
  case SCREE_INT32:
    *v = ((const int32_t *)mask)[i];
    return 0;
  case SCREE_INT64:
    *v = ((const int64_t *)mask)[i];
    return 0;
  default:
    return SCREE_EINVAL;
  }
}

int scree_mask_lengths(const void *mask, scree_dtype mask_dtype, int64_t batch,
                       int64_t padded_len, int64_t *lengths,
                       scree_padding_side *side, char *msg, size_t msg_len) {
  if (mask_dtype != SCREE_BOOL && mask_dtype != SCREE_UINT8 && mask_dtype != SCREE_INT8 &&
      mask_dtype != SCREE_INT16 && mask_dtype != SCREE_INT32 && mask_dtype != SCREE_INT64)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "mask dtype %s is not bool or an integer type",
                       scree_dtype_name(mask_dtype));
  if (batch < 0 || padded_len < 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "mask shape (%" PRId64 ", %" PRId64 ") is negative",
                       batch, padded_len);
  if (mask == NULL && batch * padded_len > 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "mask is NULL");

  /* -1: no row has told the side yet (full and empty rows fit both). */
  int found = -1;
  int64_t first_row = -1;
  for (int64_t b = 0; b < batch; b++) {
    int64_t first = -1, last = -1, count = 0;
    for (int64_t t = 0; t < padded_len; t++) {
      int64_t v;
      mask_bit(mask, mask_dtype, b * padded_len + t, &v);
      if (v != 0 && v != 1)
        return scree__fail(SCREE_EINVAL, msg, msg_len,
                           "mask[%" PRId64 "][%" PRId64 "]=%" PRId64 " is not 0 or 1", b, t, v);
      if (v == 1) {
        if (first < 0)
          first = t;
        last = t;
        count++;
      }
    }
    if (count > 0 && last - first + 1 != count)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "mask row %" PRId64 " is not contiguous: ones from column %" PRId64
                         " to %" PRId64 " with zeros between",
                         b, first, last);
    if (count > 0 && count < padded_len) {
      int row_side;
      if (first == 0)
        row_side = SCREE_PAD_RIGHT;
      else if (last == padded_len - 1)
        row_side = SCREE_PAD_LEFT;
      else
        return scree__fail(SCREE_EINVAL, msg, msg_len,
                           "mask row %" PRId64 " has padding on both sides (ones at columns %" PRId64
                           "..%" PRId64 ")",
                           b, first, last);
      if (found >= 0 && row_side != found)
        return scree__fail(SCREE_EINVAL, msg, msg_len,
                           "mask rows %" PRId64 " and %" PRId64 " are padded on different sides",
                           first_row, b);
      if (found < 0) {
        found = row_side;
        first_row = b;
      }
    }
    lengths[b] = count;
  }
  if (side != NULL)
    *side = found < 0 ? SCREE_PAD_RIGHT : (scree_padding_side)found;
  return 0;
}

int scree_unpad(const void *padded, int64_t batch, int64_t padded_len,
                size_t row_bytes, const int64_t *lengths, scree_padding_side side,
                void *values, void *offsets, scree_dtype offsets_dtype, char *msg,
                size_t msg_len) {
  if (offsets_dtype != SCREE_INT64 && offsets_dtype != SCREE_INT32)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "offsets dtype %s is not int32 or int64",
                       scree_dtype_name(offsets_dtype));
  if (batch < 0 || padded_len < 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "padded shape is negative");
  const int64_t limit = offsets_dtype == SCREE_INT32 ? INT32_MAX : INT64_MAX;
  int64_t total = 0;
  for (int64_t b = 0; b < batch; b++) {
    int64_t len = lengths[b];
    if (len < 0 || len > padded_len)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "lengths[%" PRId64 "]=%" PRId64 " is outside [0, %" PRId64 "]", b,
                         len, padded_len);
    if (total > limit - len)
      return scree__fail(SCREE_EOVERFLOW, msg, msg_len,
                         "total rows overflow %s offsets at row %" PRId64,
                         scree_dtype_name(offsets_dtype), b);
    total += len;
  }

  const char *src = padded;
  char *dst = values;
  int64_t at = 0;
  for (int64_t b = 0; b <= batch; b++) {
    if (offsets_dtype == SCREE_INT32)
      ((int32_t *)offsets)[b] = (int32_t)at;
    else
      ((int64_t *)offsets)[b] = at;
    if (b == batch)
      break;
    int64_t len = lengths[b];
    int64_t skip = side == SCREE_PAD_LEFT ? padded_len - len : 0;
    memcpy(dst + (size_t)at * row_bytes,
           src + ((size_t)b * (size_t)padded_len + (size_t)skip) * row_bytes,
           (size_t)len * row_bytes);
    at += len;
  }
  return 0;
}
