/* scree/ragged.h's argument checks, which run on the host before any CUDA
 * call: every bad argument gets SCREE_EINVAL and a message naming it, on
 * machines with or without a GPU. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "scree/attention.h"
#include "scree/ragged.h"

static int64_t work[64], host[16];
static uint8_t mask[16];
static char msg[256];

static scree_pack_plan_args good_plan(void) {
  scree_pack_plan_args a;
  memset(&a, 0, sizeof(a));
  a.mask = mask;
  a.mask_dtype = SCREE_BOOL;
  a.batch = 4;
  a.seqlen = 4;
  a.side = SCREE_PAD_RIGHT;
  a.work = work;
  a.host = host;
  a.msg = msg;
  a.msg_len = sizeof(msg);
  msg[0] = '\0';
  return a;
}

static void expect_plan_einval(const scree_pack_plan_args *a, const char *needle) {
  cr_expect_eq(scree_pack_plan_cuda(a), SCREE_EINVAL, "expected EINVAL for %s", needle);
  cr_expect(strstr(msg, needle) != NULL, "message '%s' should name %s", msg, needle);
}

Test(ragged_args, work_len) {
  cr_expect_eq(scree_pack_plan_work_len(0), 4);
  cr_expect_eq(scree_pack_plan_work_len(10), 64);
  cr_expect_eq(scree_pack_plan_work_len(-1), -1);
  cr_expect_eq(scree_pack_plan_work_len(INT64_MAX / 2), -1);
}

Test(ragged_args, plan_rejects_each_bad_argument) {
  cr_expect_eq(scree_pack_plan_cuda(NULL), SCREE_EINVAL);
  scree_pack_plan_args a = good_plan();
  a.mask_dtype = SCREE_FLOAT32;
  expect_plan_einval(&a, "mask_dtype=float32");
  a = good_plan();
  a.batch = -1;
  expect_plan_einval(&a, "batch=-1");
  a = good_plan();
  a.batch = (int64_t)INT32_MAX + 1;
  expect_plan_einval(&a, "batch=2147483648");
  a = good_plan();
  a.seqlen = -5;
  expect_plan_einval(&a, "seqlen=-5");
  a = good_plan();
  a.side = 7;
  expect_plan_einval(&a, "side=7");
  a = good_plan();
  a.work = NULL;
  expect_plan_einval(&a, "work");
  a = good_plan();
  a.host = NULL;
  expect_plan_einval(&a, "host");
  a = good_plan();
  a.mask = NULL;
  expect_plan_einval(&a, "mask is NULL");
}

Test(ragged_args, rows_reject_each_bad_argument) {
  int64_t off[2] = {0, 1}, shift[1] = {0};
  uint8_t src[8] = {0}, dst[8] = {0};
#define EXPECT_ROWS(needle, ...)                                                          \
  do {                                                                                    \
    msg[0] = '\0';                                                                        \
    cr_expect_eq(scree_pack_rows_cuda(__VA_ARGS__, NULL, msg, sizeof(msg)), SCREE_EINVAL, \
                 "expected EINVAL for %s", needle);                                       \
    cr_expect(strstr(msg, needle) != NULL, "message '%s' should name %s", msg, needle);   \
  } while (0)
  EXPECT_ROWS("batch=-1", src, dst, 4, off, shift, -1, 1);
  EXPECT_ROWS("total=-2", src, dst, 4, off, shift, 1, -2);
  EXPECT_ROWS("batch of 0 rows", src, dst, 4, off, shift, 0, 1);
  EXPECT_ROWS("row_bytes is 0", src, dst, 0, off, shift, 1, 1);
  EXPECT_ROWS("overflow", src, dst, SIZE_MAX / 2, off, shift, 1, 4);
  EXPECT_ROWS("padded is NULL", NULL, dst, 4, off, shift, 1, 1);
  EXPECT_ROWS("values is NULL", src, NULL, 4, off, shift, 1, 1);
  EXPECT_ROWS("offsets is NULL", src, dst, 4, NULL, shift, 1, 1);
  EXPECT_ROWS("shift is NULL", src, dst, 4, off, NULL, 1, 1);
#undef EXPECT_ROWS
}

Test(ragged_args, lengths_reject_each_bad_argument) {
  int64_t lengths[3] = {2, 0, 3}, host_off[4], dwork[8];
  uint8_t src[64] = {0}, dst[64] = {0};
  scree_pack_lengths_args g = {.padded = src, .values = dst, .row_bytes = 2,
                               .lengths = lengths, .batch = 3, .seqlen = 4, .total = 5,
                               .side = SCREE_PAD_RIGHT, .host_offsets = host_off, .work = dwork,
                               .msg = msg, .msg_len = sizeof(msg)};
  cr_expect_eq(scree_pack_lengths_cuda(NULL), SCREE_EINVAL);
#define EXPECT_LENGTHS(needle, field, value)                                              \
  do {                                                                                    \
    scree_pack_lengths_args a_ = g;                                                       \
    a_.field = value;                                                                     \
    msg[0] = '\0';                                                                        \
    cr_expect_eq(scree_pack_lengths_cuda(&a_), SCREE_EINVAL, "expected EINVAL for %s",    \
                 needle);                                                                 \
    cr_expect(strstr(msg, needle) != NULL, "message '%s' should name %s", msg, needle);   \
  } while (0)
  EXPECT_LENGTHS("batch=-2", batch, -2);
  EXPECT_LENGTHS("seqlen=-1", seqlen, -1);
  EXPECT_LENGTHS("side=2", side, SCREE_PAD_AUTO);
  EXPECT_LENGTHS("host_offsets is NULL", host_offsets, NULL);
  EXPECT_LENGTHS("work is NULL", work, NULL);
  EXPECT_LENGTHS("lengths is NULL", lengths, NULL);
  EXPECT_LENGTHS("total=6 but the lengths sum to 5", total, 6);
  EXPECT_LENGTHS("padded is NULL", padded, NULL);
  EXPECT_LENGTHS("values is NULL", values, NULL);
  EXPECT_LENGTHS("lengths[2]=3 is outside [0, 2]", seqlen, 2);
  lengths[1] = -1;
  EXPECT_LENGTHS("lengths[1]=-1 is outside [0, 4]", total, 4);
#undef EXPECT_LENGTHS
}

/* Without CUDA in the build, good arguments get SCREE_ENOTSUP, not a crash
 * or a silent success. (With CUDA built, the GPU test covers them.) */
