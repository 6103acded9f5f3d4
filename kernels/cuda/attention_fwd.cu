/* Variable-length attention forward on NVIDIA GPUs (sm_80 and later).
 *
 * FlashAttention-2 style: one thread block computes one (sequence, query
 * block, query head) tile. Its warps each own 16 * MT query rows; Q is read
 * from shared memory by ldmatrix (into registers once when MT == 1), K and V
 * tiles stream through shared memory with cp.async, S = Q K^T and O += P V
 * run on mma.sync m16n8k16 tensor-core instructions with fp32 accumulators,
 * and the softmax is the online one in base 2 with scale * log2(e) folded
 * into a single FFMA per score.
 *
 * Shared-memory rows are padded by 16 bytes so that the 8 row addresses of
 * one ldmatrix phase fall into 8 distinct bank groups.
 *
 * Scheduling: blocks are numbered query-block-major from the last query
 * block down, so the heaviest tiles (the long sequences' and, when causal,
 * the ones far down the diagonal) start first and short tiles fill the tail.
 * Blocks whose query block lies past their sequence's end exit at once. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"
#include "attention_common.cuh"
#include "attention_cuda.h"

namespace {

/* The shared device helpers (attention_common.cuh) and set_common_params
 * (attention_cuda.h). */
using namespace scree_attn;

struct fwd_params {
  const void *q, *k, *v;
  void *o;
  float *lse;
  const int32_t *cu_q, *cu_k;
  int batch, total_q, total_k;
  int hq, hkv, group;
  int num_m_blocks;
  float scale;      /* natural-log units, for lse */
  float scale_log2; /* scale * log2(e) */
  int left, right;  /* -1: unbounded */
};

/* Copies rows [0, valid) of a (ROWS, D) tile whose rows are `stride`
 * elements apart in global memory into shared memory rows of D + 8
 * elements; rows past `valid` are zero-filled, so that the tensor cores
 * never multiply uninitialised (possibly NaN) values by a zero weight. */
template <typename T, int ROWS, int D, int THREADS>
__device__ __forceinline__ void load_tile(T *s, const T *g, long long stride, int valid,
                                          int tid) {
  constexpr int CPR = D / 8;          /* 16-byte chunks per row */
  constexpr int RSTEP = THREADS / CPR; /* rows covered by one pass */
  static_assert(THREADS % CPR == 0 && ROWS % RSTEP == 0, "tile chunks must divide among the threads");
  /* Each thread keeps one column chunk and walks down the rows, so that
   * only one global pointer per tile stays live in registers. */
  const int r0 = tid / CPR, cc = tid % CPR;
  const T *src = g + r0 * stride + cc * 8;
  const long long step = RSTEP * stride;
#pragma unroll
  for (int i = 0; i < ROWS / RSTEP; i++) {
    const int r = r0 + i * RSTEP;
    const bool ok = r < valid;
    /* g itself is a valid address (row 0 of the tile exists) for the
     * zero-byte copies. */
    cp_async16(s + r * (D + 8) + cc * 8, ok ? src : g, ok ? 16 : 0);
    src += step;
  }
}

/* STAGES == 1: FlashAttention-2's order, one K and one V buffer, V[n] loading
 * during Q K^T and K[n-1] during P V. STAGES == 2: two buffers of each, the
 * K and V of block n-2 loading during the whole of block n. */
