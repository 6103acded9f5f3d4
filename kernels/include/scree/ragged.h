/* Packing padded batches into the ragged layout on NVIDIA GPUs.
 *
 * These are the device steps of scree.bridges.from_hf_padded and
 * from_padded on CUDA tensors, in C so that a conversion costs one small
 * kernel, one sync and one gather, with almost no host time between them:
 *
 *   scree_pack_plan_cuda    reads a (batch, seqlen) mask and computes every
 *                           row's length, where its real tokens start, the
 *                           offsets and the per-row source shift, writing
 *                           the offsets straight to host memory, and waits
 *                           for them (the one sync: the caller needs the
 *                           total to allocate);
 *   scree_pack_rows_cuda    gathers the real tokens into the packed values;
 *   scree_pack_lengths_cuda does both from lengths known on the host,
 *                           without a sync.
 *
 * Token t of row b (offsets[b] <= t < offsets[b+1]) comes from padded row
 * t + shift[b] of the padded array seen as (batch * seqlen) rows, that is
 * from position start_b + (t - offsets[b]) of row b. A caller that knows the
 * lengths on the host computes offsets and shift itself and only gathers.
 *
 * The host's CPU path for the same conversions is scree_unpad in
 * scree/array.h. No CUDA type appears here: streams are cudaStream_t passed
 * as void *. */
#ifndef SCREE_RAGGED_H
#define SCREE_RAGGED_H

#include <stddef.h>
#include <stdint.h>

#include "scree/array.h"
#include "scree/dtype.h"
#include "scree/error.h"
#include "scree/export.h"

SCREE_EXTERN_C_BEGIN

/* The side of a row the plan allows the padding on: SCREE_PAD_RIGHT (real
 * tokens are a prefix of the row) or SCREE_PAD_LEFT (a suffix) of
 * scree_padding_side (scree/array.h), or SCREE_PAD_AUTO: either, decided
 * row by row. It continues that enumeration here, beside the only function
 * that takes it (scree_pad and scree_unpad do not). */
typedef enum scree_pack_side {
  SCREE_PAD_AUTO = SCREE_PAD_LEFT + 1
} scree_pack_side;

/* Entries of the per-row summary (plan->summary + k * batch for entry k). */
enum {
  SCREE_PACK_SUMMARY_LENGTH = 0,     /* the row's nonzero count */
  SCREE_PACK_SUMMARY_FIRST = 1,      /* first nonzero position, seqlen if none */
  SCREE_PACK_SUMMARY_LAST = 2,       /* last nonzero position, -1 if none */
  SCREE_PACK_SUMMARY_NOT_BINARY = 3, /* 1 if the row holds a value not 0 or 1 */
  SCREE_PACK_SUMMARY_ENTRIES = 4     /* entries a row has in the summary */
};

/* Where each part of the plan's work buffer starts, in int64 entries, for a
 * batch of b rows (the layout scree_pack_plan_args.work describes). The one
 * place it is written: the Python package reads it through scree._native. */
#define SCREE_PACK_WORK_OFFSETS(b) 0
#define SCREE_PACK_WORK_BAD_ROW(b) ((b) + 1)
#define SCREE_PACK_WORK_LONGEST(b) ((b) + 2)
#define SCREE_PACK_WORK_SHIFT(b) ((b) + 3)
#define SCREE_PACK_WORK_SUMMARY(b) (2 * (b) + 3)
#define SCREE_PACK_WORK_COUNTER(b) (SCREE_PACK_WORK_SUMMARY(b) + SCREE_PACK_SUMMARY_ENTRIES * (b))
/* Entries of the work buffer (scree_pack_plan_work_len without its range
 * check), and of the host buffer: its first SCREE_PACK_WORK_SHIFT(b). */
#define SCREE_PACK_WORK_LEN(b) (SCREE_PACK_WORK_COUNTER(b) + 1)
#define SCREE_PACK_HOST_LEN(b) SCREE_PACK_WORK_SHIFT(b)

