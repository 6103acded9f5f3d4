/* Deterministic batches for tests: the producer and the consumer generate the
 * same bytes from the same seed, so the consumer can check every byte it
 * attaches to without any channel but the daemon. */
#ifndef SCREE_TESTS_TESTDATA_H
#define SCREE_TESTS_TESTDATA_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scree/array.h"

static inline unsigned char testdata_byte(unsigned seed, size_t i) {
  uint64_t x = (uint64_t)seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return (unsigned char)x;
}

/* Fills a with a float32 batch of `batch` rows of up to max_len tokens and
 * inner dims (heads, dim), int64 offsets; malloc'd buffers the caller frees.
 * Returns 0 or -1 when out of memory. */
static inline int testdata_make(unsigned seed, int64_t batch, int64_t max_len, int64_t heads,
                                int64_t dim, scree_array *a) {
  memset(a, 0, sizeof(*a));
  a->dtype = SCREE_FLOAT32;
  a->offsets_dtype = SCREE_INT64;
  a->ndim_inner = 2;
  a->inner[0] = heads;
  a->inner[1] = dim;
  a->batch_size = batch;
  int64_t *off = malloc((size_t)(batch + 1) * sizeof(int64_t));
  if (off == NULL)
    return -1;
  off[0] = 0;
  for (int64_t i = 0; i < batch; i++)
    off[i + 1] = off[i] + (int64_t)(testdata_byte(seed + 1, (size_t)i) % (unsigned)(max_len + 1));
  a->total_rows = off[batch];
  size_t bytes = (size_t)a->total_rows * (size_t)(heads * dim) * sizeof(float);
  unsigned char *v = malloc(bytes ? bytes : 1);
  if (v == NULL) {
    free(off);
    return -1;
  }
  for (size_t i = 0; i < bytes; i++)
    v[i] = testdata_byte(seed, i);
  a->values = v;
  a->offsets = off;
  return 0;
}

/* FNV-1a over n bytes, continuing from h (start with 14695981039346656037). */
static inline uint64_t testdata_fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

#endif /* SCREE_TESTS_TESTDATA_H */
