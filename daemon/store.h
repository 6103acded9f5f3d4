/* The store: named batches, their states and leases, the sessions that hold
 * them, and memory accounting. Plain C types only: the protocol lives in the
 * handler (handler.h), which turns requests into calls of this API and its
 * results into replies. The store calls nothing above it (neither the
 * handler nor the attention executor); those call the store.
 *
 * Rules the store enforces (docs/protocol.md has the full list):
 * - A batch is CREATED by one session, written by its creator, and SEALED by
 *   that same session after its offsets validate. Only SEALED batches can be
 *   attached with Get; each Get makes a lease owned by the session.
 * - Delete removes the name at once. The memory goes at once, or with the
 *   last lease (a pending delete). A CREATED batch may only be deleted by its
 *   creator. A SEALED batch may be deleted by its owner (the uid that
 *   created it) or an admin uid (cfg.authz).
 * - Blocks come from arenas of the owner's uid, or from the shared pool
 *   (cfg.shared_arenas, Create's shared flag), never from another owner's
 *   arenas.
 * - --quota-per-uid bounds the bytes of the batches each uid owns, counted
 *   like the memory limit, pending deletes included.
 * - Closing a session releases its leases and reclaims its CREATED batches.
 * - --memory-limit bounds the sum of the batches' aligned sizes (values and
 *   offsets each rounded up to 256 bytes), pending deletes included. Arena
 *   slack does not count, so a Create fails with ENOSPC exactly when that sum
 *   would pass the limit (or when the backend itself is out of memory).
 *
 * Every operation that can fail returns 0 or a SCREE_E* code with a message
 * in msg, and a failed operation changes nothing. Everything runs on the
 * loop thread.
 *
 * Waiting and watching are store state too (the end of this header): a
 * waiter (a Get that waits for a name to be sealed) hangs off the name and
 * is completed by scree__store_seal and scree__store_publish, or by its
 * deadline; a watch is a session's bounded event queue, fed by seal,
 * publish and delete. The store tells its user through hooks
 * (scree__store_hooks), never by calling the handler. */
#ifndef SCREE_DAEMON_STORE_H
#define SCREE_DAEMON_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "authz.h"
#include "mem.h"
#include "scree/array.h"

#define SCREE__MAX_NAME_LEN 255
/* Distinct error codes the store counts for Stats; the reply carries as
 * many. Codes come from SCREE_ERRNO_MAP, which has fewer entries; an
 * unexpected code beyond this lands on the last slot. */
#define SCREE__STORE_ERROR_SLOTS 32

typedef struct scree__store scree__store;
typedef struct scree__session scree__session;
typedef struct scree__batch scree__batch;

typedef struct scree__store_config {
  uint64_t memory_limit; /* bytes; must be > 0 */
  uint64_t arena_size;   /* bytes; rounded up to the backend's granularity */
  /* Access control (docs/security.md). All zero: no admin, no quota, and
   * every owner uid gets arenas of its own. */
  const scree__authz *authz; /* admins may delete any batch; NULL: none */
  uint64_t quota_per_uid;    /* bytes of batches per owner uid; 0: no quota */
  int shared_arenas;         /* 1: every batch in the shared pool */
  /* Leases one session may hold at once; a Get beyond it fails with
   * SCREE_EBUSY. 0: no limit. (--max-leases-per-connection) */
  uint32_t max_leases_per_session;
  /* Live events one watch queues before it overflows (--watch-queue);
   * 0: SCREE__WATCH_QUEUE_DEFAULT. */
  uint32_t watch_queue;
} scree__store_config;

#define SCREE__WATCH_QUEUE_DEFAULT 1024u
/* The longest wait a Get may ask for (about 292 years: the deadline stays
 * within 64 bits of nanoseconds). */
#define SCREE__MAX_WAIT_MS (INT64_C(9000000000000))

/* What a caller may know of a batch: its descriptor (pointers NULL), state,
 * owner and where its bytes are. name and mem point into the store: valid
 * until the batch is freed. */
