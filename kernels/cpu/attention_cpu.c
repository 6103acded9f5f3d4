/* Variable-length attention forward on the CPU: the reference for the CUDA
 * kernels and screed's attention engine on host memory.
 *
 * Work is split into items of (sequence, query block, head) handed out to
 * pthreads through an atomic counter, longest sequences first so that the
 * tail of the run is made of short items. Each row is computed in two
 * passes over its visible keys (scores, then the softmax-weighted sum of
 * values) with float32 dot products and a float64 softmax denominator.
 * bf16 and fp16 keys and values are converted to float once per item. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attention_internal.h"

#define FAIL(code, ...) scree__fail((code), a->msg, a->msg_len, __VA_ARGS__)

/* Query rows per work item: small enough for balance on short batches,
 * large enough that converting the keys once per item stays cheap. */
enum { QBLOCK = 32 };

typedef struct item {
  int32_t b, q0, q1, h;
  int64_t cost;
} item;

typedef struct job {
  const scree_attention_args *a;
  scree__attn_plan plan;
  item *items;
  int64_t n_items;
  atomic_llong next;
  atomic_llong done;
} job;

static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp == 0) {
    /* Zero or subnormal: value = man * 2^-24. */
    float f = (float)man * 5.9604644775390625e-8f;
    memcpy(&u, &f, 4);
    u |= sign;
  } else {
    u = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);      /* round to nearest even */
  return (uint16_t)(u >> 16);
}

static uint16_t f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t au = u & 0x7fffffffu;
  if (au > 0x7f800000u)
    return sign | 0x7e00;
  if (au >= 0x477ff000u) /* rounds to >= 65520: infinity */
    return sign | 0x7c00;
  if (au < 0x38800000u) {
    /* Subnormal half (or zero): round |f| * 2^24 to the nearest integer,
     * ties to even, which rintf does in the default rounding mode. */
    float af;
    memcpy(&af, &au, 4);
    return sign | (uint16_t)rintf(af * 16777216.0f);
  }
  uint32_t r = au + 0xfffu + ((au >> 13) & 1u);
  return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

/* Converts n elements starting at src (stride elements apart per row of
 * width d) into dst (rows of d floats). */
static void load_rows(float *dst, const void *src, scree_dtype t, int64_t first_elem,
                      int64_t n_rows, int64_t stride, int d) {
  for (int64_t r = 0; r < n_rows; r++) {
    int64_t e = first_elem + r * stride;
    float *o = dst + r * d;
    if (t == SCREE_FLOAT32) {
      memcpy(o, (const float *)src + e, (size_t)d * sizeof(float));
    } else if (t == SCREE_BFLOAT16) {
      const uint16_t *s = (const uint16_t *)src + e;
      for (int i = 0; i < d; i++)
        o[i] = bf16_to_f32(s[i]);
    } else {
      const uint16_t *s = (const uint16_t *)src + e;
      for (int i = 0; i < d; i++)
        o[i] = f16_to_f32(s[i]);
    }
  }
}

static void store_row(void *dst, scree_dtype t, int64_t e, const float *x, int d) {
  if (t == SCREE_FLOAT32) {
    memcpy((float *)dst + e, x, (size_t)d * sizeof(float));
  } else if (t == SCREE_BFLOAT16) {
    uint16_t *o = (uint16_t *)dst + e;
    for (int i = 0; i < d; i++)
      o[i] = f32_to_bf16(x[i]);
  } else {
    uint16_t *o = (uint16_t *)dst + e;
    for (int i = 0; i < d; i++)
      o[i] = f32_to_f16(x[i]);
  }
}

static float dot(const float *x, const float *y, int d) {
  /* Four partial sums let the compiler vectorise without -ffast-math. */
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int i = 0;
  for (; i + 4 <= d; i += 4) {
    s0 += x[i] * y[i];
    s1 += x[i + 1] * y[i + 1];
    s2 += x[i + 2] * y[i + 2];
    s3 += x[i + 3] * y[i + 3];
  }
  for (; i < d; i++)
    s0 += x[i] * y[i];
  return (s0 + s1) + (s2 + s3);
}

