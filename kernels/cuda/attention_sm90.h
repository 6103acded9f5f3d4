/* Internal interface between the generic CUDA attention entry point
 * (attention_fwd.cu, built for sm_80 and sm_90) and the Hopper kernel
 * (attention_fwd_sm90.cu, built for sm_90a only). Plain C types, so that the
 * two translation units agree without sharing device code. */
#ifndef SCREE_KERNELS_ATTENTION_SM90_H
#define SCREE_KERNELS_ATTENTION_SM90_H

#include <stdint.h>

typedef struct scree__attn_sm90_args {
  const void *q, *k, *v;
  void *out;
  float *lse;
  const int32_t *cu_q, *cu_k;
  int batch, total_q, total_k, max_seqlen_q;
  int hq, hkv, head_dim;
  int bf16; /* 1: bfloat16, 0: float16 */
  float scale, scale_log2;
  int left, right; /* -1: unbounded, already clamped by the caller */
  void *stream;
} scree__attn_sm90_args;

#ifdef __cplusplus
extern "C" {
#endif

/* Whether the Hopper kernel can run this head_dim (64, 128 or 256). The caller
 * checks the rest: a 16-bit type, a device of compute capability 9.0, and
 * its own choice of kernel (attention_fwd.cu). */
int scree__attn_sm90_supports(int head_dim);

/* Launches the wgmma/TMA kernel on args->stream. Returns a cudaError_t
 * value: 0 when launched, cudaErrorNotSupported when the tensor-map encoder
 * of the driver cannot be had (the caller then falls back to the mma.sync
 * kernel), another code for a launch that failed. */
int scree__attn_sm90_launch(const scree__attn_sm90_args *args);

#ifdef __cplusplus
}
#endif

#endif /* SCREE_KERNELS_ATTENTION_SM90_H */