typedef struct scree__batch_view {
  uint64_t batch_id; /* unique for the store's life, never reused */
  const char *name;
  scree_array desc; /* max_length set once sealed */
  int sealed;
  int deleted; /* a pending delete: no longer named */
  uint32_t leases;
  uint32_t owner_uid;
  int32_t owner_pid;
  uint64_t created_ns; /* scree__now_ns() at Create */
  uint64_t arena_id;
  const scree__arena_mem *mem; /* the arena's memory, for host_ptr/dev_ptr */
  uint64_t values_offset;      /* bytes into the arena */
  uint64_t values_bytes;
  uint64_t offsets_offset;
  uint64_t offsets_bytes;
} scree__batch_view;

/* Where a batch lies, for a client to map it, and the arena's handle when
 * the session has not been sent one it can use. fd (>= 0 when a handle is
 * attached in fd form) belongs to the caller, who sends and closes it. */
typedef struct scree__location {
  uint64_t batch_id; /* the batch's, as scree__batch_view's */
  uint64_t arena_id;
  uint64_t arena_size;
  uint64_t values_offset;
  uint64_t values_bytes;
  uint64_t offsets_offset;
  uint64_t offsets_bytes;
  int handle_attached;
  int writable; /* the attached handle maps read-write */
  int fd;       /* -1, or the arena's handle (fd form) */
  const void *ipc_handle; /* legacy IPC handle bytes (in the store), or NULL */
  size_t ipc_handle_len;
} scree__location;

/* ---- the store -------------------------------------------------------- */

/* Makes a store over the backend mem (which the store uses but does not
 * own). Returns 0, SCREE_EINVAL for a bad config, or SCREE_ENOMEM. */
int scree__store_new(scree__mem *mem, const scree__store_config *cfg, scree__store **out,
                     char *msg, size_t msg_len);

/* Frees every batch and arena, closing sessions still open. */
void scree__store_free(scree__store *s);

/* The backend the store allocates from. */
scree__mem *scree__store_mem(scree__store *s);

/* Counters and limits, for Stats, Hello, metrics and tests. */
typedef struct scree__store_counts {
  uint64_t bytes_used;
  uint64_t bytes_arenas;
  uint64_t memory_limit;
  uint64_t arena_size; /* the standard arena size, rounded to the backend */
  uint32_t arenas;
  uint32_t batches; /* named batches, sealed or not */
  uint32_t pending_deletes;
  uint32_t leases;
  uint32_t sessions;
  uint64_t requests;
  uint64_t start_ns; /* scree__now_ns() when the store was made */
  uint32_t waiters;  /* Gets waiting for a seal */
  uint32_t watchers; /* sessions watching */
  uint64_t watch_overflows; /* overflow events queued since start */
  uint64_t watch_events;    /* events handed out since start */
} scree__store_counts;

void scree__store_counts_get(const scree__store *s, scree__store_counts *out);

/* Request accounting, for Stats: each request handled counts once, and each
 * failed response's code once. */
void scree__store_count_request(scree__store *s);
void scree__store_count_error(scree__store *s, int code);

typedef struct scree__error_count {
  int code;
  uint64_t count;
} scree__error_count;

/* Copies the error counts, in order of first occurrence, into out (room for
 * SCREE__STORE_ERROR_SLOTS). Returns how many. */
size_t scree__store_errors(const scree__store *s, scree__error_count *out);

/* Bytes of batches owned by uid, as --quota-per-uid counts them. */
uint64_t scree__store_uid_bytes(const scree__store *s, uint32_t uid);

/* Gives back the memory of free space that deleted batches left and that
 * has stayed unused for min_age_ms (scree__pool_purge); screed calls it
 * from a timer. Returns the bytes given back. */
uint64_t scree__store_purge(scree__store *s, uint64_t min_age_ms);

/* Checks a batch name: 1 to 255 bytes of valid UTF-8 without control
 * characters (C0, DEL, C1); NULL is "missing". Returns 0, SCREE_EINVAL or
 * SCREE_ENAMETOOLONG with a message. */
int scree__name_check(const char *name, char *msg, size_t msg_len);

