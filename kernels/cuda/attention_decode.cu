/* Attention for decode-shaped calls (sm_80 and later): few queries per
 * sequence against many keys, where the work is reading K and V once from
 * device memory and the tensor cores are nearly idle.
 *
 * Two ideas, both public (flash-decoding, FlashAttention's split-KV path,
 * FlashInfer's decode kernels, FlashAttention-3's pack-GQA):
 *
 * - Packed query rows. The G = num_heads_q / num_heads_kv query heads that
 *   share one key/value head, times the sequence's query rows, become the
 *   rows of one tile (row r is query r / G, head hk * G + r % G: for one
 *   query those heads are adjacent in memory). One pass over a K/V head
 *   then serves every query head that reads it, so each K/V byte is read
 *   once, not G times.
 *
 * - Split keys. A unit (sequence, tile of 16 or 32 packed rows) has its
 *   visible key range cut into splits of about C keys, C chosen on the host
 *   from the batch, the heads, the total key count and the multiprocessor
 *   count so that the grid is several waves of equal pieces. One thread
 *   block computes one (split, key/value head). A unit with one split
 *   writes its output directly; the others write fp32 partial outputs and
 *   their log-sum-exp to a workspace, and a combine kernel merges them. The
 *   split counts depend on each sequence's length, which only the device
 *   knows (cu_seqlens are never read by the host): a one-block kernel turns
 *   them into prefix sums first, and each block finds its unit by binary
 *   search in them. The grid is sized from a bound the host can compute
 *   (R * (ceil(total_k / C) + batch) splits for R row tiles), so that only
 *   about batch blocks find no work.
 *
 * Inside a block, each of the 4 warps streams its own 16-key slices of the
 * split (slice i goes to warp i % 4) through its own cp.async ring of
 * STAGES slices, with only __syncwarp between its steps, and keeps its own
 * online softmax state (S = Q K^T and O += P V on mma.sync m16n8k16 with
 * fp32 accumulators, as in attention_fwd.cu). At the end the warps' states
 * are merged through shared memory. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#include "attention_internal.h"
#include "attention_common.cuh"
#include "attention_cuda.h"

namespace {

/* The shared device helpers (attention_common.cuh) and set_common_params
 * (attention_cuda.h). */
using namespace scree_attn;

constexpr int WARPS = 4;
constexpr int THREADS = WARPS * 32;
constexpr int KS = 16; /* keys per warp step */

struct dec_params {
  const void *q, *k, *v;
  void *o;
  float *lse;
  const int32_t *cu_q, *cu_k;
  int batch, total_q, total_k;
  int hq, hkv, group;
  int row_tiles; /* R: tiles of BM packed rows per sequence */
  float scale, scale_log2;
  int left, right; /* -1: unbounded */
  int chunk;       /* C, keys; INT_MAX: one split per unit */
  /* Split mode only (NULL otherwise): batch * row_tiles + 1 prefix sums of
   * the units' split counts, clamped to max_items; the partial outputs
   * (max_items * hkv * BM rows of head_dim floats) and their lse. */
  const int *prefix;
  int max_items;
  float *ws_o;
  float *ws_lse;
};

/* Where unit u = (sequence b, row tile rt) lies and how it is split. */
struct unit_geom {
  int qs, Lq, ks, Lk;
  int r0, rows;   /* first packed row of the tile and how many are real */
  int lo, hi;     /* keys any row of the tile may see: [lo, hi) */
  int nsplit;     /* 0 for a tile with no rows */
  int csize;      /* keys per split, a multiple of 16 */
  long long off;  /* Lk - Lq: the bottom-right alignment of the masks */
};

