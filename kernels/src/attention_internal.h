/* Shared between the attention dispatcher, the CPU path and the CUDA entry;
 * not installed. */
#ifndef SCREE_ATTENTION_INTERNAL_H
#define SCREE_ATTENTION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "scree/attention.h"
/* scree__fail(code, msg, msg_len, fmt, ...): every error path of the
 * kernels formats its message with it. */
#include "sys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The integer value of the environment variable name, or dflt when it is
 * unset. For the kernels' measuring switches (SCREE_ATTN_*,
 * SCREE_PACK_VARIANT), which each caller reads once per process, into a
 * function-local static. */
int scree__kernels_env_int(const char *name, int dflt);

/* The masks after defaults are applied: window_left and window_right are -1
 * for "unbounded", and window_right is 0 when causal. */
typedef struct scree__attn_plan {
  float scale;
  int32_t left;
  int32_t right;
} scree__attn_plan;

/* Checks everything that can be checked without looking at the tensors'
 * contents or locations: device, dtypes, sizes, heads, window, NULL
 * pointers, overflow of byte sizes. Fills *plan. Returns 0 or SCREE_EINVAL
 * with a message in a->msg naming the bad argument. */
int scree__attention_check(const scree_attention_args *a, scree__attn_plan *plan);

/* Validates host-resident int32 cu_seqlens (name is "cu_seqlens_q" or
 * "cu_seqlens_k"): cu[0] == 0, non-decreasing, cu[batch] == total, every
 * length <= max_len. Returns 0 or SCREE_EINVAL naming the first bad index. */
int scree__attention_check_cu(const int32_t *cu, int32_t batch, int32_t total,
                              int32_t max_len, const char *name, char *msg,
                              size_t msg_len);

/* The CPU path; checks the arguments itself. */
int scree__attention_fwd_cpu(const scree_attention_args *a);

/* The CUDA path (cuda/attention_fwd.cu); checks the arguments
 * itself. Only present in builds with CUDA. */
int scree__attention_fwd_cuda(const scree_attention_args *a);

#ifdef __cplusplus
}
#endif

#endif
