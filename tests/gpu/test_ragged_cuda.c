/* scree/ragged.h on the GPU against a host computation written here.
 *
 * The plan: random masks of every mask dtype, right, left and mixed
 * padding, empty rows, more rows than the plan's block (its scan runs in
 * chunks) and bad masks (a 2, a -1, a gap, the wrong side), checking the
 * offsets, shifts, the first bad row and the longest row. The gather:
 * random bytes, rows of 1 to 70,000 bytes (each vector width, the path for
 * rows longer than a block's share), unaligned buffers, and an output
 * poisoned first so that a byte left unwritten shows. Exits 77 ("SKIP: no
 * CUDA device") without a GPU. */
#include <criterion/criterion.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scree/ragged.h"

#include "../attn_testutil.h"
#include "gpu_skip.h"

#define CK(call)                                                                       \
  do {                                                                                 \
    cudaError_t e_ = (call);                                                           \
    cr_assert_eq(e_, cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));            \
  } while (0)

static int64_t rand_below(int64_t n) { return n <= 0 ? 0 : (int64_t)(next_u64() % (uint64_t)n); }

/* Writes value v at element i of a mask of element size es. */
static void put(void *mask, size_t es, int64_t i, int64_t v) {
  switch (es) {
  case 1: ((int8_t *)mask)[i] = (int8_t)v; break;
  case 2: ((int16_t *)mask)[i] = (int16_t)v; break;
  case 4: ((int32_t *)mask)[i] = (int32_t)v; break;
  default: ((int64_t *)mask)[i] = v; break;
  }
}

static int64_t get(const void *mask, size_t es, int64_t i) {
  switch (es) {
  case 1: return ((const int8_t *)mask)[i];
  case 2: return ((const int16_t *)mask)[i];
  case 4: return ((const int32_t *)mask)[i];
  default: return ((const int64_t *)mask)[i];
  }
}

typedef struct plan_case {
  scree_dtype dtype;
  int64_t batch, seqlen;
  int side;       /* what the plan is asked to allow */
  int left_share; /* percent of rows padded on the left */
  int empty_share;
} plan_case;

/* Builds a random mask (corrupting two rows when bad_rows: a value that is
 * not 0 or 1, or for bool an extra 1, in an early row and a gap in the last
 * one), runs the plan and checks it against the host's reading of the same
 * mask. */
