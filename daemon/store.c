#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grow.h"
#include "list.h"
#include "log.h"
#include "quota.h"
#include "scree/error.h"
#include "sorted.h"

typedef struct scree__lease scree__lease;
typedef struct scree__waiter scree__waiter;
typedef struct scree__watch scree__watch;

typedef enum batch_state {
  BATCH_CREATED = 1,
  BATCH_SEALED = 2,
} batch_state;

typedef struct scree__batch {
  uint64_t id; /* unique for the store's life: tells a batch from a later one of its name */
  char *name;
  scree_array desc; /* pointers unused; max_length set at seal */
  batch_state state;
  uint64_t values_bytes;
  uint64_t offsets_bytes;
  uint64_t offsets_at; /* offset of the offsets within the block */
  uint64_t block_bytes;
  scree__arena *arena;
  uint64_t offset; /* of the block (and of the values) in the arena */
  uint32_t leases;
  uint32_t owner_uid;
  int32_t owner_pid;
  uint64_t creator; /* session id */
  uint64_t created_ns;
  int deleted; /* name gone; freed with the last lease */
  /* The output of a running attention job: named from the request on, so
   * that a Create of the name gets EEXIST, but written by the job only. */
  int reserved;
  /* The creator's list of CREATED batches, for reclaim at close. */
  struct scree__batch *uprev;
  struct scree__batch *unext;
} scree__batch;

struct scree__lease {
  uint64_t id;
  scree__batch *batch;
  scree__session *sess;
  scree__lease *prev; /* the session's leases */
  scree__lease *next;
};

/* The handle a session holds for an arena. An arena missing from the
 * session's list was never sent. A reader is sent a read-only handle; a
 * writer (Create) a writable one, once more for an arena it holds read-only.
 * Where the backend has no read-only handles (CUDA) the first handle is
 * writable and none follows. */
enum { KNOWN_RO = 1, KNOWN_RW = 2 };

typedef struct scree__known_arena {
  uint64_t id;
  int kind; /* KNOWN_RO or KNOWN_RW */
} scree__known_arena;

struct scree__session {
  uint64_t id;
  uint32_t uid;
  int32_t pid;
  int hello_done;
  scree__lease *leases;
  uint32_t nleases;
  scree__batch *unsealed;
  /* Arenas this session has been given a handle for, sorted by id, with
   * the kind of handle. Ids are never reused, so a stale entry for a freed
   * arena is harmless. */
  scree__known_arena *known;
  size_t nknown;
  size_t capknown;
  scree__session *prev;
  scree__session *next;
  /* The attention job whose reply this session waits for (exec.c keeps
   * it; the store never looks inside). */
  void *job;
  void *fetch; /* the peer fetch it waits for (peers.c) */
  void *data; /* the server's connection */
  /* The Get that waits for a seal (at most one: a connection's requests
   * are answered in order, so nothing after it is read meanwhile), and the
   * watch when the connection is an event stream. */
  scree__waiter *waiter;
  scree__watch *watch;
  /* A session screed holds for itself (scree__session_open_own): not
   * counted among the clients' sessions, and its waiter and watch answer
   * through its own hooks. */
  int own;
  scree__store_hooks own_hooks;
  /* Arenas freed since the session's last response, for
   * Response.freed_arenas. */
  uint64_t *freed;
  size_t nfreed;
  size_t capfreed;
};

struct scree__store {
  scree__mem *mem;
  scree__pool pool;
  scree__store_config cfg;
  /* Batches by name, sorted by strcmp: O(log n) lookup and ordered paging
   * for List; insertion moves pointers, which is cheap at store sizes. */
  scree__batch **names;
  size_t nnames;
  size_t capnames;
  /* Leases by id: open addressing with linear probing, power-of-two size. */
  scree__lease **ltab;
  size_t lcap;
  size_t lcount;
  uint64_t next_lease_id;
  uint64_t next_session_id;
  uint64_t next_batch_id;
  scree__session *sessions;
  uint32_t nsessions;
  uint64_t bytes_used;
  uint32_t pending_deletes;
  uint64_t requests;
  scree__error_count errors[SCREE__STORE_ERROR_SLOTS];
  size_t nerrors;
  uint64_t start_ns;
  scree__usage usage; /* bytes per owner uid, for --quota-per-uid */
  /* Told of every arena the pool frees (the attention executor: its
   * worker unmaps it); may be NULL. */
  void (*arena_hook)(void *arg, uint64_t id);
  void *arena_hook_arg;
  /* Waiting and watching (the end of the file). */
  struct wait_list **waits; /* by name, sorted: the waiters of each name */
  size_t nwaits;
  size_t capwaits;
  scree__waiter **wheap; /* waiters with a deadline: a min-heap */
  size_t nheap;
  size_t capheap;
  uint32_t nwaiters;
  struct wake *wakes; /* wakes under way, innermost first (waiters_wake) */
  scree__watch *watches;
  uint32_t nwatchers;
  uint64_t watch_overflows;
  uint64_t watch_events;
  scree__store_hooks hooks;
};

static void waiters_wake(scree__store *s, const char *name);
static void waiter_drop(scree__store *s, scree__waiter *w);
static void wakes_forget(scree__store *s, const scree__session *sess);
static void watch_feed(scree__store *s, int kind, const scree__batch *b);
static void watch_free(scree__store *s, scree__watch *w);

/* ---- names ------------------------------------------------------------- */

int scree__name_check(const char *name, char *msg, size_t msg_len) {
  if (name == NULL)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "batch name is missing");
  size_t len = strlen(name);
  if (len == 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "batch name is empty");
  if (len > SCREE__MAX_NAME_LEN)
    return scree__fail(SCREE_ENAMETOOLONG, msg, msg_len,
                       "batch name is %zu bytes; the limit is %d", len,
                       SCREE__MAX_NAME_LEN);
  const unsigned char *p = (const unsigned char *)name;
  for (size_t i = 0; i < len;) {
    unsigned c = p[i];
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
      cp = c;
      n = 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
      cp = c & 0x1f;
      n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      cp = c & 0x0f;
      n = 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      cp = c & 0x07;
      n = 4;
    } else {
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "batch name is not valid UTF-8 at byte %zu", i);
    }
    if (i + n > len)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "batch name is not valid UTF-8 at byte %zu", i);
    for (size_t k = 1; k < n; k++) {
      if ((p[i + k] & 0xc0) != 0x80)
        return scree__fail(SCREE_EINVAL, msg, msg_len,
                           "batch name is not valid UTF-8 at byte %zu", i);
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "batch name is not valid UTF-8 at byte %zu", i);
    if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "batch name has a control character (U+%04" PRIX32
                         ") at byte %zu",
                         cp, i);
    i += n;
  }
  return 0;
}

/* The index of the first name >= key (or > key when strictly is set). */
static size_t names_bound(const scree__store *s, const char *key, int strictly) {
  size_t at;
  SCREE__LOWER_BOUND(at, s->nnames, mid,
                     strictly ? strcmp(s->names[mid]->name, key) <= 0
                              : strcmp(s->names[mid]->name, key) < 0);
  return at;
}

static scree__batch *names_find(const scree__store *s, const char *name) {
  size_t i = names_bound(s, name, 0);
  if (i < s->nnames && strcmp(s->names[i]->name, name) == 0)
    return s->names[i];
  return NULL;
}

static int names_insert(scree__store *s, scree__batch *b) {
  if (SCREE__GROW(&s->names, &s->capnames, s->nnames + 1, 64) != 0)
    return SCREE_ENOMEM;
  size_t i = names_bound(s, b->name, 0);
  SCREE__INSERT_AT(s->names, s->nnames, i);
  s->names[i] = b;
  return 0;
}

static void names_remove(scree__store *s, scree__batch *b) {
  size_t i = names_bound(s, b->name, 0);
  if (i < s->nnames && s->names[i] == b)
    SCREE__REMOVE_AT(s->names, s->nnames, i);
}

