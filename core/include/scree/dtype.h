/* Element types of ragged arrays. */
#ifndef SCREE_DTYPE_H
#define SCREE_DTYPE_H

#include <stddef.h>

#include "scree/export.h"

SCREE_EXTERN_C_BEGIN

/* Every dtype, XX(NAME, value, name, size): SCREE_NAME's numeric value,
 * its name (scree_dtype_name) and the size of one element in bytes. The
 * numeric values are part of the wire protocol: never renumber. The float8
 * types are storage only: no arithmetic on the CPU. */
#define SCREE_DTYPE_MAP(XX)              \
  XX(BOOL, 1, bool, 1)                   \
  XX(INT8, 2, int8, 1)                   \
  XX(INT16, 3, int16, 2)                 \
  XX(INT32, 4, int32, 4)                 \
  XX(INT64, 5, int64, 8)                 \
  XX(UINT8, 6, uint8, 1)                 \
  XX(FLOAT16, 7, float16, 2)             \
  XX(BFLOAT16, 8, bfloat16, 2)           \
  XX(FLOAT32, 9, float32, 4)             \
  XX(FLOAT64, 10, float64, 8)            \
  XX(FLOAT8_E4M3, 11, float8_e4m3, 1)    \
  XX(FLOAT8_E5M2, 12, float8_e5m2, 1)

typedef enum scree_dtype {
  SCREE_DTYPE_INVALID = 0,
#define XX(name, value, label, size) SCREE_##name = (value),
  SCREE_DTYPE_MAP(XX)
#undef XX
  SCREE_DTYPE_COUNT_
} scree_dtype;

/* Size of one element in bytes; 0 for an invalid dtype. */
SCREE_API size_t scree_dtype_size(scree_dtype dtype);

/* Lower-case name ("bfloat16", "float8_e4m3"); "invalid" for an invalid
 * dtype. Never NULL. */
SCREE_API const char *scree_dtype_name(scree_dtype dtype);

/* Parses a name as printed by scree_dtype_name (plus the aliases "bf16",
 * "fp16", "half", "float", "double"); SCREE_DTYPE_INVALID when unknown. */
SCREE_API scree_dtype scree_dtype_from_name(const char *name);

/* True for a dtype in [SCREE_BOOL, SCREE_FLOAT8_E5M2]. */
SCREE_API int scree_dtype_valid(int dtype);

SCREE_EXTERN_C_END

#endif /* SCREE_DTYPE_H */
