/* Room in a growing array: the one idiom behind every table in screed
 * (names, waiters, leases' sessions, arenas a worker knows, free extents).
 * The capacity starts at a first size and doubles, so a run of appends
 * costs amortised constant time. */
#ifndef SCREE_DAEMON_GROW_H
#define SCREE_DAEMON_GROW_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scree/error.h"

/* Makes *itemsp (the address of an array pointer of any element type, elem
 * bytes an element) hold at least need elements: when *cap is short it
 * becomes *cap doubled (first when 0) until it is enough, and the array is
 * reallocated. Returns 0, or SCREE_ENOMEM with the array and *cap as they
 * were. The pointer is read and written through memcpy, not through a
 * void ** cast, so that no object is accessed by a type it does not have. */
static inline int scree__grow(void *itemsp, size_t *cap, size_t need, size_t elem,
                              size_t first) {
  if (*cap >= need)
    return 0;
  size_t c = *cap ? *cap * 2 : first;
  while (c < need)
    c *= 2;
  if (c > SIZE_MAX / elem)
    return SCREE_ENOMEM;
  void *items;
  memcpy(&items, itemsp, sizeof(items));
  items = realloc(items, c * elem);
  if (items == NULL)
    return SCREE_ENOMEM;
  memcpy(itemsp, &items, sizeof(items));
  *cap = c;
  return 0;
}

/* scree__grow with the element size taken from the array's own type. */
#define SCREE__GROW(itemsp, cap, need, first) \
  scree__grow((itemsp), (cap), (need), sizeof(**(itemsp)), (first))

#endif