/* ---- leases ------------------------------------------------------------ */

static size_t lease_slot(uint64_t id, size_t cap) {
  return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static scree__lease *leases_find(const scree__store *s, uint64_t id) {
  if (s->lcap == 0)
    return NULL;
  for (size_t i = lease_slot(id, s->lcap);; i = (i + 1) & (s->lcap - 1)) {
    scree__lease *l = s->ltab[i];
    if (l == NULL)
      return NULL;
    if (l->id == id)
      return l;
  }
}

static int leases_grow(scree__store *s) {
  size_t cap = s->lcap ? s->lcap * 2 : 64;
  scree__lease **t = calloc(cap, sizeof(*t));
  if (t == NULL)
    return SCREE_ENOMEM;
  for (size_t i = 0; i < s->lcap; i++) {
    scree__lease *l = s->ltab[i];
    if (l == NULL)
      continue;
    size_t j = lease_slot(l->id, cap);
    while (t[j] != NULL)
      j = (j + 1) & (cap - 1);
    t[j] = l;
  }
  free(s->ltab);
  s->ltab = t;
  s->lcap = cap;
  return 0;
}

static int leases_insert(scree__store *s, scree__lease *l) {
  if ((s->lcount + 1) * 2 > s->lcap && leases_grow(s) != 0)
    return SCREE_ENOMEM;
  size_t i = lease_slot(l->id, s->lcap);
  while (s->ltab[i] != NULL)
    i = (i + 1) & (s->lcap - 1);
  s->ltab[i] = l;
  s->lcount++;
  return 0;
}

/* Removes l by shifting later members of its probe run back, so that the
 * table needs no tombstones. */
static void leases_remove(scree__store *s, scree__lease *l) {
  size_t mask = s->lcap - 1;
  size_t i = lease_slot(l->id, s->lcap);
  while (s->ltab[i] != l)
    i = (i + 1) & mask;
  s->ltab[i] = NULL;
  s->lcount--;
  for (size_t j = (i + 1) & mask; s->ltab[j] != NULL; j = (j + 1) & mask) {
    size_t home = lease_slot(s->ltab[j]->id, s->lcap);
    /* The entry at j may move to the hole at i when its home is not in the
     * cyclic range (i, j]. */
    int in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!in_range) {
      s->ltab[i] = s->ltab[j];
      s->ltab[j] = NULL;
      i = j;
    }
  }
}

/* ---- batches ----------------------------------------------------------- */

static void batch_free(scree__store *s, scree__batch *b) {
  if (scree__pool_free(&s->pool, b->arena, b->offset, b->block_bytes) != 0)
    scree__log(SCREE__LOG_ERROR, "arena_free_refused", "batch=%s arena=%" PRIu64
               " offset=%" PRIu64 " bytes=%" PRIu64, scree__q(b->name), b->arena->id,
               b->offset, b->block_bytes);
  s->bytes_used -= b->block_bytes;
  scree__usage_sub(&s->usage, b->owner_uid, b->block_bytes);
  free(b->name);
  free(b);
}

static void unsealed_unlink(scree__session *sess, scree__batch *b) {
  if (b->uprev)
    b->uprev->unext = b->unext;
  else if (sess != NULL && sess->unsealed == b)
    sess->unsealed = b->unext;
  if (b->unext)
    b->unext->uprev = b->uprev;
  b->uprev = b->unext = NULL;
}

static void lease_drop(scree__store *s, scree__lease *l) {
  scree__session *sess = l->sess;
  scree__batch *b = l->batch;
  leases_remove(s, l);
  SCREE__LIST_REMOVE(sess->leases, l);
  sess->nleases--;
  free(l);
  b->leases--;
  if (b->leases == 0 && b->deleted) {
    s->pending_deletes--;
    scree__log(SCREE__LOG_DEBUG, "delete_completed", "batch=%s", scree__q(b->name));
    batch_free(s, b);
  }
}

/* ---- store ------------------------------------------------------------- */

static void arena_freed(void *arg, uint64_t id);

int scree__store_new(scree__mem *mem, const scree__store_config *cfg, scree__store **out,
                     char *msg, size_t msg_len) {
  if (cfg->memory_limit == 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "memory limit must not be 0");
  scree__store *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  int rc = scree__pool_init(&s->pool, mem, cfg->arena_size, msg, msg_len);
  if (rc != 0) {
    free(s);
    return rc;
  }
  s->mem = mem;
  s->cfg = *cfg;
  s->next_lease_id = 1;
  s->next_session_id = 1;
  s->next_batch_id = 1;
  s->start_ns = scree__now_ns();
  s->pool.on_arena_freed = arena_freed;
  s->pool.on_arena_freed_arg = s;
  s->pool.keep_limit = cfg->memory_limit;
  *out = s;
  return 0;
}

void scree__store_free(scree__store *s) {
  if (s == NULL)
    return;
  while (s->sessions != NULL)
    scree__session_close(s, s->sessions);
  for (size_t i = 0; i < s->nnames; i++)
    batch_free(s, s->names[i]);
  free(s->names);
  free(s->ltab);
  scree__pool_destroy(&s->pool);
  free(s->waits);
  free(s->wheap);
  scree__usage_free(&s->usage);
  free(s);
}

uint64_t scree__store_purge(scree__store *s, uint64_t min_age_ms) {
  return scree__pool_purge(&s->pool, min_age_ms);
}

void scree__store_counts_get(const scree__store *s, scree__store_counts *out) {
  out->bytes_used = s->bytes_used;
  out->bytes_arenas = s->pool.bytes_arenas;
  out->arenas = s->pool.narenas;
  out->batches = (uint32_t)s->nnames;
  out->pending_deletes = s->pending_deletes;
  out->leases = (uint32_t)s->lcount;
  out->sessions = s->nsessions;
  out->requests = s->requests;
  out->memory_limit = s->cfg.memory_limit;
  out->arena_size = s->pool.arena_size;
  out->start_ns = s->start_ns;
  out->waiters = s->nwaiters;
  out->watchers = s->nwatchers;
  out->watch_overflows = s->watch_overflows;
  out->watch_events = s->watch_events;
}

uint64_t scree__store_uid_bytes(const scree__store *s, uint32_t uid) {
  return scree__usage_get(&s->usage, uid);
}

scree__session *scree__session_open(scree__store *s, uint32_t uid, int32_t pid) {
  scree__session *sess = calloc(1, sizeof(*sess));
  if (sess == NULL)
    return NULL;
  sess->id = s->next_session_id++;
  sess->uid = uid;
  sess->pid = pid;
  SCREE__LIST_PUSH(s->sessions, sess);
  s->nsessions++;
  return sess;
}

scree__session *scree__session_open_own(scree__store *s, uint32_t uid, int32_t pid,
                                        const scree__store_hooks *hooks) {
  scree__session *sess = scree__session_open(s, uid, pid);
  if (sess == NULL)
    return NULL;
  s->nsessions--;
  sess->own = 1;
  if (hooks != NULL)
    sess->own_hooks = *hooks;
  return sess;
}

uint64_t scree__session_id(const scree__session *sess) { return sess->id; }

void scree__session_close(scree__store *s, scree__session *sess) {
  uint32_t nleases = sess->nleases;
  uint32_t reclaimed = 0;
  /* A waiter or a watch goes with its connection, answering nobody. */
  if (sess->waiter != NULL)
    waiter_drop(s, sess->waiter);
  wakes_forget(s, sess);
  if (sess->watch != NULL)
    watch_free(s, sess->watch);
  while (sess->leases != NULL)
    lease_drop(s, sess->leases);
  while (sess->unsealed != NULL) {
    scree__batch *b = sess->unsealed;
    unsealed_unlink(sess, b);
    names_remove(s, b);
    batch_free(s, b);
    reclaimed++;
  }
  if (nleases || reclaimed)
    scree__log(SCREE__LOG_DEBUG, "session_cleanup",
               "conn=%" PRIu64 " leases_released=%" PRIu32 " unsealed_reclaimed=%" PRIu32,
               sess->id, nleases, reclaimed);
  SCREE__LIST_REMOVE(s->sessions, sess);
  if (!sess->own)
    s->nsessions--;
  free(sess->known);
  free(sess->freed);
  free(sess);
}

