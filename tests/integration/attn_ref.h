/* Test helpers for attention: random varlen q/k/v batches and a float64
 * reference written from the definition (softmax over the visible keys), so
 * that the daemon's results are checked against something independent of
 * the kernels library. */
#ifndef SCREE_TESTS_ATTN_REF_H
#define SCREE_TESTS_ATTN_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scree/array.h"

static inline uint16_t attn_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}

static inline float attn_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline double attn_value(const scree_array *a, size_t i) {
  if (a->dtype == SCREE_BFLOAT16)
    return attn_bf16_to_f32(((const uint16_t *)a->values)[i]);
  return ((const float *)a->values)[i];
}

static inline int64_t attn_offset(const scree_array *a, int64_t i) {
  return a->offsets_dtype == SCREE_INT32 ? ((const int32_t *)a->offsets)[i]
                                         : ((const int64_t *)a->offsets)[i];
}

/* Fills a with a batch of n sequences of the given lengths, inner dims
 * (heads, dim), values uniform in [-1, 1] from seed. Buffers are malloc'd;
 * free them with attn_free. */
static inline void attn_make(scree_array *a, scree_dtype dt, scree_dtype odt, int n,
                             const int64_t *lens, int64_t heads, int64_t dim, uint64_t seed) {
  memset(a, 0, sizeof(*a));
  a->dtype = dt;
  a->offsets_dtype = odt;
  a->ndim_inner = 2;
  a->inner[0] = heads;
  a->inner[1] = dim;
  a->batch_size = n;
  int64_t total = 0;
  for (int i = 0; i < n; i++)
    total += lens[i];
  a->total_rows = total;
  size_t osz = odt == SCREE_INT32 ? 4 : 8;
  a->offsets = malloc((size_t)(n + 1) * osz);
  int64_t acc = 0;
  for (int i = 0; i <= n; i++) {
    if (odt == SCREE_INT32)
      ((int32_t *)a->offsets)[i] = (int32_t)acc;
    else
      ((int64_t *)a->offsets)[i] = acc;
    if (i < n)
      acc += lens[i];
  }
  size_t count = (size_t)(total * heads * dim);
  size_t esz = dt == SCREE_BFLOAT16 ? 2 : 4;
  a->values = malloc(count ? count * esz : 1);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    float f = (float)((double)(x >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
    if (dt == SCREE_BFLOAT16)
      ((uint16_t *)a->values)[i] = attn_f32_to_bf16(f);
    else
      ((float *)a->values)[i] = f;
  }
}

static inline void attn_free(scree_array *a) {
  free(a->values);
  free(a->offsets);
  a->values = a->offsets = NULL;
}

/* out[(row * hq + h) * d + c] for every query row: the float64 attention of
 * q over k and v (GQA: query head h reads kv head h / (hq / hkv)), with
 * FlashAttention's bottom-right aligned causal and window masks. A query
 * that sees no key gets zeros. scale <= 0 means 1/sqrt(d). out has
 * total_q * hq * d entries. */
static inline void attn_reference(const scree_array *q, const scree_array *k,
                                  const scree_array *v, int causal, double scale,
                                  int32_t left, int32_t right, double *out) {
  int64_t hq = q->inner[0], hkv = k->inner[0], d = q->inner[1];
  if (!(scale > 0))
    scale = 1.0 / sqrt((double)d);
  if (causal)
    right = 0;
  int64_t maxk = 0;
  for (int64_t b = 0; b < q->batch_size; b++) {
    int64_t lk = attn_offset(k, b + 1) - attn_offset(k, b);
    if (lk > maxk)
      maxk = lk;
  }
  double *w = malloc((size_t)(maxk ? maxk : 1) * sizeof(double));
  for (int64_t b = 0; b < q->batch_size; b++) {
    int64_t q0 = attn_offset(q, b), lq = attn_offset(q, b + 1) - q0;
    int64_t k0 = attn_offset(k, b), lk = attn_offset(k, b + 1) - k0;
    for (int64_t i = 0; i < lq; i++) {
      for (int64_t h = 0; h < hq; h++) {
        int64_t hk = h / (hq / hkv);
        double m = -INFINITY;
        int any = 0;
        for (int64_t j = 0; j < lk; j++) {
          int vis = 1;
          if (right >= 0 && j > i + lk - lq + right)
            vis = 0;
          if (left >= 0 && j < i + lk - lq - left)
            vis = 0;
          if (!vis) {
            w[j] = NAN;
            continue;
          }
          double s = 0;
          for (int64_t c = 0; c < d; c++)
            s += attn_value(q, (size_t)(((q0 + i) * hq + h) * d + c)) *
                 attn_value(k, (size_t)(((k0 + j) * hkv + hk) * d + c));
          w[j] = s * scale;
          if (w[j] > m)
            m = w[j];
          any = 1;
        }
        double *o = &out[((q0 + i) * hq + h) * d];
        for (int64_t c = 0; c < d; c++)
          o[c] = 0;
        if (!any)
          continue;
        double sum = 0;
        for (int64_t j = 0; j < lk; j++) {
          if (isnan(w[j]))
            continue;
          double p = exp(w[j] - m);
          sum += p;
          for (int64_t c = 0; c < d; c++)
            o[c] += p * attn_value(v, (size_t)(((k0 + j) * hkv + hk) * d + c));
        }
        for (int64_t c = 0; c < d; c++)
          o[c] /= sum;
      }
    }
  }
  free(w);
}

/* The largest |got - want| over n values, where got is an array of dtype
 * values. */
static inline double attn_max_err(const scree_array *got, const double *want, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; i++) {
    double x = fabs(attn_value(got, i) - want[i]);
    if (!(x <= e))
      e = x; /* NaN wins */
  }
  return e;
}

#endif /* SCREE_TESTS_ATTN_REF_H */
