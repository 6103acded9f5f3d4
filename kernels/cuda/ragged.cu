/* The kernels of scree/ragged.h: packing a padded batch on the GPU.
 *
 * The plan is one kernel: one block per row summarises the mask (count,
 * first and last real position, any value not 0 or 1), and the last block
 * to finish scans the counts into offsets, checks every row against the
 * padding side, computes each row's source shift and writes what the host
 * needs straight into mapped pinned memory, so the caller's one sync is the
 * only step between the mask and the host. The mask is (batch, seqlen),
 * small beside the values. The gather is the bandwidth-bound part and is
 * written as a plain copy: each block owns a run of output tokens, looks up
 * their rows once (a binary search over the offsets, into shared memory)
 * and then moves 16-byte vectors with several loads in flight per thread.
 * The arguments were checked in src/ragged.c. */
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "attention_internal.h"
#include "attention_common.cuh"
#include "scree/ragged.h"

namespace {

constexpr int kPlanThreads = 256;
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

/* Inclusive prefix sum over the block; every thread passes its value. */
__device__ long long block_inclusive_scan(long long x) {
  __shared__ long long warp_sums[kPlanThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = scree_attn::warp_inclusive_scan(x, lane);
  if (lane == 31)
    warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    long long w = lane < kPlanThreads / 32 ? warp_sums[lane] : 0;
    w = scree_attn::warp_inclusive_scan(w, lane);
    if (lane < kPlanThreads / 32)
      warp_sums[lane] = w;
  }
  __syncthreads();
  if (warp > 0)
    x += warp_sums[warp - 1];
  __syncthreads(); /* warp_sums is reused by the next call */
  return x;
}

/* The scan of the plan, by the one block that finished last: offsets, shift,
 * the first bad row and the longest row, into work (laid out as
 * scree_pack_plan_args describes) and their first batch + 3 entries into
 * host_out too. The summaries were written by other blocks: read through
 * L2 (__ldcg), past this SM's L1. */
__device__ void plan_scan(long long *__restrict__ work, long long *__restrict__ host_out,
                          int batch, long long seqlen, int side) {
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
    host_out[0] = 0;
  }
  __syncthreads();
  for (int base = 0; base < batch; base += kPlanThreads) {
    const int b = base + (int)threadIdx.x;
    long long n = 0, start = 0;
    if (b < batch) {
      n = __ldcg(summary + SCREE_PACK_SUMMARY_LENGTH * (long long)batch + b);
      const long long first = __ldcg(summary + SCREE_PACK_SUMMARY_FIRST * (long long)batch + b);
      const long long last = __ldcg(summary + SCREE_PACK_SUMMARY_LAST * (long long)batch + b);
      const bool not_binary =
          __ldcg(summary + SCREE_PACK_SUMMARY_NOT_BINARY * (long long)batch + b) != 0;
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
      host_out[b + 1] = before + inclusive;
      shift[b] = (long long)b * seqlen + start - (before + inclusive - n);
    }
    __syncthreads();
    if (threadIdx.x == kPlanThreads - 1)
      carry = before + inclusive; /* the last thread's sum covers the chunk */
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const long long bad = first_bad == INT_MAX ? -1 : first_bad;
    work[batch + 1] = host_out[batch + 1] = bad;
    work[batch + 2] = host_out[batch + 2] = longest;
  }
}

/* One block per row. U is the unsigned integer type of the mask's width, so
 * that every integer dtype is read the same way: nonzero is real, and
 * anything but 0 and 1 (a negative value too) is not binary. The block that
 * finishes last (counted in work[6 * batch + 3], zeroed before the launch)
 * runs the scan. */
