#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scree/array.h"
#include "scree/error.h"

/* A float32 array of 4 rows with lengths {2, 0, 3, 1} and 2 columns; element
 * values encode (row, position, column) so any misplacement shows. */
static float values[6 * 2];
static int64_t offsets[] = {0, 2, 2, 5, 6};

static scree_array sample(void) {
  for (int i = 0; i < 12; i++)
    values[i] = (float)(100 + i);
  scree_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = SCREE_FLOAT32;
  a.ndim_inner = 1;
  a.inner[0] = 2;
  a.batch_size = 4;
  a.total_rows = 6;
  a.max_length = 3;
  a.offsets_dtype = SCREE_INT64;
  a.values = values;
  a.offsets = offsets;
  return a;
}

static void round_trip(scree_padding_side side) {
  scree_array a = sample();
  const int64_t S = 5;
  float padded[4 * 5 * 2];
  float pad = -1.0f;
  cr_assert_eq(scree_pad(&a, padded, S, &pad, side, NULL, 0), 0);
  for (int64_t b = 0; b < 4; b++) {
    int64_t len = offsets[b + 1] - offsets[b];
    for (int64_t t = 0; t < S; t++) {
      int64_t pos = side == SCREE_PAD_LEFT ? t - (S - len) : t;
      for (int c = 0; c < 2; c++) {
        float got = padded[(b * S + t) * 2 + c];
        float want = (pos >= 0 && pos < len) ? values[(offsets[b] + pos) * 2 + c] : pad;
        cr_assert_eq(got, want, "b=%ld t=%ld c=%d", (long)b, (long)t, c);
      }
    }
  }

  /* The mask derived from the padded layout gives the lengths back. */
  uint8_t mask[4 * 5];
  for (int64_t b = 0; b < 4; b++) {
    int64_t len = offsets[b + 1] - offsets[b];
    for (int64_t t = 0; t < S; t++)
      mask[b * S + t] = side == SCREE_PAD_LEFT ? t >= S - len : t < len;
  }
  int64_t lengths[4];
  scree_padding_side found;
  cr_assert_eq(scree_mask_lengths(mask, SCREE_BOOL, 4, S, lengths, &found, NULL, 0), 0);
  cr_assert_eq(found, side);

  float back[12];
  int32_t off32[5];
  cr_assert_eq(scree_unpad(padded, 4, S, 2 * sizeof(float), lengths, side, back, off32,
                           SCREE_INT32, NULL, 0),
               0);
  cr_assert_arr_eq(back, values, sizeof(values));
  for (int i = 0; i < 5; i++)
    cr_assert_eq(off32[i], offsets[i]);
}

Test(pad, right_round_trip) { round_trip(SCREE_PAD_RIGHT); }
Test(pad, left_round_trip) { round_trip(SCREE_PAD_LEFT); }

Test(pad, null_pad_value_zeroes) {
  scree_array a = sample();
  float padded[4 * 3 * 2];
  memset(padded, 0xff, sizeof(padded));
  cr_assert_eq(scree_pad(&a, padded, 3, NULL, SCREE_PAD_RIGHT, NULL, 0), 0);
  cr_assert_eq(padded[2 * 3 * 2 - 1], 0.0f); /* row 1 is empty: all padding */
}

Test(pad, short_padded_len_is_rejected) {
  scree_array a = sample();
  float padded[4 * 2 * 2];
  char msg[128];
  cr_assert_eq(scree_pad(&a, padded, 2, NULL, SCREE_PAD_RIGHT, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert(strstr(msg, "max_length 3") != NULL, "%s", msg);
}

Test(mask, rejects_values_other_than_0_1) {
  int64_t mask[] = {1, 1, 0, 1, 2, 0};
  int64_t lengths[2];
  char msg[128];
  cr_assert_eq(scree_mask_lengths(mask, SCREE_INT64, 2, 3, lengths, NULL, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_str_eq(msg, "mask[1][1]=2 is not 0 or 1");
}

Test(mask, rejects_holes_and_mixed_sides) {
  int32_t holes[] = {1, 0, 1, 0};
  int64_t lengths[2];
  char msg[160];
  cr_assert_eq(scree_mask_lengths(holes, SCREE_INT32, 1, 4, lengths, NULL, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert(strstr(msg, "not contiguous") != NULL, "%s", msg);

  uint8_t middle[] = {0, 1, 1, 0};
  cr_assert_eq(scree_mask_lengths(middle, SCREE_BOOL, 1, 4, lengths, NULL, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert(strstr(msg, "both sides") != NULL, "%s", msg);

  uint8_t mixed[] = {1, 1, 0, 0, 1, 1};
  cr_assert_eq(scree_mask_lengths(mixed, SCREE_BOOL, 2, 3, lengths, NULL, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert(strstr(msg, "different sides") != NULL, "%s", msg);

  float f[] = {1.0f};
  cr_assert_eq(scree_mask_lengths(f, SCREE_FLOAT32, 1, 1, lengths, NULL, msg, sizeof(msg)),
               SCREE_EINVAL);
}

Test(mask, full_and_empty_rows_fit_either_side) {
  uint8_t mask[] = {1, 1, 1, 0, 0, 0, 0, 1, 1};
  int64_t lengths[3];
  scree_padding_side side;
  cr_assert_eq(scree_mask_lengths(mask, SCREE_BOOL, 3, 3, lengths, &side, NULL, 0), 0);
  cr_assert_eq(side, SCREE_PAD_LEFT);
  cr_assert_eq(lengths[0], 3);
  cr_assert_eq(lengths[1], 0);
  cr_assert_eq(lengths[2], 2);
}

Test(unpad, rejects_lengths_out_of_range) {
  float padded[4] = {0};
  float out[4];
  int64_t out_offsets[3];
  int64_t lengths[] = {1, 3};
  char msg[128];
  cr_assert_eq(scree_unpad(padded, 2, 2, sizeof(float), lengths, SCREE_PAD_RIGHT, out,
                           out_offsets, SCREE_INT64, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_str_eq(msg, "lengths[1]=3 is outside [0, 2]");
}
