/* Internal interface between the CUDA attention entry point
 * (attention_fwd.cu) and the decode kernels (attention_decode.cu): calls
 * with few queries per sequence against many keys. Plain C types. */
#ifndef SCREE_KERNELS_ATTENTION_DECODE_H
#define SCREE_KERNELS_ATTENTION_DECODE_H

#include <stdint.h>

typedef struct scree__attn_decode_args {
  const void *q, *k, *v;
  void *out;
  float *lse;
  const int32_t *cu_q, *cu_k;
  int batch, total_q, total_k, max_seqlen_q, max_seqlen_k;
  int hq, hkv, head_dim; /* head_dim 64, 128 or 256 */
  int bf16;              /* 1: bfloat16, 0: float16 */
  float scale, scale_log2;
  int left, right; /* -1: unbounded, already clamped by the caller */
  int device;      /* the current device, for its multiprocessor count */
  void *stream;
} scree__attn_decode_args;

#ifdef __cplusplus
extern "C" {
#endif

/* Whether a call of this shape goes to the decode kernels. mode is
 * SCREE_ATTN_DECODE: 0 never, 1 (the default) when the query rows of one
 * key/value head in one sequence (max_seqlen_q * group) fit in 64 rows,
 * 2 always (for tests: every shape then runs the decode kernels). */
int scree__attn_decode_wanted(int mode, int max_seqlen_q, int group, int head_dim);

/* Launches the decode kernels on args->stream. Returns a cudaError_t value:
 * 0 when launched. A workspace for split keys comes from a memory pool of
 * the library's own, in stream order; when it cannot be had the call runs
 * with one split per sequence instead, which is slower but as correct. */
int scree__attn_decode_launch(const scree__attn_decode_args *args);

#ifdef __cplusplus
}
#endif

#endif /* SCREE_KERNELS_ATTENTION_DECODE_H */
