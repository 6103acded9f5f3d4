/* Variable-length attention forward for Hopper (sm_90a): wgmma and TMA.
 *
 A tile is one (sequence, 128-query block, query head); a thread block of
 * three warpgroups computes tiles one after another (by default one block
 * per multiprocessor, the tiles strided heaviest first). Warpgroup 0 is the
 * producer: one of its threads issues the bulk tensor copies (TMA) of the Q
 * tile and of the K and V blocks into 128-byte-swizzled shared memory, each
 * completing on an mbarrier, running ahead into the next tile. Warpgroups 1 and 2 are consumers of 64 query rows each: S =
 * Q K^T runs as wgmma with both operands in shared memory, the online
 * softmax (base 2, scale * log2(e) folded into one FFMA) runs on the fp32
 * accumulators in registers, P is packed to 16 bits in registers, where the
 * accumulator layout of S is already the A-operand layout of the next
 * wgmma, and O += P V takes V from shared memory through the transpose bit.
 * K and V go through a two-stage ring and Q through two buffers: the
 * producer refills one once both consumers have released it.
 *
 * The tensor maps cover the whole packed q, k and v as (head_dim, heads,
 * rows) and are built on the host for each launch. A block of keys that
 * runs past its sequence's end reads the next sequence's rows (or zeros
 * past the last row): those columns are masked like any other invisible
 * key, and O is written with plain predicated stores, never over another
 * sequence's rows.
 *
 * The producer warpgroup gives registers back (setmaxnreg) so that the
 * consumers can hold O (64 fp32 registers a thread at head_dim 128) and S
 * (64 a thread for 128 keys) without spilling. At head_dim 256 O alone is
 * 128 registers a thread: K/V blocks are 64 keys there (S 32, P 16), and Q
 * has one buffer (64 KB; with two K/V stages of 64 KB, 192 KB of shared
 * memory). */
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"
#include "wgmma_sm90.cuh"
#include "attention_common.cuh"
#include "attention_cuda.h"

namespace {

/* The shared device helpers (attention_common.cuh) and set_common_params
 * (attention_cuda.h). */
using namespace scree_attn;

constexpr int BM = 128;      /* query rows a block: two consumer warpgroups of 64 */
constexpr int STAGES = 2;    /* K/V ring depth */
constexpr int THREADS = 384; /* producer + two consumer warpgroups */
constexpr int ROW_BYTES = 128; /* one swizzled shared row: 64 16-bit elements */

/* Keys a K/V block, per head_dim. 128 where registers allow; at head_dim
 * 256 the O accumulator alone is 128 fp32 registers a consumer thread, and
 * S (64) plus P (32) for 128 keys would pass the 240 that setmaxnreg gives
 * the consumers, so 64 keys (S 32, P 16). */
template <int D> struct kv_block {
  static constexpr int BN = D == 256 ? 64 : 128;
};

struct sm90_params {
  void *o;
  float *lse;
  const int32_t *cu_q, *cu_k;
  int batch, total_q, total_k;
  int hq, hkv, group;
  int num_m_blocks;
  int num_tiles; /* num_m_blocks * batch * hq */
  float scale, scale_log2;
  int left, right;
  int pingpong; /* overlapped loop: the consumer warpgroups take turns */
  int one;      /* always 1, opaque to the compiler (the overlapped loop) */
};

/* Shared memory, from a 1024-byte aligned base (the 128-byte swizzle
 * repeats every 8 rows of 128 bytes, and both TMA and wgmma assume the
 * pattern starts on such a boundary). Each tile is stored as head_dim / 64
 * column halves of (rows, 64) elements, 128 bytes a row. */
template <int D, int QS> struct smem_plan {
  static constexpr int BN = kv_block<D>::BN;
  static constexpr int HALVES = D / 64;
  static constexpr int Q_BYTES = BM * D * 2;
  static constexpr int KV_BYTES = BN * D * 2;
  static constexpr int Q_OFF = 0;
  static constexpr int K_OFF = Q_OFF + QS * Q_BYTES;
  static constexpr int V_OFF = K_OFF + STAGES * KV_BYTES;
  static constexpr int BAR_OFF = V_OFF + STAGES * KV_BYTES;
  /* q_full[QS], q_empty[QS], k_full[STAGES], v_full[STAGES], kv_empty[STAGES] */
  static constexpr int BAR_BYTES = 8 * (2 * QS + 3 * STAGES);
  static constexpr size_t DYN_BYTES = BAR_OFF + BAR_BYTES + 1024; /* + alignment slack */
  /* 227 KB is the most a block may have on sm_90: at head_dim 256 one Q
   * buffer (64 KB) and two K/V stages (2 x 64 KB) fit, two Q buffers not. */
  static_assert(DYN_BYTES <= 232448, "shared memory plan over the sm_90 limit");
};

/* ---- PTX wrappers */

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile("{\n.reg .pred p;\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 "selp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
  } while (!done);
}