template <int BM> __device__ __forceinline__ unit_geom geom(const dec_params &p, int u) {
  unit_geom g;
  const int b = u / p.row_tiles, rt = u % p.row_tiles;
  const seq_span sq = seq_bounds(p.cu_q, p.cu_k, b, p.total_q, p.total_k);
  g.qs = sq.qs;
  g.ks = sq.ks;
  g.Lq = sq.Lq;
  g.Lk = sq.Lk;
  g.off = (long long)g.Lk - g.Lq;
  g.r0 = rt * BM;
  const long long mrows = (long long)g.Lq * p.group - g.r0;
  g.rows = (int)(mrows < 0 ? 0 : (mrows > BM ? BM : mrows));
  g.lo = g.hi = 0;
  g.nsplit = 0;
  g.csize = 16;
  if (g.rows == 0)
    return g;
  const long long qlo = g.r0 / p.group, qhi = (g.r0 + g.rows - 1) / p.group;
  long long lo = 0, hi = g.Lk;
  if (p.right >= 0)
    hi = min(hi, qhi + g.off + p.right + 1);
  if (p.left >= 0)
    lo = max(lo, qlo + g.off - p.left);
  if (hi < lo)
    hi = lo;
  g.lo = (int)lo;
  g.hi = (int)hi;
  const int len = g.hi - g.lo;
  /* Written so that chunk = INT_MAX cannot overflow. */
  g.nsplit = len <= 0 ? 1 : (len - 1) / p.chunk + 1;
  /* The range is cut evenly, so that a length just past a multiple of C
   * does not leave one split of a few keys. */
  const int per = len <= 0 ? 0 : (len - 1) / g.nsplit + 1;
  g.csize = (per + 15) & ~15;
  return g;
}

/* The one-block prefix sum of the units' split counts. Each thread sums a
 * contiguous run of units; the runs' sums are scanned across the block. */
template <int BM> __global__ void __launch_bounds__(1024) decode_prep_kernel(const dec_params p, int *prefix) {
  __shared__ long long warp_sums[32];
  const int U = p.batch * p.row_tiles;
  const int per = (U + 1023) / 1024;
  const int start = min(U, (int)threadIdx.x * per), end = min(U, start + per);
  long long local = 0;
  for (int u = start; u < end; u++)
    local += geom<BM>(p, u).nsplit;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const long long incl = warp_inclusive_scan(local, lane);
  if (lane == 31)
    warp_sums[warp] = incl;
  __syncthreads();
  long long base = 0;
  for (int w = 0; w < warp; w++)
    base += warp_sums[w];
  long long run = base + incl - local;
  /* Clamped to the workspace's bound: only offsets that are not
   * non-decreasing could push the sum past it, and then the splits past
   * the bound are dropped (wrong results, never out-of-bounds accesses). */
  for (int u = start; u < end; u++) {
    prefix[u] = (int)min(run, (long long)p.max_items);
    run += geom<BM>(p, u).nsplit;
  }
  if (threadIdx.x == 1023)
    prefix[U] = (int)min(run, (long long)p.max_items);
}

/* Shared memory of the main kernel: Q (BM rows), then per warp STAGES
 * slices of K and V (16 rows each). Rows are padded by 16 bytes so that an
 * ldmatrix phase's 8 row addresses fall into 8 bank groups. */
template <typename T, int D, int MT, int STAGES> struct dec_smem {
  static constexpr int BM = 16 * MT, LD = D + 8;
  static constexpr int Q_ELEMS = BM * LD;
  static constexpr int SLICE = KS * LD; /* one K or V slice, elements */
  static constexpr int WARP_ELEMS = STAGES * 2 * SLICE;
  static constexpr size_t BYTES = (size_t)(Q_ELEMS + WARPS * WARP_ELEMS) * sizeof(T);
  /* The merge of the warps' states reuses the K/V area: per warp BM rows
   * of D fp32 (padded by 4) plus each row's max and sum. */
  static constexpr int OLD = D + 4;
  static constexpr size_t MERGE_BYTES = (size_t)WARPS * BM * (OLD + 2) * 4;
  static_assert(MERGE_BYTES <= (size_t)WARPS * WARP_ELEMS * sizeof(T), "merge area fits");
};

