#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "scree/array.h"
#include "scree/error.h"

static scree_array desc(scree_dtype dtype, int64_t batch, int64_t rows) {
  scree_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = dtype;
  a.offsets_dtype = SCREE_INT64;
  a.batch_size = batch;
  a.total_rows = rows;
  return a;
}

Test(dtype, sizes_and_names_round_trip) {
  for (int d = SCREE_BOOL; d < SCREE_DTYPE_COUNT_; d++) {
    cr_assert_gt(scree_dtype_size((scree_dtype)d), 0);
    cr_assert_eq(scree_dtype_from_name(scree_dtype_name((scree_dtype)d)), d);
  }
  cr_assert_eq(scree_dtype_size(SCREE_BFLOAT16), 2);
  cr_assert_eq(scree_dtype_size(SCREE_FLOAT8_E5M2), 1);
  cr_assert_eq(scree_dtype_from_name("bf16"), SCREE_BFLOAT16);
  cr_assert_eq(scree_dtype_from_name("nope"), SCREE_DTYPE_INVALID);
  cr_assert_eq(scree_dtype_size((scree_dtype)99), 0);
  cr_assert_str_eq(scree_dtype_name((scree_dtype)99), "invalid");
}

Test(array, check_desc_computes_sizes) {
  scree_array a = desc(SCREE_BFLOAT16, 3, 10);
  a.ndim_inner = 2;
  a.inner[0] = 4;
  a.inner[1] = 8;
  uint64_t vb = 0, ob = 0;
  cr_assert_eq(scree_array_check_desc(&a, &vb, &ob, NULL, 0), 0);
  cr_assert_eq(vb, 10 * 4 * 8 * 2);
  cr_assert_eq(ob, 4 * 8);
  cr_assert_eq(scree_array_row_elems(&a), 32);
  a.offsets_dtype = SCREE_INT32;
  cr_assert_eq(scree_array_check_desc(&a, &vb, &ob, NULL, 0), 0);
  cr_assert_eq(ob, 4 * 4);
}

Test(array, check_desc_rejects_bad_fields) {
  char msg[256];
  scree_array a = desc((scree_dtype)42, 1, 1);
  cr_assert_eq(scree_array_check_desc(&a, NULL, NULL, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert(strstr(msg, "dtype 42") != NULL, "%s", msg);

  a = desc(SCREE_FLOAT32, -1, 0);
  cr_assert_eq(scree_array_check_desc(&a, NULL, NULL, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert(strstr(msg, "batch_size") != NULL, "%s", msg);

  a = desc(SCREE_FLOAT32, 1, 1);
  a.offsets_dtype = SCREE_FLOAT32;
  cr_assert_eq(scree_array_check_desc(&a, NULL, NULL, msg, sizeof(msg)), SCREE_EINVAL);

  a = desc(SCREE_FLOAT32, 1, 1);
  a.ndim_inner = SCREE_MAX_INNER_DIMS + 1;
  cr_assert_eq(scree_array_check_desc(&a, NULL, NULL, msg, sizeof(msg)), SCREE_EINVAL);

  a = desc(SCREE_FLOAT32, 1, 1);
  a.ndim_inner = 1;
  a.inner[0] = -3;
  cr_assert_eq(scree_array_check_desc(&a, NULL, NULL, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert(strstr(msg, "inner[0]=-3") != NULL, "%s", msg);
}

Test(array, check_desc_detects_overflow) {
  char msg[256];
  scree_array a = desc(SCREE_FLOAT64, 1, INT64_MAX / 4);
  a.ndim_inner = 1;
  a.inner[0] = 4;
  cr_assert_eq(scree_array_check_desc(&a, NULL, NULL, msg, sizeof(msg)), SCREE_EOVERFLOW);
  cr_assert(strstr(msg, "overflows") != NULL, "%s", msg);

  a = desc(SCREE_FLOAT32, 1, 1);
  a.ndim_inner = 3;
  a.inner[0] = INT64_MAX / 2;
  a.inner[1] = 2;
  a.inner[2] = 2;
  cr_assert_eq(scree_array_check_desc(&a, NULL, NULL, msg, sizeof(msg)), SCREE_EOVERFLOW);

  a = desc(SCREE_FLOAT32, INT64_MAX - 1, 1);
  cr_assert_eq(scree_array_check_desc(&a, NULL, NULL, msg, sizeof(msg)), SCREE_EOVERFLOW);

  a = desc(SCREE_FLOAT32, 2, (int64_t)INT32_MAX + 1);
  a.offsets_dtype = SCREE_INT32;
  cr_assert_eq(scree_array_check_desc(&a, NULL, NULL, msg, sizeof(msg)), SCREE_EOVERFLOW);
}

Test(offsets, valid_offsets_give_max_length) {
  int64_t off[] = {0, 3, 3, 10, 11};
  int64_t maxlen = -1;
  cr_assert_eq(scree_offsets_validate(off, SCREE_INT64, 4, 11, &maxlen, NULL, 0), 0);
  cr_assert_eq(maxlen, 7);
  int32_t off32[] = {0, 0, 0};
  cr_assert_eq(scree_offsets_validate(off32, SCREE_INT32, 2, 0, &maxlen, NULL, 0), 0);
  cr_assert_eq(maxlen, 0);
  int64_t empty[] = {0};
  cr_assert_eq(scree_offsets_validate(empty, SCREE_INT64, 0, 0, &maxlen, NULL, 0), 0);
}

Test(offsets, errors_name_the_first_bad_index) {
  char msg[256];
  int64_t dec[] = {0, 10, 20, 30, 35, 40, 38, 50};
  cr_assert_eq(scree_offsets_validate(dec, SCREE_INT64, 7, 50, NULL, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_str_eq(msg, "offsets[5]=40 > offsets[6]=38");

  int32_t start[] = {2, 4};
  cr_assert_eq(scree_offsets_validate(start, SCREE_INT32, 1, 4, NULL, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_str_eq(msg, "offsets[0]=2, expected 0");

  int64_t last[] = {0, 4, 9};
  cr_assert_eq(scree_offsets_validate(last, SCREE_INT64, 2, 10, NULL, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_str_eq(msg, "offsets[2]=9 (the last) != total_rows=10");

  int64_t past[] = {0, 40, 41};
  cr_assert_eq(scree_offsets_validate(past, SCREE_INT64, 2, 30, NULL, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_str_eq(msg, "offsets[1]=40 > total_rows=30");
}
