/* Device helpers shared by the mma.sync attention kernels (attention_fwd.cu,
 * built for sm_80 and sm_90) and the Hopper kernel (attention_fwd_sm90.cu,
 * sm_90a only). Header-only and internal: each translation unit gets its own
 * inlined copy for its own architectures. */
#ifndef SCREE_KERNELS_ATTENTION_COMMON_CUH
#define SCREE_KERNELS_ATTENTION_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdint.h>
#include <string.h>

namespace scree_attn {

/* 2^x with the MUFU unit's approximation, flushing denormals: the softmax's
 * exponential, with log2(e) folded into the scale by the caller. */
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/* x clamped into [lo, hi]: the kernels clamp every offset they read so that
 * bad cu_seqlens give wrong results, never out-of-bounds accesses. */
__device__ __forceinline__ int clampi(int x, int lo, int hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

/* Two floats rounded to T (bf16 or fp16) and packed into one register, low
 * half first: the A-fragment layout of both mma.sync and wgmma. */
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);

template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &h, 4);
  return u;
}

template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &h, 4);
  return u;
}

} // namespace scree_attn

#endif /* SCREE_KERNELS_ATTENTION_COMMON_CUH */
