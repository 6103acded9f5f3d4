/* Argument checks shared by every device, and the device dispatch. */
#include <math.h>
#include <stdlib.h>

#include "attention_internal.h"

int scree__kernels_env_int(const char *name, int dflt) {
  const char *env = getenv(name);
  return env != NULL ? atoi(env) : dflt;
}

#define FAIL(code, ...) scree__fail((code), a->msg, a->msg_len, __VA_ARGS__)

static int dtype_ok(scree_dtype t) {
  return t == SCREE_BFLOAT16 || t == SCREE_FLOAT16 || t == SCREE_FLOAT32;
}

int scree__attention_check(const scree_attention_args *a, scree__attn_plan *plan) {
  if (a->device != SCREE_DEVICE_CPU && a->device != SCREE_DEVICE_CUDA)
    return FAIL(SCREE_EINVAL, "device=%d is neither CPU nor CUDA", (int)a->device);
  if (!dtype_ok(a->q_dtype))
    return FAIL(SCREE_EINVAL, "q_dtype=%s is not bfloat16, float16 or float32",
                scree_dtype_name(a->q_dtype));
  if (a->k_dtype != a->q_dtype)
    return FAIL(SCREE_EINVAL, "k_dtype=%s does not match q_dtype=%s",
                scree_dtype_name(a->k_dtype), scree_dtype_name(a->q_dtype));
  if (a->v_dtype != a->q_dtype)
    return FAIL(SCREE_EINVAL, "v_dtype=%s does not match q_dtype=%s",
                scree_dtype_name(a->v_dtype), scree_dtype_name(a->q_dtype));
  if (a->out_dtype != a->q_dtype)
    return FAIL(SCREE_EINVAL, "out_dtype=%s does not match q_dtype=%s",
                scree_dtype_name(a->out_dtype), scree_dtype_name(a->q_dtype));
  if (a->batch < 0)
    return FAIL(SCREE_EINVAL, "batch=%d is negative", a->batch);
  if (a->total_q < 0)
    return FAIL(SCREE_EINVAL, "total_q=%d is negative", a->total_q);
  if (a->total_k < 0)
    return FAIL(SCREE_EINVAL, "total_k=%d is negative", a->total_k);
  if (a->max_seqlen_q < 0)
    return FAIL(SCREE_EINVAL, "max_seqlen_q=%d is negative", a->max_seqlen_q);
  if (a->max_seqlen_k < 0)
    return FAIL(SCREE_EINVAL, "max_seqlen_k=%d is negative", a->max_seqlen_k);
  if (a->num_heads_q <= 0)
    return FAIL(SCREE_EINVAL, "num_heads_q=%d must be positive", a->num_heads_q);
  if (a->num_heads_kv <= 0)
    return FAIL(SCREE_EINVAL, "num_heads_kv=%d must be positive", a->num_heads_kv);
  if (a->num_heads_q % a->num_heads_kv != 0)
    return FAIL(SCREE_EINVAL, "num_heads_q=%d is not a multiple of num_heads_kv=%d",
                a->num_heads_q, a->num_heads_kv);
  if (a->head_dim <= 0)
    return FAIL(SCREE_EINVAL, "head_dim=%d must be positive", a->head_dim);
  if (a->window_left < -1)
    return FAIL(SCREE_EINVAL, "window_left=%d must be -1 or >= 0", a->window_left);
  if (a->window_right < -1)
    return FAIL(SCREE_EINVAL, "window_right=%d must be -1 or >= 0", a->window_right);
  if (a->causal && a->window_right > 0)
    return FAIL(SCREE_EINVAL, "window_right=%d with causal (must be -1 or 0)", a->window_right);
  if (isinf(a->softmax_scale))
    return FAIL(SCREE_EINVAL, "softmax_scale is infinite");
  if (a->num_threads < 0)
    return FAIL(SCREE_EINVAL, "num_threads=%d is negative", a->num_threads);

  /* Element counts stay far below 2^62 since every factor is below 2^31 and
   * the byte sizes are checked against that bound explicitly. */
  const double limit = 4.0e18;
  if ((double)a->total_q * a->num_heads_q * a->head_dim * 4.0 > limit)
    return FAIL(SCREE_EOVERFLOW, "total_q*num_heads_q*head_dim=%d*%d*%d overflows",
                a->total_q, a->num_heads_q, a->head_dim);
  if ((double)a->total_k * a->num_heads_kv * a->head_dim * 4.0 > limit)
    return FAIL(SCREE_EOVERFLOW, "total_k*num_heads_kv*head_dim=%d*%d*%d overflows",
                a->total_k, a->num_heads_kv, a->head_dim);

  if (a->cu_seqlens_q == NULL)
    return FAIL(SCREE_EINVAL, "cu_seqlens_q is NULL");
  if (a->cu_seqlens_k == NULL)
    return FAIL(SCREE_EINVAL, "cu_seqlens_k is NULL");
  /* Empty tensors may come without storage. */
  if (a->q == NULL && a->total_q > 0)
    return FAIL(SCREE_EINVAL, "q is NULL");
  if (a->k == NULL && a->total_k > 0)
    return FAIL(SCREE_EINVAL, "k is NULL");
  if (a->v == NULL && a->total_k > 0)
    return FAIL(SCREE_EINVAL, "v is NULL");
  if (a->out == NULL && a->total_q > 0)
    return FAIL(SCREE_EINVAL, "out is NULL");

  float scale = a->softmax_scale;
  if (!(scale > 0.0f))
    scale = (float)(1.0 / sqrt((double)a->head_dim));
  plan->scale = scale;
  plan->left = a->window_left;
  plan->right = a->causal ? 0 : a->window_right;
  return 0;
}

int scree__attention_check_cu(const int32_t *cu, int32_t batch, int32_t total,
                              int32_t max_len, const char *name, char *msg,
                              size_t msg_len) {
  if (cu[0] != 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "%s[0]=%d, expected 0", name, cu[0]);
  for (int32_t b = 0; b < batch; b++) {
    if (cu[b + 1] < cu[b])
      return scree__fail(SCREE_EINVAL, msg, msg_len, "%s[%d]=%d < %s[%d]=%d", name,
                         b + 1, cu[b + 1], name, b, cu[b]);
    if (cu[b + 1] > total)
      return scree__fail(SCREE_EINVAL, msg, msg_len, "%s[%d]=%d > total=%d", name,
                         b + 1, cu[b + 1], total);
    if (cu[b + 1] - cu[b] > max_len)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "%s: sequence %d has length %d > max_seqlen=%d", name, b,
                         cu[b + 1] - cu[b], max_len);
  }
  if (cu[batch] != total)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "%s[%d]=%d != total=%d", name,
                       batch, cu[batch], total);
  return 0;
}

int scree_attention_fwd(const scree_attention_args *a) {
  if (a == NULL)
    return SCREE_EINVAL;
  if (a->device == SCREE_DEVICE_CPU)
    return scree__attention_fwd_cpu(a);
  if (a->device == SCREE_DEVICE_CUDA) {
#ifdef SCREE_HAVE_CUDA
    return scree__attention_fwd_cuda(a);
#else
    return FAIL(SCREE_ENOTSUP, "device=CUDA: this build of screekernels has no CUDA");
#endif
  }
  return FAIL(SCREE_EINVAL, "device=%d is neither CPU nor CUDA", (int)a->device);
}

int scree_attention_have_cuda(void) {
#ifdef SCREE_HAVE_CUDA
  return 1;
#else
  return 0;
#endif
}