static void run_plan(const plan_case *c, int bad_rows) {
  rng_state = fresh_seed();
  const int64_t B = c->batch, S = c->seqlen;
  const size_t es = scree_dtype_size(c->dtype);
  void *mask = calloc((size_t)(B * S) + 1, es);
  for (int64_t b = 0; b < B; b++) {
    int64_t n = rand_below(100) < c->empty_share ? 0 : rand_below(S + 1);
    if (b == B / 2)
      n = S; /* one full row */
    const int64_t start = rand_below(100) < c->left_share ? S - n : 0;
    for (int64_t s = 0; s < n; s++)
      put(mask, es, b * S + start + s, 1);
  }
  if (bad_rows && B > 2 && S > 2) {
    put(mask, es, (B - 1) * S + 0, 1);
    put(mask, es, (B - 1) * S + 1, 0);
    put(mask, es, (B - 1) * S + 2, 1);
    put(mask, es, (B / 3) * S + rand_below(S), c->dtype == SCREE_BOOL ? 1 : (B % 2 ? 2 : -1));
  }

  /* The host's verdict, row by row. */
  int64_t *len = calloc((size_t)B + 1, 8), *start = calloc((size_t)B + 1, 8);
  int64_t expect_bad = -1;
  for (int64_t b = 0; b < B; b++) {
    int64_t n = 0, first = S, last = -1;
    int not_binary = 0;
    for (int64_t s = 0; s < S; s++) {
      const int64_t v = get(mask, es, b * S + s);
      if (v != 0) {
        n++;
        first = first < s ? first : s;
        last = s;
        not_binary |= v != 1;
      }
    }
    const int contiguous = n == 0 || last - first + 1 == n;
    const int prefix = n == 0 || first == 0, suffix = n == 0 || last == S - 1;
    const int sided = c->side == SCREE_PAD_RIGHT  ? prefix
                      : c->side == SCREE_PAD_LEFT ? suffix
                                                  : (prefix || suffix);
    if ((not_binary || !contiguous || !sided) && expect_bad < 0)
      expect_bad = b;
    len[b] = n;
    start[b] = n == 0 ? 0 : first;
  }
  if (bad_rows && B > 2 && S > 2)
    cr_assert_geq(expect_bad, 0, "the corrupted mask should have a bad row");

  void *dmask = NULL;
  int64_t *dwork = NULL, *host = NULL;
  const int64_t wl = scree_pack_plan_work_len(B);
  CK(cudaMalloc(&dmask, (size_t)(B * S) * es + 1));
  CK(cudaMalloc((void **)&dwork, (size_t)wl * 8));
  CK(cudaMallocHost((void **)&host, (size_t)(B + 3) * 8));
  CK(cudaMemcpy(dmask, mask, (size_t)(B * S) * es, cudaMemcpyHostToDevice));
  CK(cudaMemset(dwork, 0xab, (size_t)wl * 8));
  memset(host, 0xcd, (size_t)(B + 3) * 8);

  char msg[256] = "";
  scree_pack_plan_args a = {.mask = dmask, .mask_dtype = c->dtype, .batch = B, .seqlen = S,
                            .side = c->side, .work = dwork, .host = host, .msg = msg,
                            .msg_len = sizeof(msg)};
  cr_assert_eq(scree_pack_plan_cuda(&a), 0, "plan: %s", msg);
  int64_t *shift = malloc((size_t)B * 8 + 8);
  CK(cudaMemcpy(shift, dwork + B + 3, (size_t)B * 8, cudaMemcpyDeviceToHost));

  cr_expect_eq(host[B + 1], expect_bad, "B=%lld S=%lld %s: first bad row %lld, expected %lld",
               (long long)B, (long long)S, scree_dtype_name(c->dtype), (long long)host[B + 1],
               (long long)expect_bad);
  int64_t off = 0, longest = 0;
  cr_expect_eq(host[0], 0);
  for (int64_t b = 0; b < B; b++) {
    cr_expect_eq(shift[b], b * S + start[b] - off, "shift[%lld]", (long long)b);
    off += len[b];
    longest = len[b] > longest ? len[b] : longest;
    if (host[b + 1] != off) {
      cr_expect_eq(host[b + 1], off, "offsets[%lld]", (long long)b + 1);
      break;
    }
  }
  cr_expect_eq(host[B + 2], longest, "longest row");
  free(shift);
  CK(cudaFree(dmask));
  CK(cudaFree(dwork));
  CK(cudaFreeHost(host));
  free(mask);
  free(len);
  free(start);
}

Test(ragged_cuda, plan_every_mask_dtype) {
  const scree_dtype dts[] = {SCREE_BOOL, SCREE_INT8, SCREE_UINT8, SCREE_INT16, SCREE_INT32,
                             SCREE_INT64};
  for (size_t i = 0; i < sizeof(dts) / sizeof(dts[0]); i++) {
    plan_case c = {dts[i], 37, 301, SCREE_PAD_AUTO, 40, 10};
    run_plan(&c, 0);
    c.side = SCREE_PAD_RIGHT;
    c.left_share = 0;
    run_plan(&c, 0);
    c.side = SCREE_PAD_LEFT;
    c.left_share = 100;
    run_plan(&c, 0);
  }
}

Test(ragged_cuda, plan_odd_sizes) {
  const int64_t sizes[][2] = {{0, 5}, {1, 1}, {1, 0}, {4, 0}, {3, 1}, {1023, 7}, {1024, 9},
                              {1025, 3}, {2600, 17}, {2, 70001}};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    plan_case c = {SCREE_INT64, sizes[i][0], sizes[i][1], SCREE_PAD_AUTO, 50, 20};
    run_plan(&c, 0);
  }
}

Test(ragged_cuda, plan_finds_the_first_bad_row) {
  const scree_dtype dts[] = {SCREE_BOOL, SCREE_INT8, SCREE_INT32, SCREE_INT64};
  for (size_t i = 0; i < sizeof(dts) / sizeof(dts[0]); i++) {
    plan_case c = {dts[i], 2100, 13, SCREE_PAD_AUTO, 30, 5};
    run_plan(&c, 1);
    /* Rows padded on the left under SCREE_PAD_RIGHT are bad too. */
    plan_case r = {dts[i], 50, 20, SCREE_PAD_RIGHT, 30, 0};
    run_plan(&r, 0);
    plan_case l = {dts[i], 50, 20, SCREE_PAD_LEFT, 70, 0};
    run_plan(&l, 0);
  }
}