/* A (64 x box_rows) tile at element coordinates (c0 in head_dim, head, row). */
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap *map, int c0, int c1,
                                            int c2, uint32_t bar) {
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
               " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
               "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
               : "memory");
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

/* Keeps the compiler from moving reads or writes of accumulator registers
 * across the asynchronous wgmma that owns them. */
template <int N> __device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; i++)
    asm volatile("" : "+f"(r[i])::"memory");
}

template <int N, int M>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[N][M]) {
#pragma unroll
  for (int i = 0; i < N; i++)
#pragma unroll
    for (int j = 0; j < M; j++)
      asm volatile("" : "+r"(r[i][j])::"memory");
}

/* Shared-memory matrix descriptor, 128-byte swizzle. Byte offsets: lbo is
 * the distance between 64-element chunks along M/N of an MN-major operand
 * (unused for K-major), sbo the distance between groups of 8 rows. */
__device__ __forceinline__ uint64_t make_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  uint64_t d = 0;
  d |= (uint64_t)((addr & 0x3FFFFu) >> 4);
  d |= (uint64_t)((lbo >> 4) & 0x3FFFu) << 16;
  d |= (uint64_t)((sbo >> 4) & 0x3FFFu) << 32;
  d |= 1ull << 62;
  return d;
}

/* wgmma_ss and wgmma_rs, the wgmma wrappers, are in wgmma_sm90.cuh
 * (generated by kernels/tools/gen_wgmma.py). */

/* ---- consumer pieces */

template <bool B> struct bool_const {
  static constexpr bool value = B;
};

/* What the mask of one tile needs. */
struct tile_info {
  int m0, rows, Lk;
  long long off;
  int left, right;
};

__device__ __forceinline__ void named_bar_sync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

__device__ __forceinline__ void named_bar_arrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

/* bar.arrive under a predicate inside the asm: no branch, which would put a
 * divergent path inside a wgmma pipeline stage and make ptxas serialise
 * every wgmma (C7520). */
__device__ __forceinline__ void named_bar_arrive_if(bool pred, int id, int count) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %0, 0;\n@p bar.arrive %1, %2;\n}\n" ::"r"(
                   (int)pred),
               "r"(id), "r"(count)
               : "memory");
}

template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* S = Q K^T for this warpgroup's 64 rows (not committed). */
template <typename T, int D, int BN>
__device__ __forceinline__ void issue_qk(float (&s)[BN / 2], uint32_t sQ, uint32_t sK, int cw) {
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    const int hf = kk / 4, kin = kk % 4;
    const uint64_t da =
        make_desc(sQ + hf * BM * ROW_BYTES + cw * 64 * ROW_BYTES + kin * 32, 16, 1024);
    const uint64_t db = make_desc(sK + hf * BN * ROW_BYTES + kin * 32, 16, 1024);
    wgmma_ss<T, BN>::run(s, da, db, kk > 0 ? 1 : 0);
  }
}

/* O += P V with P in registers (not committed). */
template <typename T, int D, int BN>
__device__ __forceinline__ void issue_pv(float (&o)[D / 2], const uint32_t (&pa)[BN / 16][4],
                                         uint32_t sV) {
#pragma unroll
  for (int c = 0; c < BN / 16; c++) {
    const uint64_t db = make_desc(sV + c * 16 * ROW_BYTES, BN * ROW_BYTES, 1024);
    wgmma_rs<T, D>::run(o, pa[c], db);
  }
}

/* Whether the key block at n0 crosses the sequence end or a mask boundary
 * of some row of the tile: only those blocks pay for the per-element test. */
