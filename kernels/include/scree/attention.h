/* Variable-length attention forward (FlashAttention's packed cu_seqlens
 * layout) on the CPU and, where built with CUDA, on NVIDIA GPUs.
 *
 * Layout. q is (total_q, num_heads_q, head_dim), k and v are
 * (total_k, num_heads_kv, head_dim), out is (total_q, num_heads_q, head_dim),
 * all contiguous with head_dim fastest. Sequence b owns query rows
 * cu_seqlens_q[b] .. cu_seqlens_q[b+1] and key rows cu_seqlens_k[b] ..
 * cu_seqlens_k[b+1]. lse, when asked for, is (num_heads_q, total_q) float32
 * natural-log sums: lse = log(sum_j exp(scale * q.k_j)).
 *
 * Masking. With Lq queries and Lk keys in a sequence, query i sees key j when
 *   j <= i + Lk - Lq + right   (right = 0 when causal, none when -1)
 *   j >= i + Lk - Lq - left    (none when left is -1)
 * so the causal diagonal is aligned to the bottom right as in FlashAttention.
 * A query that sees no key writes zeros and lse = -inf. Zero-length sequences
 * are valid and produce nothing.
 *
 * No CUDA type appears here: the stream is a cudaStream_t passed as void *.
 * The C header is usable from C and C++. */
#ifndef SCREE_ATTENTION_H
#define SCREE_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "scree/array.h"
#include "scree/dtype.h"
#include "scree/error.h"
#include "scree/export.h"

SCREE_EXTERN_C_BEGIN

typedef struct scree_attention_args {
  scree_device_type device; /* SCREE_DEVICE_CPU or SCREE_DEVICE_CUDA */

  /* Element types. q, k, v and out must share one: SCREE_BFLOAT16 or
   * SCREE_FLOAT16 everywhere, SCREE_FLOAT32 on the CPU too. */
  scree_dtype q_dtype, k_dtype, v_dtype, out_dtype;
  const void *q;
  const void *k;
  const void *v;
  void *out;
  float *lse; /* optional (NULL skips it): (num_heads_q, total_q) */

  /* batch + 1 entries each, on the same device as the tensors. On the CPU they
   * are validated in full (cu[0] == 0, non-decreasing, cu[batch] == total,
   * every length <= max_seqlen). On CUDA they are not read by the host: the
   * caller promises the same, and the kernels clamp every index into
   * [0, total] so that bad offsets give wrong results, never out-of-bounds
   * accesses. max_seqlen_q and max_seqlen_k are trusted there for
   * scheduling: a query row beyond max_seqlen_q of its sequence is left
   * unwritten. */
  const int32_t *cu_seqlens_q;
  const int32_t *cu_seqlens_k;
  int32_t batch;
  int32_t total_q, total_k;
  int32_t max_seqlen_q, max_seqlen_k;

  int32_t num_heads_q, num_heads_kv; /* num_heads_q % num_heads_kv == 0 */
  int32_t head_dim; /* CPU: any >= 1; CUDA: 64 or 128, and 256 on compute capability 9.0 */

  /* Scale applied to q.k before the softmax. A value <= 0 or NaN selects
   * the default 1/sqrt(head_dim). */
  float softmax_scale;
  int causal; /* non-zero: bottom-right aligned causal mask */
  int32_t window_left;  /* -1: unbounded on the left */
  int32_t window_right; /* -1: unbounded on the right; must be -1 or 0 when causal */

  int num_threads; /* CPU only: worker threads, 0 = online processors */
  void *stream;    /* CUDA only: a cudaStream_t; NULL is the legacy stream */

  char *msg;      /* optional: receives a message naming the bad argument */
  size_t msg_len; /* size of msg in bytes */
} scree_attention_args;

/* Computes out = softmax(scale * q k^T + mask) v for every sequence and
 * query head, with query head h reading key/value head
 * h / (num_heads_q / num_heads_kv) (GQA and MQA).
 *
 * Returns 0 on success. On failure nothing has been written to out or lse and
 * the return is SCREE_EINVAL for a bad argument (the message names it),
 * SCREE_ENOTSUP for a dtype or head_dim this device does not run or for CUDA
 * in a build without it, SCREE_ENOMEM when the CPU workers cannot be started,
 * SCREE_ECUDA when a CUDA call fails (the message holds CUDA's own). The CUDA
 * path is asynchronous on args->stream: success means the kernels were
 * launched. The caller keeps ownership of every buffer. */
SCREE_API int scree_attention_fwd(const scree_attention_args *args);

/* Whether this build can run attention on CUDA devices (1) or not (0). */
SCREE_API int scree_attention_have_cuda(void);

SCREE_EXTERN_C_END

#endif /* SCREE_ATTENTION_H */