/* ---- sessions ---------------------------------------------------------- */

int scree__session_hello_done(const scree__session *sess) { return sess->hello_done; }

void scree__session_set_hello_done(scree__session *sess) { sess->hello_done = 1; }

void scree__session_set_job(scree__session *sess, void *job) { sess->job = job; }

void *scree__session_job(const scree__session *sess) { return sess->job; }

void scree__session_set_fetch(scree__session *sess, void *fetch) { sess->fetch = fetch; }

void *scree__session_fetch(const scree__session *sess) { return sess->fetch; }

void scree__session_set_data(scree__session *sess, void *data) { sess->data = data; }

void *scree__session_data(const scree__session *sess) { return sess->data; }

size_t scree__session_take_freed(scree__session *sess, uint64_t **ids) {
  size_t n = sess->nfreed;
  /* The caller takes the session's array; the session starts a new one. */
  *ids = n > 0 ? sess->freed : NULL;
  if (n > 0) {
    sess->freed = NULL;
    sess->nfreed = 0;
    sess->capfreed = 0;
  }
  return n;
}

/* ---- accounting -------------------------------------------------------- */

void scree__store_count_request(scree__store *s) { s->requests++; }

void scree__store_count_error(scree__store *s, int code) {
  for (size_t i = 0; i < s->nerrors; i++) {
    if (s->errors[i].code == code) {
      s->errors[i].count++;
      return;
    }
  }
  if (s->nerrors < SCREE__STORE_ERROR_SLOTS) {
    s->errors[s->nerrors].code = code;
    s->errors[s->nerrors].count = 1;
    s->nerrors++;
  } else {
    s->errors[SCREE__STORE_ERROR_SLOTS - 1].count++;
  }
}

size_t scree__store_errors(const scree__store *s, scree__error_count *out) {
  memcpy(out, s->errors, s->nerrors * sizeof(*out));
  return s->nerrors;
}

/* ---- locations --------------------------------------------------------- */

static int known_find(const scree__session *sess, uint64_t id, size_t *pos) {
  size_t at;
  SCREE__LOWER_BOUND(at, sess->nknown, mid, sess->known[mid].id < id);
  *pos = at;
  return at < sess->nknown && sess->known[at].id == id;
}

/* Makes sure sess's known list has room for one more arena. */
static int known_reserve(scree__session *sess) {
  return SCREE__GROW(&sess->known, &sess->capknown, sess->nknown + 1, 8);
}

/* Puts a handle of arena b into loc: legacy IPC bytes, or an fd that is
 * checked before it may leave the daemon (authz.h). */
static int share_arena(scree__store *s, const scree__batch *b, int ro, scree__location *loc,
                       char *msg, size_t msg_len) {
  if (s->mem->info.ipc_mode == SCREE__IPC_LEGACY) {
    loc->ipc_handle = b->arena->mem.ipc_handle;
    loc->ipc_handle_len = b->arena->mem.ipc_handle_len;
    return 0;
  }
  char m[512];
  int rc = ro ? s->mem->ops->share_fd_ro(s->mem, &b->arena->mem, &loc->fd, m, sizeof(m))
              : s->mem->ops->share_fd(s->mem, &b->arena->mem, &loc->fd, m, sizeof(m));
  if (rc != 0) {
    loc->fd = -1;
    return scree__fail(rc, msg, msg_len, "cannot share arena %" PRIu64 ": %s", b->arena->id, m);
  }
  rc = scree__authz_check_arena_fd(loc->fd, s->mem->info.ipc_mode, b->arena->mem.size, m,
                                   sizeof(m));
  if (rc == 0)
    rc = scree__authz_check_arena_fd_access(loc->fd, s->mem->info.ipc_mode, !ro, m, sizeof(m));
  if (rc != 0) {
    scree__log(SCREE__LOG_ERROR, "arena_fd_check_failed", "arena=%" PRIu64 " msg=%s",
               b->arena->id, scree__q(m));
    close(loc->fd);
    loc->fd = -1;
    return scree__fail(rc, msg, msg_len, "cannot share arena %" PRIu64 ": %s", b->arena->id, m);
  }
  return 0;
}

/* Fills loc for b and attaches the arena's handle when the session has no
 * handle for it yet, or only a read-only one and writable asks for more
 * (Create). Readers (Get) get a read-only handle where the backend can make
 * one. *attach is 0, or the KNOWN_* kind that was attached. The session
 * learns the arena only once the operation is certain to succeed: the
 * caller calls known_commit after its last check, or location_undo. */
static int fill_location(scree__store *s, scree__session *sess, const scree__batch *b,
                         scree__location *loc, int writable, int *attach, char *msg,
                         size_t msg_len) {
  memset(loc, 0, sizeof(*loc));
  loc->fd = -1;
  loc->batch_id = b->id;
  loc->arena_id = b->arena->id;
  loc->arena_size = b->arena->mem.size;
  loc->values_offset = b->offset;
  loc->values_bytes = b->values_bytes;
  loc->offsets_offset = b->offset + b->offsets_at;
  loc->offsets_bytes = b->offsets_bytes;
  size_t pos;
  *attach = 0;
  if (known_find(sess, b->arena->id, &pos)) {
    if (sess->known[pos].kind == KNOWN_RW || !writable)
      return 0;
    /* A read-only handle is held: the writable one follows, and the entry
     * exists already, so no room is needed. */
  } else if (known_reserve(sess) != 0) {
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  }
  /* Legacy IPC handle bytes open read-write (cudaIpcOpenMemHandle), as
   * does a handle from a backend without share_fd_ro. */
  int ro = !writable && s->mem->info.ipc_mode != SCREE__IPC_LEGACY &&
           s->mem->ops->share_fd_ro != NULL;
  int rc = share_arena(s, b, ro, loc, msg, msg_len);
  if (rc != 0)
    return rc;
  loc->handle_attached = 1;
  loc->writable = !ro;
  *attach = ro ? KNOWN_RO : KNOWN_RW;
  return 0;
}

/* Closes a handle fill_location attached, for an operation that failed
 * after it. */
static void location_undo(scree__location *loc) {
  if (loc->fd >= 0)
    close(loc->fd);
  loc->fd = -1;
}

/* Records that sess now holds a handle of the given kind for arena id. */
static void known_commit(scree__session *sess, uint64_t id, int kind) {
  size_t pos;
  if (known_find(sess, id, &pos)) {
    if (kind > sess->known[pos].kind)
      sess->known[pos].kind = kind;
    return;
  }
  /* fill_location reserved the room. */
  SCREE__INSERT_AT(sess->known, sess->nknown, pos);
  sess->known[pos].id = id;
  sess->known[pos].kind = kind;
}

/* ---- operations -------------------------------------------------------- */

/* A new batch of a block for desc, for Create and for an attention
 * output: checks desc and that name is free, sizes the block (values at
 * its start, offsets at the next 256-byte boundary), checks the memory
 * limit and sess's uid quota, and takes the block from the arenas of pool
 * `key`. The batch is CREATED and owned by sess's peer, but not yet named,
 * listed or counted in bytes_used; the caller does that. `kind` ("batch",
 * "output") names it in messages. Returns 0, desc's error, SCREE_EEXIST,
 * SCREE_ENOSPC, SCREE_ENOMEM or the pool's code, with a message. */