typedef struct scree_pack_plan_args {
  /* (batch, seqlen) contiguous mask in device memory: SCREE_BOOL or an
   * integer dtype (SCREE_INT8/16/32/64, SCREE_UINT8). Nonzero marks a real
   * token; any value other than 0 and 1 makes the row bad. */
  const void *mask;
  scree_dtype mask_dtype;
  int64_t batch;
  int64_t seqlen;
  int side; /* SCREE_PAD_RIGHT, SCREE_PAD_LEFT or SCREE_PAD_AUTO */

  /* Device memory of scree_pack_plan_work_len(batch) int64s, laid out as
   * (SCREE_PACK_WORK_* above)
   *   [0, batch]               offsets (the caller's Array keeps these)
   *   batch + 1                first bad row, -1 when every row is good
   *   batch + 2                the longest row
   *   batch + 3 ...            shift (batch entries)
   *   then                     the summary (4 * batch entries, see above)
   *   6 * batch + 3            the plan's own counter
   * A row is bad when it holds values other than 0 and 1, when its real
   * tokens are not contiguous, or when they are not on the side allowed. */
  int64_t *work;
  /* Host memory of batch + 3 int64s (any: the plan stages through pinned
   * memory of its own): receives the first batch + 3 entries of work. */
  int64_t *host;

  void *stream;   /* a cudaStream_t; NULL is the legacy stream */
  char *msg;      /* optional: receives a message naming the bad argument */
  size_t msg_len; /* size of msg in bytes */
} scree_pack_plan_args;

/* Number of int64 entries the work buffer of scree_pack_plan_cuda needs. */
SCREE_API int64_t scree_pack_plan_work_len(int64_t batch);

/* Runs the plan on args->stream (one kernel) and waits for the stream, so
 * that args->host holds the offsets, the first bad row and the longest row
 * on return. The mask is not checked here beyond what the summary says: the
 * caller reads host[batch + 1] and, for a bad row, the summary for its
 * message. Returns 0, SCREE_EINVAL for a bad argument (the message names
 * it), SCREE_ENOTSUP in a build without CUDA, SCREE_ENOMEM when staging
 * memory cannot be had, SCREE_ECUDA when CUDA fails (the message holds
 * CUDA's own). */
SCREE_API int scree_pack_plan_cuda(const scree_pack_plan_args *args);

/* Copies token t of the packed output, for every t < total, from padded row
 * t + shift[b] of its row b (see above): values[t] = padded[t + shift[b]],
 * each row row_bytes long. offsets (batch + 1 entries, offsets[0] = 0,
 * non-decreasing, offsets[batch] = total) and shift (batch entries) are
 * int64 in device memory; padded and values are device memory. Asynchronous
 * on stream. The offsets are trusted: the caller made them (through the
 * plan or from validated host lengths). Returns 0, SCREE_EINVAL naming a
 * bad argument, SCREE_ENOTSUP without CUDA, SCREE_ECUDA. */
SCREE_API int scree_pack_rows_cuda(const void *padded, void *values, size_t row_bytes,
                                   const int64_t *offsets, const int64_t *shift,
                                   int64_t batch, int64_t total, void *stream, char *msg,
                                   size_t msg_len);

/* Packing with the lengths known on the host: no sync at all. */
typedef struct scree_pack_lengths_args {
  const void *padded;  /* (batch, seqlen, row_bytes) device memory */
  void *values;        /* (total, row_bytes) device memory */
  size_t row_bytes;
  const int64_t *lengths; /* host: batch real lengths, each in [0, seqlen] */
  int64_t batch;
  int64_t seqlen;
  int64_t total;          /* the sum of lengths: the caller sized values with it */
  int side;               /* SCREE_PAD_RIGHT or SCREE_PAD_LEFT */
  int64_t *host_offsets;  /* host, batch + 1 entries: receives the offsets */
  /* Device memory of 2 * batch + 1 int64s: receives the offsets (the
   * caller's Array keeps these) and then the shifts. */
  int64_t *work;
  void *stream;
  char *msg;
  size_t msg_len;
} scree_pack_lengths_args;

/* Validates the lengths (the message names the first bad one and an
 * inconsistent total), computes the offsets into host_offsets, and queues
 * on stream: the copy of offsets and shifts into work, from pinned staging
 * memory of the library's own (reused once the stream has passed the copy),
 * and the gather. Returns without waiting. Returns 0, SCREE_EINVAL,
 * SCREE_ENOTSUP without CUDA, SCREE_ENOMEM when staging memory cannot be
 * had, SCREE_ECUDA. */
SCREE_API int scree_pack_lengths_cuda(const scree_pack_lengths_args *args);

SCREE_EXTERN_C_END

#endif /* SCREE_RAGGED_H */
