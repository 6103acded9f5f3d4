/* Random inputs and 16-bit rounding for the attention tests (the CPU path's
 * and the CUDA kernels'), written independently of the library so that a
 * rounding bug there cannot hide in the reference. Include in one test file
 * per executable: the functions are static. */
#ifndef SCREE_TESTS_ATTN_TESTUTIL_H
#define SCREE_TESTS_ATTN_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng_state;

/* splitmix64 */
static inline uint64_t next_u64(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline double uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53 * 2.0 - 1.0; }

/* A new seed on every call (time and a counter), or SCREE_TEST_SEED plus
 * the counter to replay a failure. */
static inline uint64_t fresh_seed(void) {
  static uint64_t counter;
  const char *env = getenv("SCREE_TEST_SEED");
  if (env != NULL)
    return strtoull(env, NULL, 0) + counter++;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000007ull + (uint64_t)ts.tv_nsec + 7919 * counter++;
}

/* bfloat16, rounded to nearest even. */
static inline uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t lsb = (u >> 16) & 1;
  return (uint16_t)((u + 0x7fff + lsb) >> 16);
}

static inline double from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* fp16 through its value (test inputs lie in [-4, 4], so nothing
 * overflows); ldexp/frexp keep this independent of the library's bit
 * tricks. */
static inline uint16_t to_f16(float f) {
  if (f == 0.0f)
    return 0;
  uint16_t sign = f < 0 ? 0x8000 : 0;
  double a = fabs((double)f);
  if (a < ldexp(1.0, -14)) /* subnormal: multiples of 2^-24 */
    return sign | (uint16_t)nearbyint(ldexp(a, 24));
  int e;
  double m = frexp(a, &e);            /* a = m * 2^e, m in [0.5, 1) */
  double q = nearbyint(ldexp(m, 11)); /* 11 significant bits, ties to even */
  if (q == 2048.0) {
    q = 1024.0;
    e++;
  }
  int exp = e - 1 + 15;
  cr_assert(exp > 0 && exp < 31, "fp16 test input out of the normal range: %g", (double)f);
  return sign | (uint16_t)(exp << 10) | (uint16_t)((int)q - 1024);
}

/* fp16 to double; an all-ones exponent (the poison the GPU test writes
 * before each run) reads as NaN. */
static inline double from_f16(uint16_t h) {
  int exp = (h >> 10) & 0x1f;
  int man = h & 0x3ff;
  double v = exp == 0 ? ldexp(man, -24) : exp == 31 ? NAN : ldexp(1024 + man, exp - 25);
  return (h & 0x8000) ? -v : v;
}

#endif /* SCREE_TESTS_ATTN_TESTUTIL_H */