template <typename U>
__global__ void __launch_bounds__(kPlanThreads)
    plan_kernel(const U *__restrict__ mask, long long seqlen, int batch, int side,
                long long *__restrict__ work, long long *__restrict__ host_out) {
  const long long b = blockIdx.x;
  const U *row = mask + b * seqlen;
  row_summary s = {0, seqlen, -1, 0};
#pragma unroll 4
  for (long long i = threadIdx.x; i < seqlen; i += kPlanThreads) {
    const U v = row[i];
    if (v != 0) {
      s.count++;
      s.first = min(s.first, i);
      s.last = i; /* i only grows within a thread */
      s.not_binary |= v != 1;
    }
  }
  s = warp_combine(s);
  __shared__ row_summary warps[kPlanThreads / 32];
  __shared__ bool last_block;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0)
    warps[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kPlanThreads / 32; w++)
      s = combine(s, warps[w]);
    long long *summary = work + 2 * (long long)batch + 3;
    summary[SCREE_PACK_SUMMARY_LENGTH * (long long)batch + b] = s.count;
    summary[SCREE_PACK_SUMMARY_FIRST * (long long)batch + b] = s.first;
    summary[SCREE_PACK_SUMMARY_LAST * (long long)batch + b] = s.last;
    summary[SCREE_PACK_SUMMARY_NOT_BINARY * (long long)batch + b] = s.not_binary;
    /* Publish the summary before taking a ticket: the last block reads
     * every row's. */
    __threadfence();
    unsigned int *done = reinterpret_cast<unsigned int *>(work + 6 * (long long)batch + 3);
    last_block = atomicAdd(done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last_block)
    return;
  __threadfence();
  plan_scan(work, host_out, batch, seqlen, side);
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
  static const int variant = [] {
    const int v = scree__kernels_env_int("SCREE_PACK_VARIANT", 0);
    return v >= 0 && v < (int)(sizeof(kGatherShapes) / sizeof(kGatherShapes[0])) ? v : 0;
  }();
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
  return scree__fail(SCREE_ECUDA, msg, msg_len, "%s: %s", what, cudaGetErrorString(err));
}

/* Pinned staging between the host and the device: the offsets and shifts
 * of host-length packing going down, the plan's results coming up. A copy
 * from pageable memory would make the host wait for the stream, and pinned
 * memory allocated per call costs more than the conversion, so a few slots
 * of mapped pinned memory are kept for the life of the process and used in
 * turn. A slot is busy while a call fills or reads it on the host; its
 * event, recorded after the device's last use, says when the stream is past
 * it (by the time the slot comes round again it nearly always is: the wait
 * is a check). Events belong to a device, so a slot moving to another
 * device gets a new one. */
constexpr int kStageSlots = 8;

struct stage_slot {
  int64_t *buf; /* host address */
  int64_t *dev; /* the same memory as the device addresses it */
  size_t cap;   /* entries */
  cudaEvent_t done;
  int device;
  bool busy;
  bool temporary; /* taken when every kept slot was busy; freed on release */
};

std::mutex stage_lock;
stage_slot stage[kStageSlots];
int stage_next;

void stage_release(stage_slot *s) {
  if (s->temporary) {
    /* Its copy may still be queued: wait for it before freeing. */
    if (s->done != nullptr) {
      cudaEventSynchronize(s->done);
      cudaEventDestroy(s->done);
    }
    if (s->buf != nullptr)
      cudaFreeHost(s->buf);
    delete s;
    return;
  }
  std::lock_guard<std::mutex> hold(stage_lock);
  s->busy = false;
}

/* A slot of at least need entries on the current device, marked busy and
 * past its last use; NULL with *rc and the message set on failure. */
stage_slot *stage_acquire(size_t need, int *rc, char *msg, size_t msg_len) {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) {
    *rc = cuda_fail(err, msg, msg_len, "cudaGetDevice");
    return nullptr;
  }
  stage_slot *s = nullptr;
  {
    std::lock_guard<std::mutex> hold(stage_lock);
    for (int i = 0; i < kStageSlots && s == nullptr; i++) {
      stage_slot *c = &stage[(stage_next + i) % kStageSlots];
      if (!c->busy) {
        s = c;
        stage_next = (stage_next + i + 1) % kStageSlots;
      }
    }
    if (s != nullptr)
      s->busy = true;
  }
  if (s == nullptr) {
    /* More threads in here at once than slots: one of its own. */
    s = new (std::nothrow) stage_slot();
    if (s == nullptr) {
      *rc = scree__fail(SCREE_ENOMEM, msg, msg_len, "no memory for a staging slot");
      return nullptr;
    }
    s->busy = s->temporary = true;
  }
  if (s->done != nullptr && (err = cudaEventSynchronize(s->done)) != cudaSuccess) {
    *rc = cuda_fail(err, msg, msg_len, "waiting for a staging slot");
    goto fail;
  }
  if (s->done != nullptr && s->device != device) {
    cudaEventDestroy(s->done);
    s->done = nullptr;
  }
  if (s->done == nullptr) {
    if ((err = cudaEventCreateWithFlags(&s->done, cudaEventDisableTiming)) != cudaSuccess) {
      s->done = nullptr;
      *rc = cuda_fail(err, msg, msg_len, "creating a staging event");
      goto fail;
    }
    s->device = device;
  }
  if (s->cap < need) {
    if (s->buf != nullptr)
      cudaFreeHost(s->buf);
    s->buf = s->dev = nullptr;
    s->cap = 0;
    const size_t cap = need < 4096 ? 4096 : need;
    void *dev = nullptr;
    if (cudaHostAlloc((void **)&s->buf, cap * sizeof(int64_t),
                      cudaHostAllocPortable | cudaHostAllocMapped) != cudaSuccess ||
        cudaHostGetDevicePointer(&dev, s->buf, 0) != cudaSuccess) {
      cudaGetLastError();
      if (s->buf != nullptr)
        cudaFreeHost(s->buf);
      s->buf = nullptr;
      *rc = scree__fail(SCREE_ENOMEM, msg, msg_len,
                        "no mapped pinned memory for %zu staging entries", cap);
      goto fail;
    }
    s->dev = static_cast<int64_t *>(dev);
    s->cap = cap;
  }
  return s;