template <int BN> __device__ __forceinline__ bool block_needs_mask(const tile_info &t, int n0) {
  return n0 + BN > t.Lk ||
         (t.right >= 0 && (long long)n0 + BN - 1 > (long long)t.m0 + t.off + t.right) ||
         (t.left >= 0 && (long long)n0 < (long long)(t.m0 + t.rows - 1) + t.off - t.left);
}

/* Sets the scores of invisible keys to -inf. */
template <int BN>
__device__ __forceinline__ void apply_mask(float (&s)[BN / 2], const tile_info &t, int n0,
                                           int trow, int tcol) {
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    const long long row = t.m0 + trow + hr * 8;
    long long hi = t.Lk - 1, lo = 0;
    clip_to_window(lo, hi, row, row, t.off, t.left, t.right);
    const int hi32 = (int)max(hi, -1LL) - n0, lo32 = (int)lo - n0;
#pragma unroll
    for (int j = 0; j < BN / 8; j++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int col = j * 8 + tcol + e;
        if (col < lo32 || col > hi32)
          s[4 * j + 2 * hr + e] = -INFINITY;
      }
  }
}

/* One step of the online softmax: s becomes P (unnormalised, base 2),
 * row_sum is rescaled and accumulated, and corr receives the factor that
 * O must be multiplied by. Each row lives in the 4 lanes of a quad. */
template <int BN>
__device__ __forceinline__ void softmax_step(float (&s)[BN / 2], float (&row_max)[2],
                                             float (&row_sum)[2], float (&corr)[2],
                                             float scale_log2) {
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    float mx = row_max[hr];
#pragma unroll
    for (int j = 0; j < BN / 8; j++)
      mx = fmaxf(mx, fmaxf(s[4 * j + 2 * hr], s[4 * j + 2 * hr + 1]));
    mx = quad_max(mx);
    const float ms = scaled_max(mx, scale_log2);
    /* exp2(-inf) = 0 when the row had seen no key: no branch (a branch
     * here would sit inside a wgmma pipeline stage, C7520). */
    corr[hr] = fast_exp2(row_max[hr] * scale_log2 - ms);
    row_max[hr] = mx;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < BN / 8; j++) {
      const float p0 = fast_exp2(fmaf(s[4 * j + 2 * hr], scale_log2, -ms));
      const float p1 = fast_exp2(fmaf(s[4 * j + 2 * hr + 1], scale_log2, -ms));
      s[4 * j + 2 * hr] = p0;
      s[4 * j + 2 * hr + 1] = p1;
      sum += p0 + p1;
    }
    row_sum[hr] = row_sum[hr] * corr[hr] + sum;
  }
}

/* O's two rows times their softmax corrections (the wgmma accumulator
 * layout: registers 4j and 4j + 1 of the first row, 4j + 2 and 4j + 3 of the
 * second). */
template <int D>
__device__ __forceinline__ void scale_o(float (&o)[D / 2], const float (&corr)[2]) {
#pragma unroll
  for (int j = 0; j < D / 8; j++) {
    o[4 * j + 0] *= corr[0];
    o[4 * j + 1] *= corr[0];
    o[4 * j + 2] *= corr[1];
    o[4 * j + 3] *= corr[1];
  }
}

/* P in 16 bits: the accumulators of n8 tiles 2c and 2c + 1 are the A
 * fragment of k16 step c. */
template <typename T, int BN>
__device__ __forceinline__ void pack_p(uint32_t (&pa)[BN / 16][4], const float (&s)[BN / 2]) {
#pragma unroll
  for (int c = 0; c < BN / 16; c++) {
    pa[c][0] = pack2<T>(s[8 * c + 0], s[8 * c + 1]);
    pa[c][1] = pack2<T>(s[8 * c + 2], s[8 * c + 3]);
    pa[c][2] = pack2<T>(s[8 * c + 4], s[8 * c + 5]);
    pa[c][3] = pack2<T>(s[8 * c + 6], s[8 * c + 7]);
  }
}

/* One tile: query block m_block of sequence b, query head h. */
struct tile_desc {
  bool valid; /* false: the query block lies past the sequence's end */
  int h, hk, qs, ks, Lk, m0, rows;
  long long off;
  int nb_lo, nb_hi; /* key blocks [nb_lo, nb_hi) are visible to some row */
};

/* Query-block-major numbering, last query block first, as in the mma.sync
 * kernel: the heaviest tiles come first. */