static int batch_new(scree__store *s, const scree__session *sess, const char *kind,
                     const char *name, const scree_array *desc, uint64_t key,
                     scree__batch **out, char *msg, size_t msg_len) {
  uint64_t vbytes, obytes;
  int rc = scree_array_check_desc(desc, &vbytes, &obytes, msg, msg_len);
  if (rc != 0)
    return rc;
  scree__batch *old = names_find(s, name);
  if (old != NULL)
    return scree__fail(SCREE_EEXIST, msg, msg_len, "batch '%s' already exists (%s)", name,
                       old->state == BATCH_SEALED ? "sealed" : "being written");
  uint64_t vpart = scree__align_up(vbytes);
  uint64_t opart = scree__align_up(obytes);
  uint64_t block;
  uint64_t limit = s->cfg.memory_limit;
  uint64_t free_bytes = limit > s->bytes_used ? limit - s->bytes_used : 0;
  if (vpart == UINT64_MAX || opart == UINT64_MAX ||
      __builtin_add_overflow(vpart, opart, &block) || block > free_bytes)
    return scree__fail(SCREE_ENOSPC, msg, msg_len,
                       "%s '%s' needs %" PRIu64 " bytes, %" PRIu64 " free of %" PRIu64, kind,
                       name, (vpart == UINT64_MAX || opart == UINT64_MAX) ? UINT64_MAX
                                                                         : vpart + opart,
                       free_bytes, limit);
  /* The per-uid quota is checked after the memory limit, so that a peer
   * over both hears about the daemon-wide limit first. */
  uint64_t q = s->cfg.quota_per_uid;
  uint64_t used = scree__usage_get(&s->usage, sess->uid);
  if (q != 0 && (used > q || block > q - used))
    return scree__fail(SCREE_ENOSPC, msg, msg_len,
                       "uid %" PRIu32 " quota: needs %" PRIu64 " bytes, %" PRIu64
                       " used of %" PRIu64 " (%s '%s')",
                       sess->uid, block, used, q, kind, name);
  if (scree__usage_reserve(&s->usage) != 0)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  scree__batch *b = calloc(1, sizeof(*b));
  if (b == NULL || (b->name = strdup(name)) == NULL) {
    free(b);
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  }
  char m[512];
  rc = scree__pool_alloc_keyed(&s->pool, key, block, &b->arena, &b->offset, m, sizeof(m));
  if (rc != 0) {
    free(b->name);
    free(b);
    return scree__fail(rc, msg, msg_len, "%s '%s' (%" PRIu64 " bytes): %s", kind, name, block,
                       m);
  }
  b->desc = *desc;
  b->desc.values = NULL;
  b->desc.offsets = NULL;
  b->desc.max_length = 0;
  b->state = BATCH_CREATED;
  b->values_bytes = vbytes;
  b->offsets_bytes = obytes;
  b->offsets_at = vpart;
  b->block_bytes = block;
  b->owner_uid = sess->uid;
  b->owner_pid = sess->pid;
  b->creator = sess->id;
  b->created_ns = scree__now_ns();
  b->id = s->next_batch_id++;
  *out = b;
  return 0;
}

/* The pool a new batch's block comes from: its owner's own arenas, unless
 * the daemon or the request asks for the shared pool. A client that imports
 * an arena can read every block in it, so keying by owner is what keeps one
 * uid's readers out of another uid's batches. */
static uint64_t pool_key(const scree__store *s, const scree__session *sess, int shared) {
  if (s->cfg.shared_arenas || shared)
    return SCREE__POOL_SHARED;
  return sess->uid;
}

/* Counts b's block as used by its owner. */
static void batch_account(scree__store *s, const scree__batch *b) {
  s->bytes_used += b->block_bytes;
  scree__usage_add(&s->usage, b->owner_uid, b->block_bytes);
}

int scree__store_create(scree__store *s, scree__session *sess, const char *name,
                        const scree_array *desc, int shared, scree__location *loc, char *msg,
                        size_t msg_len) {
  loc->fd = -1;
  int rc = scree__name_check(name, msg, msg_len);
  if (rc != 0)
    return rc;
  scree_array a = *desc;
  a.values = a.offsets = NULL;
  scree__batch *b;
  rc = batch_new(s, sess, "batch", name, &a, pool_key(s, sess, shared), &b, msg, msg_len);
  if (rc != 0)
    return rc;
  int attach;
  rc = fill_location(s, sess, b, loc, 1, &attach, msg, msg_len);
  if (rc != 0)
    goto err_block;
  if (names_insert(s, b) != 0) {
    rc = scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
    goto err_location;
  }
  if (attach)
    known_commit(sess, b->arena->id, attach);
  batch_account(s, b);
  b->unext = sess->unsealed;
  if (sess->unsealed)
    sess->unsealed->uprev = b;
  sess->unsealed = b;
  scree__log(SCREE__LOG_DEBUG, "created",
             "conn=%" PRIu64 " batch=%s bytes=%" PRIu64 " arena=%" PRIu64
             " offset=%" PRIu64,
             sess->id, scree__q(b->name), b->block_bytes, b->arena->id, b->offset);
  return 0;

err_location:
  location_undo(loc);
err_block:
  scree__pool_free(&s->pool, b->arena, b->offset, b->block_bytes);
  free(b->name);
  free(b);
  return rc;
}

/* Offsets are read and checked this many at a time, so that sealing a batch
 * of any size costs a bounded amount of host memory: a whole copy could be
 * as large as the memory limit, in host memory even when the batch is on a
 * GPU. */
#define SEAL_CHUNK 32768

/* The rules of scree_offsets_validate (core/src/array.c), with the same
 * messages, applied chunk by chunk to batch_size + 1 offsets of dtype dt:
 * read through the backend from arena memory mem at byte `at`, or, when
 * src is not NULL, copied from src (inline offsets of a Seal, which
 * protobuf-c leaves at no particular alignment). Returns 0 with
 * *max_length set, or a code with a message; *read_failed tells a backend
 * read error from bad offsets. */
static int check_offsets(scree__store *s, const scree__arena_mem *mem, uint64_t at,
                         const uint8_t *src, scree_dtype dt, int64_t batch_size,
                         int64_t total, int64_t *max_length, int *read_failed, char *m,
                         size_t mlen) {
  size_t esz = scree_dtype_size(dt);
  int64_t n = batch_size + 1; /* the descriptor's check made sure this fits */
  size_t cap = (size_t)(n < SEAL_CHUNK ? n : SEAL_CHUNK);
  void *buf = malloc(cap * esz);
  if (buf == NULL)
    return scree__fail(SCREE_ENOMEM, m, mlen, "out of host memory for %zu offsets", cap);
  int rc = 0;
  int64_t prev = 0, longest = 0;
  for (int64_t start = 0; start < n && rc == 0; start += (int64_t)cap) {
    size_t cnt = (size_t)(n - start < (int64_t)cap ? n - start : (int64_t)cap);
    if (src != NULL) {
      memcpy(buf, src + (uint64_t)start * esz, cnt * esz);
    } else {
      rc = s->mem->ops->read(s->mem, mem, at + (uint64_t)start * esz, buf, cnt * esz, m,
                             mlen);
      if (rc != 0) {
        *read_failed = 1;
        break;
      }
    }
    for (size_t k = 0; k < cnt; k++) {
      int64_t i = start + (int64_t)k;
      int64_t cur = scree_offsets_at(buf, dt, (int64_t)k);
      if (i == 0) {
        if (cur != 0) {
          rc = scree__fail(SCREE_EINVAL, m, mlen, "offsets[0]=%" PRId64 ", expected 0", cur);
          break;
        }
        continue;
      }
      if (cur < prev) {
        rc = scree__fail(SCREE_EINVAL, m, mlen,
                         "offsets[%" PRId64 "]=%" PRId64 " > offsets[%" PRId64 "]=%" PRId64,
                         i - 1, prev, i, cur);
        break;
      }
      if (cur > total) {
        rc = scree__fail(SCREE_EINVAL, m, mlen,
                         "offsets[%" PRId64 "]=%" PRId64 " > total_rows=%" PRId64, i, cur,
                         total);
        break;
      }
      if (cur - prev > longest)
        longest = cur - prev;
      prev = cur;
    }
  }
  free(buf);
  if (rc == 0 && prev != total)
    rc = scree__fail(SCREE_EINVAL, m, mlen,
                     "offsets[%" PRId64 "]=%" PRId64 " (the last) != total_rows=%" PRId64,
                     n - 1, prev, total);
  if (rc == 0)
    *max_length = longest;
  return rc;
}