template <typename T, int D, int BM, int BN, int WARPS, int STAGES>
__global__ void __launch_bounds__(WARPS * 32, 1) attention_fwd_kernel(const fwd_params p) {
  constexpr int THREADS = WARPS * 32;
  constexpr int MT = BM / (16 * WARPS); /* 16-row m tiles per warp */
  constexpr int LD = D + 8;             /* padded shared row, elements */
  constexpr int KD = D / 16;            /* k16 steps over the head dim */
  constexpr int NT = BN / 8;            /* n8 tiles of S per m tile */
  constexpr int DT = D / 8;             /* n8 tiles of O per m tile */
  constexpr bool Q_IN_REGS = MT == 1;
  static_assert(BM % (16 * WARPS) == 0 && MT >= 1, "BM must be a multiple of 16 * WARPS");
  static_assert(BN % 16 == 0 && D % 16 == 0, "tile sizes");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T *sQ = reinterpret_cast<T *>(smem_raw);
  T *sK = sQ + BM * LD;
  T *sV = sK + STAGES * BN * LD;
  static_assert(STAGES == 1 || STAGES == 2, "one or two K/V stages");

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  /* Query-block-major numbering, last query block first. */
  const int bh = p.batch * p.hq;
  const int m_block = p.num_m_blocks - 1 - (int)(blockIdx.x / bh);
  const int rem = (int)(blockIdx.x % bh);
  const int b = rem / p.hq, h = rem % p.hq, hk = h / p.group;

  const seq_span sq = seq_bounds(p.cu_q, p.cu_k, b, p.total_q, p.total_k);
  const int qs = sq.qs, ks = sq.ks, Lq = sq.Lq, Lk = sq.Lk;
  const int m0 = m_block * BM;
  if (m0 >= Lq)
    return;
  const int rows = min(BM, Lq - m0);
  const long long off = (long long)Lk - Lq;

  /* Key range visible to some row of this block: [n_start, n_end). */
  long long n_start = 0, n_end = Lk;
  if (p.right >= 0)
    n_end = min(n_end, (long long)(m0 + rows - 1) + off + p.right + 1);
  if (p.left >= 0)
    n_start = max(n_start, (long long)m0 + off - p.left);
  const int nb_lo = (int)(n_start / BN);
  const int nb_hi = n_end > n_start ? (int)((n_end + BN - 1) / BN) : nb_lo;

  const T *Qg = static_cast<const T *>(p.q) + ((long long)(qs + m0) * p.hq + h) * D;
  const T *Kg = static_cast<const T *>(p.k) + ((long long)ks * p.hkv + hk) * D;
  const T *Vg = static_cast<const T *>(p.v) + ((long long)ks * p.hkv + hk) * D;
  const long long q_stride = (long long)p.hq * D, kv_stride = (long long)p.hkv * D;

  load_tile<T, BM, D, THREADS>(sQ, Qg, q_stride, rows, tid);
  cp_async_commit();
  if (nb_hi > nb_lo) {
    const int n0 = (nb_hi - 1) * BN;
    load_tile<T, BN, D, THREADS>(sK, Kg + n0 * kv_stride, kv_stride, Lk - n0, tid);
    if constexpr (STAGES == 2)
      load_tile<T, BN, D, THREADS>(sV, Vg + n0 * kv_stride, kv_stride, Lk - n0, tid);
  }
  cp_async_commit();
  if constexpr (STAGES == 2) {
    if (nb_hi - 2 >= nb_lo) {
      const int n0 = (nb_hi - 2) * BN;
      load_tile<T, BN, D, THREADS>(sK + BN * LD, Kg + n0 * kv_stride, kv_stride, Lk - n0, tid);
      load_tile<T, BN, D, THREADS>(sV + BN * LD, Vg + n0 * kv_stride, kv_stride, Lk - n0, tid);
    }
    cp_async_commit();
  }

  float acc[MT][DT][4];
  float row_max[MT][2], row_sum[MT][2];
  init_rows(acc, row_max, row_sum);

  const int warp_row0 = warp * 16 * MT;
  /* ldmatrix addresses: A operand rows lane % 16, columns (lane / 16) * 8;
   * B operand (K, not transposed) keys (lane / 16) * 8 + lane % 8,
   * columns ((lane / 8) % 2) * 8; B operand (V, transposed) keys
   * ((lane / 8) % 2) * 8 + lane % 8, columns (lane / 16) * 8. */
  const int a_row = lane % 16, a_col = (lane / 16) * 8;
  const int kb_row = (lane / 16) * 8 + lane % 8, kb_col = ((lane / 8) % 2) * 8;
  const int vb_row = ((lane / 8) % 2) * 8 + lane % 8, vb_col = (lane / 16) * 8;

  uint32_t qf[Q_IN_REGS ? KD : 1][4];

  for (int nb = nb_hi - 1; nb >= nb_lo; nb--) {
    const int n0 = nb * BN;
    /* Buffers of this block: the parity of the iteration with two stages. */
    const int buf = STAGES == 2 ? (nb_hi - 1 - nb) & 1 : 0;
    T *cK = sK + buf * BN * LD;
    T *cV = sV + buf * BN * LD;
    if constexpr (STAGES == 1) {
      cp_async_wait_all();
      __syncthreads();
      load_tile<T, BN, D, THREADS>(sV, Vg + n0 * kv_stride, kv_stride, Lk - n0, tid);
      cp_async_commit();
    } else {
      cp_async_wait_one();
      __syncthreads();
    }

    if (Q_IN_REGS && nb == nb_hi - 1) {
#pragma unroll
      for (int kk = 0; kk < (Q_IN_REGS ? KD : 0); kk++)
        ldsm_x4(qf[kk], sQ + (warp_row0 + a_row) * LD + kk * 16 + a_col);
    }

    float s[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int r = 0; r < 4; r++)
          s[mt][nt][r] = 0.0f;

#pragma unroll
    for (int kk = 0; kk < KD; kk++) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        if constexpr (Q_IN_REGS) {
#pragma unroll
          for (int r = 0; r < 4; r++)
            a[mt][r] = qf[kk][r];
        } else {
          ldsm_x4(a[mt], sQ + (warp_row0 + mt * 16 + a_row) * LD + kk * 16 + a_col);
        }
      }
#pragma unroll
      for (int np = 0; np < NT / 2; np++) {
        uint32_t bk[4];
        ldsm_x4(bk, cK + (np * 16 + kb_row) * LD + kk * 16 + kb_col);
        mma_pair<T>(s, 2 * np, a, bk);
      }
    }

    /* Only blocks that cross the sequence end or a mask boundary pay for
     * the per-element test. */
    const bool need_mask =
        n0 + BN > Lk ||
        (p.right >= 0 && (long long)n0 + BN - 1 > (long long)m0 + off + p.right) ||
        (p.left >= 0 && (long long)n0 < (long long)(m0 + rows - 1) + off - p.left);
    if (need_mask) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
          /* The row's visible keys [lo, hi], computed wide and clamped so
           * the per-element test is two 32-bit compares. */
          const long long row = m0 + warp_row0 + mt * 16 + lane / 4 + hr * 8;
          long long hi = Lk - 1, lo = 0;
          clip_to_window(lo, hi, row, row, off, p.left, p.right);
          const int hi32 = (int)max(hi, -1LL), lo32 = (int)lo;
