/* The .npy reader and writer of screectl: round trips and strict rejection
 * of malformed files. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npy.h"
#include "scree/error.h"

static void fill(void *p, size_t n, unsigned seed) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    b[i] = (unsigned char)(seed >> 16);
  }
}

static void round_trip(scree_dtype dt, int ndim, const int64_t *shape) {
  size_t n = scree_dtype_size(dt);
  for (int i = 0; i < ndim; i++)
    n *= (size_t)shape[i];
  unsigned char *data = malloc(n + 1);
  fill(data, n, (unsigned)dt * 31u + (unsigned)ndim);
  if (dt == SCREE_BOOL)
    for (size_t i = 0; i < n; i++)
      data[i] &= 1;
  void *img;
  size_t len;
  char msg[256] = "";
  cr_assert_eq(scree__npy_encode(dt, ndim, shape, data, &img, &len, msg, sizeof(msg)), 0,
               "%s", msg);
  cr_assert_eq(len % 64, n % 64, "the data starts on a 64-byte boundary");

  scree__npy a;
  cr_assert_eq(scree__npy_parse(img, len, &a, msg, sizeof(msg)), 0, "%s: %s",
               scree_dtype_name(dt), msg);
  cr_assert_str_eq(a.descr, scree__npy_descr(dt));
  cr_assert_eq(a.ndim, ndim);
  for (int i = 0; i < ndim; i++)
    cr_assert_eq(a.shape[i], shape[i]);
  cr_assert_eq(a.nbytes, n);
  cr_assert_eq(memcmp(a.data, data, n), 0);
  scree_dtype got;
  scree_dtype want = (dt == SCREE_BFLOAT16 || dt == SCREE_FLOAT8_E4M3 || dt == SCREE_FLOAT8_E5M2)
                         ? dt
                         : SCREE_DTYPE_INVALID;
  cr_assert_eq(scree__npy_resolve_dtype(&a, want, &got, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(got, dt, "%s read back as %s", scree_dtype_name(dt), scree_dtype_name(got));
  scree__npy_free(&a);

  /* The same through a file. */
  char path[] = "/tmp/scree-test-npy-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  close(fd);
  cr_assert_eq(scree__npy_write(path, dt, ndim, shape, data, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(scree__npy_read(path, &a, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(a.nbytes, n);
  cr_assert_eq(memcmp(a.data, data, n), 0);
  scree__npy_free(&a);
  FILE *f = fopen(path, "rb");
  unsigned char *disk = malloc(len);
  cr_assert_eq(fread(disk, 1, len, f), len);
  fclose(f);
  cr_assert_eq(memcmp(disk, img, len), 0, "write and encode give the same bytes");
  free(disk);
  unlink(path);
  free(img);
  free(data);
}

Test(npy, round_trip_every_dtype_and_inner_dims) {
  static const int64_t s1[] = {7};
  static const int64_t s2[] = {5, 3};
  static const int64_t s4[] = {4, 2, 3, 2};
  static const int64_t s0[] = {0, 4};
  for (int d = SCREE_BOOL; d < SCREE_DTYPE_COUNT_; d++) {
    round_trip((scree_dtype)d, 1, s1);
    round_trip((scree_dtype)d, 2, s2);
    round_trip((scree_dtype)d, 4, s4);
    round_trip((scree_dtype)d, 2, s0);
  }
}

Test(npy, header_text_matches_numpy) {
  int64_t shape[] = {3};
  void *img;
  size_t len;
  char msg[128];
  cr_assert_eq(scree__npy_encode(SCREE_FLOAT32, 1, shape, "\0\0\0\0\0\0\0\0\0\0\0\0", &img,
                                 &len, msg, sizeof(msg)),
               0);
  const char *want = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
  cr_assert_eq(memcmp((char *)img + 10, want, strlen(want)), 0);
  /* numpy's own file for this array: 128 bytes of preamble and header. */
  cr_assert_eq(((unsigned char *)img)[127], '\n');
  cr_assert_eq(((unsigned char *)img)[126], ' ');
  cr_assert_eq(len, 128 + 12);
  free(img);
}

/* Builds a version 1.0 file image from a header dict and data bytes. */
static size_t make_v1(unsigned char *out, const char *dict, const void *data, size_t n) {
  size_t dl = strlen(dict);
  memcpy(out, "\x93NUMPY\x01\x00", 8);
  out[8] = (unsigned char)((dl + 1) & 0xff);
  out[9] = (unsigned char)((dl + 1) >> 8);
  memcpy(out + 10, dict, dl);
  out[10 + dl] = '\n';
  memcpy(out + 11 + dl, data, n);
  return 11 + dl + n;
}

static void expect_reject(const void *img, size_t len, const char *needle) {
  scree__npy a;
  char msg[256] = "";
  int rc = scree__npy_parse(img, len, &a, msg, sizeof(msg));
  cr_assert_eq(rc, SCREE_EINVAL, "accepted a bad file; wanted an error with '%s'", needle);
  cr_assert(strstr(msg, needle) != NULL, "message '%s' lacks '%s'", msg, needle);
}

static void reject_dict(const char *dict, size_t nbytes, const char *needle) {
  unsigned char buf[1024];
  unsigned char zeros[64] = {0};
  size_t len = make_v1(buf, dict, zeros, nbytes);
  expect_reject(buf, len, needle);
}

Test(npy, accepts_handwritten_variants) {
  unsigned char buf[512];
  int32_t v[3] = {1, 2, 3};
  /* Double quotes, no trailing comma, keys in another order, version 2.0. */
  size_t len = make_v1(buf, "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<i4\"}", v,
                       sizeof(v));
  scree__npy a;
  char msg[256];
  cr_assert_eq(scree__npy_parse(buf, len, &a, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(a.dtype, SCREE_INT32);
  cr_assert_eq(((int32_t *)a.data)[2], 3);
  scree__npy_free(&a);

  unsigned char v2[512];
  const char *dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }\n";
  size_t dl = strlen(dict);
  memcpy(v2, "\x93NUMPY\x02\x00", 8);
  v2[8] = (unsigned char)dl;
  v2[9] = v2[10] = v2[11] = 0;
  memcpy(v2 + 12, dict, dl);
  memcpy(v2 + 12 + dl, v, sizeof(v));
  cr_assert_eq(scree__npy_parse(v2, 12 + dl + sizeof(v), &a, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(((int32_t *)a.data)[1], 2);
  scree__npy_free(&a);

  /* A scalar: shape (). */
  len = make_v1(buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", v, 8);
  cr_assert_eq(scree__npy_parse(buf, len, &a, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(a.ndim, 0);
  cr_assert_eq(a.nbytes, 8);
  scree__npy_free(&a);
}

Test(npy, rejects_malformed_headers) {
  expect_reject("", 0, "bad magic");
  expect_reject("PK\x03\x04garbagegarbage", 18, "bad magic");
  expect_reject("\x93NUMPY\x09\x00\x10\x00", 10, "version 9.0");
  expect_reject("\x93NUMPY\x01\x00\xff\x00{", 11, "truncated header");
  reject_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), ", 12, "quoted string");
  reject_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3,) 'x'}", 12, "',' or '}'");
  reject_dict("{'descr': '<f4', 'fortran_order': False}", 0, "missing key 'shape'");
  reject_dict("{'fortran_order': False, 'shape': (3,)}", 12, "missing key 'descr'");
  reject_dict("{'descr': '<f4', 'shape': (3,)}", 12, "missing key 'fortran_order'");
  reject_dict("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", 12,
              "'descr' twice");
  reject_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", 12,
              "unknown key 'x'");
  reject_dict("{'descr': '>f4', 'fortran_order': False, 'shape': (3,)}", 12, "big-endian");
  reject_dict("{'descr': '<c8', 'fortran_order': False, 'shape': (3,)}", 24,
              "no scree equivalent");
  reject_dict("{'descr': '<u4', 'fortran_order': False, 'shape': (3,)}", 12,
              "no scree equivalent");
  reject_dict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}", 12,
              "structured");
  reject_dict("{'descr': '<f4', 'fortran_order': maybe, 'shape': (3,)}", 12, "True or False");
  reject_dict("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2)}", 24, "Fortran");
  reject_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}", 12, "non-negative");
  reject_dict("{'descr': '<f4', 'fortran_order': False, 'shape': [3]}", 12, "tuple");
  reject_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", 0,
              "overflows");
  reject_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4)}",
              0, "overflows");
  reject_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} junk", 12,
              "after the dict");
  reject_dict("{'descr': '<f4\\n', 'fortran_order': False, 'shape': (3,)}", 12, "escapes");
  reject_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", 8, "truncated data");
  reject_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", 16, "trailing");
  reject_dict("{'descr': '<f4\x01', 'fortran_order': False, 'shape': (3,)}", 12,
              "not printable");

  /* A header that does not end with a newline. */
  unsigned char buf[128];
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (0,)} ";
  size_t dl = strlen(dict);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)dl;
  buf[9] = 0;
  memcpy(buf + 10, dict, dl);
  expect_reject(buf, 10 + dl, "newline");
}