template <typename T, int D, int MT, int STAGES, int MINB>
__global__ void __launch_bounds__(THREADS, MINB) decode_kernel(const dec_params p) {
  using SM = dec_smem<T, D, MT, STAGES>;
  constexpr int BM = SM::BM, LD = SM::LD;
  constexpr int CPR = D / 8; /* 16-byte chunks per row */
  constexpr int DT = D / 8;  /* n8 tiles of O */
  static_assert((KS * CPR) % 32 == 0, "a slice's chunks divide among a warp's lanes");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T *sQ = reinterpret_cast<T *>(smem_raw);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  T *sKV = sQ + SM::Q_ELEMS + warp * SM::WARP_ELEMS;

  const int hk = (int)(blockIdx.x % (unsigned)p.hkv);
  const int item = (int)(blockIdx.x / (unsigned)p.hkv);
  int u, s;
  if (p.prefix == nullptr) {
    u = item;
    s = 0;
  } else {
    const int U = p.batch * p.row_tiles;
    if (item >= p.prefix[U])
      return;
    /* The last unit whose first split is at or before item. */
    int lo = 0, hi = U;
    while (hi - lo > 1) {
      const int mid = (lo + hi) / 2;
      if (p.prefix[mid] <= item)
        lo = mid;
      else
        hi = mid;
    }
    u = lo;
    s = item - p.prefix[u];
  }
  const unit_geom g = geom<BM>(p, u);
  if (g.rows == 0 || s >= g.nsplit)
    return;
  const int c0 = g.lo + s * g.csize;
  const int c1 = max(c0, min(g.hi, c0 + g.csize));
  const int nslices = (c1 - c0 + KS - 1) / KS;
  const int G = p.group;

  /* Q: packed row r is query (r0 + r) / G of the sequence, head
   * hk * G + (r0 + r) % G. Rows past the tile's real rows are zero. */
  {
    const T *Qb = static_cast<const T *>(p.q);
    for (int idx = tid; idx < BM * CPR; idx += THREADS) {
      const int r = idx / CPR, cc = idx % CPR;
      const int pr = g.r0 + r;
      const bool ok = r < g.rows;
      const T *src = Qb + ((long long)(g.qs + (ok ? pr / G : 0)) * p.hq + hk * G + (ok ? pr % G : 0)) * D +
                     cc * 8;
      cp_async16(sQ + r * LD + cc * 8, src, ok ? 16 : 0);
    }
    cp_async_commit();
  }

  const long long kv_stride = (long long)p.hkv * D;
  const T *Kg = static_cast<const T *>(p.k) + ((long long)g.ks * p.hkv + hk) * D;
  const T *Vg = static_cast<const T *>(p.v) + ((long long)g.ks * p.hkv + hk) * D;

  /* Slices of this warp: w, w + WARPS, ... */
  const int my_n = nslices > warp ? (nslices - warp + WARPS - 1) / WARPS : 0;
  /* Each lane copies one 16-byte column chunk of rows lane / CPR + j * RSTEP. */
  constexpr int RSTEP = 32 / CPR > 0 ? 32 / CPR : 1;
  constexpr int PER_LANE = KS * CPR / 32;
  const int lr0 = CPR >= 32 ? 0 : lane / CPR;
  const int lcc = CPR >= 32 ? lane % 32 : lane % CPR;
  auto load_slice = [&](int stage, int i) {
    const int key0 = c0 + i * KS;
    const int valid = c1 - key0;
    T *dK = sKV + stage * 2 * SM::SLICE;
    T *dV = dK + SM::SLICE;
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) {
      /* D = 256: 32 chunks a row, so a lane keeps its column and walks one
       * row a step; otherwise RSTEP rows a step. */
      const int r = CPR >= 32 ? j * (CPR / 32) + 0 : lr0 + j * RSTEP;
      const int cc = CPR >= 32 ? lcc + 0 : lcc;
      const bool ok = r < valid;
      /* The slice's first key always exists: the address of a zero-byte
       * copy stays valid. */
      const long long row = key0 + (ok ? r : 0);
      cp_async16(dK + r * LD + cc * 8, Kg + row * kv_stride + cc * 8, ok ? 16 : 0);
      cp_async16(dV + r * LD + cc * 8, Vg + row * kv_stride + cc * 8, ok ? 16 : 0);
    }
  };
  static_assert(CPR <= 32 || CPR % 32 == 0, "row chunks");
  static_assert(CPR != 32 || PER_LANE == KS, "one row per step at D=256");

