/* The kernels of scree/ragged.h: packing a padded batch on the GPU.
 *
 * The plan is two kernels: one block per row summarises the mask (count,
 * first and last real position, any value not 0 or 1), then a single block
 * scans the counts into offsets, checks every row against the padding side
 * and computes each row's source shift. Both are a few microseconds: the
 * mask is (batch, seqlen), small beside the values. The gather is the
 * bandwidth-bound part and is written as a plain copy: each block owns a
 * run of output tokens, looks up their rows once (a binary search over the
 * offsets, into shared memory) and then moves 16-byte vectors with several
 * loads in flight per thread. The arguments were checked in
 * cpu/ragged.c. */
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "../cpu/attention_internal.h"
#include "scree/ragged.h"

namespace {

constexpr int kSummaryThreads = 256;
constexpr int kPlanThreads = 1024;
constexpr int kGatherThreads = 256;
constexpr int kGatherMaxTokens = 256;

struct row_summary {
  long long count, first, last;
  int not_binary;
};

__device__ row_summary combine(row_summary a, row_summary b) {
  a.count += b.count;
  a.first = min(a.first, b.first);
  a.last = max(a.last, b.last);
  a.not_binary |= b.not_binary;
  return a;
}

__device__ row_summary warp_combine(row_summary s) {
  for (int d = 16; d > 0; d >>= 1) {
    row_summary o;
    o.count = __shfl_xor_sync(0xffffffffu, s.count, d);
    o.first = __shfl_xor_sync(0xffffffffu, s.first, d);
    o.last = __shfl_xor_sync(0xffffffffu, s.last, d);
    o.not_binary = __shfl_xor_sync(0xffffffffu, s.not_binary, d);
    s = combine(s, o);
  }
  return s;
}

/* One block per row. U is the unsigned integer type of the mask's width, so
 * that every integer dtype is read the same way: nonzero is real, and
 * anything but 0 and 1 (a negative value too) is not binary. */
template <typename U>
__global__ void __launch_bounds__(kSummaryThreads)
    mask_summary_kernel(const U *__restrict__ mask, long long seqlen, long long batch,
                        long long *__restrict__ summary) {
  const long long b = blockIdx.x;
  const U *row = mask + b * seqlen;
  row_summary s = {0, seqlen, -1, 0};
#pragma unroll 4
  for (long long i = threadIdx.x; i < seqlen; i += kSummaryThreads) {
    const U v = row[i];
    if (v != 0) {
      s.count++;
      s.first = min(s.first, i);
      s.last = i; /* i only grows within a thread */
      s.not_binary |= v != 1;
    }
  }
  s = warp_combine(s);
  __shared__ row_summary warps[kSummaryThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0)
    warps[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kSummaryThreads / 32; w++)
      s = combine(s, warps[w]);
    summary[SCREE_PACK_SUMMARY_LENGTH * batch + b] = s.count;
    summary[SCREE_PACK_SUMMARY_FIRST * batch + b] = s.first;
    summary[SCREE_PACK_SUMMARY_LAST * batch + b] = s.last;
    summary[SCREE_PACK_SUMMARY_NOT_BINARY * batch + b] = s.not_binary;
  }
}

/* Inclusive prefix sum over the block; every thread passes its value. */
__device__ long long block_inclusive_scan(long long x) {
  __shared__ long long warp_sums[kPlanThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int d = 1; d < 32; d <<= 1) {
    const long long y = __shfl_up_sync(0xffffffffu, x, d);
    if (lane >= d)
      x += y;
  }
  if (lane == 31)
    warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    long long w = lane < kPlanThreads / 32 ? warp_sums[lane] : 0;
    for (int d = 1; d < 32; d <<= 1) {
      const long long y = __shfl_up_sync(0xffffffffu, w, d);
      if (lane >= d)
        w += y;
    }
    if (lane < kPlanThreads / 32)
      warp_sums[lane] = w;
  }
  __syncthreads();
  if (warp > 0)
    x += warp_sums[warp - 1];
  __syncthreads(); /* warp_sums is reused by the next call */
  return x;
}

