/* The arena sub-allocator over a fake backend that maps nothing, so that
 * arenas of any size cost no memory and the backend's calls can be
 * counted; and, at the end, over the real host backend, for the memory a
 * freed block gives back. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "log.h"
#include "scree/error.h"

typedef struct fake_mem {
  scree__mem base;
  int live;           /* arenas handed out and not freed */
  uint64_t live_bytes;
  uint64_t capacity;  /* arena_alloc fails past this many bytes */
  int allocs;
} fake_mem;

static int fake_alloc(scree__mem *m, size_t size, scree__arena_mem *out, char *msg,
                      size_t msg_len) {
  fake_mem *f = (fake_mem *)m;
  size_t g = m->info.granularity;
  size = (size + g - 1) / g * g;
  if (f->live_bytes + size > f->capacity)
    return scree__fail(SCREE_ENOSPC, msg, msg_len, "fake device is full");
  memset(out, 0, sizeof(*out));
  out->size = size;
  out->impl = f;
  f->live++;
  f->live_bytes += size;
  f->allocs++;
  return 0;
}

static void fake_free(scree__mem *m, scree__arena_mem *a) {
  fake_mem *f = (fake_mem *)m;
  f->live--;
  f->live_bytes -= a->size;
}

static const struct scree__mem_ops fake_ops = {
    .arena_alloc = fake_alloc,
    .arena_free = fake_free,
};

static fake_mem fm;
static scree__pool pool;

static void setup_pool(uint64_t arena_size, uint64_t capacity) {
  memset(&fm, 0, sizeof(fm));
  fm.base.ops = &fake_ops;
  fm.base.info.granularity = 4096;
  fm.capacity = capacity;
  char msg[256];
  cr_assert_eq(scree__pool_init(&pool, &fm.base, arena_size, msg, sizeof(msg)), 0, "%s", msg);
}

static void teardown_pool(void) {
  scree__pool_destroy(&pool);
  cr_assert_eq(fm.live, 0, "every arena goes back to the backend");
}

static scree__arena *alloc_ok(uint64_t size, uint64_t *off) {
  scree__arena *a = NULL;
  char msg[256];
  int rc = scree__pool_alloc(&pool, size, &a, off, msg, sizeof(msg));
  cr_assert_eq(rc, 0, "alloc of %llu: %s", (unsigned long long)size, msg);
  return a;
}

Test(arena, sizes_round_to_granularity) {
  setup_pool(10000, UINT64_MAX);
  cr_assert_eq(pool.arena_size, 12288);
  uint64_t off;
  scree__arena *a = alloc_ok(1, &off);
  cr_assert_eq(a->mem.size, 12288);
  cr_assert_eq(pool.narenas, 1);
  cr_assert_eq(pool.bytes_arenas, 12288);
  teardown_pool();
}

Test(arena, blocks_are_256_aligned_and_disjoint) {
  setup_pool(1 << 20, UINT64_MAX);
  uint64_t sizes[] = {1, 255, 256, 257, 1000, 4096, 3};
  uint64_t offs[7];
  scree__arena *first = NULL;
  for (int i = 0; i < 7; i++) {
    scree__arena *a = alloc_ok(sizes[i], &offs[i]);
    if (first == NULL)
      first = a;
    cr_assert_eq(a, first, "small blocks share one arena");
    cr_assert_eq(offs[i] % 256, 0, "offset %llu", (unsigned long long)offs[i]);
  }
  /* First fit from an empty arena packs blocks back to back. */
  uint64_t expect = 0;
  for (int i = 0; i < 7; i++) {
    cr_assert_eq(offs[i], expect);
    expect += scree__align_up(sizes[i]);
  }
  cr_assert_eq(first->used, expect);
  cr_assert_eq(scree__align_up(0), 0);
  cr_assert_eq(scree__align_up(UINT64_MAX - 3), UINT64_MAX);
  teardown_pool();
}

