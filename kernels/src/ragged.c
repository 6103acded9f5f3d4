/* Entry points of scree/ragged.h: every argument is checked here, in plain
 * C, so the checks run and are tested on machines without CUDA; the kernels
 * are in cuda/ragged.cu. */
#include "scree/ragged.h"

#include <stdint.h>

#include "attention_internal.h"

#define FAIL(code, ...) scree__fail((code), msg, msg_len, __VA_ARGS__)

#ifdef SCREE_HAVE_CUDA
int scree__pack_plan_cuda(const scree_pack_plan_args *a);
int scree__pack_rows_cuda(const void *padded, void *values, size_t row_bytes,
                          const int64_t *offsets, const int64_t *shift, int64_t batch,
                          int64_t total, void *stream, char *msg, size_t msg_len);
int scree__pack_stage_cuda(const int64_t *offsets, int64_t batch, int64_t seqlen, int side,
                           int64_t *work, void *stream, char *msg, size_t msg_len);
#endif

int64_t scree_pack_plan_work_len(int64_t batch) {
  if (batch < 0 || batch > (INT64_MAX - 4) / 6)
    return -1;
  return SCREE_PACK_WORK_LEN(batch);
}

static int mask_dtype_ok(scree_dtype t) {
  return t == SCREE_BOOL || t == SCREE_INT8 || t == SCREE_UINT8 || t == SCREE_INT16 ||
         t == SCREE_INT32 || t == SCREE_INT64;
}

int scree_pack_plan_cuda(const scree_pack_plan_args *a) {
  if (a == NULL)
    return SCREE_EINVAL;
  char *msg = a->msg;
  size_t msg_len = a->msg_len;
  if (!mask_dtype_ok(a->mask_dtype))
    return FAIL(SCREE_EINVAL, "mask_dtype=%s: a mask is bool or an integer dtype",
                scree_dtype_name(a->mask_dtype));
  /* Rows are indexed by int32 in the plan's single-block scan and a
   * position must fit int64 arithmetic with batch * seqlen. */
  if (a->batch < 0 || a->batch > INT32_MAX)
    return FAIL(SCREE_EINVAL, "batch=%lld is outside [0, %d]", (long long)a->batch, INT32_MAX);
  if (a->seqlen < 0 || a->seqlen > INT32_MAX)
    return FAIL(SCREE_EINVAL, "seqlen=%lld is outside [0, %d]", (long long)a->seqlen,
                INT32_MAX);
  if (a->side != SCREE_PAD_RIGHT && a->side != SCREE_PAD_LEFT && a->side != SCREE_PAD_AUTO)
    return FAIL(SCREE_EINVAL, "side=%d is not SCREE_PAD_RIGHT, _LEFT or _AUTO", (int)a->side);
  if (a->work == NULL)
    return FAIL(SCREE_EINVAL, "work is NULL");
  if (a->host == NULL)
    return FAIL(SCREE_EINVAL, "host is NULL");
  if (a->mask == NULL && a->batch > 0 && a->seqlen > 0)
    return FAIL(SCREE_EINVAL, "mask is NULL");
#ifdef SCREE_HAVE_CUDA
  return scree__pack_plan_cuda(a);
#else
  return FAIL(SCREE_ENOTSUP, "scree_pack_plan_cuda: this build of screekernels has no CUDA");
#endif
}