/* check_offsets over the offsets in b's block. */
static int seal_check_offsets(scree__store *s, const scree__batch *b, int64_t *max_length,
                              int *read_failed, char *m, size_t mlen) {
  return check_offsets(s, &b->arena->mem, b->offset + b->offsets_at, NULL,
                       b->desc.offsets_dtype, b->desc.batch_size, b->desc.total_rows,
                       max_length, read_failed, m, mlen);
}

/* The batch a request names: SCREE_EINVAL for a bad name, SCREE_ENOENT
 * (naming it) for an unknown one. */
static int find_named(scree__store *s, const char *name, scree__batch **out, char *msg,
                      size_t msg_len) {
  int rc = scree__name_check(name, msg, msg_len);
  if (rc != 0)
    return rc;
  *out = names_find(s, name);
  if (*out == NULL)
    return scree__fail(SCREE_ENOENT, msg, msg_len, "no batch named '%s'", name);
  return 0;
}

/* find_named for seal and delete, which must leave the output of a running
 * attention job alone: that batch is refused with code and a message that
 * ends with hint. */
static int find_named_unreserved(scree__store *s, const char *name, int code, const char *hint,
                                 scree__batch **out, char *msg, size_t msg_len) {
  int rc = find_named(s, name, out, msg, msg_len);
  if (rc == 0 && (*out)->reserved)
    rc = scree__fail(code, msg, msg_len, "batch '%s' is the output of a running attention job%s",
                     name, hint);
  return rc;
}

/* Checks, writes into b's block and fences offsets that came inline with
 * the Seal of b: their length, then check_offsets's rules with its
 * messages. Returns 0 with *max_length, or a code with a message; b stays
 * as it was unless the write itself failed. */
static int seal_inline_offsets(scree__store *s, const scree__batch *b, const void *offsets,
                               size_t offsets_len, int64_t *max_length, char *msg,
                               size_t msg_len) {
  if ((uint64_t)offsets_len != b->offsets_bytes)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "seal of '%s' carries %zu bytes of inline offsets; the batch has %" PRIu64
                       " (batch_size + 1 = %" PRId64 " %s offsets)",
                       b->name, offsets_len, b->offsets_bytes, b->desc.batch_size + 1,
                       scree_dtype_name(b->desc.offsets_dtype));
  char m[512];
  int read_failed = 0;
  int rc = check_offsets(s, NULL, 0, offsets, b->desc.offsets_dtype, b->desc.batch_size,
                         b->desc.total_rows, max_length, &read_failed, m, sizeof(m));
  if (rc != 0)
    return scree__fail(rc, msg, msg_len, "offsets of '%s' are invalid: %s", b->name, m);
  /* The backend's write may return before the bytes land (a CUDA copy from
   * pageable memory is staged): readers may map the batch as soon as it is
   * sealed, so the fence comes first. */
  rc = s->mem->ops->write(s->mem, &b->arena->mem, b->offset + b->offsets_at, offsets,
                          offsets_len, m, sizeof(m));
  if (rc == 0 && s->mem->ops->fence != NULL)
    rc = s->mem->ops->fence(s->mem, m, sizeof(m));
  if (rc != 0)
    return scree__fail(rc, msg, msg_len, "writing the offsets of '%s': %s", b->name, m);
  return 0;
}

int scree__store_seal(scree__store *s, scree__session *sess, const char *name,
                      const void *offsets, size_t offsets_len, scree__batch_view *out,
                      char *msg, size_t msg_len) {
  scree__batch *b;
  int rc = find_named_unreserved(s, name, SCREE_EPERM, "", &b, msg, msg_len);
  if (rc != 0)
    return rc;
  if (b->creator != sess->id)
    return scree__fail(SCREE_EPERM, msg, msg_len, "batch '%s' was created by another connection",
                       name);
  if (b->state != BATCH_CREATED)
    return scree__fail(SCREE_ESTATE, msg, msg_len, "batch '%s' is already sealed", name);

  char m[512];
  int64_t max_length = 0;
  int read_failed = 0;
  if (offsets != NULL) {
    rc = seal_inline_offsets(s, b, offsets, offsets_len, &max_length, msg, msg_len);
    if (rc != 0)
      return rc;
  } else {
    rc = seal_check_offsets(s, b, &max_length, &read_failed, m, sizeof(m));
    if (rc != 0 && read_failed)
      return scree__fail(rc, msg, msg_len, "reading the offsets of '%s': %s", name, m);
    if (rc != 0)
      return scree__fail(rc, msg, msg_len, "offsets of '%s' are invalid: %s", name, m);
  }

  b->desc.max_length = max_length;
  b->state = BATCH_SEALED;
  unsealed_unlink(sess, b);
  scree__store_view(b, out);
  scree__log(SCREE__LOG_DEBUG, "sealed", "conn=%" PRIu64 " batch=%s max_length=%" PRId64,
             sess->id, scree__q(b->name), max_length);
  /* Watchers first: a waiter woken now may be a client that deletes the
   * batch at once, and the events must keep the order of the changes. */
  watch_feed(s, SCREE__EVENT_SEALED, b);
  waiters_wake(s, b->name);
  return 0;
}

int scree__store_get(scree__store *s, scree__session *sess, const char *name,
                     scree__location *loc, uint64_t *lease_id, scree__batch_view *out,
                     char *msg, size_t msg_len) {
  loc->fd = -1;
  scree__batch *b;
  int rc = find_named(s, name, &b, msg, msg_len);
  if (rc != 0)
    return rc;
  if (b->state != BATCH_SEALED)
    return scree__fail(SCREE_ESTATE, msg, msg_len, "batch '%s' is not sealed yet", name);
  if (b->leases == UINT32_MAX)
    return scree__fail(SCREE_EBUSY, msg, msg_len, "batch '%s' has too many leases", name);
  if (s->cfg.max_leases_per_session != 0 && sess->nleases >= s->cfg.max_leases_per_session)
    return scree__fail(SCREE_EBUSY, msg, msg_len,
                       "this connection holds %" PRIu32 " leases, the limit"
                       " (--max-leases-per-connection); release some first",
                       sess->nleases);
  scree__lease *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  int attach;
  rc = fill_location(s, sess, b, loc, 0, &attach, msg, msg_len);
  if (rc != 0) {
    free(l);
    return rc;
  }
  l->id = s->next_lease_id;
  l->batch = b;
  l->sess = sess;
  if (leases_insert(s, l) != 0) {
    location_undo(loc);
    free(l);
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  }
  s->next_lease_id++;
  if (attach)
    known_commit(sess, b->arena->id, attach);
  SCREE__LIST_PUSH(sess->leases, l);
  sess->nleases++;
  b->leases++;
  *lease_id = l->id;
  scree__store_view(b, out);
  return 0;
}

int scree__store_release(scree__store *s, scree__session *sess, uint64_t lease_id, char *msg,
                         size_t msg_len) {
  scree__lease *l = leases_find(s, lease_id);
  if (l == NULL || l->sess != sess)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "lease %" PRIu64 " is not held by this connection", lease_id);
  lease_drop(s, l);
  return 0;
}