Test(arena, freed_neighbours_coalesce) {
  setup_pool(1 << 20, UINT64_MAX);
  uint64_t a, b, c, d;
  scree__arena *ar = alloc_ok(256, &a);
  alloc_ok(512, &b);
  alloc_ok(256, &c);
  alloc_ok(256, &d); /* keeps the arena alive */
  cr_assert_eq(scree__pool_free(&pool, ar, a, 256), 0);
  cr_assert_eq(scree__pool_free(&pool, ar, c, 256), 0);
  cr_assert_eq(ar->nfree, 3, "a, c and the tail are separate extents");
  cr_assert_eq(scree__pool_free(&pool, ar, b, 512), 0);
  cr_assert_eq(ar->nfree, 2, "a, b and c merged into one extent");
  cr_assert_eq(ar->free[0].off, 0);
  cr_assert_eq(ar->free[0].len, 1024);
  /* The merged hole is found by first fit. */
  uint64_t e;
  cr_assert_eq(alloc_ok(1024, &e), ar);
  cr_assert_eq(e, 0);
  cr_assert_eq(scree__pool_free(&pool, ar, e, 1024), 0);
  cr_assert_eq(scree__pool_free(&pool, ar, d, 256), 0);
  cr_assert_eq(pool.narenas, 1, "the emptied arena is kept");
  cr_assert_neq(ar->empty_since, 0);
  cr_assert_eq(ar->nfree, 1);
  cr_assert_eq(ar->free[0].len, ar->mem.size);
  teardown_pool();
}

Test(arena, bad_frees_are_refused) {
  setup_pool(1 << 20, UINT64_MAX);
  uint64_t a, b;
  scree__arena *ar = alloc_ok(256, &a);
  alloc_ok(256, &b);
  cr_assert_eq(scree__pool_free(&pool, ar, a, 256), 0);
  cr_assert_eq(scree__pool_free(&pool, ar, a, 256), SCREE_EINVAL, "double free");
  cr_assert_eq(scree__pool_free(&pool, ar, 100, 256), SCREE_EINVAL, "misaligned");
  cr_assert_eq(scree__pool_free(&pool, ar, 1 << 20, 256), SCREE_EINVAL, "past the end");
  cr_assert_eq(scree__pool_free(&pool, ar, b, 512), SCREE_EINVAL, "overlaps free space");
  cr_assert_eq(ar->used, 256);
  cr_assert_eq(scree__pool_free(&pool, ar, b, 256), 0);
  teardown_pool();
}

Test(arena, big_block_gets_its_own_arena) {
  setup_pool(64 << 10, UINT64_MAX);
  uint64_t s, big;
  scree__arena *small = alloc_ok(256, &s);
  scree__arena *a = alloc_ok((1 << 20) + 1, &big);
  cr_assert_neq(a, small);
  cr_assert_eq(big, 0);
  cr_assert_eq(a->mem.size, (1 << 20) + 4096, "sized to fit, rounded to the granularity");
  cr_assert_eq(pool.narenas, 2);
  cr_assert_neq(a->id, small->id);
  /* Its slack is still usable by small blocks once the first arena is full. */
  cr_assert_eq(scree__pool_free(&pool, a, big, (1 << 20) + 1), 0);
  cr_assert_eq(pool.narenas, 2, "the emptied oversized arena is kept for the next of its size");
  cr_assert_eq(fm.live, 2);
  cr_assert_eq(scree__pool_free(&pool, small, s, 256), 0);
  teardown_pool();
}