Test(npy, garbage_never_crashes) {
  /* Random bytes after a valid magic and random header lengths: every one is
   * rejected or parsed, none crashes (the sanitizer build checks bounds). */
  unsigned char buf[300];
  unsigned seed = 12345;
  for (int iter = 0; iter < 20000; iter++) {
    size_t len = 10 + (size_t)(iter % 280);
    fill(buf, len, seed++);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)(1 + iter % 3);
    buf[7] = 0;
    if (iter % 2) {
      /* Keep the header length plausible so that the parser gets further. */
      buf[8] = (unsigned char)(len - 10);
      buf[9] = 0;
      if (iter % 4 == 1) {
        const char *pre = "{'descr': '<f4', 'shape': (";
        size_t pl = strlen(pre) < len - 10 ? strlen(pre) : len - 10;
        memcpy(buf + 10, pre, pl);
      }
    }
    scree__npy a;
    char msg[256];
    if (scree__npy_parse(buf, len, &a, msg, sizeof(msg)) == 0)
      scree__npy_free(&a);
  }
}

Test(npy, dtype_overrides) {
  int64_t shape[] = {4};
  uint16_t bits[4] = {0x3f80, 0x4000, 0x4040, 0x4080};
  void *img;
  size_t len;
  char msg[256];
  cr_assert_eq(scree__npy_encode(SCREE_BFLOAT16, 1, shape, bits, &img, &len, msg, sizeof(msg)),
               0);
  scree__npy a;
  cr_assert_eq(scree__npy_parse(img, len, &a, msg, sizeof(msg)), 0);
  cr_assert_str_eq(a.descr, "<u2");
  scree_dtype d;
  cr_assert_eq(scree__npy_resolve_dtype(&a, SCREE_DTYPE_INVALID, &d, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert(strstr(msg, "bfloat16") != NULL, "%s", msg);
  cr_assert_eq(scree__npy_resolve_dtype(&a, SCREE_FLOAT32, &d, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert(strstr(msg, "4-byte") != NULL, "%s", msg);
  cr_assert_eq(scree__npy_resolve_dtype(&a, SCREE_INT16, &d, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert_eq(scree__npy_resolve_dtype(&a, SCREE_BFLOAT16, &d, msg, sizeof(msg)), 0);
  cr_assert_eq(d, SCREE_BFLOAT16);
  scree__npy_free(&a);
  free(img);

  /* A <f4 file cannot be reinterpreted. */
  cr_assert_eq(scree__npy_encode(SCREE_FLOAT32, 1, shape, NULL, &img, &len, msg, sizeof(msg)),
               SCREE_EINVAL, "NULL data is refused");
  float f[4] = {1, 2, 3, 4};
  cr_assert_eq(scree__npy_encode(SCREE_FLOAT32, 1, shape, f, &img, &len, msg, sizeof(msg)), 0);
  cr_assert_eq(scree__npy_parse(img, len, &a, msg, sizeof(msg)), 0);
  cr_assert_eq(scree__npy_resolve_dtype(&a, SCREE_INT32, &d, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert(strstr(msg, "cannot be read as int32") != NULL, "%s", msg);
  scree__npy_free(&a);
  free(img);

  /* Raw bytes need a type. */
  unsigned char buf[256];
  len = make_v1(buf, "{'descr': '|V2', 'fortran_order': False, 'shape': (4,), }", bits, 8);
  cr_assert_eq(scree__npy_parse(buf, len, &a, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(scree__npy_resolve_dtype(&a, SCREE_DTYPE_INVALID, &d, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_eq(scree__npy_resolve_dtype(&a, SCREE_BFLOAT16, &d, msg, sizeof(msg)), 0);
  scree__npy_free(&a);
}

Test(npy, read_errors_name_the_file) {
  scree__npy a;
  char msg[256];
  cr_assert_eq(scree__npy_read("/nonexistent/x.npy", &a, msg, sizeof(msg)), SCREE_EIO);
  cr_assert(strstr(msg, "/nonexistent/x.npy") != NULL, "%s", msg);
  cr_assert_eq(scree__npy_read("/tmp", &a, msg, sizeof(msg)), SCREE_EINVAL);
  char path[] = "/tmp/scree-test-npy-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(write(fd, "hello", 5) == 5);
  close(fd);
  cr_assert_eq(scree__npy_read(path, &a, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert(strstr(msg, "bad magic") != NULL, "%s", msg);
  cr_assert(strstr(msg, path) != NULL, "%s", msg);
  unlink(path);
}
