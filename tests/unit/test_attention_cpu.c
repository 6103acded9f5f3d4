/* The CPU attention path against a float64 reference written here, on fresh
 * random inputs for every run. The seed is printed in every failure message
 * so a failing case can be replayed with SCREE_TEST_SEED. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scree/attention.h"

#include "../attn_testutil.h"

static size_t esize(scree_dtype t) { return t == SCREE_FLOAT32 ? 4 : 2; }

/* Stores x (rounded to the dtype) at index i and returns the stored value. */
static double put(void *buf, scree_dtype t, size_t i, double x) {
  if (t == SCREE_FLOAT32) {
    ((float *)buf)[i] = (float)x;
    return (float)x;
  }
  if (t == SCREE_BFLOAT16) {
    uint16_t h = to_bf16((float)x);
    ((uint16_t *)buf)[i] = h;
    return from_bf16(h);
  }
  uint16_t h = to_f16((float)x);
  ((uint16_t *)buf)[i] = h;
  return from_f16(h);
}

static double get(const void *buf, scree_dtype t, size_t i) {
  if (t == SCREE_FLOAT32)
    return ((const float *)buf)[i];
  if (t == SCREE_BFLOAT16)
    return from_bf16(((const uint16_t *)buf)[i]);
  return from_f16(((const uint16_t *)buf)[i]);
}

/* ---- one case */

typedef struct tcase {
  scree_dtype dtype;
  int d, hq, hkv;
  int causal, left, right;
  int batch;
  const int *lq, *lk; /* lk NULL: same as lq */
  float scale;        /* as passed; <= 0 means default */
  int threads;
} tcase;