Test(arena, exhaustion_reports_enospc) {
  setup_pool(64 << 10, 128 << 10); /* room for two arenas */
  uint64_t off[2];
  scree__arena *a0 = alloc_ok(64 << 10, &off[0]);
  scree__arena *a1 = alloc_ok(64 << 10, &off[1]);
  scree__arena *a = NULL;
  uint64_t o;
  char msg[256] = "";
  int rc = scree__pool_alloc(&pool, 256, &a, &o, msg, sizeof(msg));
  cr_assert_eq(rc, SCREE_ENOSPC);
  cr_assert_str_eq(msg, "fake device is full");
  cr_assert_eq(pool.narenas, 2, "a failed allocation leaves no arena behind");
  rc = scree__pool_alloc(&pool, UINT64_MAX - 10, &a, &o, msg, sizeof(msg));
  cr_assert_eq(rc, SCREE_ENOSPC, "an impossible size is refused, not wrapped");
  cr_assert_eq(scree__pool_free(&pool, a0, off[0], 64 << 10), 0);
  cr_assert_eq(alloc_ok(256, &o), a0, "freed room is found again");
  cr_assert_eq(scree__pool_free(&pool, a0, o, 256), 0);
  cr_assert_eq(scree__pool_free(&pool, a1, off[1], 64 << 10), 0);
  cr_assert_eq(pool.narenas, 2, "both emptied arenas are kept");
  teardown_pool();
}

typedef struct live_block {
  scree__arena *a;
  uint64_t off;
  uint64_t size;
} live_block;

static int cmp_block(const void *x, const void *y) {
  const live_block *p = x, *q = y;
  if (p->a != q->a)
    return p->a->id < q->a->id ? -1 : 1;
  return p->off < q->off ? -1 : p->off > q->off;
}

static void check_no_overlap(live_block *blocks, size_t n) {
  live_block *sorted = malloc(n * sizeof(*sorted) + 1);
  memcpy(sorted, blocks, n * sizeof(*sorted));
  qsort(sorted, n, sizeof(*sorted), cmp_block);
  for (size_t i = 0; i < n; i++) {
    live_block *b = &sorted[i];
    cr_assert_leq(b->off + scree__align_up(b->size), b->a->mem.size);
    if (i > 0 && sorted[i - 1].a == b->a)
      cr_assert_leq(sorted[i - 1].off + scree__align_up(sorted[i - 1].size), b->off,
                    "blocks overlap in arena %llu", (unsigned long long)b->a->id);
  }
  free(sorted);
}

Test(arena, random_stress_no_overlap_full_recovery) {
  setup_pool(256 << 10, UINT64_MAX);
  enum { MAX_LIVE = 400, STEPS = 20000 };
  live_block live[MAX_LIVE];
  size_t n = 0;
  unsigned seed = 12345;
  for (int step = 0; step < STEPS; step++) {
    int do_alloc = n == 0 || (n < MAX_LIVE && rand_r(&seed) % 100 < 55);
    if (do_alloc) {
      uint64_t size;
      int r = rand_r(&seed) % 100;
      if (r < 70)
        size = 1 + (uint64_t)(rand_r(&seed) % 4096);
      else if (r < 97)
        size = 1 + (uint64_t)(rand_r(&seed) % (64 << 10));
      else
        size = (256 << 10) + (uint64_t)(rand_r(&seed) % (512 << 10)); /* own arena */
      live[n].size = size;
      live[n].a = alloc_ok(size, &live[n].off);
      cr_assert_eq(live[n].off % 256, 0);
      n++;
    } else {
      size_t i = (size_t)rand_r(&seed) % n;
      cr_assert_eq(scree__pool_free(&pool, live[i].a, live[i].off, live[i].size), 0);
      live[i] = live[--n];
    }
    if (step % 500 == 0)
      check_no_overlap(live, n);
  }
  check_no_overlap(live, n);
  uint64_t used = 0;
  for (size_t i = 0; i < n; i++)
    used += scree__align_up(live[i].size);
  uint64_t pool_used = 0;
  for (scree__arena *a = pool.head; a; a = a->next)
    pool_used += a->used;
  cr_assert_eq(pool_used, used, "the pool's count matches the live blocks");
  while (n > 0) {
    n--;
    cr_assert_eq(scree__pool_free(&pool, live[n].a, live[n].off, live[n].size), 0);
  }
  cr_assert_eq(fm.live, (int)pool.narenas);
  for (scree__arena *a = pool.head; a != NULL; a = a->next) {
    cr_assert_eq(a->nfree, 1, "an emptied arena is one extent again");
    cr_assert_eq(a->free[0].len, a->mem.size);
    cr_assert_eq(a->used, 0);
    cr_assert_neq(a->empty_since, 0);
  }
  const uint64_t kept = pool.bytes_arenas;
  cr_assert_eq(scree__pool_purge(&pool, 0), kept, "a purge gives every empty arena back");
  cr_assert_eq(pool.narenas, 0);
  teardown_pool();
}