template <int BN> __device__ __forceinline__ tile_desc get_tile(const sm90_params &p, int tile) {
  tile_desc t;
  const int bh = p.batch * p.hq;
  const int m_block = p.num_m_blocks - 1 - tile / bh;
  const int rem = tile % bh;
  const int b = rem / p.hq;
  t.h = rem % p.hq;
  t.hk = t.h / p.group;
  /* The clamped offsets keep this block's writes in bounds (TMA reads are
   * bounded by the maps). */
  const seq_span sq = seq_bounds(p.cu_q, p.cu_k, b, p.total_q, p.total_k);
  t.qs = sq.qs;
  t.ks = sq.ks;
  t.Lk = sq.Lk;
  const int Lq = sq.Lq;
  t.m0 = m_block * BM;
  t.valid = t.m0 < Lq;
  t.rows = min(BM, Lq - t.m0);
  t.off = (long long)t.Lk - Lq;
  long long n_start = 0, n_end = t.Lk;
  if (p.right >= 0)
    n_end = min(n_end, (long long)(t.m0 + t.rows - 1) + t.off + p.right + 1);
  if (p.left >= 0)
    n_start = max(n_start, (long long)t.m0 + t.off - p.left);
  t.nb_lo = (int)(n_start / BN);
  t.nb_hi = n_end > n_start ? (int)((n_end + BN - 1) / BN) : t.nb_lo;
  return t;
}

/* ---- the kernel */