/* A single block: offsets, shift, the first bad row and the longest row,
 * laid out in work as scree_pack_plan_args describes. */
__global__ void __launch_bounds__(kPlanThreads)
    plan_kernel(long long *__restrict__ work, int batch, long long seqlen, int side) {
  long long *offsets = work;
  long long *shift = work + batch + 3;
  const long long *summary = shift + batch;
  __shared__ long long carry;
  __shared__ int first_bad, longest;
  if (threadIdx.x == 0) {
    carry = 0;
    first_bad = INT_MAX;
    longest = 0;
    offsets[0] = 0;
  }
  __syncthreads();
  for (int base = 0; base < batch; base += kPlanThreads) {
    const int b = base + (int)threadIdx.x;
    long long n = 0, start = 0;
    if (b < batch) {
      n = summary[SCREE_PACK_SUMMARY_LENGTH * (long long)batch + b];
      const long long first = summary[SCREE_PACK_SUMMARY_FIRST * (long long)batch + b];
      const long long last = summary[SCREE_PACK_SUMMARY_LAST * (long long)batch + b];
      const bool not_binary = summary[SCREE_PACK_SUMMARY_NOT_BINARY * (long long)batch + b] != 0;
      const bool empty = n == 0;
      const bool contiguous = empty || last - first + 1 == n;
      const bool prefix = empty || first == 0;
      const bool suffix = empty || last == seqlen - 1;
      const bool sided = side == SCREE_PAD_RIGHT  ? prefix
                         : side == SCREE_PAD_LEFT ? suffix
                                                  : (prefix || suffix);
      if (not_binary || !contiguous || !sided)
        atomicMin(&first_bad, b);
      atomicMax(&longest, (int)n);
      start = empty ? 0 : first;
    }
    const long long inclusive = block_inclusive_scan(n);
    const long long before = carry;
    if (b < batch) {
      offsets[b + 1] = before + inclusive;
      shift[b] = (long long)b * seqlen + start - (before + inclusive - n);
    }
    __syncthreads();
    if (threadIdx.x == kPlanThreads - 1)
      carry = before + inclusive; /* the last thread's sum covers the chunk */
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    work[batch + 1] = first_bad == INT_MAX ? -1 : first_bad;
    work[batch + 2] = longest;
  }
}

/* Loads and stores, with or without the streaming cache hint (each byte is
 * touched once: evict-first keeps the copy from flushing L2). */
template <bool kStream, typename V> __device__ __forceinline__ V load(const V *p) {
  if constexpr (kStream)
    return __ldcs(p);
  else
    return *p;
}

template <bool kStream, typename V> __device__ __forceinline__ void store(V *p, V v) {
  if constexpr (kStream)
    __stcs(p, v);
  else
    *p = v;
}

/* Output tokens [t0, t0 + tokens) of one block; V is the widest vector that
 * divides the row and both base addresses. kUnroll loads are in flight per
 * thread before the first store. */