int scree__store_delete(scree__store *s, scree__session *sess, const char *name, int *deferred,
                        char *msg, size_t msg_len) {
  scree__batch *b;
  int rc = find_named_unreserved(s, name, SCREE_EBUSY, "; delete it once the job has answered",
                                 &b, msg, msg_len);
  if (rc != 0)
    return rc;
  if (b->state == BATCH_CREATED && b->creator != sess->id)
    return scree__fail(SCREE_EPERM, msg, msg_len,
                       "batch '%s' is being written by another connection", name);
  if (b->owner_uid != sess->uid && !scree__authz_is_admin(s->cfg.authz, sess->uid))
    return scree__fail(SCREE_EPERM, msg, msg_len, "batch '%s' is owned by uid %" PRIu32, name,
                       b->owner_uid);
  *deferred = 0;
  names_remove(s, b);
  if (b->state == BATCH_SEALED)
    watch_feed(s, SCREE__EVENT_DELETED, b);
  if (b->state == BATCH_CREATED) {
    unsealed_unlink(sess, b);
    batch_free(s, b);
  } else if (b->leases > 0) {
    b->deleted = 1;
    s->pending_deletes++;
    *deferred = 1;
  } else {
    batch_free(s, b);
  }
  return 0;
}

int scree__store_stat(scree__store *s, const char *name, scree__batch_view *out, char *msg,
                      size_t msg_len) {
  scree__batch *b;
  int rc = find_named(s, name, &b, msg, msg_len);
  if (rc != 0)
    return rc;
  scree__store_view(b, out);
  return 0;
}

size_t scree__store_list_start(const scree__store *s, const char *prefix,
                               const char *page_token) {
  size_t i = names_bound(s, prefix ? prefix : "", 0);
  if (page_token != NULL && page_token[0] != '\0') {
    size_t j = names_bound(s, page_token, 1);
    if (j > i)
      i = j;
  }
  return i;
}

int scree__store_list_at(const scree__store *s, size_t pos, const char *prefix,
                         scree__batch_view *out) {
  const char *p = prefix ? prefix : "";
  if (pos >= s->nnames || strncmp(s->names[pos]->name, p, strlen(p)) != 0)
    return 0;
  scree__store_view(s->names[pos], out);
  return 1;
}

/* ---- attention jobs ---------------------------------------------------- */

scree__mem *scree__store_mem(scree__store *s) { return s->mem; }

scree__batch *scree__store_find(scree__store *s, const char *name) {
  return names_find(s, name);
}

void scree__store_view(const scree__batch *b, scree__batch_view *out) {
  memset(out, 0, sizeof(*out));
  out->batch_id = b->id;
  out->name = b->name;
  out->desc = b->desc;
  out->sealed = b->state == BATCH_SEALED;
  out->deleted = b->deleted;
  out->leases = b->leases;
  out->owner_uid = b->owner_uid;
  out->owner_pid = b->owner_pid;
  out->created_ns = b->created_ns;
  out->arena_id = b->arena->id;
  out->mem = &b->arena->mem;
  out->values_offset = b->offset;
  out->values_bytes = b->values_bytes;
  out->offsets_offset = b->offset + b->offsets_at;
  out->offsets_bytes = b->offsets_bytes;
}

int scree__store_pin(scree__store *s, scree__batch *b) {
  (void)s;
  if (b->leases == UINT32_MAX)
    return SCREE_EBUSY;
  b->leases++;
  return 0;
}

void scree__store_unpin(scree__store *s, scree__batch *b) {
  b->leases--;
  if (b->leases == 0 && b->deleted) {
    s->pending_deletes--;
    scree__log(SCREE__LOG_DEBUG, "delete_completed", "batch=%s", scree__q(b->name));
    batch_free(s, b);
  }
}

int scree__store_reserve(scree__store *s, scree__session *sess, const char *name,
                         const scree_array *desc, scree__batch **out, char *msg,
                         size_t msg_len) {
  /* The output is the requester's, as a batch it created would be: its
   * quota, its pool of arenas. */
  scree__batch *b;
  int rc = batch_new(s, sess, "output", name, desc, pool_key(s, sess, 0), &b, msg, msg_len);
  if (rc != 0)
    return rc;
  if (names_insert(s, b) != 0) {
    scree__pool_free(&s->pool, b->arena, b->offset, b->block_bytes);
    free(b->name);
    free(b);
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  }
  /* No session's batch: closing the requester's connection must not
   * reclaim it while the job writes it. */
  b->creator = 0;
  b->reserved = 1;
  batch_account(s, b);
  *out = b;
  return 0;
}

int scree__store_publish(scree__store *s, scree__batch *b, int64_t max_length,
                         scree__batch_view *out, char *msg, size_t msg_len) {
  (void)s;
  (void)msg;
  (void)msg_len;
  b->reserved = 0;
  b->desc.max_length = max_length;
  b->state = BATCH_SEALED;
  scree__store_view(b, out);
  watch_feed(s, SCREE__EVENT_SEALED, b);
  waiters_wake(s, b->name);
  return 0;
}

void scree__store_discard(scree__store *s, scree__batch *b) {
  names_remove(s, b);
  batch_free(s, b);
}

void scree__store_set_arena_hook(scree__store *s, void (*fn)(void *arg, uint64_t id),
                                 void *arg) {
  s->arena_hook = fn;
  s->arena_hook_arg = arg;
}

int scree__store_check_offsets(scree__store *s, const scree__batch *b, int64_t *max_length,
                               char *msg, size_t msg_len) {
  char m[512];
  int read_failed = 0;
  int rc = seal_check_offsets(s, b, max_length, &read_failed, m, sizeof(m));
  if (rc != 0 && read_failed)
    return scree__fail(rc, msg, msg_len, "reading the offsets of '%s': %s", b->name, m);
  if (rc != 0)
    return scree__fail(rc, msg, msg_len, "offsets of '%s' are invalid: %s", b->name, m);
  return 0;
}

/* ---- freed-arena notices ----------------------------------------------- */

/* Every session that was sent arena id forgets it and will hear of its
 * end. Ids are never reused, so the entry in known would only be dead
 * weight for a long-lived session. */
static void arena_freed(void *arg, uint64_t id) {
  scree__store *s = arg;
  if (s->arena_hook != NULL)
    s->arena_hook(s->arena_hook_arg, id);
  for (scree__session *sess = s->sessions; sess != NULL; sess = sess->next) {
    size_t pos;
    if (!known_find(sess, id, &pos))
      continue;
    SCREE__REMOVE_AT(sess->known, sess->nknown, pos);
    if (SCREE__GROW(&sess->freed, &sess->capfreed, sess->nfreed + 1, 4) != 0) {
      /* The client keeps a mapping it could have dropped until it closes;
       * nothing else goes wrong. */
      scree__log(SCREE__LOG_WARN, "freed_notice_dropped", "conn=%" PRIu64 " arena=%" PRIu64,
                 sess->id, id);
      continue;
    }
    sess->freed[sess->nfreed++] = id;
  }
}

/* ---- waiting and watching ---------------------------------------------- */

/* Who may learn of a batch through a wakeup or an event: whoever may read
 * it with Get and List, which today is every peer the allow lists let in
 * (a refused peer never has a request handled). Kept in one place so that
 * waiting and watching follow any finer read rule the day it comes. */
static int may_read(const scree__store *s, const scree__session *sess, const scree__batch *b) {
  (void)s;
  (void)sess;
  (void)b;
  return 1;
}

/* The hooks that answer sess: its own when screed holds it, else the
 * store's (the handler's). */
static const scree__store_hooks *hooks_of(const scree__store *s, const scree__session *sess) {
  return sess->own ? &sess->own_hooks : &s->hooks;
}

void scree__store_set_hooks(scree__store *s, const scree__store_hooks *hooks) {
  if (hooks != NULL)
    s->hooks = *hooks;
  else
    memset(&s->hooks, 0, sizeof(s->hooks));
}

/* The waiters of one name, in arrival order. The name need not exist in
 * the store: one waits as well for a name nobody has created yet. */
typedef struct wait_list {
  scree__waiter *head;
  scree__waiter *tail;
  char name[]; /* allocated with the list */
} wait_list;