Test(ragged_args, no_cuda_build_says_so) {
  if (scree_attention_have_cuda())
    cr_skip_test("this build has CUDA: test_ragged_cuda covers good arguments");
  scree_pack_plan_args a = good_plan();
  cr_expect_eq(scree_pack_plan_cuda(&a), SCREE_ENOTSUP);
  cr_expect(strstr(msg, "no CUDA") != NULL, "%s", msg);
  int64_t off[2] = {0, 1}, shift[1] = {0};
  uint8_t src[8] = {0}, dst[8] = {0};
  cr_expect_eq(scree_pack_rows_cuda(src, dst, 4, off, shift, 1, 1, NULL, msg, sizeof(msg)),
               SCREE_ENOTSUP);
  int64_t lengths[1] = {1}, host_off[2], dwork[3];
  scree_pack_lengths_args l = {.padded = src, .values = dst, .row_bytes = 4,
                               .lengths = lengths, .batch = 1, .seqlen = 2, .total = 1,
                               .side = SCREE_PAD_LEFT, .host_offsets = host_off, .work = dwork,
                               .msg = msg, .msg_len = sizeof(msg)};
  cr_expect_eq(scree_pack_lengths_cuda(&l), SCREE_ENOTSUP);
  cr_expect_eq(host_off[1], 1, "the host offsets are computed before CUDA is needed");
}