template <typename V, int kUnroll, bool kStream>
__global__ void __launch_bounds__(kGatherThreads)
    gather_kernel(const V *__restrict__ padded, V *__restrict__ values, long long nvec,
                  const long long *__restrict__ offsets, const long long *__restrict__ shift,
                  int batch, long long total, int tokens_per_block) {
  __shared__ long long src[kGatherMaxTokens];
  const long long t0 = (long long)blockIdx.x * tokens_per_block;
  const int tokens = (int)min((long long)tokens_per_block, total - t0);
  for (int j = threadIdx.x; j < tokens; j += kGatherThreads) {
    const long long t = t0 + j;
    /* The last row starting at or before t; empty rows share their
     * offset with the next row, so this skips them. */
    int lo = 0, hi = batch - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (offsets[mid] <= t)
        lo = mid;
      else
        hi = mid - 1;
    }
    src[j] = t + shift[lo];
  }
  __syncthreads();
  if (tokens_per_block == 1) {
    /* Rows longer than a block's share: one row a block. */
    const V *from = padded + src[0] * nvec;
    V *to = values + t0 * nvec;
    for (long long i = threadIdx.x; i < nvec; i += kUnroll * kGatherThreads) {
      V r[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; k++)
        if (i + k * kGatherThreads < nvec)
          r[k] = load<kStream>(from + i + k * kGatherThreads);
#pragma unroll
      for (int k = 0; k < kUnroll; k++)
        if (i + k * kGatherThreads < nvec)
          store<kStream>(to + i + k * kGatherThreads, r[k]);
    }
    return;
  }
  /* Here tokens * nvec < 2 * the block's share: 32-bit indices. */
  const unsigned n = (unsigned)(tokens * nvec), w = (unsigned)nvec;
  for (unsigned i = threadIdx.x; i < n; i += kUnroll * kGatherThreads) {
    V r[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; k++) {
      const unsigned x = i + k * kGatherThreads;
      if (x < n) {
        const unsigned j = x / w;
        r[k] = load<kStream>(padded + src[j] * nvec + (x - j * w));
      }
    }
#pragma unroll
    for (int k = 0; k < kUnroll; k++) {
      const unsigned x = i + k * kGatherThreads;
      if (x < n)
        store<kStream>(values + t0 * nvec + x, r[k]);
    }
  }
}

/* The gather's shapes, measured in bench (SCREE_PACK_VARIANT, read once
 * per process; 0 is the default): loads in flight per thread, the
 * streaming hint, and the vectors one block moves. */
struct gather_shape {
  int unroll;
  bool stream;
  int vectors;
};
constexpr gather_shape kGatherShapes[] = {
    {4, false, 4096}, {8, false, 4096}, {4, true, 4096}, {8, true, 8192}, {8, false, 8192}};

int gather_variant() {
  static int variant = -1;
  if (variant < 0) {
    const char *env = getenv("SCREE_PACK_VARIANT");
    const int v = env != NULL ? atoi(env) : 0;
    variant = v >= 0 && v < (int)(sizeof(kGatherShapes) / sizeof(kGatherShapes[0])) ? v : 0;
  }
  return variant;
}

template <typename V, int kUnroll, bool kStream>
cudaError_t launch_gather_shape(const void *padded, void *values, size_t row_bytes,
                                const int64_t *offsets, const int64_t *shift, int batch,
                                int64_t total, int vectors, cudaStream_t stream) {
  const long long nvec = (long long)(row_bytes / sizeof(V));
  long long per_block = vectors / nvec;
  if (per_block < 1)
    per_block = 1;
  if (per_block > kGatherMaxTokens)
    per_block = kGatherMaxTokens;
  const long long blocks = (total + per_block - 1) / per_block;
  if (blocks > INT_MAX)
    return cudaErrorInvalidConfiguration;
  gather_kernel<V, kUnroll, kStream><<<(unsigned)blocks, kGatherThreads, 0, stream>>>(
      static_cast<const V *>(padded), static_cast<V *>(values), nvec,
      reinterpret_cast<const long long *>(offsets), reinterpret_cast<const long long *>(shift),
      batch, (long long)total, (int)per_block);
  return cudaGetLastError();
}

template <typename V>
cudaError_t launch_gather(const void *padded, void *values, size_t row_bytes,
                          const int64_t *offsets, const int64_t *shift, int batch, int64_t total,
                          cudaStream_t stream) {
  const gather_shape g = kGatherShapes[gather_variant()];
  if (g.unroll == 8 && g.stream)
    return launch_gather_shape<V, 8, true>(padded, values, row_bytes, offsets, shift, batch,
                                           total, g.vectors, stream);
  if (g.unroll == 8)
    return launch_gather_shape<V, 8, false>(padded, values, row_bytes, offsets, shift, batch,
                                            total, g.vectors, stream);
  if (g.stream)
    return launch_gather_shape<V, 4, true>(padded, values, row_bytes, offsets, shift, batch,
                                           total, g.vectors, stream);
  return launch_gather_shape<V, 4, false>(padded, values, row_bytes, offsets, shift, batch,
                                          total, g.vectors, stream);
}