static scree__arena *alloc_key(uint64_t key, uint64_t size, uint64_t *off) {
  scree__arena *a = NULL;
  char msg[256];
  int rc = scree__pool_alloc_keyed(&pool, key, size, &a, off, msg, sizeof(msg));
  cr_assert_eq(rc, 0, "alloc of %llu: %s", (unsigned long long)size, msg);
  return a;
}

Test(arena, keys_never_share_an_arena_and_an_empty_arena_keeps_its_key) {
  setup_pool(1 << 20, UINT64_MAX);
  uint64_t o1, o2, o3, o4, o5;
  scree__arena *a1 = alloc_key(1000, 256, &o1);
  scree__arena *b1 = alloc_key(1001, 256, &o2);
  scree__arena *a2 = alloc_key(1000, 256, &o3);
  scree__arena *s1 = alloc_ok(256, &o4); /* unkeyed: the shared pool */
  cr_assert_neq(a1, b1, "two owners, two arenas, though both have room");
  cr_assert_eq(a1, a2, "one owner's blocks share its arena");
  cr_assert_neq(s1, a1);
  cr_assert_neq(s1, b1);
  cr_assert_eq(a1->key, 1000);
  cr_assert_eq(b1->key, 1001);
  cr_assert_eq(s1->key, SCREE__POOL_SHARED);
  cr_assert_eq(pool.narenas, 3);
  cr_assert_eq(alloc_key(SCREE__POOL_SHARED, 256, &o5), s1, "the shared key is one pool");

  /* Owner 1001's arena empties and is kept. Owner 1000 must not get it:
   * clients of 1001 may still have it mapped. */
  uint64_t b1_id = b1->id;
  cr_assert_eq(scree__pool_free(&pool, b1, o2, 256), 0);
  cr_assert_neq(b1->empty_since, 0);
  scree__arena *big = alloc_key(1000, 1 << 20, &o2); /* a1 has no room for it */
  cr_assert_neq(big->id, b1_id, "another key's empty arena is not reused");
  cr_assert_eq(big->key, 1000);
  cr_assert_neq(b1->empty_since, 0);
  scree__arena *b2 = alloc_key(1001, 256, &o2);
  cr_assert_eq(b2->id, b1_id, "the empty arena goes back to its own key");
  cr_assert_eq(b2->empty_since, 0);
  teardown_pool();
}

/* An emptied arena of any size stays, with its id, for the next block of
 * its key that fits; only a purge after the delay, a new arena that would
 * pass keep_limit, or a full device gives it back, and the store hears of
 * it then. */
static uint64_t freed_ids[16];
static int nfreed_ids;
static void note_freed(void *arg, uint64_t id) {
  (void)arg;
  if (nfreed_ids < 16)
    freed_ids[nfreed_ids++] = id;
}

static void setup_keep_empty(uint64_t arena_size, uint64_t capacity) {
  setup_pool(arena_size, capacity);
  nfreed_ids = 0;
  pool.on_arena_freed = note_freed;
}

