/* libscree: the ragged array type, dtypes, validation and error codes. */
#ifndef SCREE_SCREE_H
#define SCREE_SCREE_H

#include "scree/array.h"
#include "scree/dtype.h"
#include "scree/error.h"
#include "scree/export.h"
#include "scree/version.h"

#endif /* SCREE_SCREE_H */