#pragma unroll
  for (int st = 0; st < STAGES; st++) {
    if (st < my_n)
      load_slice(st, warp + st * WARPS);
    cp_async_commit();
  }

  /* Per-row visible keys [lo, hi] of this split, for this lane's rows, and
   * the bounds that tell which slices need the per-element test. */
  int row_lo[MT][2], row_hi[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      const long long qi = (long long)(g.r0 + mt * 16 + lane / 4 + hr * 8) / G;
      long long hi = c1 - 1, lo = c0;
      clip_to_window(lo, hi, qi, qi, g.off, p.left, p.right);
      row_hi[mt][hr] = (int)max(hi, (long long)c0 - 1);
      row_lo[mt][hr] = (int)min(lo, (long long)c1);
    }
  long long tile_hi = c1 - 1, tile_lo = c0; /* every real row sees [tile_lo, tile_hi] */
  {
    const long long qlo = g.r0 / G, qhi = (g.r0 + g.rows - 1) / G;
    clip_to_window(tile_lo, tile_hi, qhi, qlo, g.off, p.left, p.right);
  }

  float acc[MT][DT][4];
  float row_max[MT][2], row_sum[MT][2];
  init_rows(acc, row_max, row_sum);

  /* Q must have landed for every thread's chunks: wait for its group (the
   * oldest) and meet once. */
  cp_async_wait<STAGES>();
  __syncthreads();

  const int a_row = lane % 16, a_col = (lane / 16) * 8;
  const int kb_row = (lane / 16) * 8 + lane % 8, kb_col = ((lane / 8) % 2) * 8;
  const int vb_row = ((lane / 8) % 2) * 8 + lane % 8, vb_col = (lane / 16) * 8;

  for (int it = 0; it < my_n; it++) {
    const int stage = it % STAGES;
    const int key0 = c0 + (warp + it * WARPS) * KS;
    const T *cK = sKV + stage * 2 * SM::SLICE;
    const T *cV = cK + SM::SLICE;
    cp_async_wait<STAGES - 1>();
    __syncwarp();

    float sc[MT][2][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int n = 0; n < 2; n++)
#pragma unroll
        for (int r = 0; r < 4; r++)
          sc[mt][n][r] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      uint32_t bk[4];
      ldsm_x4(bk, cK + kb_row * LD + kk * 16 + kb_col);
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        uint32_t a[4];
        ldsm_x4(a, sQ + (mt * 16 + a_row) * LD + kk * 16 + a_col);
        mma_op<T>::run(sc[mt][0], a, bk[0], bk[1]);
        mma_op<T>::run(sc[mt][1], a, bk[2], bk[3]);
      }
    }

    if (key0 + KS - 1 > tile_hi || key0 < tile_lo) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++)
#pragma unroll
          for (int n = 0; n < 2; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
              const int col = key0 + n * 8 + (lane % 4) * 2 + e;
              if (col < row_lo[mt][hr] || col > row_hi[mt][hr])
                sc[mt][n][2 * hr + e] = -INFINITY;
            }
    }

    uint32_t pa[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
      for (int hr = 0; hr < 2; hr++) {
        float mx = fmaxf(row_max[mt][hr],
                         fmaxf(fmaxf(sc[mt][0][2 * hr], sc[mt][0][2 * hr + 1]),
                               fmaxf(sc[mt][1][2 * hr], sc[mt][1][2 * hr + 1])));
        mx = quad_max(mx);
        const float ms = scaled_max(mx, p.scale_log2);
        const float corr = row_max[mt][hr] == -INFINITY
                               ? 0.0f
                               : fast_exp2(row_max[mt][hr] * p.scale_log2 - ms);
        row_max[mt][hr] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
          for (int e = 0; e < 2; e++) {
            const float pv = fast_exp2(fmaf(sc[mt][n][2 * hr + e], p.scale_log2, -ms));
            sc[mt][n][2 * hr + e] = pv;
            sum += pv;
          }
        row_sum[mt][hr] = row_sum[mt][hr] * corr + sum;
        scale_rows(acc[mt], hr, corr);
      }
      /* The S accumulators of the two n8 tiles are the A fragment of one
       * k16 step of P V. */
      pa[mt][0] = pack2<T>(sc[mt][0][0], sc[mt][0][1]);
      pa[mt][1] = pack2<T>(sc[mt][0][2], sc[mt][0][3]);
      pa[mt][2] = pack2<T>(sc[mt][1][0], sc[mt][1][1]);
      pa[mt][3] = pack2<T>(sc[mt][1][2], sc[mt][1][3]);
    }

