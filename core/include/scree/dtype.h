/* Element types of ragged arrays. */
#ifndef SCREE_DTYPE_H
#define SCREE_DTYPE_H

#include <stddef.h>

#include "scree/export.h"

SCREE_EXTERN_C_BEGIN

/* The numeric values are part of the wire protocol: never renumber. */
typedef enum scree_dtype {
  SCREE_DTYPE_INVALID = 0,
  SCREE_BOOL = 1,
  SCREE_INT8 = 2,
  SCREE_INT16 = 3,
  SCREE_INT32 = 4,
  SCREE_INT64 = 5,
  SCREE_UINT8 = 6,
  SCREE_FLOAT16 = 7,
  SCREE_BFLOAT16 = 8,
  SCREE_FLOAT32 = 9,
  SCREE_FLOAT64 = 10,
  SCREE_FLOAT8_E4M3 = 11, /* storage only: no arithmetic on the CPU */
  SCREE_FLOAT8_E5M2 = 12,
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