Test(arena, keep_empty_reuses_a_big_arena_of_the_same_key) {
  setup_keep_empty(64 << 10, UINT64_MAX);
  uint64_t big = (1 << 20) + 1, o1, o2, o3;
  scree__arena *a = alloc_key(1000, big, &o1);
  uint64_t id = a->id;
  cr_assert_eq(scree__pool_free(&pool, a, o1, big), 0);
  cr_assert_eq(pool.narenas, 1, "the emptied big arena is kept");
  cr_assert_eq(fm.live, 1);
  cr_assert_eq(nfreed_ids, 0, "no freed notice for a kept arena");
  cr_assert_eq(scree__pool_purge(&pool, 60000), 0, "too young to go");
  cr_assert_eq(pool.narenas, 1);
  /* Another owner never gets it. */
  scree__arena *b = alloc_key(1001, big, &o2);
  cr_assert_neq(b->id, id, "another key's empty arena is not reused");
  cr_assert_eq(fm.allocs, 2);
  /* The same owner gets it back, same id, no new backend allocation. */
  scree__arena *a2 = alloc_key(1000, big, &o3);
  cr_assert_eq(a2->id, id);
  cr_assert_eq(o3, 0);
  cr_assert_eq(fm.allocs, 2);
  cr_assert_eq(a2->empty_since, 0);
  cr_assert_eq(scree__pool_free(&pool, a2, o3, big), 0);
  cr_assert_eq(scree__pool_free(&pool, b, o2, big), 0);
  cr_assert_eq(pool.narenas, 2);
  teardown_pool();
}

Test(arena, keep_empty_small_blocks_leave_big_arenas_alone) {
  setup_keep_empty(64 << 10, UINT64_MAX);
  uint64_t big = 1 << 20, o1, o2, o3, o4;
  scree__arena *a = alloc_key(7, big, &o1);
  scree__arena *s = alloc_key(7, 256, &o2);
  cr_assert_neq(a, s);
  cr_assert_eq(scree__pool_free(&pool, a, o1, big), 0);
  cr_assert_eq(scree__pool_free(&pool, s, o2, 256), 0);
  /* Both empty: a small block takes the standard arena, not the big one. */
  cr_assert_eq(alloc_key(7, 512, &o3), s);
  /* A block of at most half a big arena does not take it either. */
  scree__arena *h = alloc_key(7, big / 2, &o4);
  cr_assert_neq(h, a);
  cr_assert_eq(fm.allocs, 3);
  cr_assert_eq(scree__pool_free(&pool, s, o3, 512), 0);
  cr_assert_eq(scree__pool_free(&pool, h, o4, big / 2), 0);
  teardown_pool();
}

Test(arena, keep_empty_arenas_go_at_purge_or_when_the_device_is_full) {
  setup_keep_empty(64 << 10, 256 << 10); /* room for 256 KiB of arenas */
  uint64_t o1, o2, o3;
  scree__arena *a = alloc_key(1, 128 << 10, &o1);
  uint64_t a_id = a->id;
  cr_assert_eq(scree__pool_free(&pool, a, o1, 128 << 10), 0);
  /* Another key needs 192 KiB: only room once the kept arena goes. */
  scree__arena *b = alloc_key(2, 192 << 10, &o2);
  cr_assert_eq(b->key, 2);
  cr_assert_eq(nfreed_ids, 1, "the kept arena went back to make room");
  cr_assert_eq(freed_ids[0], a_id);
  cr_assert_eq(pool.narenas, 1);
  cr_assert_eq(scree__pool_free(&pool, b, o2, 192 << 10), 0);
  cr_assert_eq(pool.narenas, 1);
  cr_assert_eq(scree__pool_purge(&pool, 0), 192 << 10, "purge gives back the empty arena");
  cr_assert_eq(pool.narenas, 0);
  cr_assert_eq(pool.bytes_arenas, 0);
  cr_assert_eq(fm.live, 0);
  cr_assert_eq(nfreed_ids, 2);
  /* An arena with a block in it is never given back by a purge. */
  scree__arena *c = alloc_key(1, 256, &o3);
  cr_assert_eq(scree__pool_purge(&pool, 0), 0);
  cr_assert_eq(pool.narenas, 1);
  cr_assert_eq(scree__pool_free(&pool, c, o3, 256), 0);
  teardown_pool();
}

