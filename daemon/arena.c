#include "arena.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "list.h"
#include "log.h"
#include "scree/error.h"
#include "sorted.h"

/* Monotonic milliseconds, never 0 (0 marks a clean extent). */
static uint64_t now_ms(void) { return scree__now_ns() / 1000000u + 1u; }

uint64_t scree__align_up(uint64_t n) {
  if (n > UINT64_MAX - (SCREE__ALIGN - 1))
    return UINT64_MAX;
  return (n + SCREE__ALIGN - 1) & ~(uint64_t)(SCREE__ALIGN - 1);
}

static uint64_t gcd_u64(uint64_t a, uint64_t b) {
  while (b != 0) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* Rounds n up to a multiple of unit; 0 when that overflows. */
static uint64_t round_up(uint64_t n, uint64_t unit) {
  uint64_t r = n % unit;
  if (r == 0)
    return n;
  if (n > UINT64_MAX - (unit - r))
    return 0;
  return n + (unit - r);
}

int scree__pool_init(scree__pool *p, scree__mem *mem, uint64_t arena_size, char *msg,
                     size_t msg_len) {
  memset(p, 0, sizeof(*p));
  if (arena_size == 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "arena size must not be 0");
  uint64_t gran = mem->info.granularity ? mem->info.granularity : 1;
  /* Arena sizes must be multiples of both the granularity and the block
   * alignment; for the backends we have the granularity already is one. */
  p->unit = gran / gcd_u64(gran, SCREE__ALIGN) * SCREE__ALIGN;
  p->mem = mem;
  p->arena_size = round_up(arena_size, p->unit);
  if (p->arena_size == 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "arena size %" PRIu64 " is too large",
                       arena_size);
  p->next_id = 1;
  return 0;
}

static void arena_unlink(scree__pool *p, scree__arena *a) {
  SCREE__LIST_REMOVE_TAIL(p->head, p->tail, a);
  a->prev = a->next = NULL;
}

static void arena_destroy(scree__pool *p, scree__arena *a) {
  if (p->on_arena_freed != NULL)
    p->on_arena_freed(p->on_arena_freed_arg, a->id);
  arena_unlink(p, a);
  p->narenas--;
  p->bytes_arenas -= a->mem.size;
  p->mem->ops->arena_free(p->mem, &a->mem);
  free(a->free);
  free(a);
}

void scree__pool_destroy(scree__pool *p) {
  while (p->head != NULL)
    arena_destroy(p, p->head);
}

/* Makes sure the extent array can take the extra extent that any later free
 * might need, so that scree__pool_free never has to allocate. A block split
 * off an extent adds at most one extent when it is freed. */
static int reserve_extents(scree__arena *a) {
  return SCREE__GROW(&a->free, &a->capfree, a->nblocks + 2, 8);
}

/* Takes size bytes from the first extent of a that has room; returns 0 and
 * the offset, or SCREE_ENOSPC when no extent is large enough. */
static int arena_take(scree__arena *a, uint64_t size, uint64_t *off) {
  for (size_t i = 0; i < a->nfree; i++) {
    scree__extent *e = &a->free[i];
    if (e->len < size)
      continue;
    if (reserve_extents(a) != 0)
      return SCREE_ENOMEM;
    e = &a->free[i]; /* the array may have moved */
    *off = e->off;
    e->off += size;
    e->len -= size;
    if (e->len == 0)
      SCREE__REMOVE_AT(a->free, a->nfree, i);
    a->used += size;
    a->nblocks++;
    return 0;
  }
  return SCREE_ENOSPC;
}

/* The empty arena of key that takes a block of size
 * bytes, or NULL. The smallest that fits, so that a small block does not
 * take an arena kept for a large batch; and an arena larger than the
 * standard size only for a block of more than half of it, so that what a
 * reused arena wastes stays below what the block uses. */
static scree__arena *empty_fit(scree__pool *p, uint64_t key, uint64_t size) {
  scree__arena *best = NULL;
  for (scree__arena *a = p->head; a != NULL; a = a->next) {
    if (a->key != key || a->nblocks != 0 || a->mem.size < size)
      continue;
    if (a->mem.size > p->arena_size && size <= a->mem.size / 2)
      continue;
    if (best == NULL || a->mem.size < best->mem.size)
      best = a;
  }
  return best;
}

/* Gives every arena that has been empty for at least
 * min_age_ms back to the backend (0: every empty arena). Returns the bytes
 * given back. */
static uint64_t release_empty(scree__pool *p, uint64_t min_age_ms) {
  const uint64_t now = now_ms();
  uint64_t bytes = 0;
  scree__arena *next;
  for (scree__arena *a = p->head; a != NULL; a = next) {
    next = a->next;
    if (a->nblocks != 0 || a->empty_since == 0 || now - a->empty_since < min_age_ms)
      continue;
    bytes += a->mem.size;
    arena_destroy(p, a);
  }
  return bytes;
}

/* Gives empty arenas back, the longest empty first, until at least need
 * bytes have gone or none is left: what a new arena needs to stay under
 * keep_limit, and no more, so that other owners' kept arenas stay for
 * their next batches. Returns the bytes given back. */
static uint64_t release_oldest_empty(scree__pool *p, uint64_t need) {
  uint64_t bytes = 0;
  while (bytes < need) {
    scree__arena *oldest = NULL;
    for (scree__arena *a = p->head; a != NULL; a = a->next)
      if (a->nblocks == 0 && a->empty_since != 0 &&
          (oldest == NULL || a->empty_since < oldest->empty_since))
        oldest = a;
    if (oldest == NULL)
      break;
    bytes += oldest->mem.size;
    arena_destroy(p, oldest);
  }
  return bytes;
}

int scree__pool_alloc(scree__pool *p, uint64_t size, scree__arena **arena_out,
                      uint64_t *offset_out, char *msg, size_t msg_len) {
  return scree__pool_alloc_keyed(p, SCREE__POOL_SHARED, size, arena_out, offset_out, msg,
                                 msg_len);
}

int scree__pool_alloc_keyed(scree__pool *p, uint64_t key, uint64_t size,
                            scree__arena **arena_out, uint64_t *offset_out, char *msg,
                            size_t msg_len) {
  if (size == 0)
    size = SCREE__ALIGN;
  size = scree__align_up(size);
  if (size == UINT64_MAX)
    return scree__fail(SCREE_ENOSPC, msg, msg_len, "a block of that size cannot exist");

  for (scree__arena *a = p->head; a != NULL; a = a->next) {
    if (a->key != key || a->mem.size - a->used < size || a->nblocks == 0)
      continue;
    int rc = arena_take(a, size, offset_out);
    if (rc == SCREE_ENOMEM)
      return scree__fail(rc, msg, msg_len, "out of host memory for arena bookkeeping");
    if (rc == 0) {
      *arena_out = a;
      return 0;
    }
  }
  scree__arena *e = empty_fit(p, key, size);
  if (e != NULL) {
    /* An empty arena is one extent of its whole size: the take cannot miss,
     * only its bookkeeping can fail. */
    if (arena_take(e, size, offset_out) != 0)
      return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory for arena bookkeeping");
    e->empty_since = 0;
    *arena_out = e;
    return 0;
  }

  uint64_t asize = p->arena_size;
  if (size > asize) {
    asize = round_up(size, p->unit);
    if (asize == 0)
      return scree__fail(SCREE_ENOSPC, msg, msg_len,
                         "a block of %" PRIu64 " bytes cannot exist", size);
  }
  scree__arena *a = calloc(1, sizeof(*a));
  if (a == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory for an arena");
  a->free = malloc(8 * sizeof(*a->free));
  if (a->free == NULL) {
    free(a);
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory for an arena");
  }
  a->capfree = 8;
  /* Kept empty arenas (of any key) go back, as many as it takes, before a
   * new arena takes the pool past keep_limit, so that what is kept for
   * reuse never adds to what the memory limit allows. */
  if (p->keep_limit != 0 && (p->bytes_arenas > p->keep_limit ||
                             asize > p->keep_limit - p->bytes_arenas))
    release_oldest_empty(p, p->bytes_arenas + asize - p->keep_limit);
  int rc = p->mem->ops->arena_alloc(p->mem, (size_t)asize, &a->mem, msg, msg_len);
  /* The device is full, but empty arenas this pool keeps (of any key) may
   * be what fills it: they go back, and the allocation is tried once more. */
  if (rc == SCREE_ENOSPC && release_empty(p, 0) > 0)
    rc = p->mem->ops->arena_alloc(p->mem, (size_t)asize, &a->mem, msg, msg_len);
  if (rc != 0) {
    free(a->free);
    free(a);
    return rc;
  }
  a->id = p->next_id++;
  a->key = key;
  a->free[0].off = 0;
  a->free[0].len = a->mem.size;
  a->free[0].dirty_since = 0; /* fresh memory holds no pages */
  a->nfree = 1;
  a->prev = p->tail;
  SCREE__LIST_APPEND(p->head, p->tail, a);
  p->narenas++;
  p->bytes_arenas += a->mem.size;
  /* A fresh arena has one extent and room for more, so this cannot fail. */
  rc = arena_take(a, size, offset_out);
  if (rc != 0) {
    arena_destroy(p, a);
    return scree__fail(rc, msg, msg_len, "new arena of %" PRIu64 " bytes has no room",
                       asize);
  }
  *arena_out = a;
  return 0;
}

int scree__pool_free(scree__pool *p, scree__arena *a, uint64_t offset, uint64_t size) {
  if (size == 0)
    size = SCREE__ALIGN;
  size = scree__align_up(size);
  if (offset % SCREE__ALIGN != 0 || offset > a->mem.size || size > a->mem.size - offset ||
      size > a->used)
    return SCREE_EINVAL;
  /* i: the first extent that starts after the block. */
  size_t i;
  SCREE__LOWER_BOUND(i, a->nfree, mid, a->free[mid].off <= offset);
  scree__extent *prev = i > 0 ? &a->free[i - 1] : NULL;
  scree__extent *next = i < a->nfree ? &a->free[i] : NULL;
  /* A block that overlaps free space was never handed out (or was freed
   * twice): refuse it rather than corrupt the free list. */
  if (prev && prev->off + prev->len > offset)
    return SCREE_EINVAL;
  if (next && offset + size > next->off)
    return SCREE_EINVAL;

  int join_prev = prev && prev->off + prev->len == offset;
  int join_next = next && offset + size == next->off;
  /* The merged extent is dirty from now: a purge then also gives back the
   * parts of it that were clean, at no cost (they hold no pages). */
  const uint64_t now = now_ms();
  if (join_prev && join_next) {
    prev->len += size + next->len;
    prev->dirty_since = now;
    SCREE__REMOVE_AT(a->free, a->nfree, i);
  } else if (join_prev) {
    prev->len += size;
    prev->dirty_since = now;
  } else if (join_next) {
    next->off = offset;
    next->len += size;
    next->dirty_since = now;
  } else {
    /* reserve_extents guaranteed the room at allocation time. */
    SCREE__INSERT_AT(a->free, a->nfree, i);
    a->free[i].off = offset;
    a->free[i].len = size;
    a->free[i].dirty_since = now;
  }
  a->used -= size;
  a->nblocks--;

  if (a->nblocks == 0)
    a->empty_since = now; /* kept for reuse; scree__pool_purge gives it back */
  return 0;
}

uint64_t scree__pool_purge(scree__pool *p, uint64_t min_age_ms) {
  uint64_t bytes = release_empty(p, min_age_ms);
  if (p->mem->ops->discard == NULL)
    return bytes;
  const uint64_t now = now_ms();
  for (scree__arena *a = p->head; a != NULL; a = a->next) {
    for (size_t i = 0; i < a->nfree; i++) {
      scree__extent *e = &a->free[i];
      if (e->dirty_since == 0 || now - e->dirty_since < min_age_ms)
        continue;
      p->mem->ops->discard(p->mem, &a->mem, e->off, e->len);
      e->dirty_since = 0;
      bytes += e->len;
    }
  }
  return bytes;
}