/* ---- sessions ---------------------------------------------------------- */

/* Opens a session for a peer with the given credentials (from SO_PEERCRED);
 * NULL when out of memory. */
scree__session *scree__session_open(scree__store *s, uint32_t uid, int32_t pid);

/* Closes a session: releases its leases (completing deletes that waited on
 * them), reclaims the batches it created but did not seal, and frees it.
 * Whatever the caller hung on the session (its job, its data) is the
 * caller's to deal with first. */
void scree__session_close(scree__store *s, scree__session *sess);

/* The session's id, unique for the life of the store (for logs). */
uint64_t scree__session_id(const scree__session *sess);

/* Whether the session has said Hello (protocol state kept with the
 * session so that it goes with it). */
int scree__session_hello_done(const scree__session *sess);
void scree__session_set_hello_done(scree__session *sess);

/* The attention job whose reply the session waits for, or NULL. The store
 * only keeps the pointer: the executor sets it, the handler reads it. */
void scree__session_set_job(scree__session *sess, void *job);
void *scree__session_job(const scree__session *sess);

/* The peer fetch whose reply the session waits for, or NULL (peers.c sets
 * it, the handler reads it), kept apart from the attention job. */
void scree__session_set_fetch(scree__session *sess, void *fetch);
void *scree__session_fetch(const scree__session *sess);

/* An opaque pointer for the server (its connection). */
void scree__session_set_data(scree__session *sess, void *data);
void *scree__session_data(const scree__session *sess);

/* Hands over the ids of the arenas freed since the last call for sess
 * (Response.freed_arenas): *ids becomes the caller's (free it), NULL when
 * there are none. Returns how many. */
size_t scree__session_take_freed(scree__session *sess, uint64_t **ids);

/* ---- operations (one per request of the protocol) --------------------- */

/* Creates batch name for desc (its pointers are ignored; it is checked
 * here), owned by sess's peer, in its pool or the shared one when shared is
 * set, and fills loc, attaching a writable handle when sess needs one. */
int scree__store_create(scree__store *s, scree__session *sess, const char *name,
                        const scree_array *desc, int shared, scree__location *loc, char *msg,
                        size_t msg_len);

/* Seals sess's CREATED batch name after validating its offsets; fills out
 * with the sealed batch. offsets (NULL: none) are the batch's offsets
 * inline, offsets_len bytes: checked with the same rules and messages as
 * offsets read from the batch (a length other than the batch's offsets
 * bytes is SCREE_EINVAL too), then written into the batch and fenced;
 * without them the offsets are read back from the batch's memory. */
int scree__store_seal(scree__store *s, scree__session *sess, const char *name,
                      const void *offsets, size_t offsets_len, scree__batch_view *out,
                      char *msg, size_t msg_len);

/* Leases the SEALED batch name to sess: fills loc (attaching a read-only
 * handle where the backend has one and sess needs it), *lease_id and out. */
int scree__store_get(scree__store *s, scree__session *sess, const char *name,
                     scree__location *loc, uint64_t *lease_id, scree__batch_view *out,
                     char *msg, size_t msg_len);

/* Releases a lease sess holds. */
int scree__store_release(scree__store *s, scree__session *sess, uint64_t lease_id, char *msg,
                         size_t msg_len);

/* Deletes batch name on behalf of sess. *deferred is set when leases keep
 * its memory until they go. */
int scree__store_delete(scree__store *s, scree__session *sess, const char *name, int *deferred,
                        char *msg, size_t msg_len);

/* Fills out with the named batch. */
int scree__store_stat(scree__store *s, const char *name, scree__batch_view *out, char *msg,
                      size_t msg_len);

/* Listing, in name order: the position of the first name with prefix that
 * comes after page_token (either may be NULL or empty), then one batch per
 * position while scree__store_list_at returns 1 (0: past the end or past
 * the prefix). */
size_t scree__store_list_start(const scree__store *s, const char *prefix,
                               const char *page_token);
int scree__store_list_at(const scree__store *s, size_t pos, const char *prefix,
                         scree__batch_view *out);