static void run_case(const tcase *c) {
  uint64_t seed = fresh_seed();
  rng_state = seed;
  const int B = c->batch, D = c->d, HQ = c->hq, HKV = c->hkv;
  const int *lk = c->lk ? c->lk : c->lq;
  int32_t *cuq = calloc((size_t)B + 1, 4), *cuk = calloc((size_t)B + 1, 4);
  int maxq = 0, maxk = 0;
  for (int b = 0; b < B; b++) {
    cuq[b + 1] = cuq[b] + c->lq[b];
    cuk[b + 1] = cuk[b] + lk[b];
    if (c->lq[b] > maxq)
      maxq = c->lq[b];
    if (lk[b] > maxk)
      maxk = lk[b];
  }
  const int tq = cuq[B], tk = cuk[B];
  size_t nq = (size_t)tq * HQ * D, nk = (size_t)tk * HKV * D;
  size_t es = esize(c->dtype);
  void *q = malloc(nq * es + 1), *k = malloc(nk * es + 1), *v = malloc(nk * es + 1);
  void *out = malloc(nq * es + 1);
  float *lse = malloc((size_t)tq * HQ * sizeof(float) + 1);
  double *qd = malloc(nq * sizeof(double) + 1), *kd = malloc(nk * sizeof(double) + 1);
  double *vd = malloc(nk * sizeof(double) + 1);
  /* q is wider than k so that some rows have a peaked softmax. */
  for (size_t i = 0; i < nq; i++)
    qd[i] = put(q, c->dtype, i, 3.0 * uniform());
  for (size_t i = 0; i < nk; i++)
    kd[i] = put(k, c->dtype, i, uniform());
  for (size_t i = 0; i < nk; i++)
    vd[i] = put(v, c->dtype, i, uniform());
  memset(out, 0xff, nq * es); /* NaN in every dtype: unwritten rows show */
  for (size_t i = 0; i < (size_t)tq * HQ; i++)
    lse[i] = NAN;

  char msg[256] = "";
  scree_attention_args a;
  memset(&a, 0, sizeof(a));
  a.device = SCREE_DEVICE_CPU;
  a.q_dtype = a.k_dtype = a.v_dtype = a.out_dtype = c->dtype;
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.lse = lse;
  a.cu_seqlens_q = cuq;
  a.cu_seqlens_k = cuk;
  a.batch = B;
  a.total_q = tq;
  a.total_k = tk;
  a.max_seqlen_q = maxq;
  a.max_seqlen_k = maxk;
  a.num_heads_q = HQ;
  a.num_heads_kv = HKV;
  a.head_dim = D;
  a.softmax_scale = c->scale;
  a.causal = c->causal;
  a.window_left = c->left;
  a.window_right = c->right;
  a.num_threads = c->threads;
  a.msg = msg;
  a.msg_len = sizeof(msg);
  int rc = scree_attention_fwd(&a);
  cr_assert_eq(rc, 0, "seed=%llu: rc=%d (%s)", (unsigned long long)seed, rc, msg);

  const double scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)D);
  const int right = c->causal ? 0 : c->right;
  double *s = malloc(((size_t)maxk + 1) * sizeof(double));
  double *o = malloc((size_t)D * sizeof(double));
  double err2 = 0, ref2 = 0, lse_err = 0;
  for (int b = 0; b < B; b++) {
    const int Lq = c->lq[b], Lk = lk[b], off = Lk - Lq;
    for (int h = 0; h < HQ; h++) {
      const int hk = h / (HQ / HKV);
      for (int i = 0; i < Lq; i++) {
        const size_t qrow = ((size_t)(cuq[b] + i) * HQ + h) * D;
        double m = -INFINITY;
        for (int j = 0; j < Lk; j++) {
          int vis = (right < 0 || j <= i + off + right) && (c->left < 0 || j >= i + off - c->left);
          if (!vis) {
            s[j] = -INFINITY;
            continue;
          }
          const size_t krow = ((size_t)(cuk[b] + j) * HKV + hk) * D;
          double dot = 0;
          for (int e = 0; e < D; e++)
            dot += qd[qrow + e] * kd[krow + e];
          s[j] = dot * scale;
          if (s[j] > m)
            m = s[j];
        }
        double l = 0;
        for (int e = 0; e < D; e++)
          o[e] = 0;
        if (m > -INFINITY) {
          for (int j = 0; j < Lk; j++) {
            if (s[j] == -INFINITY)
              continue;
            double p = exp(s[j] - m);
            l += p;
            const size_t vrow = ((size_t)(cuk[b] + j) * HKV + hk) * D;
            for (int e = 0; e < D; e++)
              o[e] += p * vd[vrow + e];
          }
          for (int e = 0; e < D; e++)
            o[e] /= l;
        }
        for (int e = 0; e < D; e++) {
          double got = get(out, c->dtype, qrow + e);
          cr_assert(!isnan(got), "seed=%llu: out[b=%d,i=%d,h=%d,e=%d] is NaN (unwritten?)",
                    (unsigned long long)seed, b, i, h, e);
          if (m == -INFINITY)
            cr_assert_eq(got, 0.0, "seed=%llu: row with no keys b=%d i=%d h=%d e=%d = %g",
                         (unsigned long long)seed, b, i, h, e, got);
          err2 += (got - o[e]) * (got - o[e]);
          ref2 += o[e] * o[e];
        }
        const double want_lse = m == -INFINITY ? -INFINITY : m + log(l);
        const double got_lse = lse[(size_t)h * tq + cuq[b] + i];
        if (want_lse == -INFINITY) {
          cr_assert(got_lse == -INFINITY, "seed=%llu: lse[h=%d,b=%d,i=%d]=%g, want -inf",
                    (unsigned long long)seed, h, b, i, got_lse);
        } else {
          cr_assert(isfinite(got_lse), "seed=%llu: lse[h=%d,b=%d,i=%d]=%g",
                    (unsigned long long)seed, h, b, i, got_lse);
          if (fabs(got_lse - want_lse) > lse_err)
            lse_err = fabs(got_lse - want_lse);
        }
      }
    }
  }
  const double rel = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
  const double tol = c->dtype == SCREE_FLOAT32 ? 1e-5 : c->dtype == SCREE_FLOAT16 ? 2e-3 : 1e-2;
  cr_assert(rel < tol, "seed=%llu: relative error %.3g >= %.3g (dtype %s, D=%d)",
            (unsigned long long)seed, rel, tol, scree_dtype_name(c->dtype), D);
  cr_assert(lse_err < 1e-4 * (1 + log((double)maxk + 1)), "seed=%llu: lse error %.3g",
            (unsigned long long)seed, lse_err);

  free(s);
  free(o);
  free(qd);
  free(kd);
  free(vd);
  free(q);
  free(k);
  free(v);
  free(out);
  free(lse);
  free(cuq);
  free(cuk);
}

/* Lengths that are multiples of no tile, with empty and single-token
 * sequences among them. */
static const int odd_lens[] = {17, 0, 1, 63, 65, 127, 129, 0, 5};
#define N_ODD ((int)(sizeof(odd_lens) / sizeof(odd_lens[0])))

static const scree_dtype dtypes[] = {SCREE_FLOAT32, SCREE_BFLOAT16, SCREE_FLOAT16};