#pragma unroll
          for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
              const int col = n0 + nt * 8 + (lane % 4) * 2 + e;
              if (col < lo32 || col > hi32)
                s[mt][nt][2 * hr + e] = -INFINITY;
            }
        }
    }

    /* Online softmax; each row lives in the 4 lanes of a quad. */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int hr = 0; hr < 2; hr++) {
        float mx = row_max[mt][hr];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
          mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hr], s[mt][nt][2 * hr + 1]));
        mx = quad_max(mx);
        const float ms = scaled_max(mx, p.scale_log2);
        const float corr =
            row_max[mt][hr] == -INFINITY ? 0.0f : fast_exp2(row_max[mt][hr] * p.scale_log2 - ms);
        row_max[mt][hr] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
          const float p0 = fast_exp2(fmaf(s[mt][nt][2 * hr], p.scale_log2, -ms));
          const float p1 = fast_exp2(fmaf(s[mt][nt][2 * hr + 1], p.scale_log2, -ms));
          s[mt][nt][2 * hr] = p0;
          s[mt][nt][2 * hr + 1] = p1;
          sum += p0 + p1;
        }
        row_sum[mt][hr] = row_sum[mt][hr] * corr + sum;
        scale_rows(acc[mt], hr, corr);
      }

    if constexpr (STAGES == 1) {
      cp_async_wait_all();
      __syncthreads();
      if (nb > nb_lo) {
        const int n1 = n0 - BN;
        load_tile<T, BN, D, THREADS>(sK, Kg + n1 * kv_stride, kv_stride, Lk - n1, tid);
      }
      cp_async_commit();
    }

    /* O += P V: the S accumulators of two adjacent n8 tiles are exactly the
     * A fragment of one k16 step. */
