/* Searching a sorted table: screed keeps names, waiters, the arenas a
 * session knows, bytes per uid, an arena's free extents and a mirror's
 * names in arrays sorted by key, finds a key's place in each by the same
 * binary search, and opens or closes a slot there by the same move. These
 * macros are their one copy. */
#ifndef SCREE_DAEMON_SORTED_H
#define SCREE_DAEMON_SORTED_H

#include <stddef.h>
#include <string.h>

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

/* Opens slot i of the array arr of n entries, moving entries i and up
 * one place towards the end, and adds one to n (an lvalue). The array
 * must have room for n + 1 entries already (SCREE__GROW); the caller
 * fills slot i. Arguments may be evaluated more than once. */
#define SCREE__INSERT_AT(arr, n, i) \
  (memmove(&(arr)[(i) + 1], &(arr)[i], ((n) - (i)) * sizeof(*(arr))), (n)++)

/* Closes slot i (< n) of the array arr of n entries, moving the entries
 * after it one place back, and takes one from n. Arguments may be
 * evaluated more than once. */
#define SCREE__REMOVE_AT(arr, n, i) \
  (memmove(&(arr)[i], &(arr)[(i) + 1], ((n) - (i) - 1) * sizeof(*(arr))), (n)--)

#endif
