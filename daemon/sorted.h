/* Searching a sorted table: screed keeps names, waiters, the arenas a
 * session knows, bytes per uid and an arena's free extents in arrays
 * sorted by key, and finds a key's place in each by the same binary
 * search. This macro is its one copy. */
#ifndef SCREE_DAEMON_SORTED_H
#define SCREE_DAEMON_SORTED_H

#include <stddef.h>

/* Sets at (a size_t lvalue) to the first index in [0, n) at which before
 * is false, or to n when there is none. before is an expression in the
 * index variable named i (declared by the macro): whether entry i sorts
 * before the key looked for. It must be true for a prefix of the entries
 * and false for the rest, which a table sorted by the key ensures. n is
 * evaluated once; at and before once per step. */
#define SCREE__LOWER_BOUND(at, n, i, before)        \
  do {                                              \
    size_t scree__hi = (n);                         \
    (at) = 0;                                       \
    while ((at) < scree__hi) {                      \
      size_t i = (at) + (scree__hi - (at)) / 2;     \
      if (before)                                   \
        (at) = i + 1;                               \
      else                                          \
        scree__hi = i;                              \
    }                                               \
  } while (0)

#endif