#pragma unroll
    for (int kc = 0; kc < BN / 16; kc++) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        pa[mt][0] = pack2<T>(s[mt][2 * kc][0], s[mt][2 * kc][1]);
        pa[mt][1] = pack2<T>(s[mt][2 * kc][2], s[mt][2 * kc][3]);
        pa[mt][2] = pack2<T>(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
        pa[mt][3] = pack2<T>(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t bv[4];
        ldsm_x4_trans(bv, cV + (kc * 16 + vb_row) * LD + dp * 16 + vb_col);
        mma_pair<T>(acc, 2 * dp, pa, bv);
      }
    }

    if constexpr (STAGES == 2) {
      /* Every warp is done with this block's buffers: refill them with the
       * block two steps ahead. The commit is unconditional so that each
       * iteration owns exactly one group and wait_group 1 stays exact. */
      __syncthreads();
      if (nb - 2 >= nb_lo) {
        const int n2 = n0 - 2 * BN;
        load_tile<T, BN, D, THREADS>(cK, Kg + n2 * kv_stride, kv_stride, Lk - n2, tid);
        load_tile<T, BN, D, THREADS>(cV, Vg + n2 * kv_stride, kv_stride, Lk - n2, tid);
      }
      cp_async_commit();
    }
  }

  /* Epilogue: normalise, stage the tile in shared memory (sQ is free once
   * every warp is past its last Q K^T), then write 16-byte rows. */
  cp_async_wait_all();
  __syncthreads();
  T *sO = sQ;
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      const float sum = quad_sum(row_sum[mt][hr]);
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      const int lrow = warp_row0 + mt * 16 + lane / 4 + hr * 8;
#pragma unroll
      for (int dt = 0; dt < DT; dt++) {
        const uint32_t v = pack2<T>(acc[mt][dt][2 * hr] * inv, acc[mt][dt][2 * hr + 1] * inv);
        *reinterpret_cast<uint32_t *>(sO + lrow * LD + dt * 8 + (lane % 4) * 2) = v;
      }
      if (p.lse != nullptr && lane % 4 == 0 && lrow < rows) {
        const float l = sum > 0.0f ? row_max[mt][hr] * p.scale + logf(sum) : -INFINITY;
        p.lse[(long long)h * p.total_q + qs + m0 + lrow] = l;
      }
    }
  __syncthreads();
  T *Og = static_cast<T *>(p.o) + ((long long)(qs + m0) * p.hq + h) * D;
  constexpr int CPR = D / 8, RSTEP = THREADS / CPR;
  const int r0 = tid / CPR, cc = tid % CPR;
  T *dst = Og + r0 * q_stride + cc * 8;
#pragma unroll
  for (int i = 0; i < BM / RSTEP; i++) {
    const int r = r0 + i * RSTEP;
    if (r < rows)
      *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(sO + r * LD + cc * 8);
    dst += RSTEP * q_stride;
  }
}

/* ---- launch */

