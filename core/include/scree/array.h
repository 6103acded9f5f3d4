/* The ragged array: a packed values buffer plus row offsets.
 *
 * Row i of the batch is values[offsets[i] .. offsets[i+1]), each row holding
 * row_elems = prod(inner) elements. This is FlashAttention's cu_seqlens
 * layout. batch_size, total_rows and max_length are cached on the host so no
 * caller needs a device-to-host copy to learn them. */
#ifndef SCREE_ARRAY_H
#define SCREE_ARRAY_H

#include <stddef.h>
#include <stdint.h>

#include "scree/dtype.h"
#include "scree/export.h"

SCREE_EXTERN_C_BEGIN

#define SCREE_MAX_INNER_DIMS 8

typedef enum scree_device_type {
  SCREE_DEVICE_CPU = 0,
  SCREE_DEVICE_CUDA = 1,
} scree_device_type;

typedef struct scree_device {
  scree_device_type type;
  int index; /* CUDA device ordinal in the calling process; 0 for the CPU */
} scree_device;

typedef struct scree_array {
  scree_dtype dtype;
  int32_t ndim_inner; /* 0 .. SCREE_MAX_INNER_DIMS */
  int64_t inner[SCREE_MAX_INNER_DIMS];
  int64_t batch_size;
  int64_t total_rows;
  int64_t max_length;
  scree_dtype offsets_dtype; /* SCREE_INT64 or SCREE_INT32 */
  void *values;              /* total_rows * row_elems elements, contiguous */
  void *offsets;             /* batch_size + 1 entries */
  scree_device device;       /* where values and offsets live */
} scree_array;

typedef enum scree_padding_side {
  SCREE_PAD_RIGHT = 0, /* real tokens first, then padding (HF's default) */
  SCREE_PAD_LEFT = 1,  /* padding first, then real tokens */
} scree_padding_side;

/* Elements per row (the product of the inner dims; 1 with none). Assumes a
 * descriptor accepted by scree_array_check_desc. */
SCREE_API int64_t scree_array_row_elems(const scree_array *a);

/* Checks the descriptor alone (dtype, offsets dtype, dims, counts) and that
 * its byte sizes fit in int64 without overflow. Pointers are not looked at.
 * On success stores the byte sizes of values and offsets (either pointer may
 * be NULL) and returns 0; otherwise returns SCREE_EINVAL or SCREE_EOVERFLOW
 * and writes a message naming the bad field into msg (may be NULL). */
SCREE_API int scree_array_check_desc(const scree_array *a,
                                     uint64_t *values_bytes,
                                     uint64_t *offsets_bytes, char *msg,
                                     size_t msg_len);

/* Validates host-resident offsets: offsets[0] == 0, non-decreasing,
 * offsets[batch_size] == total_rows. On success stores the longest row in
 * *max_length (may be NULL) and returns 0. Otherwise returns SCREE_EINVAL and
 * writes a message naming the first bad index, such as
 * "offsets[5]=40 > offsets[6]=38", into msg (may be NULL). */
SCREE_API int scree_offsets_validate(const void *offsets,
                                     scree_dtype offsets_dtype,
                                     int64_t batch_size, int64_t total_rows,
                                     int64_t *max_length, char *msg,
                                     size_t msg_len);

/* Reads offsets[i] as int64 (offsets on the host). */
SCREE_API int64_t scree_offsets_at(const void *offsets, scree_dtype offsets_dtype,
                                   int64_t i);

/* Copies the host array a into a dense padded buffer of shape
 * (batch_size, padded_len, *inner): each row's elements on the given side,
 * every other element set to *pad_value (one element of a->dtype; NULL means
 * all-zero bytes). padded_len must be >= a->max_length. Returns 0, or
 * SCREE_EINVAL with a message. */
SCREE_API int scree_pad(const scree_array *a, void *padded, int64_t padded_len,
                        const void *pad_value, scree_padding_side side,
                        char *msg, size_t msg_len);

/* Derives row lengths from a 0/1 mask of shape (batch, padded_len) whose
 * elements have dtype mask_dtype (bool, any integer type). Each row's ones
 * must be contiguous and touch one end. Stores the lengths and the padding
 * side found (rows that are full or empty fit either side; a batch of only
 * such rows reports SCREE_PAD_RIGHT). A value other than 0/1, ones that are
 * not contiguous, or rows padded on different sides give SCREE_EINVAL and a
 * message naming the row and column. */
SCREE_API int scree_mask_lengths(const void *mask, scree_dtype mask_dtype,
                                 int64_t batch, int64_t padded_len,
                                 int64_t *lengths, scree_padding_side *side,
                                 char *msg, size_t msg_len);

/* Packs a dense padded buffer of shape (batch, padded_len, row_bytes) into
 * values (sum(lengths) rows of row_bytes) and offsets (batch + 1 entries of
 * offsets_dtype), taking each row's lengths[i] real rows from the given side.
 * Returns 0, or SCREE_EINVAL/SCREE_EOVERFLOW with a message for lengths that
 * are negative or longer than padded_len, or that overflow offsets_dtype. */
SCREE_API int scree_unpad(const void *padded, int64_t batch, int64_t padded_len,
                          size_t row_bytes, const int64_t *lengths,
                          scree_padding_side side, void *values, void *offsets,
                          scree_dtype offsets_dtype, char *msg, size_t msg_len);

SCREE_EXTERN_C_END

#endif /* SCREE_ARRAY_H */