int cuda_fail(cudaError_t err, char *msg, size_t msg_len, const char *what) {
  cudaGetLastError(); /* clear a sticky launch error so later calls see their own */
  return scree__attn_fail(SCREE_ECUDA, msg, msg_len, "%s: %s", what, cudaGetErrorString(err));
}

/* Pinned staging for host-to-device copies of offsets and shifts. A copy
 * from pageable memory would make the host wait for the stream; pinned
 * memory allocated per call costs more than the conversion. So a few slots
 * of pinned memory are kept for the life of the process and used in turn;
 * each slot's event, recorded after its copy, says when the stream is past
 * it and the slot may be written again (by then it nearly always is: the
 * wait is a check). Events belong to a device, so a slot moving to another
 * device gets a new one. */
constexpr int kStageSlots = 8;

struct stage_slot {
  int64_t *buf;
  size_t cap; /* entries */
  cudaEvent_t done;
  int device;
};

std::mutex stage_lock;
stage_slot stage[kStageSlots];
int stage_next;

int stage_copy(const int64_t *offsets, long long batch, long long seqlen, int side,
               int64_t *work, cudaStream_t stream, char *msg, size_t msg_len) {
  const size_t need = (size_t)(2 * batch + 1);
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess)
    return cuda_fail(err, msg, msg_len, "cudaGetDevice");
  std::lock_guard<std::mutex> hold(stage_lock);
  stage_slot &s = stage[stage_next];
  stage_next = (stage_next + 1) % kStageSlots;
  if (s.done != nullptr && (err = cudaEventSynchronize(s.done)) != cudaSuccess)
    return cuda_fail(err, msg, msg_len, "waiting for a staging slot");
  if (s.done != nullptr && s.device != device) {
    cudaEventDestroy(s.done);
    s.done = nullptr;
  }
  if (s.done == nullptr) {
    if ((err = cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming)) != cudaSuccess) {
      s.done = nullptr;
      return cuda_fail(err, msg, msg_len, "creating a staging event");
    }
    s.device = device;
  }
  if (s.cap < need) {
    if (s.buf != nullptr)
      cudaFreeHost(s.buf);
    s.buf = nullptr;
    s.cap = 0;
    size_t cap = need < 4096 ? 4096 : need;
    if (cudaHostAlloc((void **)&s.buf, cap * sizeof(int64_t), cudaHostAllocPortable) !=
        cudaSuccess) {
      cudaGetLastError();
      s.buf = nullptr;
      return scree__attn_fail(SCREE_ENOMEM, msg, msg_len,
                              "no pinned memory for %zu staging entries", cap);
    }
    s.cap = cap;
  }
  int64_t *shift = s.buf + batch + 1;
  memcpy(s.buf, offsets, (size_t)(batch + 1) * sizeof(int64_t));
  for (long long b = 0; b < batch; b++) {
    const long long start = side == SCREE_PAD_LEFT ? seqlen - (offsets[b + 1] - offsets[b]) : 0;
    shift[b] = b * seqlen + start - offsets[b];
  }
  err = cudaMemcpyAsync(work, s.buf, need * sizeof(int64_t), cudaMemcpyHostToDevice, stream);
  if (err == cudaSuccess)
    err = cudaEventRecord(s.done, stream);
  if (err != cudaSuccess)
    return cuda_fail(err, msg, msg_len, "copying offsets to the device");
  return 0;
}

} // namespace