Test(arena, empty_arenas_go_before_a_new_one_passes_keep_limit) {
  setup_keep_empty(64 << 10, UINT64_MAX);
  pool.keep_limit = 512 << 10; /* the store's memory limit */
  uint64_t o1, o2, o3, o4;
  scree__arena *a = alloc_key(1, 256 << 10, &o1);
  scree__arena *b = alloc_key(2, 128 << 10, &o2);
  cr_assert_eq(scree__pool_free(&pool, a, o1, 256 << 10), 0);
  /* 384 KiB of arenas, 256 KiB of them empty: a new 128 KiB arena still
   * fits under the limit, and the empty one stays. */
  scree__arena *c = alloc_key(3, 128 << 10, &o3);
  cr_assert_eq(nfreed_ids, 0);
  cr_assert_eq(pool.narenas, 3);
  /* Another 128 KiB would make 640 KiB: the empty arena goes first. */
  scree__arena *d = alloc_key(4, 128 << 10, &o4);
  cr_assert_eq(nfreed_ids, 1, "the empty arena went back");
  cr_assert_eq(pool.narenas, 3);
  cr_assert_eq(pool.bytes_arenas, 384 << 10);
  /* Arenas in use are never given back for it: past the limit they add up
   * as the store's own limit lets them. */
  uint64_t o5;
  scree__arena *e = alloc_key(5, 256 << 10, &o5);
  cr_assert_eq(nfreed_ids, 1);
  cr_assert_eq(pool.bytes_arenas, 640 << 10);
  cr_assert_eq(scree__pool_free(&pool, b, o2, 128 << 10), 0);
  cr_assert_eq(scree__pool_free(&pool, c, o3, 128 << 10), 0);
  cr_assert_eq(scree__pool_free(&pool, d, o4, 128 << 10), 0);
  cr_assert_eq(scree__pool_free(&pool, e, o5, 256 << 10), 0);
  teardown_pool();
}

/* Only as many kept arenas go as the new one needs, the longest empty
 * first: another owner's arena, emptied later, stays for its next batch. */
Test(arena, keep_limit_takes_the_longest_empty_arenas_and_no_more) {
  setup_keep_empty(64 << 10, UINT64_MAX);
  pool.keep_limit = 512 << 10;
  uint64_t o1, o2, o3, o4, o5;
  scree__arena *a = alloc_key(1, 128 << 10, &o1);
  scree__arena *b = alloc_key(2, 128 << 10, &o2);
  scree__arena *c = alloc_key(3, 128 << 10, &o3);
  uint64_t a_id = a->id, b_id = b->id;
  cr_assert_eq(scree__pool_free(&pool, a, o1, 128 << 10), 0);
  usleep(3000); /* empty_since counts milliseconds */
  cr_assert_eq(scree__pool_free(&pool, b, o2, 128 << 10), 0);
  /* 384 KiB of arenas, two of them empty; 256 KiB more needs 128 KiB back:
   * a's (empty the longest), not b's. */
  scree__arena *d = alloc_key(4, 256 << 10, &o4);
  cr_assert_eq(nfreed_ids, 1);
  cr_assert_eq(freed_ids[0], a_id, "the arena empty the longest went");
  cr_assert_eq(pool.narenas, 3);
  cr_assert_eq(pool.bytes_arenas, 512 << 10);
  scree__arena *b2 = alloc_key(2, 128 << 10, &o5);
  cr_assert_eq(b2->id, b_id, "owner 2's kept arena stayed for it");
  cr_assert_eq(scree__pool_free(&pool, c, o3, 128 << 10), 0);
  cr_assert_eq(scree__pool_free(&pool, d, o4, 256 << 10), 0);
  cr_assert_eq(scree__pool_free(&pool, b2, o5, 128 << 10), 0);
  teardown_pool();
}

/* On host memory a freed block's pages go back to the system (punched out
 * of the arena's memfd) once a purge finds them old enough, while the arena
 * and its other blocks stay: the memfd's allocated blocks shrink by the
 * freed block, the freed range reads zeros, and the neighbour keeps its
 * bytes. An emptied arena keeps its pages, for the next block of its key,
 * until a purge gives the whole arena back, punched. (Through a mapping, a read of a punched
 * page would allocate it again: a client reading a deleted batch's memory
 * costs pages, as before.) */