Test(attention_cpu, odd_lengths_every_dtype_and_mask) {
  for (int t = 0; t < 3; t++)
    for (int mode = 0; mode < 3; mode++) {
      tcase c = {dtypes[t], 64, 2, 2, mode == 1, mode == 2 ? 20 : -1, mode == 2 ? 7 : -1,
                 N_ODD, odd_lens, NULL, 0.0f, 0};
      run_case(&c);
    }
}

Test(attention_cpu, head_dim_128_gqa_causal) {
  for (int t = 0; t < 3; t++) {
    tcase c = {dtypes[t], 128, 8, 2, 1, -1, -1, N_ODD, odd_lens, NULL, 0.0f, 0};
    run_case(&c);
  }
}

Test(attention_cpu, mqa_sliding_window) {
  tcase c = {SCREE_BFLOAT16, 128, 4, 1, 1, 16, -1, N_ODD, odd_lens, NULL, 0.0f, 0};
  run_case(&c);
  tcase c2 = {SCREE_FLOAT16, 64, 4, 1, 0, 0, 9, N_ODD, odd_lens, NULL, 0.0f, 0};
  run_case(&c2);
  tcase c3 = {SCREE_FLOAT32, 64, 3, 1, 0, -1, 3, N_ODD, odd_lens, NULL, 0.0f, 0};
  run_case(&c3);
}

Test(attention_cpu, one_long_sequence_among_short) {
  static const int lens[] = {3, 1100, 0, 40, 1};
  tcase c = {SCREE_BFLOAT16, 64, 2, 1, 1, -1, -1, 5, lens, NULL, 0.0f, 0};
  run_case(&c);
  tcase c2 = {SCREE_FLOAT32, 64, 1, 1, 0, -1, -1, 5, lens, NULL, 0.0f, 0};
  run_case(&c2);
}

Test(attention_cpu, q_and_k_lengths_differ) {
  /* Fewer queries than keys (decoding, chunked prefill) and more queries
   * than keys, where the first rows of a causal sequence see no key. */
  static const int lq1[] = {1, 5, 17, 0, 3};
  static const int lk1[] = {40, 5, 100, 7, 0};
  static const int lq2[] = {40, 17, 65, 2};
  static const int lk2[] = {10, 3, 64, 0};
  for (int t = 0; t < 3; t++) {
    for (int causal = 0; causal < 2; causal++) {
      tcase c = {dtypes[t], 64, 4, 2, causal, -1, -1, 5, lq1, lk1, 0.0f, 0};
      run_case(&c);
      tcase c2 = {dtypes[t], 128, 4, 2, causal, -1, -1, 4, lq2, lk2, 0.0f, 0};
      run_case(&c2);
    }
    tcase c3 = {dtypes[t], 64, 2, 2, 1, 4, -1, 4, lq2, lk2, 0.0f, 0};
    run_case(&c3);
    tcase c4 = {dtypes[t], 64, 2, 2, 0, 3, 2, 5, lq1, lk1, 0.0f, 0};
    run_case(&c4);
  }
}

Test(attention_cpu, odd_and_large_head_dims) {
  for (int t = 0; t < 3; t++) {
    tcase c = {dtypes[t], 37, 2, 1, 1, -1, -1, N_ODD, odd_lens, NULL, 0.0f, 0};
    run_case(&c);
    tcase c2 = {dtypes[t], 256, 2, 2, 0, -1, -1, N_ODD, odd_lens, NULL, 0.0f, 0};
    run_case(&c2);
  }
  tcase c3 = {SCREE_FLOAT32, 1, 1, 1, 0, -1, -1, N_ODD, odd_lens, NULL, 0.0f, 0};
  run_case(&c3);
}

Test(attention_cpu, explicit_scale_and_thread_counts) {
  tcase c = {SCREE_FLOAT32, 64, 2, 2, 1, -1, -1, N_ODD, odd_lens, NULL, 0.3f, 1};
  run_case(&c);
  tcase c2 = {SCREE_FLOAT32, 64, 2, 2, 0, -1, -1, N_ODD, odd_lens, NULL, NAN, 5};
  run_case(&c2);
  tcase c3 = {SCREE_BFLOAT16, 64, 2, 2, 0, -1, -1, N_ODD, odd_lens, NULL, -1.0f, 3};
  run_case(&c3);
}

Test(attention_cpu, empty_batches) {
  static const int zeros[] = {0, 0, 0};
  tcase c = {SCREE_BFLOAT16, 64, 2, 2, 1, -1, -1, 3, zeros, NULL, 0.0f, 0};
  run_case(&c);
  tcase c2 = {SCREE_FLOAT32, 64, 2, 2, 1, -1, -1, 0, zeros, NULL, 0.0f, 0};
  run_case(&c2);
}