struct scree__waiter {
  scree__session *sess;
  wait_list *list;
  scree__waiter *prev;
  scree__waiter *next;
  uint64_t req_id;
  int64_t wait_ms;      /* as asked: -1 for no limit */
  uint64_t deadline_ns; /* scree__now_ns() clock; 0: none */
  size_t heap_at;       /* index in s->wheap; SIZE_MAX when not there */
};

/* The list of name, or NULL; *at is its index, or where it would go. */
static wait_list *waits_find(const scree__store *s, const char *name, size_t *at) {
  SCREE__LOWER_BOUND(*at, s->nwaits, mid, strcmp(s->waits[mid]->name, name) < 0);
  return *at < s->nwaits && strcmp(s->waits[*at]->name, name) == 0 ? s->waits[*at] : NULL;
}

static void waits_remove(scree__store *s, wait_list *wl) {
  size_t i;
  if (waits_find(s, wl->name, &i) == wl)
    SCREE__REMOVE_AT(s->waits, s->nwaits, i);
  free(wl);
}

/* The list of name, made when missing; NULL when out of memory. */
static wait_list *waits_get(scree__store *s, const char *name) {
  size_t i;
  wait_list *wl = waits_find(s, name, &i);
  if (wl != NULL)
    return wl;
  if (SCREE__GROW(&s->waits, &s->capwaits, s->nwaits + 1, 16) != 0)
    return NULL;
  size_t len = strlen(name);
  wl = calloc(1, sizeof(*wl) + len + 1);
  if (wl == NULL)
    return NULL;
  memcpy(wl->name, name, len + 1);
  SCREE__INSERT_AT(s->waits, s->nwaits, i);
  s->waits[i] = wl;
  return wl;
}

/* The deadlines: one binary min-heap for every waiter with a time limit, so
 * that one timer (the earliest deadline) serves them all. */
static void heap_set(scree__store *s, size_t i, scree__waiter *w) {
  s->wheap[i] = w;
  w->heap_at = i;
}

static void heap_up(scree__store *s, size_t i) {
  scree__waiter *w = s->wheap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (s->wheap[parent]->deadline_ns <= w->deadline_ns)
      break;
    heap_set(s, i, s->wheap[parent]);
    i = parent;
  }
  heap_set(s, i, w);
}

static void heap_down(scree__store *s, size_t i) {
  scree__waiter *w = s->wheap[i];
  for (;;) {
    size_t kid = 2 * i + 1;
    if (kid >= s->nheap)
      break;
    if (kid + 1 < s->nheap && s->wheap[kid + 1]->deadline_ns < s->wheap[kid]->deadline_ns)
      kid++;
    if (w->deadline_ns <= s->wheap[kid]->deadline_ns)
      break;
    heap_set(s, i, s->wheap[kid]);
    i = kid;
  }
  heap_set(s, i, w);
}

static int heap_push(scree__store *s, scree__waiter *w) {
  if (SCREE__GROW(&s->wheap, &s->capheap, s->nheap + 1, 16) != 0)
    return SCREE_ENOMEM;
  heap_set(s, s->nheap++, w);
  heap_up(s, w->heap_at);
  return 0;
}

static void heap_remove(scree__store *s, scree__waiter *w) {
  size_t i = w->heap_at;
  if (i == SIZE_MAX)
    return;
  w->heap_at = SIZE_MAX;
  scree__waiter *last = s->wheap[--s->nheap];
  if (i == s->nheap)
    return;
  heap_set(s, i, last);
  heap_up(s, i);
  heap_down(s, last->heap_at);
}

/* Takes w out of every index (its name's list, the heap, its session); the
 * list goes when it was the last waiter of its name. w itself stays. */
static void waiter_unlink(scree__store *s, scree__waiter *w) {
  wait_list *wl = w->list;
  SCREE__LIST_REMOVE_TAIL(wl->head, wl->tail, w);
  if (wl->head == NULL)
    waits_remove(s, wl);
  heap_remove(s, w);
  w->sess->waiter = NULL;
  w->list = NULL;
  s->nwaiters--;
}

static void waiter_drop(scree__store *s, scree__waiter *w) {
  waiter_unlink(s, w);
  free(w);
}

/* Ends w with rc: it leaves the store first, then the hook answers it, so
 * that whatever the hook does (even closing w's connection) finds the
 * store consistent. */
static void waiter_end(scree__store *s, scree__waiter *w, int rc) {
  scree__wait_end end;
  memset(&end, 0, sizeof(end));
  snprintf(end.name, sizeof(end.name), "%s", w->list->name);
  end.req_id = w->req_id;
  end.wait_ms = w->wait_ms;
  end.rc = rc;
  scree__session *sess = w->sess;
  const scree__store_hooks *hk = hooks_of(s, sess);
  waiter_drop(s, w);
  if (hk->wait_done != NULL)
    hk->wait_done(hk->arg, sess, &end);
}

int scree__store_wait(scree__store *s, scree__session *sess, const char *name, uint64_t req_id,
                      int64_t wait_ms, char *msg, size_t msg_len) {
  int rc = scree__name_check(name, msg, msg_len);
  if (rc != 0)
    return rc;
  if (wait_ms < -1)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "wait_ms is %" PRId64 "; it must be -1 (no limit) or >= 0", wait_ms);
  /* Far beyond any real wait, and it keeps the deadline in 64 bits. */
  if (wait_ms > SCREE__MAX_WAIT_MS)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "wait_ms is %" PRId64 "; the limit is %" PRId64 " (-1: no limit)",
                       wait_ms, (int64_t)SCREE__MAX_WAIT_MS);
  if (sess->waiter != NULL)
    return scree__fail(SCREE_EBUSY, msg, msg_len,
                       "this connection already waits for '%s'", sess->waiter->list->name);
  scree__waiter *w = malloc(sizeof(*w));
  if (w == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  *w = (scree__waiter){.sess = sess, .req_id = req_id, .wait_ms = wait_ms, .heap_at = SIZE_MAX};
  if (wait_ms >= 0) {
    w->deadline_ns = scree__now_ns() + (uint64_t)wait_ms * 1000000u;
    if (heap_push(s, w) != 0) {
      free(w);
      return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
    }
  }
  wait_list *wl = waits_get(s, name);
  if (wl == NULL) {
    heap_remove(s, w);
    free(w);
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  }
  w->list = wl;
  w->prev = wl->tail;
  SCREE__LIST_APPEND(wl->head, wl->tail, w);
  sess->waiter = w;
  s->nwaiters++;
  return 0;
}

/* A wake under way: the waiters of a sealed name that have left the store
 * and are not answered yet, and the wake it runs inside of (a hook may
 * seal another name). Hooks close sessions (peers.c's closes its own), and
 * one may close the session of a waiter still here: scree__session_close
 * then clears that waiter's session through wakes_forget, and the wake
 * answers nobody for it, as for a waiter whose session closed before the
 * seal, instead of handing the freed session to a hook. */
typedef struct wake {
  scree__waiter *head;
  struct wake *outer;
} wake;

static void wakes_forget(scree__store *s, const scree__session *sess) {
  for (wake *wk = s->wakes; wk != NULL; wk = wk->outer)
    for (scree__waiter *w = wk->head; w != NULL; w = w->next)
      if (w->sess == sess)
        w->sess = NULL;
}

/* A batch of name was sealed: every waiter of the name is answered, in
 * the order they came. The whole list leaves the store before the first
 * hook runs, so a waiter that a hook adds for the name waits for the next
 * seal. */
