/* Helpers shared by libscree's translation units; not installed. */
#ifndef SCREE_CORE_INTERNAL_H
#define SCREE_CORE_INTERNAL_H

/* scree__fail, the one "format a message and return a code" helper. */
#include "sys.h"

#endif
