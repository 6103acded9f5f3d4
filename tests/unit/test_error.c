#include <criterion/criterion.h>
#include <string.h>

#include "scree/error.h"

Test(error, names_and_messages) {
  cr_assert_str_eq(scree_err_name(SCREE_EINVAL), "EINVAL");
  cr_assert_str_eq(scree_err_name(SCREE_ECUDA), "ECUDA");
  cr_assert_str_eq(scree_err_name(0), "OK");
  cr_assert_str_eq(scree_strerror(SCREE_ENOENT), "no such batch");
  cr_assert_str_eq(scree_strerror(SCREE_EDISCONNECTED), "disconnected from the daemon");
}

Test(error, unknown_codes_are_named_unknown) {
  cr_assert_str_eq(scree_err_name(-123456), "UNKNOWN");
  cr_assert_str_eq(scree_strerror(-123456), "unknown error");
  cr_assert_eq(scree_err_known(-123456), 0);
  cr_assert_eq(scree_err_known(SCREE_ENOSPC), 1);
}

Test(error, errno_map_matches_errno) {
  cr_assert_eq(SCREE__ERR(EINVAL), SCREE_EINVAL);
  cr_assert_eq(SCREE__ERR(ENOSPC), SCREE_ENOSPC);
  cr_assert_lt(SCREE_ECUDA, -4000);
}