Test(attention_cpu, threads_give_identical_results) {
  static const int lens[] = {300, 17, 129};
  uint64_t seed = fresh_seed();
  rng_state = seed;
  const int D = 64, H = 2, T = 446;
  int32_t cu[] = {0, 300, 317, 446};
  uint16_t *q = malloc((size_t)T * H * D * 2), *k = malloc((size_t)T * H * D * 2);
  uint16_t *v = malloc((size_t)T * H * D * 2);
  uint16_t *o1 = malloc((size_t)T * H * D * 2), *o2 = malloc((size_t)T * H * D * 2);
  for (int i = 0; i < T * H * D; i++) {
    q[i] = to_bf16((float)uniform());
    k[i] = to_bf16((float)uniform());
    v[i] = to_bf16((float)uniform());
  }
  scree_attention_args a;
  memset(&a, 0, sizeof(a));
  a.device = SCREE_DEVICE_CPU;
  a.q_dtype = a.k_dtype = a.v_dtype = a.out_dtype = SCREE_BFLOAT16;
  a.q = q;
  a.k = k;
  a.v = v;
  a.cu_seqlens_q = cu;
  a.cu_seqlens_k = cu;
  a.batch = 3;
  a.total_q = a.total_k = T;
  a.max_seqlen_q = a.max_seqlen_k = lens[0];
  a.num_heads_q = a.num_heads_kv = H;
  a.head_dim = D;
  a.causal = 1;
  a.window_left = a.window_right = -1;
  a.out = o1;
  a.num_threads = 1;
  cr_assert_eq(scree_attention_fwd(&a), 0);
  a.out = o2;
  a.num_threads = 7;
  cr_assert_eq(scree_attention_fwd(&a), 0);
  cr_assert(memcmp(o1, o2, (size_t)T * H * D * 2) == 0, "seed=%llu: results depend on threads",
            (unsigned long long)seed);
  free(q);
  free(k);
  free(v);
  free(o1);
  free(o2);
}

/* ---- bad arguments: each returns its code and names the argument */

static float bq[4 * 2 * 8], bk[4 * 2 * 8], bv[4 * 2 * 8], bo[4 * 2 * 8];
static int32_t bcu[] = {0, 1, 4};

static scree_attention_args good_args(char *msg, size_t len) {
  scree_attention_args a;
  memset(&a, 0, sizeof(a));
  a.device = SCREE_DEVICE_CPU;
  a.q_dtype = a.k_dtype = a.v_dtype = a.out_dtype = SCREE_FLOAT32;
  a.q = bq;
  a.k = bk;
  a.v = bv;
  a.out = bo;
  a.cu_seqlens_q = bcu;
  a.cu_seqlens_k = bcu;
  a.batch = 2;
  a.total_q = a.total_k = 4;
  a.max_seqlen_q = a.max_seqlen_k = 3;
  a.num_heads_q = a.num_heads_kv = 2;
  a.head_dim = 8;
  a.window_left = a.window_right = -1;
  a.msg = msg;
  a.msg_len = len;
  return a;
}