template <typename T, int D, int BM, int BN, int WARPS, int STAGES = 1>
static cudaError_t launch_fwd(const fwd_params &p, cudaStream_t stream) {
  const size_t smem = (size_t)(BM + 2 * STAGES * BN) * (D + 8) * sizeof(T);
  auto kernel = attention_fwd_kernel<T, D, BM, BN, WARPS, STAGES>;
  /* The attribute is per function; setting it again each launch costs less
   * than a lock around a "done" flag shared by threads and devices. */
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem);
  if (err != cudaSuccess)
    return err;
  fwd_params q = p;
  q.num_m_blocks = (int)((p.num_m_blocks + BM - 1) / BM); /* from max_seqlen_q */
  const long long blocks = (long long)q.num_m_blocks * p.batch * p.hq;
  if (blocks == 0)
    return cudaSuccess;
  if (blocks > 0x7fffffffLL)
    return cudaErrorInvalidConfiguration;
  kernel<<<(unsigned)blocks, WARPS * 32, smem, stream>>>(q);
  return cudaGetLastError();
}

/* Tile configurations; variant 0 is the default, the others exist to be
 * measured (SCREE_ATTN_VARIANT, read once per process) and pass the same
 * tests. The default tile is 128 x 64 with 4 warps; its K/V stages are two
 * at head_dim 64 (16% faster than one on the d64 benchmark case) and one at
 * 128 (two spill and were 7-10% slower), and variant 5 is the other count.
 * Variant 4 is 128 keys a block at head_dim 64 and the default at 128. */
template <typename T, int D>
static cudaError_t dispatch_d(const fwd_params &p, int variant, cudaStream_t stream) {
  constexpr int STAGES = D == 64 ? 2 : 1;
  switch (variant) {
  case 1:
    return launch_fwd<T, D, 64, 64, 4>(p, stream);
  case 2:
    return launch_fwd<T, D, 128, 64, 8>(p, stream);
  case 3:
    return launch_fwd<T, D, 128, 32, 4>(p, stream);
  case 4:
    return launch_fwd<T, D, 128, D == 64 ? 128 : 64, 4>(p, stream);
  case 5:
    return launch_fwd<T, D, 128, 64, 4, 3 - STAGES>(p, stream);
  default:
    return launch_fwd<T, D, 128, 64, 4, STAGES>(p, stream);
  }
}

template <typename T>
static cudaError_t dispatch(const fwd_params &p, int d, int variant, cudaStream_t stream) {
  return d == 64 ? dispatch_d<T, 64>(p, variant, stream) : dispatch_d<T, 128>(p, variant, stream);
}

/* Below this max_seqlen_q the Hopper kernel is not chosen by default: on
 * batches of short sequences (max 256, the benchmark's last case) its
 * per-tile cost makes it 8% slower than the mma.sync kernel on the H100. */
#define SM90_MIN_SEQLEN_DEFAULT 257

static int check_device_pointer(const scree_attention_args *a, const void *ptr,
                                const char *name) {
  if (ptr == NULL)
    return 0;
  cudaPointerAttributes attr;
  cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return scree__fail(SCREE_EINVAL, a->msg, a->msg_len, "%s=%p: %s", name, ptr,
                       cudaGetErrorString(err));
  }
  if (attr.type == cudaMemoryTypeUnregistered)
    return scree__fail(SCREE_EINVAL, a->msg, a->msg_len,
                       "%s=%p is not memory the GPU can access", name, ptr);
  return 0;
}

} // namespace