extern "C" int scree__pack_plan_cuda(const scree_pack_plan_args *a) {
  cudaStream_t stream = static_cast<cudaStream_t>(a->stream);
  long long *work = reinterpret_cast<long long *>(a->work);
  const long long batch = a->batch, seqlen = a->seqlen;
  cudaError_t err = cudaSuccess;
  if (batch > 0) {
    switch (scree_dtype_size(a->mask_dtype)) {
    case 1:
      mask_summary_kernel<uint8_t><<<(unsigned)batch, kSummaryThreads, 0, stream>>>(
          static_cast<const uint8_t *>(a->mask), seqlen, batch, work + 2 * batch + 3);
      break;
    case 2:
      mask_summary_kernel<uint16_t><<<(unsigned)batch, kSummaryThreads, 0, stream>>>(
          static_cast<const uint16_t *>(a->mask), seqlen, batch, work + 2 * batch + 3);
      break;
    case 4:
      mask_summary_kernel<uint32_t><<<(unsigned)batch, kSummaryThreads, 0, stream>>>(
          static_cast<const uint32_t *>(a->mask), seqlen, batch, work + 2 * batch + 3);
      break;
    default:
      mask_summary_kernel<unsigned long long><<<(unsigned)batch, kSummaryThreads, 0, stream>>>(
          static_cast<const unsigned long long *>(a->mask), seqlen, batch, work + 2 * batch + 3);
      break;
    }
    if ((err = cudaGetLastError()) != cudaSuccess)
      return cuda_fail(err, a->msg, a->msg_len, "mask summary kernel");
  }
  plan_kernel<<<1, kPlanThreads, 0, stream>>>(work, (int)batch, seqlen, (int)a->side);
  if ((err = cudaGetLastError()) != cudaSuccess)
    return cuda_fail(err, a->msg, a->msg_len, "pack plan kernel");
  err = cudaMemcpyAsync(a->host, a->work, (size_t)(batch + 3) * sizeof(int64_t),
                        cudaMemcpyDeviceToHost, stream);
  if (err != cudaSuccess)
    return cuda_fail(err, a->msg, a->msg_len, "copying the pack plan to the host");
  if ((err = cudaStreamSynchronize(stream)) != cudaSuccess)
    return cuda_fail(err, a->msg, a->msg_len, "waiting for the pack plan");
  return 0;
}

extern "C" int scree__pack_rows_cuda(const void *padded, void *values, size_t row_bytes,
                                     const int64_t *offsets, const int64_t *shift,
                                     int64_t batch, int64_t total, void *stream_, char *msg,
                                     size_t msg_len) {
  if (total == 0)
    return 0;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_);
  const uintptr_t align = (uintptr_t)padded | (uintptr_t)values | (uintptr_t)row_bytes;
  cudaError_t err;
  if ((align & 15u) == 0)
    err = launch_gather<uint4>(padded, values, row_bytes, offsets, shift, (int)batch, total, stream);
  else if ((align & 7u) == 0)
    err = launch_gather<uint2>(padded, values, row_bytes, offsets, shift, (int)batch, total, stream);
  else if ((align & 3u) == 0)
    err = launch_gather<uint32_t>(padded, values, row_bytes, offsets, shift, (int)batch, total,
                                  stream);
  else if ((align & 1u) == 0)
    err = launch_gather<uint16_t>(padded, values, row_bytes, offsets, shift, (int)batch, total,
                                  stream);
  else
    err = launch_gather<uint8_t>(padded, values, row_bytes, offsets, shift, (int)batch, total,
                                 stream);
  if (err != cudaSuccess)
    return cuda_fail(err, msg, msg_len, "pack gather kernel");
  return 0;
}

extern "C" int scree__pack_stage_cuda(const int64_t *offsets, int64_t batch, int64_t seqlen,
                                      int side, int64_t *work, void *stream, char *msg,
                                      size_t msg_len) {
  return stage_copy(offsets, batch, seqlen, side, work, static_cast<cudaStream_t>(stream), msg,
                    msg_len);
}