int scree_pack_rows_cuda(const void *padded, void *values, size_t row_bytes,
                         const int64_t *offsets, const int64_t *shift, int64_t batch,
                         int64_t total, void *stream, char *msg, size_t msg_len) {
  if (batch < 0 || batch > INT32_MAX)
    return FAIL(SCREE_EINVAL, "batch=%lld is outside [0, %d]", (long long)batch, INT32_MAX);
  if (total < 0)
    return FAIL(SCREE_EINVAL, "total=%lld is negative", (long long)total);
  if (total > 0 && batch == 0)
    return FAIL(SCREE_EINVAL, "total=%lld tokens in a batch of 0 rows", (long long)total);
  if (row_bytes == 0 && total > 0)
    return FAIL(SCREE_EINVAL, "row_bytes is 0");
  if (total > 0 && row_bytes > 0 && (uint64_t)total > (uint64_t)INT64_MAX / row_bytes)
    return FAIL(SCREE_EINVAL, "total=%lld rows of %zu bytes overflow", (long long)total,
                row_bytes);
  if (total > 0) {
    if (padded == NULL)
      return FAIL(SCREE_EINVAL, "padded is NULL");
    if (values == NULL)
      return FAIL(SCREE_EINVAL, "values is NULL");
    if (offsets == NULL)
      return FAIL(SCREE_EINVAL, "offsets is NULL");
    if (shift == NULL)
      return FAIL(SCREE_EINVAL, "shift is NULL");
  }
#ifdef SCREE_HAVE_CUDA
  return scree__pack_rows_cuda(padded, values, row_bytes, offsets, shift, batch, total, stream,
                               msg, msg_len);
#else
  (void)stream;
  return FAIL(SCREE_ENOTSUP, "scree_pack_rows_cuda: this build of screekernels has no CUDA");
#endif
}

int scree_pack_lengths_cuda(const scree_pack_lengths_args *a) {
  if (a == NULL)
    return SCREE_EINVAL;
  char *msg = a->msg;
  size_t msg_len = a->msg_len;
  const int64_t B = a->batch, S = a->seqlen;
  if (B < 0 || B > INT32_MAX)
    return FAIL(SCREE_EINVAL, "batch=%lld is outside [0, %d]", (long long)B, INT32_MAX);
  if (S < 0 || S > INT32_MAX)
    return FAIL(SCREE_EINVAL, "seqlen=%lld is outside [0, %d]", (long long)S, INT32_MAX);
  if (a->side != SCREE_PAD_RIGHT && a->side != SCREE_PAD_LEFT)
    return FAIL(SCREE_EINVAL, "side=%d is not SCREE_PAD_RIGHT or SCREE_PAD_LEFT", a->side);
  if (a->host_offsets == NULL)
    return FAIL(SCREE_EINVAL, "host_offsets is NULL");
  if (a->work == NULL)
    return FAIL(SCREE_EINVAL, "work is NULL");
  if (B > 0 && a->lengths == NULL)
    return FAIL(SCREE_EINVAL, "lengths is NULL");
  int64_t *off = a->host_offsets;
  off[0] = 0;
  for (int64_t b = 0; b < B; b++) {
    const int64_t n = a->lengths[b];
    if (n < 0 || n > S)
      return FAIL(SCREE_EINVAL, "lengths[%lld]=%lld is outside [0, %lld]", (long long)b,
                  (long long)n, (long long)S);
    off[b + 1] = off[b] + n;
  }
  if (off[B] != a->total)
    return FAIL(SCREE_EINVAL, "total=%lld but the lengths sum to %lld", (long long)a->total,
                (long long)off[B]);
  if (a->total > 0 && a->row_bytes > 0 && (a->padded == NULL || a->values == NULL))
    return FAIL(SCREE_EINVAL, "%s is NULL", a->padded == NULL ? "padded" : "values");
  if (a->total > 0 && a->row_bytes > 0 && (uint64_t)a->total > (uint64_t)INT64_MAX / a->row_bytes)
    return FAIL(SCREE_EINVAL, "total=%lld rows of %zu bytes overflow", (long long)a->total,
                a->row_bytes);
#ifdef SCREE_HAVE_CUDA
  int rc = scree__pack_stage_cuda(off, B, S, a->side, a->work, a->stream, msg, msg_len);
  if (rc != 0)
    return rc;
  if (a->total == 0 || a->row_bytes == 0)
    return 0;
  return scree__pack_rows_cuda(a->padded, a->values, a->row_bytes, a->work, a->work + B + 1, B,
                               a->total, a->stream, msg, msg_len);
#else
  return FAIL(SCREE_ENOTSUP, "scree_pack_lengths_cuda: this build of screekernels has no CUDA");
#endif
}