#pragma unroll
    for (int dp = 0; dp < D / 16; dp++) {
      uint32_t bv[4];
      ldsm_x4_trans(bv, cV + vb_row * LD + dp * 16 + vb_col);
      mma_pair<T>(acc, 2 * dp, pa, bv);
    }

    /* Every lane is done with this stage before it is refilled. The commit
     * is unconditional so that each step owns exactly one group. */
    __syncwarp();
    if (it + STAGES < my_n)
      load_slice(stage, warp + (it + STAGES) * WARPS);
    cp_async_commit();
  }

  /* Merge the warps' states: each writes its rows' max, sum and O to
   * shared memory (the K/V area, free once every warp is past its loop). */
  cp_async_wait_all();
  __syncthreads();
  float *mO = reinterpret_cast<float *>(sQ + SM::Q_ELEMS);
  float *mM = mO + WARPS * BM * SM::OLD;
  float *mL = mM + WARPS * BM;
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      const float sum = quad_sum(row_sum[mt][hr]);
      const int row = mt * 16 + lane / 4 + hr * 8;
      if (lane % 4 == 0) {
        mM[warp * BM + row] = row_max[mt][hr];
        mL[warp * BM + row] = sum;
      }
      float *dst = mO + (warp * BM + row) * SM::OLD + (lane % 4) * 2;
#pragma unroll
      for (int dt = 0; dt < DT; dt++)
        *reinterpret_cast<float2 *>(dst + dt * 8) =
            make_float2(acc[mt][dt][2 * hr], acc[mt][dt][2 * hr + 1]);
    }
  __syncthreads();

  const bool final_out = g.nsplit == 1;
  for (int idx = tid; idx < g.rows * (D / 4); idx += THREADS) {
    const int row = idx / (D / 4), c4 = idx % (D / 4);
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS; w++)
      M = fmaxf(M, mM[w * BM + row]);
    float L = 0.0f, o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int w = 0; w < WARPS; w++) {
      const float m = mM[w * BM + row];
      const float f = m == -INFINITY ? 0.0f : fast_exp2((m - M) * p.scale_log2);
      L += f * mL[w * BM + row];
      const float4 x = *reinterpret_cast<const float4 *>(mO + (w * BM + row) * SM::OLD + c4 * 4);
      o[0] += f * x.x;
      o[1] += f * x.y;
      o[2] += f * x.z;
      o[3] += f * x.w;
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    const float lse = L > 0.0f ? M * p.scale + logf(L) : -INFINITY;
    const int pr = g.r0 + row;
    const int qi = pr / G, h = hk * G + pr % G;
    if (final_out) {
      uint2 v;
      v.x = pack2<T>(o[0] * inv, o[1] * inv);
      v.y = pack2<T>(o[2] * inv, o[3] * inv);
      T *Og = static_cast<T *>(p.o) + ((long long)(g.qs + qi) * p.hq + h) * D + c4 * 4;
      *reinterpret_cast<uint2 *>(Og) = v;
      if (p.lse != nullptr && c4 == 0)
        p.lse[(long long)h * p.total_q + g.qs + qi] = lse;
    } else {
      const long long slot = ((long long)item * p.hkv + hk) * BM + row;
      *reinterpret_cast<float4 *>(p.ws_o + slot * D + c4 * 4) =
          make_float4(o[0] * inv, o[1] * inv, o[2] * inv, o[3] * inv);
      if (c4 == 0)
        p.ws_lse[slot] = lse;
    }
  }
}