static uint64_t arena_bytes_held(scree__mem *m, scree__arena *a) {
  int fd = -1;
  char msg[256];
  cr_assert_eq(m->ops->share_fd(m, &a->mem, &fd, msg, sizeof(msg)), 0, "%s", msg);
  struct stat st;
  cr_assert_eq(fstat(fd, &st), 0);
  close(fd);
  return (uint64_t)st.st_blocks * 512;
}

Test(arena, host_memory_of_freed_blocks_goes_back) {
  scree__mem *host = NULL;
  char msg[256];
  cr_assert_eq(scree__mem_host_create(&host, msg, sizeof(msg)), 0, "%s", msg);
  scree__pool hp;
  cr_assert_eq(scree__pool_init(&hp, host, 16u << 20, msg, sizeof(msg)), 0, "%s", msg);
  const uint64_t mib4 = 4u << 20;
  scree__arena *a = NULL, *b = NULL;
  uint64_t off_a = 0, off_b = 0;
  cr_assert_eq(scree__pool_alloc(&hp, mib4, &a, &off_a, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(scree__pool_alloc(&hp, mib4, &b, &off_b, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(a, b, "both blocks in one arena");
  uint8_t *base = a->mem.host_ptr;
  cr_assert_not_null(base);
  memset(base + off_a, 0x5a, mib4);
  memset(base + off_b, 0xa5, mib4);
  const uint64_t before = arena_bytes_held(host, a);
  cr_assert_geq(before, 2 * mib4, "both blocks are resident (%llu bytes)",
                (unsigned long long)before);

  cr_assert_eq(scree__pool_free(&hp, a, off_a, mib4), 0);
  /* Not at once: freed memory is kept for reuse until it has aged. */
  cr_assert_eq(scree__pool_purge(&hp, 60000), 0, "nothing is a minute old yet");
  cr_assert_geq(arena_bytes_held(host, a), before, "the freed pages are still resident");
  cr_assert_geq(scree__pool_purge(&hp, 0), mib4, "the freed block's extent is given back");
  cr_assert_eq(scree__pool_purge(&hp, 0), 0, "and only once");
  const uint64_t after = arena_bytes_held(host, a);
  cr_assert_leq(after + mib4, before, "freeing 4 MiB gave back %llu bytes",
                (unsigned long long)(before - after));
  /* Read the freed range through the fd: a read fault on a hole of a
   * shared memfd mapping would allocate the page again. */
  int fd = -1;
  cr_assert_eq(host->ops->share_fd(host, &a->mem, &fd, msg, sizeof(msg)), 0, "%s", msg);
  uint8_t page[4096];
  for (uint64_t i = 0; i < mib4; i += sizeof(page)) {
    cr_assert_eq(pread(fd, page, sizeof(page), (off_t)(off_a + i)), (ssize_t)sizeof(page));
    for (size_t j = 0; j < sizeof(page); j++)
      if (page[j] != 0)
        cr_assert_fail("freed byte %llu reads %d", (unsigned long long)(i + j), page[j]);
  }
  close(fd);
  for (uint64_t i = 0; i < mib4; i += 4096)
    cr_assert_eq(base[off_b + i], 0xa5, "the neighbour lost byte %llu", (unsigned long long)i);

  cr_assert_eq(scree__pool_free(&hp, b, off_b, mib4), 0);
  cr_assert_eq(hp.narenas, 1, "the emptied arena is kept");
  cr_assert_geq(arena_bytes_held(host, a), mib4, "with its pages, for the next block");
  /* A reader that kept the arena's fd holds nothing once it goes. */
  cr_assert_eq(host->ops->share_fd(host, &a->mem, &fd, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(scree__pool_purge(&hp, 60000), 0, "too young to go");
  cr_assert_geq(scree__pool_purge(&hp, 0), 16u << 20, "the empty arena goes back");
  cr_assert_eq(hp.narenas, 0);
  struct stat st;
  cr_assert_eq(fstat(fd, &st), 0);
  cr_assert_eq(st.st_blocks, 0, "the given-back arena still holds %lld bytes",
               (long long)st.st_blocks * 512);
  close(fd);
  scree__pool_destroy(&hp);
  host->ops->destroy(host);
}