/* Scratch per worker: keys and values of one sequence and kv head as float,
 * one query row, scores of one row and the output accumulator. */
typedef struct scratch {
  float *kf, *vf, *qf, *s, *acc;
} scratch;

static void run_item(const job *jb, const item *it, scratch *sc) {
  const scree_attention_args *a = jb->a;
  const int d = a->head_dim;
  const int32_t hq = a->num_heads_q, hkv = a->num_heads_kv;
  const int32_t hk = it->h / (hq / hkv);
  const int32_t qs = a->cu_seqlens_q[it->b], ks = a->cu_seqlens_k[it->b];
  const int64_t lq = a->cu_seqlens_q[it->b + 1] - qs;
  const int64_t lk = a->cu_seqlens_k[it->b + 1] - ks;
  const int64_t off = lk - lq;
  const int64_t left = jb->plan.left, right = jb->plan.right;

  /* Keys visible to any row of the block. */
  int64_t jlo = 0, jhi = lk; /* [jlo, jhi) */
  if (left >= 0 && it->q0 + off - left > jlo)
    jlo = it->q0 + off - left;
  if (right >= 0 && (int64_t)(it->q1 - 1) + off + right + 1 < jhi)
    jhi = (int64_t)(it->q1 - 1) + off + right + 1;
  if (jhi > jlo) {
    load_rows(sc->kf, a->k, a->k_dtype, ((int64_t)(ks + jlo) * hkv + hk) * d, jhi - jlo,
              (int64_t)hkv * d, d);
    load_rows(sc->vf, a->v, a->v_dtype, ((int64_t)(ks + jlo) * hkv + hk) * d, jhi - jlo,
              (int64_t)hkv * d, d);
  }

  for (int32_t i = it->q0; i < it->q1; i++) {
    int64_t lo = jlo, hi = jhi;
    if (left >= 0 && i + off - left > lo)
      lo = i + off - left;
    if (right >= 0 && i + off + right + 1 < hi)
      hi = i + off + right + 1;
    const int64_t row = (int64_t)(qs + i) * hq + it->h;
    memset(sc->acc, 0, (size_t)d * sizeof(float));
    double lse = -INFINITY;
    if (hi > lo) {
      load_rows(sc->qf, a->q, a->q_dtype, row * d, 1, 0, d);
      float m = -INFINITY;
      for (int64_t j = lo; j < hi; j++) {
        float s = dot(sc->qf, sc->kf + (j - jlo) * d, d) * jb->plan.scale;
        sc->s[j - lo] = s;
        if (s > m)
          m = s;
      }
      double l = 0.0;
      for (int64_t j = lo; j < hi; j++) {
        float p = expf(sc->s[j - lo] - m);
        l += p;
        const float *vr = sc->vf + (j - jlo) * d;
        for (int c = 0; c < d; c++)
          sc->acc[c] += p * vr[c];
      }
      float inv = (float)(1.0 / l);
      for (int c = 0; c < d; c++)
        sc->acc[c] *= inv;
      lse = (double)m + log(l);
    }
    store_row(a->out, a->out_dtype, row * d, sc->acc, d);
    if (a->lse != NULL)
      a->lse[(int64_t)it->h * a->total_q + qs + i] = (float)lse;
  }
}

static void *worker(void *arg) {
  job *jb = arg;
  const scree_attention_args *a = jb->a;
  size_t kv = (size_t)(a->max_seqlen_k > 0 ? a->max_seqlen_k : 1) * (size_t)a->head_dim;
  scratch sc;
  sc.kf = malloc(kv * sizeof(float));
  sc.vf = malloc(kv * sizeof(float));
  sc.qf = malloc((size_t)a->head_dim * sizeof(float));
  sc.acc = malloc((size_t)a->head_dim * sizeof(float));
  sc.s = malloc((size_t)(a->max_seqlen_k > 0 ? a->max_seqlen_k : 1) * sizeof(float));
  if (sc.kf == NULL || sc.vf == NULL || sc.qf == NULL || sc.acc == NULL || sc.s == NULL) {
    goto out_free;
  }
  for (;;) {
    long long i = atomic_fetch_add(&jb->next, 1);
    if (i >= jb->n_items)
      break;
    run_item(jb, &jb->items[i], &sc);
    atomic_fetch_add(&jb->done, 1);
  }
out_free:
  free(sc.kf);
  free(sc.vf);
  free(sc.qf);
  free(sc.acc);
  free(sc.s);
  return NULL;
}