static void waiters_wake(scree__store *s, const char *name) {
  size_t i;
  wait_list *wl = waits_find(s, name, &i);
  if (wl == NULL)
    return;
  wake wk = {.head = wl->head, .outer = s->wakes};
  SCREE__REMOVE_AT(s->waits, s->nwaits, i);
  for (scree__waiter *x = wk.head; x != NULL; x = x->next) {
    heap_remove(s, x);
    x->sess->waiter = NULL;
    s->nwaiters--;
  }
  scree__wait_end end;
  memset(&end, 0, sizeof(end));
  snprintf(end.name, sizeof(end.name), "%s", wl->name);
  free(wl);
  s->wakes = &wk;
  /* Each waiter leaves the wake before its hook runs, so that what the
   * hook closes is looked for among the waiters still to answer only. */
  for (scree__waiter *w; (w = wk.head) != NULL;) {
    wk.head = w->next;
    end.req_id = w->req_id;
    end.wait_ms = w->wait_ms;
    end.rc = 0;
    scree__session *sess = w->sess;
    free(w);
    if (sess == NULL)
      continue;
    const scree__store_hooks *hk = hooks_of(s, sess);
    if (hk->wait_done != NULL)
      hk->wait_done(hk->arg, sess, &end);
  }
  s->wakes = wk.outer;
}

uint64_t scree__store_wait_deadline(const scree__store *s) {
  return s->nheap > 0 ? s->wheap[0]->deadline_ns : 0;
}

size_t scree__store_wait_expire(scree__store *s, uint64_t now_ns) {
  size_t n = 0;
  while (s->nheap > 0 && s->wheap[0]->deadline_ns <= now_ns) {
    waiter_end(s, s->wheap[0], SCREE_ETIMEDOUT);
    n++;
  }
  return n;
}

int scree__store_wait_cancel(scree__store *s, scree__session *sess) {
  if (sess->waiter == NULL)
    return 0;
  waiter_end(s, sess->waiter, SCREE_ECANCELED);
  return 1;
}

int scree__session_waiting(const scree__session *sess) { return sess->waiter != NULL; }

/* ---- watches ---- */

typedef struct watch_item {
  int kind;
  char *name; /* NULL for overflow */
} watch_item;

/* A watch: the prefix, where the replay stands, and the queue of live
 * events. The replay does not copy the store: it walks the names in order
 * from a cursor, one per event delivered, so a watch of a store of any size
 * costs one name's room. A live change of a name the cursor has not passed
 * yet is left to the replay, which will find the name in its new state
 * when it gets there; one it has passed is queued. So every sealed batch
 * shows up once, by replay or live, with no gap and no duplicate. */
struct scree__watch {
  scree__session *sess;
  char *prefix;
  size_t prefix_len;
  int replaying;
  char cursor[SCREE__MAX_NAME_LEN + 1]; /* "" before the first name */
  watch_item *ring; /* cap live events and one overflow */
  uint32_t cap;
  uint32_t head;
  uint32_t count;
  /* The queue overflowed: the overflow event is queued or sent, and every
   * later change is dropped until the watch is started again. */
  int overflowed;
  uint64_t seq;
  uint64_t dropped;
  uint64_t req_id;
  scree__watch *prev;
  scree__watch *next;
};

static void watch_free(scree__store *s, scree__watch *w) {
  for (uint32_t i = 0; i < w->count; i++)
    free(w->ring[(w->head + i) % (w->cap + 1)].name);
  SCREE__LIST_REMOVE(s->watches, w);
  w->sess->watch = NULL;
  s->nwatchers--;
  free(w->ring);
  free(w->prefix);
  free(w);
}

int scree__store_watch(scree__store *s, scree__session *sess, const char *prefix, int replay,
                       uint64_t req_id, char *msg, size_t msg_len) {
  if (prefix == NULL)
    prefix = "";
  size_t plen = strlen(prefix);
  if (plen > SCREE__MAX_NAME_LEN)
    return scree__fail(SCREE_ENAMETOOLONG, msg, msg_len,
                       "watch prefix is %zu bytes; names are at most %d", plen,
                       SCREE__MAX_NAME_LEN);
  if (sess->waiter != NULL)
    return scree__fail(SCREE_EBUSY, msg, msg_len, "a Get of this connection is waiting");
  uint32_t cap = s->cfg.watch_queue != 0 ? s->cfg.watch_queue : SCREE__WATCH_QUEUE_DEFAULT;
  scree__watch *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  w->prefix = strdup(prefix);
  w->ring = calloc((size_t)cap + 1, sizeof(*w->ring));
  if (w->prefix == NULL || w->ring == NULL) {
    free(w->prefix);
    free(w->ring);
    free(w);
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  }
  /* A new Watch replaces the old one: its queue, its overflow, its
   * sequence. */
  if (sess->watch != NULL)
    watch_free(s, sess->watch);
  w->sess = sess;
  w->req_id = req_id;
  w->prefix_len = plen;
  w->cap = cap;
  w->replaying = replay != 0;
  SCREE__LIST_PUSH(s->watches, w);
  s->nwatchers++;
  sess->watch = w;
  return 0;
}

int scree__session_watching(const scree__session *sess) { return sess->watch != NULL; }

int scree__store_watch_replaying(const scree__session *sess) {
  return sess->watch != NULL && sess->watch->replaying;
}

static int watch_has(const scree__watch *w) { return w->replaying || w->count > 0; }

int scree__store_watch_pending(const scree__store *s, const scree__session *sess) {
  (void)s;
  return sess->watch != NULL && watch_has(sess->watch);
}

static void watch_push(scree__watch *w, int kind, char *name) {
  w->ring[(w->head + w->count) % (w->cap + 1)] = (watch_item){kind, name};
  w->count++;
}

/* A change of b: queued for every watch that covers it (see scree__watch
 * for the replay's part). */
static void watch_feed(scree__store *s, int kind, const scree__batch *b) {
  for (scree__watch *w = s->watches; w != NULL; w = w->next) {
    if (strncmp(b->name, w->prefix, w->prefix_len) != 0 || !may_read(s, w->sess, b))
      continue;
    if (w->replaying && strcmp(b->name, w->cursor) > 0)
      continue;
    if (w->overflowed) {
      w->dropped++;
      continue;
    }
    int was_idle = !watch_has(w);
    char *name = w->count < w->cap ? strdup(b->name) : NULL;
    if (name != NULL) {
      watch_push(w, kind, name);
    } else {
      /* A full queue, or no memory for the name: either way the watcher
       * is told that it lost events, never left to guess. */
      watch_push(w, SCREE__EVENT_OVERFLOW, NULL);
      w->overflowed = 1;
      w->dropped++;
      s->watch_overflows++;
      scree__log(SCREE__LOG_INFO, "watch_overflow", "conn=%" PRIu64 " queued=%" PRIu32,
                 w->sess->id, w->cap);
    }
    const scree__store_hooks *hk = hooks_of(s, w->sess);
    if (was_idle && hk->watch_ready != NULL)
      hk->watch_ready(hk->arg, w->sess);
  }
}

int scree__store_watch_next(scree__store *s, scree__session *sess, scree__event *ev) {
  scree__watch *w = sess->watch;
  if (w == NULL)
    return 0;
  while (w->replaying) {
    size_t pos = scree__store_list_start(s, w->prefix, w->cursor);
    if (pos >= s->nnames || strncmp(s->names[pos]->name, w->prefix, w->prefix_len) != 0) {
      w->replaying = 0;
      break;
    }
    const scree__batch *b = s->names[pos];
    snprintf(w->cursor, sizeof(w->cursor), "%s", b->name);
    if (b->state != BATCH_SEALED || !may_read(s, sess, b))
      continue;
    ev->kind = SCREE__EVENT_SEALED;
    ev->req_id = w->req_id;
    snprintf(ev->name, sizeof(ev->name), "%s", b->name);
    ev->seq = ++w->seq;
    s->watch_events++;
    return 1;
  }
  if (w->count == 0)
    return 0;
  watch_item *it = &w->ring[w->head];
  ev->kind = it->kind;
  ev->req_id = w->req_id;
  snprintf(ev->name, sizeof(ev->name), "%s", it->name != NULL ? it->name : "");
  free(it->name);
  it->name = NULL;
  w->head = (w->head + 1) % (w->cap + 1);
  w->count--;
  ev->seq = ++w->seq;
  s->watch_events++;
  return 1;
}