#define EXPECT_BAD(mutation, code, needle)                                             \
  do {                                                                                 \
    char msg[256] = "";                                                                \
    scree_attention_args a = good_args(msg, sizeof(msg));                              \
    mutation;                                                                          \
    int rc_ = scree_attention_fwd(&a);                                                 \
    cr_expect_eq(rc_, (code), "%s: rc=%d (%s), want %d", #mutation, rc_, msg, (code)); \
    cr_expect(strstr(msg, (needle)) != NULL, "%s: message '%s' does not name '%s'",    \
              #mutation, msg, (needle));                                               \
  } while (0)

Test(attention_cpu, good_args_pass) {
  char msg[256] = "";
  scree_attention_args a = good_args(msg, sizeof(msg));
  cr_assert_eq(scree_attention_fwd(&a), 0, "%s", msg);
  cr_assert_eq(scree_attention_fwd(NULL), SCREE_EINVAL);
}

Test(attention_cpu, bad_arguments) {
  EXPECT_BAD(a.device = (scree_device_type)7, SCREE_EINVAL, "device=7");
  EXPECT_BAD(a.q_dtype = SCREE_INT32, SCREE_EINVAL, "q_dtype=int32");
  EXPECT_BAD(a.k_dtype = SCREE_FLOAT16, SCREE_EINVAL, "k_dtype=float16");
  EXPECT_BAD(a.v_dtype = SCREE_BFLOAT16, SCREE_EINVAL, "v_dtype=bfloat16");
  EXPECT_BAD(a.out_dtype = SCREE_FLOAT64, SCREE_EINVAL, "out_dtype=float64");
  EXPECT_BAD(a.batch = -1, SCREE_EINVAL, "batch=-1");
  EXPECT_BAD(a.total_q = -2, SCREE_EINVAL, "total_q=-2");
  EXPECT_BAD(a.total_k = -2, SCREE_EINVAL, "total_k=-2");
  EXPECT_BAD(a.max_seqlen_q = -1, SCREE_EINVAL, "max_seqlen_q=-1");
  EXPECT_BAD(a.max_seqlen_k = -1, SCREE_EINVAL, "max_seqlen_k=-1");
  EXPECT_BAD(a.num_heads_q = 0, SCREE_EINVAL, "num_heads_q=0");
  EXPECT_BAD(a.num_heads_kv = -3, SCREE_EINVAL, "num_heads_kv=-3");
  EXPECT_BAD((a.num_heads_q = 12, a.num_heads_kv = 5), SCREE_EINVAL,
             "num_heads_q=12 is not a multiple of num_heads_kv=5");
  EXPECT_BAD(a.head_dim = 0, SCREE_EINVAL, "head_dim=0");
  EXPECT_BAD(a.window_left = -2, SCREE_EINVAL, "window_left=-2");
  EXPECT_BAD(a.window_right = -5, SCREE_EINVAL, "window_right=-5");
  EXPECT_BAD((a.causal = 1, a.window_right = 4), SCREE_EINVAL, "window_right=4");
  EXPECT_BAD(a.softmax_scale = INFINITY, SCREE_EINVAL, "softmax_scale");
  EXPECT_BAD(a.num_threads = -1, SCREE_EINVAL, "num_threads=-1");
  EXPECT_BAD(a.cu_seqlens_q = NULL, SCREE_EINVAL, "cu_seqlens_q is NULL");
  EXPECT_BAD(a.cu_seqlens_k = NULL, SCREE_EINVAL, "cu_seqlens_k is NULL");
  EXPECT_BAD(a.q = NULL, SCREE_EINVAL, "q is NULL");
  EXPECT_BAD(a.k = NULL, SCREE_EINVAL, "k is NULL");
  EXPECT_BAD(a.v = NULL, SCREE_EINVAL, "v is NULL");
  EXPECT_BAD(a.out = NULL, SCREE_EINVAL, "out is NULL");
  EXPECT_BAD((a.total_q = 2000000000, a.num_heads_q = 2000000000, a.num_heads_kv = 1,
              a.head_dim = 1000000),
             SCREE_EOVERFLOW, "total_q*num_heads_q*head_dim");

  static int32_t not_zero[] = {1, 1, 4};
  static int32_t decreasing[] = {0, 3, 2};
  static int32_t wrong_total[] = {0, 1, 3};
  static int32_t too_long[] = {0, 0, 4};
  EXPECT_BAD(a.cu_seqlens_q = not_zero, SCREE_EINVAL, "cu_seqlens_q[0]=1");
  EXPECT_BAD(a.cu_seqlens_k = decreasing, SCREE_EINVAL, "cu_seqlens_k[2]=2 < cu_seqlens_k[1]=3");
  EXPECT_BAD(a.cu_seqlens_q = wrong_total, SCREE_EINVAL, "cu_seqlens_q[2]=3 != total=4");
  EXPECT_BAD(a.cu_seqlens_k = too_long, SCREE_EINVAL, "length 4 > max_seqlen=3");
  EXPECT_BAD(a.total_q = 3, SCREE_EINVAL, "cu_seqlens_q[2]=4 > total=3");

  /* No message buffer is fine too. */
  scree_attention_args a = good_args(NULL, 0);
  a.head_dim = -1;
  cr_expect_eq(scree_attention_fwd(&a), SCREE_EINVAL);
}

Test(attention_cpu, cuda_request) {
  char msg[256] = "";
  scree_attention_args a = good_args(msg, sizeof(msg));
  a.device = SCREE_DEVICE_CUDA;
  int rc = scree_attention_fwd(&a);
  if (!scree_attention_have_cuda()) {
    cr_expect_eq(rc, SCREE_ENOTSUP, "rc=%d (%s)", rc, msg);
    cr_expect(strstr(msg, "CUDA") != NULL, "%s", msg);
  } else {
    /* float32 is a CPU-only dtype; host pointers are no device memory. */
    cr_expect(rc == SCREE_ENOTSUP || rc == SCREE_EINVAL || rc == SCREE_ENODEV ||
                  rc == SCREE_ECUDA,
              "rc=%d (%s)", rc, msg);
  }
}