/* Gathers random rows of row_bytes from a padded buffer at byte offset
 * misalign and compares with the host. */
static void run_gather(int64_t B, int64_t S, size_t row_bytes, size_t misalign) {
  rng_state = fresh_seed();
  int64_t *off = calloc((size_t)B + 1, 8), *shift = calloc((size_t)B + 1, 8);
  for (int64_t b = 0; b < B; b++) {
    const int64_t n = rand_below(100) < 15 ? 0 : rand_below(S + 1);
    const int64_t start = rand_below(S - n + 1);
    off[b + 1] = off[b] + n;
    shift[b] = b * S + start - off[b];
  }
  const int64_t total = off[B];
  const size_t padded_bytes = (size_t)(B * S) * row_bytes, out_bytes = (size_t)total * row_bytes;
  uint8_t *hp = malloc(padded_bytes + 1), *expect = malloc(out_bytes + 1);
  uint8_t *got = malloc(out_bytes + 1);
  for (size_t i = 0; i < padded_bytes; i++)
    hp[i] = (uint8_t)next_u64();
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = off[b]; t < off[b + 1]; t++)
      memcpy(expect + (size_t)t * row_bytes, hp + (size_t)(t + shift[b]) * row_bytes, row_bytes);

  uint8_t *dp = NULL, *dout = NULL;
  int64_t *doff = NULL, *dshift = NULL;
  CK(cudaMalloc((void **)&dp, padded_bytes + 32));
  CK(cudaMalloc((void **)&dout, out_bytes + 32));
  CK(cudaMalloc((void **)&doff, (size_t)(B + 1) * 8));
  CK(cudaMalloc((void **)&dshift, (size_t)(B + 1) * 8));
  CK(cudaMemcpy(dp + misalign, hp, padded_bytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(doff, off, (size_t)(B + 1) * 8, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dshift, shift, (size_t)(B + 1) * 8, cudaMemcpyHostToDevice));
  CK(cudaMemset(dout, 0x5a, out_bytes + 32));

  char msg[256] = "";
  cudaStream_t stream;
  CK(cudaStreamCreate(&stream));
  cr_assert_eq(scree_pack_rows_cuda(dp + misalign, dout + misalign, row_bytes, doff, dshift, B,
                                    total, stream, msg, sizeof(msg)),
               0, "gather: %s", msg);
  CK(cudaStreamSynchronize(stream));
  CK(cudaStreamDestroy(stream));
  CK(cudaMemcpy(got, dout + misalign, out_bytes, cudaMemcpyDeviceToHost));
  uint8_t after[16];
  CK(cudaMemcpy(after, dout + misalign + out_bytes, 16, cudaMemcpyDeviceToHost));
  cr_expect(memcmp(got, expect, out_bytes) == 0,
            "B=%lld S=%lld row_bytes=%zu misalign=%zu: packed rows differ", (long long)B,
            (long long)S, row_bytes, misalign);
  for (int i = 0; i < 16; i++)
    cr_expect_eq(after[i], 0x5a, "byte %d past the output was written", i);
  CK(cudaFree(dp));
  CK(cudaFree(dout));
  CK(cudaFree(doff));
  CK(cudaFree(dshift));
  free(hp);
  free(expect);
  free(got);
  free(off);
  free(shift);
}

Test(ragged_cuda, gather_every_width) {
  const size_t rows[] = {1, 2, 3, 4, 6, 8, 12, 16, 48, 8192, 8200, 65536, 70000};
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    const int64_t S = rows[i] > 4096 ? 9 : 67;
    run_gather(13, S, rows[i], 0);
    run_gather(13, S, rows[i], 1); /* byte-aligned only */
    run_gather(13, S, rows[i], 8);
  }
}

Test(ragged_cuda, gather_odd_batches) {
  run_gather(1, 1, 16, 0);
  run_gather(1, 1000, 16, 0);     /* one long row */
  run_gather(3000, 5, 8, 0);      /* many short rows, a deep search */
  run_gather(1, 5, 24, 0);
  run_gather(200, 300, 4, 0);     /* 256 tokens a block */
  /* Nothing to copy: no launch, no error. */
  char msg[64] = "";
  cr_expect_eq(scree_pack_rows_cuda(NULL, NULL, 16, NULL, NULL, 4, 0, NULL, msg, sizeof(msg)), 0,
               "%s", msg);
}