/* Merges the splits of each unit that has more than one: the weights are
 * exp(lse_s - lse) over the splits' own normalised outputs. One block per
 * (unit, key/value head), a thread per 4 columns of a row; the loops over
 * the splits are unrolled and carry no branch, so that several splits'
 * loads are in flight at once (a unit of a long sequence has tens). */
constexpr int COMBINE_THREADS = 256;

template <typename T, int D, int BM>
__global__ void __launch_bounds__(COMBINE_THREADS) decode_combine_kernel(const dec_params p) {
  const int hk = (int)(blockIdx.x % (unsigned)p.hkv);
  const int u = (int)(blockIdx.x / (unsigned)p.hkv);
  const unit_geom g = geom<BM>(p, u);
  if (g.rows == 0 || g.nsplit <= 1)
    return;
  const int base = p.prefix[u];
  /* Splits past the workspace's bound were never computed (prep_kernel). */
  const int n = min(g.nsplit, p.max_items - base);
  const int G = p.group;
  const long long sstride = (long long)p.hkv * BM; /* rows between two splits' slots */
  for (int idx = threadIdx.x; idx < g.rows * (D / 4); idx += COMBINE_THREADS) {
    const int row = idx / (D / 4), c4 = idx % (D / 4);
    const long long slot0 = ((long long)base * p.hkv + hk) * BM + row;
    const float *ls = p.ws_lse + slot0;
    const float *os = p.ws_o + slot0 * D + c4 * 4;
    float M = -INFINITY;
#pragma unroll 8
    for (int s = 0; s < n; s++)
      M = fmaxf(M, ls[s * sstride]);
    /* exp(-inf - M) is 0 for a split that saw no key, once M is finite. */
    const float Ms = M == -INFINITY ? 0.0f : M;
    float sum = 0.0f, o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 4
    for (int s = 0; s < n; s++) {
      const float w = __expf(ls[s * sstride] - Ms);
      const float4 x = *reinterpret_cast<const float4 *>(os + s * sstride * D);
      sum += w;
      o[0] += w * x.x;
      o[1] += w * x.y;
      o[2] += w * x.z;
      o[3] += w * x.w;
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int pr = g.r0 + row;
    const int qi = pr / G, h = hk * G + pr % G;
    uint2 v;
    v.x = pack2<T>(o[0] * inv, o[1] * inv);
    v.y = pack2<T>(o[2] * inv, o[3] * inv);
    T *Og = static_cast<T *>(p.o) + ((long long)(g.qs + qi) * p.hq + h) * D + c4 * 4;
    *reinterpret_cast<uint2 *>(Og) = v;
    if (p.lse != nullptr && c4 == 0)
      p.lse[(long long)h * p.total_q + g.qs + qi] = sum > 0.0f ? M + logf(sum) : -INFINITY;
  }
}

/* ---- workspace: a memory pool of the library's own per device, so that
 * freed workspaces stay mapped for the next call (the device's default
 * pool gives memory back at every synchronisation unless its owner, the
 * application, says otherwise). */

constexpr int MAX_DEVICES = 64;
pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
cudaMemPool_t pools[MAX_DEVICES];

cudaError_t get_pool(int dev, cudaMemPool_t *out) {
  if (dev < 0 || dev >= MAX_DEVICES)
    return cudaErrorNotSupported;
  pthread_mutex_lock(&pool_lock);
  cudaError_t err = cudaSuccess;
  if (pools[dev] == nullptr) {
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    cudaMemPool_t pool;
    err = cudaMemPoolCreate(&pool, &props);
    if (err == cudaSuccess) {
      /* Up to this much stays reserved between calls; a call needs a few
       * to a few tens of megabytes. */
      uint64_t keep = 256ull << 20;
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
      pools[dev] = pool;
    }
  }
  *out = pools[dev];
  pthread_mutex_unlock(&pool_lock);
  return err;
}

cudaError_t ws_alloc(void **ptr, size_t bytes, int dev, cudaStream_t stream) {
  int supported = 0;
  if (cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, dev) != cudaSuccess ||
      !supported)
    return cudaErrorNotSupported;
  /* While a graph is captured the allocation becomes a node of the graph,
   * which only the device's default pool can make. */
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &cap) != cudaSuccess)
    return cudaErrorNotSupported;
  if (cap == cudaStreamCaptureStatusActive)
    return cudaMallocAsync(ptr, bytes, stream);
  cudaMemPool_t pool;
  cudaError_t err = get_pool(dev, &pool);
  if (err != cudaSuccess)
    return err;
  return cudaMallocFromPoolAsync(ptr, bytes, pool, stream);
}

