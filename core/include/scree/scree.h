/* libscree: the ragged array type, dtypes, validation and error codes. */
#ifndef SCREE_SCREE_H
#define SCREE_SCREE_H

#include "scree/array.h"
#include "scree/dtype.h"
#include "scree/error.h"
#include "scree/export.h"

#define SCREE_VERSION_MAJOR 0
#define SCREE_VERSION_MINOR 1
#define SCREE_VERSION_PATCH 0

#endif /* SCREE_SCREE_H */