/* Host lengths: many calls in a row on one stream, so the staging slots
 * are reused (and grown) while earlier copies may still be queued, each
 * checked against the host. */
Test(ragged_cuda, lengths_reuse_staging) {
  rng_state = fresh_seed();
  cudaStream_t stream;
  CK(cudaStreamCreate(&stream));
  enum { CALLS = 40 };
  int64_t *host_off[CALLS], *lengths[CALLS], *dwork[CALLS], total[CALLS], B[CALLS];
  uint8_t *dout[CALLS];
  const int64_t S = 33;
  const size_t row = 24;
  const int64_t maxB = 3000;
  uint8_t *hp = malloc((size_t)(maxB * S) * row);
  for (size_t i = 0; i < (size_t)(maxB * S) * row; i++)
    hp[i] = (uint8_t)next_u64();
  uint8_t *dp = NULL;
  CK(cudaMalloc((void **)&dp, (size_t)(maxB * S) * row));
  CK(cudaMemcpy(dp, hp, (size_t)(maxB * S) * row, cudaMemcpyHostToDevice));
  for (int c = 0; c < CALLS; c++) {
    B[c] = c % 3 == 0 ? 1 + rand_below(maxB) : 1 + rand_below(40);
    lengths[c] = malloc((size_t)B[c] * 8);
    host_off[c] = malloc((size_t)(B[c] + 1) * 8);
    total[c] = 0;
    for (int64_t b = 0; b < B[c]; b++)
      total[c] += lengths[c][b] = rand_below(S + 1);
    CK(cudaMalloc((void **)&dwork[c], (size_t)(2 * B[c] + 1) * 8));
    CK(cudaMalloc((void **)&dout[c], (size_t)total[c] * row + 1));
    char msg[256] = "";
    scree_pack_lengths_args a = {.padded = dp, .values = dout[c], .row_bytes = row,
                                 .lengths = lengths[c], .batch = B[c], .seqlen = S,
                                 .total = total[c],
                                 .side = c % 2 ? SCREE_PAD_LEFT : SCREE_PAD_RIGHT,
                                 .host_offsets = host_off[c], .work = dwork[c],
                                 .stream = stream, .msg = msg, .msg_len = sizeof(msg)};
    cr_assert_eq(scree_pack_lengths_cuda(&a), 0, "call %d: %s", c, msg);
    /* The caller's lengths may change once the call returns. */
    memset(lengths[c], 0xff, (size_t)B[c] * 8);
  }
  CK(cudaStreamSynchronize(stream));
  for (int c = 0; c < CALLS; c++) {
    int64_t *off = malloc((size_t)(2 * B[c] + 1) * 8);
    CK(cudaMemcpy(off, dwork[c], (size_t)(2 * B[c] + 1) * 8, cudaMemcpyDeviceToHost));
    cr_expect(memcmp(off, host_off[c], (size_t)(B[c] + 1) * 8) == 0, "call %d: offsets", c);
    cr_expect_eq(host_off[c][B[c]], total[c], "call %d: total", c);
    uint8_t *got = malloc((size_t)total[c] * row + 1);
    CK(cudaMemcpy(got, dout[c], (size_t)total[c] * row, cudaMemcpyDeviceToHost));
    int same = 1;
    for (int64_t b = 0; b < B[c] && same; b++) {
      const int64_t n = off[b + 1] - off[b];
      const int64_t start = c % 2 ? S - n : 0;
      cr_expect_eq(off[B[c] + 1 + b], b * S + start - off[b], "call %d: shift[%lld]", c,
                   (long long)b);
      same = memcmp(got + (size_t)off[b] * row, hp + (size_t)(b * S + start) * row,
                    (size_t)n * row) == 0;
      cr_expect(same, "call %d: row %lld differs", c, (long long)b);
    }
    free(got);
    free(off);
    free(lengths[c]);
    free(host_off[c]);
    CK(cudaFree(dwork[c]));
    CK(cudaFree(dout[c]));
  }
  CK(cudaFree(dp));
  free(hp);
  CK(cudaStreamDestroy(stream));
}
