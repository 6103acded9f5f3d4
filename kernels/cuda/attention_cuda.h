/* Internal interface between the CUDA attention entry point
 * (attention_fwd.cu, built for sm_80 and sm_90) and the kernels it hands
 * calls to: the decode kernels (attention_decode.cu: few queries per
 * sequence against many keys) and the Hopper kernel (attention_fwd_sm90.cu,
 * built for sm_90a only). Plain C types, so that the translation units agree
 * without sharing device code. */
#ifndef SCREE_KERNELS_ATTENTION_CUDA_H
#define SCREE_KERNELS_ATTENTION_CUDA_H

#include <stdint.h>

/* One call, checked by the entry point. */
typedef struct scree__attn_cuda_args {
  const void *q, *k, *v;
  void *out;
  float *lse;
  const int32_t *cu_q, *cu_k;
  int batch, total_q, total_k, max_seqlen_q, max_seqlen_k;
  int hq, hkv, head_dim; /* head_dim 64, 128 or 256 */
  int bf16;              /* 1: bfloat16, 0: float16 */
  float scale, scale_log2;
  int left, right; /* -1: unbounded, already clamped by the caller */
  int device;      /* the current device */
  void *stream;
} scree__attn_cuda_args;

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
int scree__attn_decode_launch(const scree__attn_cuda_args *args);

/* Whether the Hopper kernel can run this head_dim (64, 128 or 256). The caller
 * checks the rest: a 16-bit type, a device of compute capability 9.0, and
 * its own choice of kernel (attention_fwd.cu). */
int scree__attn_sm90_supports(int head_dim);

/* Launches the wgmma/TMA kernel on args->stream. Returns a cudaError_t
 * value: 0 when launched, cudaErrorNotSupported when the tensor-map encoder
 * of the driver cannot be had (the caller then falls back to the mma.sync
 * kernel), another code for a launch that failed. */
int scree__attn_sm90_launch(const scree__attn_cuda_args *args);

#ifdef __cplusplus
}

namespace scree_attn {

/* Fills the fields that every kernel's parameter block has, by name (each
 * kernel keeps its own block, laid out for its own loads). */
template <typename P> inline void set_common_params(P &p, const scree__attn_cuda_args *a) {
  p.o = a->out;
  p.lse = a->lse;
  p.cu_q = a->cu_q;
  p.cu_k = a->cu_k;
  p.batch = a->batch;
  p.total_q = a->total_q;
  p.total_k = a->total_k;
  p.hq = a->hq;
  p.hkv = a->hkv;
  p.group = a->hq / a->hkv;
  p.scale = a->scale;
  p.scale_log2 = a->scale_log2;
  p.left = a->left;
  p.right = a->right;
}

} // namespace scree_attn
#endif

#endif /* SCREE_KERNELS_ATTENTION_CUDA_H */