static int by_cost_desc(const void *x, const void *y) {
  const item *p = x, *q = y;
  if (p->cost != q->cost)
    return p->cost > q->cost ? -1 : 1;
  if (p->b != q->b)
    return p->b < q->b ? -1 : 1;
  if (p->q0 != q->q0)
    return p->q0 < q->q0 ? -1 : 1;
  return p->h < q->h ? -1 : (p->h > q->h);
}

int scree__attention_fwd_cpu(const scree_attention_args *a) {
  job jb;
  int rc = scree__attention_check(a, &jb.plan);
  if (rc != 0)
    return rc;
  if (a->device != SCREE_DEVICE_CPU)
    return FAIL(SCREE_EINVAL, "device is not the CPU");
  rc = scree__attention_check_cu(a->cu_seqlens_q, a->batch, a->total_q, a->max_seqlen_q,
                                 "cu_seqlens_q", a->msg, a->msg_len);
  if (rc != 0)
    return rc;
  rc = scree__attention_check_cu(a->cu_seqlens_k, a->batch, a->total_k, a->max_seqlen_k,
                                 "cu_seqlens_k", a->msg, a->msg_len);
  if (rc != 0)
    return rc;

  int64_t n = 0;
  for (int32_t b = 0; b < a->batch; b++) {
    int64_t lq = a->cu_seqlens_q[b + 1] - a->cu_seqlens_q[b];
    n += (lq + QBLOCK - 1) / QBLOCK;
  }
  n *= a->num_heads_q;
  if (n == 0)
    return 0;
  jb.a = a;
  jb.items = malloc((size_t)n * sizeof(item));
  if (jb.items == NULL)
    return FAIL(SCREE_ENOMEM, "cannot allocate %lld work items", (long long)n);
  jb.n_items = 0;
  for (int32_t b = 0; b < a->batch; b++) {
    int32_t lq = a->cu_seqlens_q[b + 1] - a->cu_seqlens_q[b];
    int32_t lk = a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b];
    for (int32_t q0 = 0; q0 < lq; q0 += QBLOCK) {
      int32_t q1 = q0 + QBLOCK < lq ? q0 + QBLOCK : lq;
      for (int32_t h = 0; h < a->num_heads_q; h++) {
        item *it = &jb.items[jb.n_items++];
        it->b = b;
        it->q0 = q0;
        it->q1 = q1;
        it->h = h;
        it->cost = (int64_t)(q1 - q0) * (lk + 1);
      }
    }
  }
  qsort(jb.items, (size_t)jb.n_items, sizeof(item), by_cost_desc);
  atomic_init(&jb.next, 0);
  atomic_init(&jb.done, 0);

  long nt = a->num_threads;
  if (nt <= 0)
    nt = sysconf(_SC_NPROCESSORS_ONLN);
  if (nt < 1)
    nt = 1;
  if (nt > jb.n_items)
    nt = (long)jb.n_items;
  if (nt > 256)
    nt = 256;

  /* The calling thread works too; a thread that cannot be created leaves
   * its share to the others. */
  pthread_t tids[256];
  long started = 0;
  for (long t = 1; t < nt; t++) {
    if (pthread_create(&tids[started], NULL, worker, &jb) != 0)
      break;
    started++;
  }
  worker(&jb);
  for (long t = 0; t < started; t++)
    pthread_join(tids[t], NULL);
  free(jb.items);
  /* Workers that could not get scratch leave their items to the others;
   * only when every worker failed is there work left undone. */
  if (atomic_load(&jb.done) != jb.n_items)
    return FAIL(SCREE_ENOMEM, "cannot allocate worker scratch for max_seqlen_k=%d, head_dim=%d",
                a->max_seqlen_k, a->head_dim);
  return 0;
}
