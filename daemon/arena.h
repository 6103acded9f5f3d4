/* Sub-allocation of batches inside arenas.
 *
 * A pool owns the arenas it got from a memory backend (mem.h) and hands out
 * 256-byte aligned blocks from them. Each arena keeps its free space as a
 * sorted array of extents: allocation is first fit over the arenas in the
 * order they were made, and a freed block merges with free neighbours, so an
 * arena whose blocks are all freed is one extent again.
 *
 * Arenas are --arena-size bytes, rounded up to the backend's granularity; a
 * block larger than that gets an arena of its own, sized to fit.
 *
 * Free space that blocks have used is "dirty": on host memory its pages are
 * still resident. scree__pool_purge gives the memory of extents that have
 * stayed dirty for a while back to the backend (mem.h's discard), so a
 * long-lived screed does not keep the peak of every arena it ever filled,
 * while a workload that frees and refills within the delay keeps reusing
 * resident pages instead of faulting in fresh zeroed ones each cycle.
 *
 * An arena that becomes empty is kept, whatever its size, with the same id,
 * mapping and exported handle (and, on host memory, its resident pages):
 * the next block of the same key that fits takes it again, so a producer
 * that puts and deletes a batch larger than the arena size each step pays
 * neither a new arena (cuMemCreate, or a memfd whose every page faults in
 * zeroed: about 1 s a GiB on the CI-like machine) nor its clients' imports
 * again. scree__pool_purge gives an arena that has stayed empty for the
 * delay back to the backend; empty arenas go back, the longest empty first
 * and only as many as it takes, before a new one would take the pool past
 * keep_limit, and all of them when the backend refuses a new arena for
 * lack of memory (the allocation is then tried once more). */
#ifndef SCREE_DAEMON_ARENA_H
#define SCREE_DAEMON_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "mem.h"

#define SCREE__ALIGN 256u

typedef struct scree__extent {
  uint64_t off;
  uint64_t len;
  /* Monotonic milliseconds since the extent last grew by a freed block, or
   * 0 when it holds no memory a block used since the last purge. */
  uint64_t dirty_since;
} scree__extent;

typedef struct scree__arena {
  uint64_t id; /* unique for the life of the pool; never reused */
  scree__arena_mem mem;
  scree__extent *free; /* sorted by off, never adjacent or overlapping */
  size_t nfree;
  size_t capfree;
  uint64_t used;   /* bytes handed out */
  size_t nblocks;  /* blocks handed out */
  struct scree__arena *prev;
  struct scree__arena *next;
  /* The pool key the arena was made for (scree__pool_alloc_keyed). It never
   * changes: every client that ever mapped the arena keeps seeing all of
   * it, so memory given to one key must never hold another key's blocks. */
  uint64_t key;
  /* Monotonic milliseconds (never 0) since the arena
   * became empty, or 0 while it holds blocks (or was never used). */
  uint64_t empty_since;
} scree__arena;

typedef struct scree__pool {
  scree__mem *mem;
  uint64_t unit;       /* arena sizes are multiples of this */
  uint64_t arena_size; /* standard arena size, a multiple of unit */
  uint64_t next_id;
  scree__arena *head;
  scree__arena *tail;
  uint32_t narenas; /* empty ones included */
  uint64_t bytes_arenas;
  /* Empty arenas kept for reuse go back before a new arena would take
   * bytes_arenas past this (0: no bound; the store sets its memory limit).
   * Set after scree__pool_init. */
  uint64_t keep_limit;
  /* Called as an arena goes back to the backend (its id is never used
   * again), so that the store can tell the clients that mapped it. May be
   * NULL. Set after scree__pool_init. */
  void (*on_arena_freed)(void *arg, uint64_t id);
  void *on_arena_freed_arg;
} scree__pool;

/* Gives back the memory of every free extent that has been dirty for at
 * least min_age_ms (0: all of them), where the backend can (mem.h's
 * discard; a no-op for backends without one), and every arena that has
 * been empty that long (on_arena_freed is called for
 * each). Returns the bytes given back. */
uint64_t scree__pool_purge(scree__pool *p, uint64_t min_age_ms);

/* Rounds n up to a multiple of SCREE__ALIGN; UINT64_MAX when that overflows. */
uint64_t scree__align_up(uint64_t n);

/* Sets up an empty pool over mem with arenas of arena_size bytes (rounded up
 * to the backend's granularity and to SCREE__ALIGN). Makes no arena yet.
 * Returns 0 or SCREE_EINVAL (arena_size of 0). */
int scree__pool_init(scree__pool *p, scree__mem *mem, uint64_t arena_size, char *msg,
                     size_t msg_len);

/* Returns every arena to the backend. Blocks still handed out are dropped
 * with their arenas. */
void scree__pool_destroy(scree__pool *p);

/* Hands out a block of size bytes (rounded up to SCREE__ALIGN), in an
 * existing arena when one has room, else in a new one. Stores the arena and
 * the block's offset in it. Returns 0, SCREE_ENOMEM (host bookkeeping), or
 * what the backend's arena_alloc returned (SCREE_ENOSPC when the device is
 * full), with a message. */
int scree__pool_alloc(scree__pool *p, uint64_t size, scree__arena **arena_out,
                      uint64_t *offset_out, char *msg, size_t msg_len);

/* The key of the shared pool, which scree__pool_alloc uses. Keys of owner
 * uids are the uid itself (below 2^32), so they never equal it. */
#define SCREE__POOL_SHARED UINT64_MAX

/* As scree__pool_alloc, but only arenas made for key are looked at, and a new
 * arena is made for key. The store keys blocks by their owner's uid (or
 * SCREE__POOL_SHARED), so that a client given one arena's handle sees only
 * blocks of one owner. The empty arenas the pool keeps are reused only by
 * their own key. */
int scree__pool_alloc_keyed(scree__pool *p, uint64_t key, uint64_t size,
                            scree__arena **arena_out, uint64_t *offset_out, char *msg,
                            size_t msg_len);

/* Returns the block at offset of size bytes (the size given to
 * scree__pool_alloc) to its arena; an arena left empty is kept (see the top
 * of this file). Returns 0, or SCREE_EINVAL when the block is not one that
 * was handed out (nothing is changed then). Never allocates. */
int scree__pool_free(scree__pool *p, scree__arena *a, uint64_t offset, uint64_t size);

#endif /* SCREE_DAEMON_ARENA_H */