extern "C" int scree__attention_fwd_cuda(const scree_attention_args *a) {
  scree__attn_plan plan;
  int rc = scree__attention_check(a, &plan);
  if (rc != 0)
    return rc;
  if (a->device != SCREE_DEVICE_CUDA)
    return scree__fail(SCREE_EINVAL, a->msg, a->msg_len, "device is not CUDA");
  if (a->q_dtype != SCREE_BFLOAT16 && a->q_dtype != SCREE_FLOAT16)
    return scree__fail(SCREE_ENOTSUP, a->msg, a->msg_len,
                       "q_dtype=%s is not supported on CUDA (bfloat16 or float16)",
                       scree_dtype_name(a->q_dtype));
  if (a->head_dim != 64 && a->head_dim != 128 && a->head_dim != 256)
    return scree__fail(SCREE_ENOTSUP, a->msg, a->msg_len,
                       "head_dim=%d is not supported on CUDA (64 or 128; 256 on compute "
                       "capability 9.0)",
                       a->head_dim);

  int dev = 0, major = 0, minor = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err == cudaSuccess)
    err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (err == cudaSuccess)
    err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return scree__fail(err == cudaErrorNoDevice ? SCREE_ENODEV : SCREE_ECUDA, a->msg,
                       a->msg_len, "no usable CUDA device: %s", cudaGetErrorString(err));
  }
  if (major < 8)
    return scree__fail(SCREE_ENOTSUP, a->msg, a->msg_len,
                       "device %d has compute capability %d.x; sm_80 or newer is needed",
                       dev, major);

  /* SCREE_ATTN_VARIANT: an mma.sync tile variant other than the default
   * (dispatch below). SCREE_ATTN_SM90: 0 never takes the Hopper kernel, 1
   * (the default) takes it for head_dim 128 and 256 on compute capability
   * 9.0, 2 for head_dim 64 too; a SCREE_ATTN_VARIANT other than 0 also
   * leaves it out. SCREE_ATTN_SM90_MIN_SEQLEN: batches whose max_seqlen_q is
   * below it stay on the mma.sync kernel (head_dim 64 and 128). Each is read
   * once per process. */
  static const int variant = scree__kernels_env_int("SCREE_ATTN_VARIANT", 0);
  static const int sm90_mode = scree__kernels_env_int("SCREE_ATTN_SM90", 1);
  static const int sm90_min_seqlen =
      scree__kernels_env_int("SCREE_ATTN_SM90_MIN_SEQLEN", SM90_MIN_SEQLEN_DEFAULT);
  const bool hopper = major == 9 && minor == 0;
  /* head_dim 256 runs on the Hopper kernel alone: the mma.sync kernels
   * would need more registers than a thread has for its accumulators. Said
   * before any early return, so that the answer does not depend on the
   * batch being empty. */
  if (a->head_dim == 256 && !hopper)
    return scree__fail(SCREE_ENOTSUP, a->msg, a->msg_len,
                       "head_dim=256 needs compute capability 9.0 (Hopper); device %d "
                       "has %d.%d",
                       dev, major, minor);
  if (a->head_dim == 256 && (sm90_mode <= 0 || variant != 0))
    return scree__fail(SCREE_ENOTSUP, a->msg, a->msg_len,
                       "head_dim=256 needs the Hopper kernel, which %s turns off",
                       sm90_mode <= 0 ? "SCREE_ATTN_SM90=0" : "SCREE_ATTN_VARIANT");

  if ((rc = check_device_pointer(a, a->q, "q")) != 0 ||
      (rc = check_device_pointer(a, a->k, "k")) != 0 ||
      (rc = check_device_pointer(a, a->v, "v")) != 0 ||
      (rc = check_device_pointer(a, a->out, "out")) != 0 ||
      (rc = check_device_pointer(a, a->lse, "lse")) != 0 ||
      (rc = check_device_pointer(a, a->cu_seqlens_q, "cu_seqlens_q")) != 0 ||
      (rc = check_device_pointer(a, a->cu_seqlens_k, "cu_seqlens_k")) != 0)
    return rc;
  /* 16-byte vector accesses need 16-byte aligned rows. */
  const void *ptrs[4] = {a->q, a->k, a->v, a->out};
  static const char *names[4] = {"q", "k", "v", "out"};
  for (int i = 0; i < 4; i++)
    if (((uintptr_t)ptrs[i] & 15u) != 0)
      return scree__fail(SCREE_EINVAL, a->msg, a->msg_len,
                         "%s=%p is not 16-byte aligned", names[i], ptrs[i]);

  if (a->batch == 0 || a->total_q == 0 || a->max_seqlen_q == 0)
    return 0;

  /* The call as every CUDA kernel takes it. */
  scree__attn_cuda_args c;
  c.q = a->q;
  c.k = a->k;
  c.v = a->v;
  c.out = a->out;
  c.lse = a->lse;
  c.cu_q = a->cu_seqlens_q;
  c.cu_k = a->cu_seqlens_k;
  c.batch = a->batch;
  c.total_q = a->total_q;
  c.total_k = a->total_k;
  c.max_seqlen_q = a->max_seqlen_q;
  c.max_seqlen_k = a->max_seqlen_k;
  c.hq = a->num_heads_q;
  c.hkv = a->num_heads_kv;
  c.head_dim = a->head_dim;
  c.bf16 = a->q_dtype == SCREE_BFLOAT16;
  c.scale = plan.scale;
  c.scale_log2 = (float)((double)plan.scale * 1.4426950408889634);
  /* Windows wider than any sequence are the same as none, and clamping
   * them keeps the kernel's index arithmetic far from overflow. */
  c.left = plan.left;
  c.right = plan.right;
  if (c.right > a->max_seqlen_q)
    c.right = a->max_seqlen_q;
  if (c.left > a->max_seqlen_k)
    c.left = a->max_seqlen_k;
  c.device = dev;
  c.stream = a->stream;

  /* SCREE_ATTN_DECODE: 0 never takes the decode kernels
   * (attention_decode.cu), 1 (the default) takes them for calls whose query
   * rows per key/value head and sequence fit in 64, 2 for every call. Read
   * once per process. */
  static const int decode_mode = scree__kernels_env_int("SCREE_ATTN_DECODE", 1);
  if (scree__attn_decode_wanted(decode_mode, a->max_seqlen_q, c.hq / c.hkv, a->head_dim)) {
    err = static_cast<cudaError_t>(scree__attn_decode_launch(&c));
    if (err != cudaSuccess) {
      cudaGetLastError();
      return scree__fail(SCREE_ECUDA, a->msg, a->msg_len, "attention kernel launch (decode): %s",
                         cudaGetErrorString(err));
    }
    return 0;
  }

  cudaStream_t stream = static_cast<cudaStream_t>(a->stream);
  if (a->head_dim == 256 ||
      (hopper && variant == 0 && sm90_mode > 0 && a->max_seqlen_q >= sm90_min_seqlen &&
       (a->head_dim == 128 || (sm90_mode >= 2 && a->head_dim == 64)) &&
       scree__attn_sm90_supports(a->head_dim))) {
    err = static_cast<cudaError_t>(scree__attn_sm90_launch(&c));
    /* Not supported means the driver's tensor-map encoder could not be
     * had: the mma.sync kernel below runs instead, except at head_dim 256,
     * which it cannot run. */
    if (err == cudaErrorNotSupported && a->head_dim == 256) {
      cudaGetLastError();
      return scree__fail(SCREE_ENOTSUP, a->msg, a->msg_len,
                         "head_dim=256 needs the Hopper kernel, and the driver's "
                         "tensor-map encoder (cuTensorMapEncodeTiled) is not available");
    }
    if (err != cudaErrorNotSupported) {
      if (err != cudaSuccess) {
        cudaGetLastError();
        return scree__fail(SCREE_ECUDA, a->msg, a->msg_len,
                           "attention kernel launch (sm_90a): %s", cudaGetErrorString(err));
      }
      return 0;
    }
  }
  fwd_params p;
  set_common_params(p, &c);
  p.q = c.q;
  p.k = c.k;
  p.v = c.v;
  p.num_m_blocks = c.max_seqlen_q; /* turned into blocks by the launcher */
  err = c.bf16 ? dispatch<__nv_bfloat16>(p, a->head_dim, variant, stream)
               : dispatch<__half>(p, a->head_dim, variant, stream);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return scree__fail(SCREE_ECUDA, a->msg, a->msg_len, "attention kernel launch: %s",
                       cudaGetErrorString(err));
  }
  return 0;
}
