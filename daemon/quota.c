#include "quota.h"

#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "scree/error.h"
#include "sorted.h"

static size_t find(const scree__usage *u, uint32_t uid) {
  size_t at;
  SCREE__LOWER_BOUND(at, u->n, mid, u->e[mid].uid < uid);
  return at;
}

uint64_t scree__usage_get(const scree__usage *u, uint32_t uid) {
  size_t i = find(u, uid);
  return i < u->n && u->e[i].uid == uid ? u->e[i].bytes : 0;
}

int scree__usage_reserve(scree__usage *u) {
  return SCREE__GROW(&u->e, &u->cap, u->n + 1, 8);
}

void scree__usage_add(scree__usage *u, uint32_t uid, uint64_t bytes) {
  if (bytes == 0)
    return;
  size_t i = find(u, uid);
  if (i < u->n && u->e[i].uid == uid) {
    u->e[i].bytes += bytes;
    return;
  }
  /* scree__usage_reserve made the room; without it the bytes would go
   * uncounted, which the store never allows to happen. */
  if (u->n == u->cap)
    return;
  SCREE__INSERT_AT(u->e, u->n, i);
  u->e[i].uid = uid;
  u->e[i].bytes = bytes;
}

void scree__usage_sub(scree__usage *u, uint32_t uid, uint64_t bytes) {
  size_t i = find(u, uid);
  if (i >= u->n || u->e[i].uid != uid)
    return;
  if (u->e[i].bytes > bytes) {
    u->e[i].bytes -= bytes;
    return;
  }
  SCREE__REMOVE_AT(u->e, u->n, i);
}

void scree__usage_free(scree__usage *u) {
  free(u->e);
  memset(u, 0, sizeof(*u));
}