template <typename T, int D, bool OVERLAP, int QS>
__global__ void __launch_bounds__(THREADS, 1)
    attention_fwd_sm90_kernel(const __grid_constant__ CUtensorMap tm_q,
                              const __grid_constant__ CUtensorMap tm_k,
                              const __grid_constant__ CUtensorMap tm_v, const sm90_params p) {
  using SP = smem_plan<D, QS>;
  constexpr int BN = SP::BN;
  constexpr int KN = BN / 16; /* k16 steps of P V */
  constexpr int SR = BN / 2;  /* S registers a thread */
  constexpr int OR = D / 2;   /* O registers a thread */

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t sQ = base + SP::Q_OFF, sK = base + SP::K_OFF, sV = base + SP::V_OFF;
  /* Barriers: q_full[QS], q_empty[QS], then the K/V ring's. */
  const uint32_t q_full = base + SP::BAR_OFF, q_empty = q_full + 8 * QS;
  const uint32_t k_full = q_empty + 8 * QS, v_full = k_full + 8 * STAGES,
                 kv_empty = v_full + 8 * STAGES;

  const int tid = threadIdx.x, wg = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;

  if (tid == 0) {
#pragma unroll
    for (int s = 0; s < QS; s++) {
      mbar_init(q_full + 8 * s, 1);
      mbar_init(q_empty + 8 * s, 8); /* one arrival per consumer warp */
    }
#pragma unroll
    for (int s = 0; s < STAGES; s++) {
      mbar_init(k_full + 8 * s, 1);
      mbar_init(v_full + 8 * s, 1);
      mbar_init(kv_empty + 8 * s, 8); /* one arrival per consumer warp */
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    /* Producer: keeps few registers, one thread issues every copy. */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
    if (warp == 0 && lane == 0) {
      /* kv counts K/V blocks, nq tiles with a Q load, over all the tiles
       * of this block: the ring and the Q buffer run on across tiles, so
       * the next tile's loads overlap this one's last steps and epilogue. */
      int kv = 0, nq = 0;
      for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
        const tile_desc t = get_tile<BN>(p, tile);
        if (!t.valid || t.nb_hi == t.nb_lo)
          continue;
        const int qst = nq % QS;
        if (nq >= QS)
          mbar_wait(q_empty + 8 * qst, ((nq / QS) - 1) & 1);
        mbar_expect_tx(q_full + 8 * qst, SP::Q_BYTES);
#pragma unroll
        for (int hf = 0; hf < SP::HALVES; hf++)
          tma_load_3d(sQ + qst * SP::Q_BYTES + hf * BM * ROW_BYTES, &tm_q, hf * 64, t.h,
                      t.qs + t.m0, q_full + 8 * qst);
        for (int it = 0; it < t.nb_hi - t.nb_lo; it++, kv++) {
          const int st = kv % STAGES;
          const int row = t.ks + (t.nb_hi - 1 - it) * BN;
          if (kv >= STAGES)
            mbar_wait(kv_empty + 8 * st, ((kv / STAGES) - 1) & 1);
          mbar_expect_tx(k_full + 8 * st, SP::KV_BYTES);
#pragma unroll
          for (int hf = 0; hf < SP::HALVES; hf++)
            tma_load_3d(sK + st * SP::KV_BYTES + hf * BN * ROW_BYTES, &tm_k, hf * 64, t.hk, row,
                        k_full + 8 * st);
          mbar_expect_tx(v_full + 8 * st, SP::KV_BYTES);
#pragma unroll
          for (int hf = 0; hf < SP::HALVES; hf++)
            tma_load_3d(sV + st * SP::KV_BYTES + hf * BN * ROW_BYTES, &tm_v, hf * 64, t.hk, row,
                        v_full + 8 * st);
        }
        nq++;
      }
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n" ::: "memory");
    const int cw = wg - 1; /* consumer warpgroup: query rows 64 cw .. 64 cw + 63 */
    /* This thread's two rows within the tile (the wgmma accumulator layout:
     * a warp owns 16 rows, a quad of lanes one row, each lane 2 adjacent
     * columns of every 8). */
    const int trow = cw * 64 + warp * 16 + lane / 4;
    const int tcol = (lane % 4) * 2;
    int kv = 0, nq = 0; /* as in the producer */
    for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
      const tile_desc t = get_tile<BN>(p, tile);
      if (!t.valid)
        continue;
      const int h = t.h, qs = t.qs, Lk = t.Lk, m0 = t.m0, rows = t.rows, nb_hi = t.nb_hi;
      const long long off = t.off;
      const int nblocks = t.nb_hi - t.nb_lo;
      const tile_info ti = {m0, rows, Lk, off, p.left, p.right};

      float o[OR], s[SR];
#pragma unroll
      for (int i = 0; i < OR; i++)
        o[i] = 0.0f;
#pragma unroll
      for (int i = 0; i < SR; i++)
        s[i] = 0.0f;
      float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
      uint32_t pa[KN][4];

      const int qst = nq % QS;
      const uint32_t sQt = sQ + qst * SP::Q_BYTES;
      if (nblocks > 0)
        mbar_wait(q_full + 8 * qst, (nq / QS) & 1);
      if constexpr (!OVERLAP) {
        for (int it = 0; it < nblocks; it++) {
          const int st = (kv + it) % STAGES;
          const uint32_t ph = ((kv + it) / STAGES) & 1;
          const int n0 = (nb_hi - 1 - it) * BN;
          mbar_wait(k_full + 8 * st, ph);
          wgmma_fence();
          issue_qk<T, D, BN>(s, sQt, sK + st * SP::KV_BYTES, cw);
          wgmma_commit();
          wgmma_wait<0>();
          fence_regs(s);
          float corr[2];
          if (block_needs_mask<BN>(ti, n0))
            apply_mask<BN>(s, ti, n0, trow, tcol);
          softmax_step<BN>(s, row_max, row_sum, corr, p.scale_log2);
          scale_o<D>(o, corr);
          pack_p<T, BN>(pa, s);
          mbar_wait(v_full + 8 * st, ph);
          wgmma_fence();
          issue_pv<T, D, BN>(o, pa, sV + st * SP::KV_BYTES);
          wgmma_commit();
          wgmma_wait<0>();
          fence_regs(o);
          /* This warp is done with the stage: K was read by the first GEMM,
           * V by the second, both complete. */
          __syncwarp();
          if (lane == 0)
            mbar_arrive(kv_empty + 8 * st);
        }
      } else if (nblocks > 0) {
        /* FA3's overlap inside the warpgroup: step it issues S(it) = Q K(it)^T
         * and O += P(it-1) V(it-1) together, then runs the softmax of S(it)
         * while the second GEMM is still on the tensor cores (meant to: ptxas
         * 13.0 moves the second wait above the softmax, kernels/NOTES.md). And across the
         * two warpgroups (ping-pong): named barriers 1 and 2 let them issue
         * their GEMMs in turn, so that one's softmax overlaps the other's
         * GEMMs. A warpgroup's turn opens with a sync on its own barrier and
         * hands over with an arrival on the other's; warpgroup 1 opens the
         * first turn of warpgroup 0 and skips its own last hand-over, so that
         * every arrival of a tile is matched by a sync of that tile. */
        const int rounds = nblocks + 1;
        int round = 0;
        const bool pp = p.pingpong != 0;
        if (pp && cw == 1)
          named_bar_arrive(1, 256);
        /* Round 0: S(0) alone. */
        if (pp)
          named_bar_sync(1 + cw, 256);
        mbar_wait(k_full + 8 * (kv % STAGES), (kv / STAGES) & 1);
        wgmma_fence();
        issue_qk<T, D, BN>(s, sQt, sK + (kv % STAGES) * SP::KV_BYTES, cw);
        wgmma_commit();
        named_bar_arrive_if(pp && !(cw == 1 && ++round == rounds), 2 - cw, 256);
        wgmma_wait<0>();
        fence_regs(s);
        {
          float corr[2];
          const int n0 = (nb_hi - 1) * BN;
          if (block_needs_mask<BN>(ti, n0))
            apply_mask<BN>(s, ti, n0, trow, tcol);
          softmax_step<BN>(s, row_max, row_sum, corr, p.scale_log2);
        }
        pack_p<T, BN>(pa, s);
        fence_regs(pa);
        /* One step; MASKED is a compile-time copy so that no branch sits
         * between the issue of the GEMMs and their completion. */
        auto step = [&](int it, auto masked) {
          const int st = (kv + it) % STAGES, pst = (kv + it - 1) % STAGES;
          const uint32_t ph = ((kv + it) / STAGES) & 1, pph = ((kv + it - 1) / STAGES) & 1;
          const int n0 = (nb_hi - 1 - it) * BN;
          if (pp)
            named_bar_sync(1 + cw, 256);
          mbar_wait(k_full + 8 * st, ph);
          mbar_wait(v_full + 8 * pst, pph);
          wgmma_fence();
          issue_qk<T, D, BN>(s, sQt, sK + st * SP::KV_BYTES, cw);
          wgmma_commit();
          /* A fence of its own makes the second GEMM a pipeline stage of its
           * own for ptxas: the softmax may then write the S registers (done
           * at wait<1>) while P V is still in flight. */
          wgmma_fence();
          issue_pv<T, D, BN>(o, pa, sV + pst * SP::KV_BYTES);
          wgmma_commit();
          named_bar_arrive_if(pp && !(cw == 1 && ++round == rounds), 2 - cw, 256);
          wgmma_wait<1>();
          fence_regs(s);
          float corr[2];
          if constexpr (decltype(masked)::value)
            apply_mask<BN>(s, ti, n0, trow, tcol);
          softmax_step<BN>(s, row_max, row_sum, corr, p.scale_log2);
          /* The softmax must stay above the wait for P V. The fences keep
           * nvcc from sinking it (register-only code may cross a volatile
           * asm); ptxas, which schedules within a basic block and otherwise
           * hoists the wait to just after wait<1>, is kept from it by a
           * block boundary: the first wait sits under a branch that is
           * always taken (p.one == 1), and the second, for ptxas's view of
           * the paths, finds nothing left to wait for. */
          fence_regs(s);
          fence_regs(row_sum);
          if (p.one != 0)
            wgmma_wait<0>();
          wgmma_wait<0>();
          fence_regs(o);
          __syncwarp();
          if (lane == 0)
            mbar_arrive(kv_empty + 8 * pst);
          scale_o<D>(o, corr);
          /* P and O are wgmma inputs of the next step: both written here,
           * before its fence, never inside its pipeline stage (C7513). */
          pack_p<T, BN>(pa, s);
          fence_regs(pa);
          fence_regs(o);
        };
        for (int it = 1; it < nblocks; it++) {
          if (block_needs_mask<BN>(ti, (nb_hi - 1 - it) * BN))
            step(it, bool_const<true>());
          else
            step(it, bool_const<false>());
        }
        /* Last round: O += P(last) V(last). */
        {
          const int lst = (kv + nblocks - 1) % STAGES;
          const uint32_t lph = ((kv + nblocks - 1) / STAGES) & 1;
          if (pp)
            named_bar_sync(1 + cw, 256);
          mbar_wait(v_full + 8 * lst, lph);
          wgmma_fence();
          issue_pv<T, D, BN>(o, pa, sV + lst * SP::KV_BYTES);
          wgmma_commit();
          named_bar_arrive_if(pp && !(cw == 1 && ++round == rounds), 2 - cw, 256);
          wgmma_wait<0>();
          fence_regs(o);
          __syncwarp();
          if (lane == 0)
            mbar_arrive(kv_empty + 8 * lst);
        }
      }

      if (nblocks > 0) {
        /* Every GEMM that read this tile's Q is complete: the producer may
         * load the next tile's. */
        __syncwarp();
        if (lane == 0)
          mbar_arrive(q_empty + 8 * qst);
        nq++;
        kv += nblocks;
      }

      /* Epilogue: normalise and store straight from the accumulators. Rows
       * past the sequence's end are never written. */
#pragma unroll
      for (int hr = 0; hr < 2; hr++) {
        const float sum = quad_sum(row_sum[hr]);
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        const int lrow = trow + hr * 8;
        if (lrow < rows) {
          T *dst = static_cast<T *>(p.o) + ((long long)(qs + m0 + lrow) * p.hq + h) * D + tcol;
#pragma unroll
          for (int j = 0; j < D / 8; j++)
            *reinterpret_cast<uint32_t *>(dst + 8 * j) =
                pack2<T>(o[4 * j + 2 * hr] * inv, o[4 * j + 2 * hr + 1] * inv);
          if (p.lse != nullptr && lane % 4 == 0) {
            const float l = sum > 0.0f ? row_max[hr] * p.scale + logf(sum) : -INFINITY;
            p.lse[(long long)h * p.total_q + qs + m0 + lrow] = l;
          }
        }
      }
    }
  }
}