/* ---- launch */

template <typename T, int D, int MT, int STAGES, int MINB>
cudaError_t launch(dec_params p, const scree__attn_cuda_args *a, int num_sms, int split_mode,
                   int waves, int force_chunk) {
  using SM = dec_smem<T, D, MT, STAGES>;
  constexpr int BM = SM::BM;
  cudaStream_t stream = static_cast<cudaStream_t>(a->stream);
  auto kernel = decode_kernel<T, D, MT, STAGES, MINB>;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SM::BYTES);
  if (err != cudaSuccess)
    return err;

  const long long mrows = (long long)a->max_seqlen_q * p.group;
  const long long rt = (mrows + BM - 1) / BM;
  const long long units = rt * a->batch;
  if (units == 0)
    return cudaSuccess;
  if (units * p.hkv > INT_MAX)
    return cudaErrorInvalidConfiguration;
  p.row_tiles = (int)rt;

  /* C: the keys of one split. The work is about total_k keys per row tile
   * and key/value head (fewer under a window); aim for `waves` blocks per
   * resident slot, but never fewer than about 128 KB of K and V a block,
   * below which a block's start and merge cost more than its reads. */
  int smem_per_sm = 0;
  cudaDeviceGetAttribute(&smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, a->device);
  int per_sm = smem_per_sm / (int)(SM::BYTES + 1024);
  per_sm = per_sm < 1 ? 1 : (per_sm > MINB ? MINB : per_sm);
  long long keys = a->total_k;
  if (a->left >= 0) {
    const long long window_keys = (long long)a->batch * (a->left + a->max_seqlen_q + 1);
    keys = window_keys < keys ? window_keys : keys;
  }
  const long long work = keys * rt * p.hkv;
  const long long slots = (long long)num_sms * per_sm;
  const long long cmin = (128 * 1024) / (D * 4);
  long long chunk = (work + slots * waves - 1) / (slots * waves);
  chunk = chunk < cmin ? cmin : chunk;
  chunk = (chunk + 63) / 64 * 64;
  if (force_chunk > 0)
    chunk = force_chunk;

  p.prefix = nullptr;
  p.ws_o = p.ws_lse = nullptr;
  p.max_items = 0;
  p.chunk = INT_MAX;
  void *ws = nullptr;
  if (split_mode != 0 && chunk < a->max_seqlen_k) {
    /* Bound on the splits: sum over units of ceil(len / C) <= R * (total_k
     * / C + batch) for lengths that sum to total_k. */
    const long long items = rt * ((a->total_k + chunk - 1) / chunk + a->batch);
    const long long rows = items * p.hkv * BM;
    const size_t bytes = (size_t)(units + 1) * 4 + 256 + (size_t)rows * (D + 1) * 4;
    if (items * p.hkv <= INT_MAX && ws_alloc(&ws, bytes, a->device, stream) == cudaSuccess) {
      p.chunk = (int)chunk;
      p.max_items = (int)items;
      char *w = static_cast<char *>(ws);
      p.ws_o = reinterpret_cast<float *>(w);
      p.ws_lse = p.ws_o + rows * D;
      p.prefix = reinterpret_cast<int *>(p.ws_lse + rows);
    } else {
      /* No workspace: one split per unit, slower on long keys but the same
       * result. */
      cudaGetLastError();
      ws = nullptr;
    }
  }

  if (p.prefix == nullptr) {
    kernel<<<(unsigned)(units * p.hkv), THREADS, SM::BYTES, stream>>>(p);
    return cudaGetLastError();
  }
  decode_prep_kernel<BM><<<1, 1024, 0, stream>>>(p, const_cast<int *>(p.prefix));
  err = cudaGetLastError();
  if (err == cudaSuccess) {
    kernel<<<(unsigned)((long long)p.max_items * p.hkv), THREADS, SM::BYTES, stream>>>(p);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) {
    decode_combine_kernel<T, D, BM><<<(unsigned)(units * p.hkv), COMBINE_THREADS, 0, stream>>>(p);
    err = cudaGetLastError();
  }
  /* Freed in stream order: after the combine has read it. */
  cudaError_t ferr = cudaFreeAsync(ws, stream);
  return err != cudaSuccess ? err : ferr;
}