/* ---- the store as attention jobs see it (exec.c) ---------------------- */

/* The named batch, or NULL. */
scree__batch *scree__store_find(scree__store *s, const char *name);
void scree__store_view(const scree__batch *b, scree__batch_view *out);

/* Pins b as a lease would, without a session: a Delete meanwhile is
 * deferred until scree__store_unpin, which may free b. Returns 0 or
 * SCREE_EBUSY when b has as many leases as it can count. */
int scree__store_pin(scree__store *s, scree__batch *b);
void scree__store_unpin(scree__store *s, scree__batch *b);

/* Reserves a batch for a job's output: CREATED, owned by sess's peer, with
 * memory counted against the limit, and named at once, so that a Create of
 * the name while the job runs gets SCREE_EEXIST (Stat and List show it as
 * unsealed; Delete gets SCREE_EBUSY, Seal SCREE_EPERM). It is on no
 * session's list: closing sess does not reclaim it. Returns 0,
 * SCREE_EEXIST when the name is taken, SCREE_ENOSPC or SCREE_ENOMEM with a
 * message in msg. */
int scree__store_reserve(scree__store *s, scree__session *sess, const char *name,
                         const scree_array *desc, scree__batch **out, char *msg,
                         size_t msg_len);

/* Seals a reserved batch with the given max_length, and fills out with it.
 * Returns 0 (it cannot fail: the name was held from the reservation on). */
int scree__store_publish(scree__store *s, scree__batch *b, int64_t max_length,
                         scree__batch_view *out, char *msg, size_t msg_len);

/* Removes the name of a reserved batch that is not published, and frees
 * it. */
void scree__store_discard(scree__store *s, scree__batch *b);

/* Calls fn(arg, id) for every arena the pool gives back (the attention
 * executor tells its worker to unmap it). fn must not call the store. NULL removes the hook. */
void scree__store_set_arena_hook(scree__store *s, void (*fn)(void *arg, uint64_t id),
                                 void *arg);
/* ---- waiting and watching --------------------------------------------- */

/* How a waiter ended, for the hook that answers it. name is a copy. */
typedef struct scree__wait_end {
  uint64_t req_id; /* as given to scree__store_wait */
  int64_t wait_ms; /* as given */
  /* 0: a batch of the name was sealed (the hook now gets it for the
   * session); SCREE_ETIMEDOUT: the deadline passed; SCREE_ECANCELED:
   * scree__store_wait_cancel. */
  int rc;
  char name[SCREE__MAX_NAME_LEN + 1];
} scree__wait_end;

/* What the store tells its user (the handler). Hooks run on the loop
 * thread, after the store has finished the change that caused them, and
 * may call the store again (a Get for the woken session, a seal, even
 * closing a session: one closed while a seal wakes it with others is
 * answered nothing). */
typedef struct scree__store_hooks {
  /* A waiter ended; it is gone from the store already. Not called for the
   * waiter of a session being closed. */
  void (*wait_done)(void *arg, scree__session *sess, const scree__wait_end *end);
  /* sess's watch had nothing to hand out and now has
   * (scree__store_watch_next). */
  void (*watch_ready)(void *arg, scree__session *sess);
  void *arg;
} scree__store_hooks;

/* Sets (copies) the hooks; NULL clears them. */
void scree__store_set_hooks(scree__store *s, const scree__store_hooks *hooks);

/* Opens a session that screed holds for itself rather than for a client
 * (peers.c: an OPEN of another screed waiting for its batch, a watch for
 * another screed, the mirrors' own session), with the given credentials.
 * Its waiter and its watch answer through hooks (copied; NULL: none)
 * instead of the store's, so that they reach whoever opened it and not the
 * handler; and it is not counted among the sessions of
 * scree__store_counts, which are the clients' connections. Closed with
 * scree__session_close. NULL when out of memory. */
scree__session *scree__session_open_own(scree__store *s, uint32_t uid, int32_t pid,
                                        const scree__store_hooks *hooks);

