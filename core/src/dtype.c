#include <string.h>

#include "scree/dtype.h"

static const struct {
  const char *name;
  size_t size;
} dtypes[SCREE_DTYPE_COUNT_] = {
    [SCREE_DTYPE_INVALID] = {"invalid", 0},
#define XX(name, value, label, size) [SCREE_##name] = {#label, size},
    SCREE_DTYPE_MAP(XX)
#undef XX
};

int scree_dtype_valid(int dtype) {
  return dtype > SCREE_DTYPE_INVALID && dtype < SCREE_DTYPE_COUNT_;
}

size_t scree_dtype_size(scree_dtype dtype) {
  return scree_dtype_valid((int)dtype) ? dtypes[dtype].size : 0;
}

const char *scree_dtype_name(scree_dtype dtype) {
  return dtypes[scree_dtype_valid((int)dtype) ? dtype : SCREE_DTYPE_INVALID].name;
}

scree_dtype scree_dtype_from_name(const char *name) {
  static const struct {
    const char *alias;
    scree_dtype dtype;
  } aliases[] = {
      {"bf16", SCREE_BFLOAT16}, {"fp16", SCREE_FLOAT16},
      {"half", SCREE_FLOAT16},  {"float", SCREE_FLOAT32},
      {"double", SCREE_FLOAT64}, {"fp32", SCREE_FLOAT32},
      {"float8_e4m3fn", SCREE_FLOAT8_E4M3},
  };
  if (name == NULL)
    return SCREE_DTYPE_INVALID;
  for (int d = SCREE_BOOL; d < SCREE_DTYPE_COUNT_; d++)
    if (strcmp(name, dtypes[d].name) == 0)
      return (scree_dtype)d;
  for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
    if (strcmp(name, aliases[i].alias) == 0)
      return aliases[i].dtype;
  return SCREE_DTYPE_INVALID;
}