template <typename T>
cudaError_t dispatch(const dec_params &p, const scree__attn_cuda_args *a, int num_sms,
                     int split_mode, int waves, int force_chunk) {
  const bool one_tile = (long long)a->max_seqlen_q * p.group <= 16;
  switch (a->head_dim) {
  case 64:
    return one_tile ? launch<T, 64, 1, 6, 2>(p, a, num_sms, split_mode, waves, force_chunk)
                    : launch<T, 64, 2, 6, 2>(p, a, num_sms, split_mode, waves, force_chunk);
  case 128:
    return one_tile ? launch<T, 128, 1, 3, 2>(p, a, num_sms, split_mode, waves, force_chunk)
                    : launch<T, 128, 2, 3, 2>(p, a, num_sms, split_mode, waves, force_chunk);
  case 256:
    /* 16 rows only: 32 would need 256 accumulator registers a thread. */
    return launch<T, 256, 1, 3, 1>(p, a, num_sms, split_mode, waves, force_chunk);
  default:
    return cudaErrorInvalidValue;
  }
}

} // namespace

extern "C" int scree__attn_decode_wanted(int mode, int max_seqlen_q, int group, int head_dim) {
  if (head_dim != 64 && head_dim != 128 && head_dim != 256)
    return 0;
  if (mode >= 2)
    return 1;
  return mode == 1 && (long long)max_seqlen_q * group <= 64;
}

extern "C" int scree__attn_decode_launch(const scree__attn_cuda_args *a) {
  /* SCREE_ATTN_DECODE_SPLIT=0 keeps one split per unit (no workspace);
   * SCREE_ATTN_DECODE_WAVES sets the blocks aimed for per resident slot
   * (default 8); SCREE_ATTN_DECODE_CHUNK forces the keys of a split (tests
   * use it to put sequence ends on and just past split boundaries). Each is
   * read once per process. */
  static const int split_mode = scree__kernels_env_int("SCREE_ATTN_DECODE_SPLIT", 1);
  static const int waves_env = scree__kernels_env_int("SCREE_ATTN_DECODE_WAVES", 8);
  static const int force_chunk = scree__kernels_env_int("SCREE_ATTN_DECODE_CHUNK", 0);
  const int waves = waves_env > 0 ? waves_env : 8;
  int num_sms = 0;
  cudaError_t err = cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, a->device);
  if (err != cudaSuccess)
    return err;
  dec_params p;
  set_common_params(p, a);
  p.q = a->q;
  p.k = a->k;
  p.v = a->v;
  p.row_tiles = 1;
  p.chunk = INT_MAX;
  p.prefix = nullptr;
  p.max_items = 0;
  p.ws_o = p.ws_lse = nullptr;
  /* A forced chunk is rounded to the 16-key slices. */
  const int fc = force_chunk > 0 ? (force_chunk + 15) / 16 * 16 : 0;
  err = a->bf16 ? dispatch<__nv_bfloat16>(p, a, num_sms, split_mode, waves, fc)
                : dispatch<__half>(p, a, num_sms, split_mode, waves, fc);
  return (int)err;
}