/* Makes sess wait for a batch of name to be sealed (the caller has found
 * none sealed): the next seal or publish of name ends the wait with rc 0,
 * wait_ms (>= 0; -1: no limit) with SCREE_ETIMEDOUT through
 * scree__store_wait_expire. Deleting or re-creating the name meanwhile
 * changes nothing. A session waits for one name at a time: a connection's
 * replies keep the order of its requests, so nothing after a waiting Get
 * is handled meanwhile, and the number of waiters is bounded by the
 * number of connections. Returns 0, SCREE_EINVAL/SCREE_ENAMETOOLONG (the
 * name, or wait_ms below -1 or above SCREE__MAX_WAIT_MS), SCREE_EBUSY
 * (sess waits already) or SCREE_ENOMEM, with a message. */
int scree__store_wait(scree__store *s, scree__session *sess, const char *name, uint64_t req_id,
                      int64_t wait_ms, char *msg, size_t msg_len);

/* The earliest deadline of any waiter (scree__now_ns() clock), or 0 when
 * none has one: what one timer needs to serve every waiter. */
uint64_t scree__store_wait_deadline(const scree__store *s);

/* Ends every waiter whose deadline is at or before now_ns with
 * SCREE_ETIMEDOUT. Returns how many. */
size_t scree__store_wait_expire(scree__store *s, uint64_t now_ns);

/* Ends sess's waiter with SCREE_ECANCELED. Returns 1, or 0 when sess did
 * not wait. */
int scree__store_wait_cancel(scree__store *s, scree__session *sess);

/* Whether sess has a waiter. */
int scree__session_waiting(const scree__session *sess);

/* Events of a watch. */
enum { SCREE__EVENT_SEALED = 1, SCREE__EVENT_DELETED = 2, SCREE__EVENT_OVERFLOW = 3 };

typedef struct scree__event {
  int kind;        /* SCREE__EVENT_* */
  uint64_t req_id; /* as given to scree__store_watch */
  uint64_t seq; /* 1 for a watch's first event, then +1 per event */
  char name[SCREE__MAX_NAME_LEN + 1]; /* "" for overflow */
} scree__event;

/* Starts (or restarts: queue, overflow and sequence start again) sess's
 * watch of the names under prefix (NULL or "": all). With replay, the
 * first events are a `sealed` one per batch already sealed under the
 * prefix; then live changes: `sealed` (a seal or a publish), `deleted` (a
 * sealed batch's name deleted). At most cfg.watch_queue live events wait;
 * one more change makes an `overflow` event, and every later change is
 * dropped until the watch restarts. req_id comes back with each event (the
 * Watch's request id, which events carry). Returns 0, SCREE_ENAMETOOLONG for a
 * prefix longer than a name, SCREE_EBUSY when sess has a waiter, or
 * SCREE_ENOMEM. */
int scree__store_watch(scree__store *s, scree__session *sess, const char *prefix, int replay,
                       uint64_t req_id, char *msg, size_t msg_len);

/* Whether sess watches. */
int scree__session_watching(const scree__session *sess);

/* Whether sess's watch is still in its replay: set from the start of a
 * watch with replay until scree__store_watch_next has found no name left
 * to replay, so that the call after which it turns 0 is the one at which
 * every batch sealed at the start has been handed out. */
int scree__store_watch_replaying(const scree__session *sess);

/* Whether sess's watch has an event to hand out now. */
int scree__store_watch_pending(const scree__store *s, const scree__session *sess);

/* Takes sess's next event into ev (replay first, then the queue). Returns
 * 1, or 0 when there is none now. */
int scree__store_watch_next(scree__store *s, scree__session *sess, scree__event *ev);
/* Checks the offsets of reserved batch b as Seal does (read through the
 * backend chunk by chunk) and stores its longest row count in *max_length,
 * for bytes that were written by someone Seal never saw (a peer's fetch).
 * Returns 0, SCREE_EINVAL naming the first bad offset, or the backend's
 * error. */
int scree__store_check_offsets(scree__store *s, const scree__batch *b, int64_t *max_length,
                               char *msg, size_t msg_len);

#endif /* SCREE_DAEMON_STORE_H */
