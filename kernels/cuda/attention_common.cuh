/* Device helpers shared by the mma.sync attention kernels (attention_fwd.cu
 * and the decode kernel attention_decode.cu, built for sm_80 and sm_90), the
 * Hopper kernel (attention_fwd_sm90.cu, sm_90a only) and the ragged packing
 * kernels (ragged.cu, its warp scan). Header-only and internal: each
 * translation unit gets its own inlined copy for its own architectures, so
 * a helper here costs no call and no instruction over writing it in place. */
#ifndef SCREE_KERNELS_ATTENTION_COMMON_CUH
#define SCREE_KERNELS_ATTENTION_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <math.h>
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

/* ---- PTX wrappers shared by the mma.sync kernels (sm_80 instructions,
 * which Hopper runs too): cp.async copies, ldmatrix, and the m16n8k16
 * tensor-core product with fp32 accumulators. */

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
               "l"(src), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

/* Waits until at most N committed groups are still in flight. */
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* Waits until at most one committed group is still in flight. */
__device__ __forceinline__ void cp_async_wait_one() {
  asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

/* D += A B on the m16n8k16 tensor-core product, fp32 accumulators; TYPE
 * names the 16-bit input type in the instruction. */
#define SCREE_MMA_M16N8K16(TYPE, c, a, b0, b1)                                                \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE ".f32 "                  \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                      \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))

template <typename T> struct mma_op;

template <> struct mma_op<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0,
                                             uint32_t b1) {
    SCREE_MMA_M16N8K16("bf16", c, a, b0, b1);
  }
};

template <> struct mma_op<__half> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0,
                                             uint32_t b1) {
    SCREE_MMA_M16N8K16("f16", c, a, b0, b1);
  }
};

#undef SCREE_MMA_M16N8K16

/* The two n8 products that one ldmatrix.x4 B fragment b feeds, for each of
 * MT m16 tiles: c[mt][n] += a[mt] b[0..1] and c[mt][n + 1] += a[mt] b[2..3]. */
template <typename T, int MT, int N>
__device__ __forceinline__ void mma_pair(float (&c)[MT][N][4], int n, const uint32_t (&a)[MT][4],
                                         const uint32_t (&b)[4]) {
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
    mma_op<T>::run(c[mt][n], a[mt], b[0], b[1]);
    mma_op<T>::run(c[mt][n + 1], a[mt], b[2], b[3]);
  }
}

/* ---- pieces of the online softmax that every kernel shares. The m16n8
 * accumulator layout puts each row in the 4 lanes of a quad, two adjacent
 * columns of every 8 a lane. */

/* The max and the sum of x over the quad that holds one row. */
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/* The row max in base-2 units, to subtract from the row's scores. A row
 * that has seen no key yet keeps max -inf: subtract 0 then so that
 * exp2(-inf - -inf) never makes a NaN. */
__device__ __forceinline__ float scaled_max(float mx, float scale_log2) {
  return mx == -INFINITY ? 0.0f : mx * scale_log2;
}

/* Zeroes the O accumulators of MT m16 tiles (DT n8 tiles each) and starts
 * every row's max at -inf and its sum at 0. */
template <int MT, int DT>
__device__ __forceinline__ void init_rows(float (&acc)[MT][DT][4], float (&row_max)[MT][2],
                                          float (&row_sum)[MT][2]) {
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int dt = 0; dt < DT; dt++)
#pragma unroll
      for (int r = 0; r < 4; r++)
        acc[mt][dt][r] = 0.0f;
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.0f;
  }
}

/* Multiplies half-row hr (0: row lane / 4, 1: that row + 8) of an m16 tile's
 * O accumulators by corr. */
template <int DT>
__device__ __forceinline__ void scale_rows(float (&acc)[DT][4], int hr, float corr) {
#pragma unroll
  for (int dt = 0; dt < DT; dt++) {
    acc[dt][2 * hr] *= corr;
    acc[dt][2 * hr + 1] *= corr;
  }
}

/* Narrows the inclusive key range [lo, hi] to what the window (-1:
 * unbounded side) lets a query see: row_hi bounds it from the right, row_lo
 * from the left (the same row for one query, the first and last of a tile
 * for the keys every row of it sees). off = Lk - Lq aligns the masks
 * bottom-right. */
__device__ __forceinline__ void clip_to_window(long long &lo, long long &hi, long long row_lo,
                                               long long row_hi, long long off, int left,
                                               int right) {
  if (right >= 0)
    hi = min(hi, row_hi + off + right);
  if (left >= 0)
    lo = max(lo, row_lo + off - left);
}

/* A sequence's rows [qs, qs + Lq) and keys [ks, ks + Lk). Offsets are
 * clamped into [0, total] so that bad cu_seqlens give wrong results, never
 * out-of-bounds accesses. */
struct seq_span {
  int qs, Lq, ks, Lk;
};

__device__ __forceinline__ seq_span seq_bounds(const int32_t *cu_q, const int32_t *cu_k, int b,
                                               int total_q, int total_k) {
  seq_span r;
  r.qs = clampi(cu_q[b], 0, total_q);
  const int qe = clampi(cu_q[b + 1], r.qs, total_q);
  r.ks = clampi(cu_k[b], 0, total_k);
  const int ke = clampi(cu_k[b + 1], r.ks, total_k);
  r.Lq = qe - r.qs;
  r.Lk = ke - r.ks;
  return r;
}

/* Inclusive prefix sum over the 32 lanes of a warp. */
__device__ __forceinline__ long long warp_inclusive_scan(long long x, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const long long y = __shfl_up_sync(0xffffffffu, x, d);
    if (lane >= d)
      x += y;
  }
  return x;
}

} // namespace scree_attn

#endif /* SCREE_KERNELS_ATTENTION_COMMON_CUH */