/* ---- host side */

typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                    const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                    const cuuint32_t *, CUtensorMapInterleave,
                                    CUtensorMapSwizzle, CUtensorMapL2promotion,
                                    CUtensorMapFloatOOBfill);

/* The driver's tensor-map encoder, found through the runtime so that this
 * library needs no link-time libcuda. Looked up once per process. */
static encode_tiled_fn tensor_map_encoder(void) {
  static const encode_tiled_fn fn = []() -> encode_tiled_fn {
    void *f = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return reinterpret_cast<encode_tiled_fn>(f);
  }();
  return fn;
}

/* A map over a packed (rows, heads, D) tensor as (D, heads, rows), boxes of
 * 64 x 1 x box_rows elements with the 128-byte swizzle; rows past the end
 * read as zeros. */
static bool encode_map(encode_tiled_fn enc, CUtensorMap *map, const void *ptr, int rows,
                       int heads, int d, int box_rows, bool bf16) {
  const cuuint64_t dims[3] = {(cuuint64_t)d, (cuuint64_t)heads,
                              (cuuint64_t)(rows > 0 ? rows : 1)};
  const cuuint64_t strides[2] = {(cuuint64_t)d * 2, (cuuint64_t)heads * d * 2};
  const cuuint32_t box[3] = {64, 1, (cuuint32_t)box_rows};
  const cuuint32_t estr[3] = {1, 1, 1};
  return enc(map,
             bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3,
             const_cast<void *>(ptr), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
             CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <typename T, int D, bool OVERLAP, int QS>
static cudaError_t launch(const scree__attn_cuda_args *a, const CUtensorMap &tq,
                          const CUtensorMap &tk, const CUtensorMap &tv, int pingpong,
                          bool persistent) {
  auto kernel = attention_fwd_sm90_kernel<T, D, OVERLAP, QS>;
  const size_t smem = smem_plan<D, QS>::DYN_BYTES;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (err != cudaSuccess)
    return err;
  sm90_params p;
  set_common_params(p, a);
  p.num_m_blocks = (a->max_seqlen_q + BM - 1) / BM;
  p.pingpong = pingpong;
  p.one = 1;
  const long long tiles = (long long)p.num_m_blocks * a->batch * a->hq;
  if (tiles == 0)
    return cudaSuccess;
  if (tiles > 0x7fffffffLL)
    return cudaErrorInvalidConfiguration;
  p.num_tiles = (int)tiles;
  /* Persistent: one block per multiprocessor walks the tiles (its Q and
   * K/V loads run ahead across tile boundaries); otherwise one block per
   * tile, the hardware handing out tiles as blocks finish. */
  long long blocks = tiles;
  if (persistent) {
    int dev = 0, sms = 0;
    err = cudaGetDevice(&dev);
    if (err == cudaSuccess)
      err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (err != cudaSuccess)
      return err;
    blocks = tiles < sms ? tiles : sms;
  }
  kernel<<<(unsigned)blocks, THREADS, smem, static_cast<cudaStream_t>(a->stream)>>>(tq, tk, tv,
                                                                                     p);
  return cudaGetLastError();
}

} // namespace

extern "C" int scree__attn_sm90_supports(int head_dim) {
  return head_dim == 128 || head_dim == 64 || head_dim == 256;
}

extern "C" int scree__attn_sm90_launch(const scree__attn_cuda_args *a) {
  if (!scree__attn_sm90_supports(a->head_dim))
    return (int)cudaErrorNotSupported;
  encode_tiled_fn enc = tensor_map_encoder();
  if (enc == nullptr)
    return (int)cudaErrorNotSupported;
  const bool bf16 = a->bf16 != 0;
  const int bn = a->head_dim == 256 ? kv_block<256>::BN
                 : a->head_dim == 128 ? kv_block<128>::BN
                                      : kv_block<64>::BN;
  CUtensorMap tq, tk, tv;
  if (!encode_map(enc, &tq, a->q, a->total_q, a->hq, a->head_dim, BM, bf16) ||
      !encode_map(enc, &tk, a->k, a->total_k, a->hkv, a->head_dim, bn, bf16) ||
      !encode_map(enc, &tv, a->v, a->total_k, a->hkv, a->head_dim, bn, bf16))
    return (int)cudaErrorNotSupported;
  /* SCREE_ATTN_SM90_LOOP (read once per process): 0 the plain loop, one
   * GEMM at a time (the default); 1 FA3's order of issue (meant for the
   * intra-warpgroup overlap, which ptxas's schedule defeats: kernels/NOTES.md)
   * with the two consumer warpgroups taking turns; 2 the same without the
   * turns. Both are slower than 0 on the H100 and kept for measuring. */
  static const int loop = scree__kernels_env_int("SCREE_ATTN_SM90_LOOP", 0);
  /* SCREE_ATTN_SM90_PERSIST (read once per process): 1 (the default) a
   * persistent grid, one block per multiprocessor; 0 one block per tile. */
  static const int persist = scree__kernels_env_int("SCREE_ATTN_SM90_PERSIST", 1);
  /* SCREE_ATTN_SM90_QBUF (read once per process): Q buffers, 2 (the
   * default: the next tile's Q loads during this one's last steps) or 1. */
  static const int qbuf = scree__kernels_env_int("SCREE_ATTN_SM90_QBUF", 2) == 1 ? 1 : 2;
  const int pingpong = loop != 2;
  const bool pers = persist != 0;
  cudaError_t err;
#define SCREE_SM90_LAUNCH(D_, OV_, QS_)                                                         \
  (bf16 ? launch<__nv_bfloat16, D_, OV_, QS_>(a, tq, tk, tv, pingpong, pers)                   \
        : launch<__half, D_, OV_, QS_>(a, tq, tk, tv, pingpong, pers))
  if (a->head_dim == 256) {
    /* One Q buffer only (two would pass the shared-memory limit) and the
     * plain loop only: the overlapped one holds a second S and P, which at
     * 128 O registers a thread would spill. */
    err = SCREE_SM90_LAUNCH(256, false, 1);
  } else if (a->head_dim == 128) {
    if (loop == 0)
      err = qbuf == 1 ? SCREE_SM90_LAUNCH(128, false, 1) : SCREE_SM90_LAUNCH(128, false, 2);
    else
      err = qbuf == 1 ? SCREE_SM90_LAUNCH(128, true, 1) : SCREE_SM90_LAUNCH(128, true, 2);
  } else {
    if (loop == 0)
      err = qbuf == 1 ? SCREE_SM90_LAUNCH(64, false, 1) : SCREE_SM90_LAUNCH(64, false, 2);
    else
      err = qbuf == 1 ? SCREE_SM90_LAUNCH(64, true, 1) : SCREE_SM90_LAUNCH(64, true, 2);
  }
#undef SCREE_SM90_LAUNCH
  return (int)err;
}