fail:
  stage_release(s);
  return nullptr;
}

int stage_copy(const int64_t *offsets, long long batch, long long seqlen, int side,
               int64_t *work, cudaStream_t stream, char *msg, size_t msg_len) {
  const size_t need = (size_t)(2 * batch + 1);
  int rc = 0;
  stage_slot *s = stage_acquire(need, &rc, msg, msg_len);
  if (s == nullptr)
    return rc;
  int64_t *shift = s->buf + batch + 1;
  memcpy(s->buf, offsets, (size_t)(batch + 1) * sizeof(int64_t));
  for (long long b = 0; b < batch; b++) {
    const long long start = side == SCREE_PAD_LEFT ? seqlen - (offsets[b + 1] - offsets[b]) : 0;
    shift[b] = b * seqlen + start - offsets[b];
  }
  cudaError_t err =
      cudaMemcpyAsync(work, s->buf, need * sizeof(int64_t), cudaMemcpyHostToDevice, stream);
  if (err == cudaSuccess)
    err = cudaEventRecord(s->done, stream);
  if (err != cudaSuccess)
    rc = cuda_fail(err, msg, msg_len, "copying offsets to the device");
  stage_release(s);
  return rc;
}

template <typename U>
cudaError_t launch_plan(const scree_pack_plan_args *a, int64_t *host_out, cudaStream_t stream) {
  plan_kernel<U><<<(unsigned)a->batch, kPlanThreads, 0, stream>>>(
      static_cast<const U *>(a->mask), (long long)a->seqlen, (int)a->batch, a->side,
      reinterpret_cast<long long *>(a->work), reinterpret_cast<long long *>(host_out));
  return cudaGetLastError();
}

} // namespace

extern "C" int scree__pack_plan_cuda(const scree_pack_plan_args *a) {
  cudaStream_t stream = static_cast<cudaStream_t>(a->stream);
  const long long batch = a->batch;
  if (batch == 0) {
    /* Nothing to summarise: offsets = {0}, on both sides. */
    a->host[0] = 0;
    a->host[1] = -1;
    a->host[2] = 0;
    cudaError_t err = cudaMemsetAsync(a->work, 0, sizeof(int64_t), stream);
    return err == cudaSuccess ? 0 : cuda_fail(err, a->msg, a->msg_len, "zeroing the offsets");
  }
  int rc = 0;
  stage_slot *s = stage_acquire((size_t)(batch + 3), &rc, a->msg, a->msg_len);
  if (s == nullptr)
    return rc;
  /* The last-block counter, then the kernel; the kernel writes the host's
   * part through the slot's device address. */
  cudaError_t err = cudaMemsetAsync(a->work + 6 * batch + 3, 0, sizeof(int64_t), stream);
  const char *what = "zeroing the plan's counter";
  if (err == cudaSuccess) {
    what = "pack plan kernel";
    switch (scree_dtype_size(a->mask_dtype)) {
    case 1:
      err = launch_plan<uint8_t>(a, s->dev, stream);
      break;
    case 2:
      err = launch_plan<uint16_t>(a, s->dev, stream);
      break;
    case 4:
      err = launch_plan<uint32_t>(a, s->dev, stream);
      break;
    default:
      err = launch_plan<unsigned long long>(a, s->dev, stream);
      break;
    }
  }
  if (err == cudaSuccess) {
    what = "waiting for the pack plan";
    err = cudaEventRecord(s->done, stream);
    if (err == cudaSuccess)
      err = cudaStreamSynchronize(stream);
  }
  if (err == cudaSuccess)
    memcpy(a->host, s->buf, (size_t)(batch + 3) * sizeof(int64_t));
  else
    rc = cuda_fail(err, a->msg, a->msg_len, what);
  stage_release(s);
  return rc;
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
