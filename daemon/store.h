/* The store: named batches, their states and leases, memory accounting, and
 * the request handler that speaks protocol v1 on top of them.
 *
 * Nothing here touches a socket. A connection is a scree__session; the
 * server (server.c) reads a packet, hands it to scree__store_handle_packet
 * and sends the response that comes back, with the fd it carries. Tests and
 * fuzzers drive the same function directly.
 *
 * Rules the handler enforces (docs/protocol.md has the full list):
 * - Hello comes first on every session.
 * - A batch is CREATED by one session, written by its creator, and SEALED by
 *   that same session after its offsets validate. Only SEALED batches can be
 *   attached with Get; each Get makes a lease owned by the session.
 * - Delete removes the name at once. The memory goes at once, or with the
 *   last lease (a pending delete). A CREATED batch may only be deleted by its
 *   creator. A SEALED batch may be deleted by its owner (the uid that
 *   created it) or an admin uid (cfg.authz).
 * - Blocks come from arenas of the owner's uid, or from the shared pool
 *   (cfg.shared_arenas, Create.shared), never from another owner's arenas.
 * - --quota-per-uid bounds the bytes of the batches each uid owns, counted
 *   like the memory limit, pending deletes included.
 * - Closing a session releases its leases and reclaims its CREATED batches.
 * - --memory-limit bounds the sum of the batches' aligned sizes (values and
 *   offsets each rounded up to 256 bytes), pending deletes included. Arena
 *   slack does not count, so a Create fails with ENOSPC exactly when that sum
 *   would pass the limit (or when the backend itself is out of memory). */
#ifndef SCREE_DAEMON_STORE_H
#define SCREE_DAEMON_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "authz.h"
#include "mem.h"
#include "scree/array.h"
#include "scree/v1/scree.pb-c.h"

#define SCREE__PROTOCOL_VERSION 1
#define SCREE__MAX_NAME_LEN 255
#define SCREE__LIST_DEFAULT 100
#define SCREE__LIST_MAX 1000
/* A List page stops before its packed size passes this, whatever page_size
 * asks for, so that a reply always fits one packet on a default socket
 * buffer. The client continues with next_page_token. */
#define SCREE__LIST_REPLY_BUDGET (96u * 1024u)

typedef struct scree__store scree__store;
typedef struct scree__session scree__session;

typedef struct scree__store_config {
  uint64_t memory_limit; /* bytes; must be > 0 */
  uint64_t arena_size;   /* bytes; rounded up to the backend's granularity */
  uint64_t max_packet;   /* reported in HelloReply; the server enforces it */
  const char *version;   /* screed's version string (copied) */
  /* Access control (docs/security.md). All zero: no admin, no quota, and
   * every owner uid gets arenas of its own. */
  const scree__authz *authz; /* admins may delete any batch; NULL: none */
  uint64_t quota_per_uid;    /* bytes of batches per owner uid; 0: no quota */
  int shared_arenas;         /* 1: every batch in the shared pool */
  /* Leases one session may hold at once; a Get beyond it fails with
   * SCREE_EBUSY. 0: no limit. (--max-leases-per-connection) */
  uint32_t max_leases_per_session;
} scree__store_config;

/* A response being built. The handler fills resp and may attach one fd
 * (fd >= 0), which the reply owns until the caller takes it (sets fd to -1)
 * or calls scree__reply_clear. String fields of resp may point into the
 * store, so pack the reply before handling the next request. */
typedef struct scree__reply {
  Scree__V1__Response resp;
  int fd;
  char msg[1024];
  union {
    Scree__V1__HelloReply hello;
    Scree__V1__CreateReply create;
    Scree__V1__SealReply seal;
    Scree__V1__GetReply get;
    Scree__V1__ReleaseReply release;
    Scree__V1__DeleteReply del;
    Scree__V1__ListReply list;
    Scree__V1__StatReply stat;
    Scree__V1__StatsReply stats;
    Scree__V1__AttentionReply attention;
  } body;
  Scree__V1__Location loc;
  Scree__V1__BatchInfo info;
  Scree__V1__ArrayDesc desc;
  int64_t inner[SCREE_MAX_INNER_DIMS];
  Scree__V1__ErrorCount errs[32];
  Scree__V1__ErrorCount *err_ptrs[32];
  /* List replies: heap arrays, freed by scree__reply_clear. */
  Scree__V1__BatchInfo *list_infos;
  Scree__V1__BatchInfo **list_ptrs;
  Scree__V1__ArrayDesc *list_descs;
  int64_t *list_inner;
  /* The request's body case (Scree__V1__Request__BodyCase), 0 when the
   * packet did not decode: the server counts responses by it. */
  int op;
  /* Set by the handler when the response comes later (an attention job):
   * the caller sends nothing now and reads no further request of the
   * session until the job's reply is delivered (exec.h). */
  int deferred;
  /* Response.freed_arenas: a heap array, freed by scree__reply_clear. */
  uint64_t *freed;
} scree__reply;

void scree__reply_init(scree__reply *r);
/* Frees what the reply holds (closing its fd) and makes it empty again. */
void scree__reply_clear(scree__reply *r);

/* Makes a store over the backend mem (which the store uses but does not
 * own). Returns 0, SCREE_EINVAL for a bad config, or SCREE_ENOMEM. */
int scree__store_new(scree__mem *mem, const scree__store_config *cfg, scree__store **out,
                     char *msg, size_t msg_len);

/* Frees every batch and arena. Sessions must have been closed first. */
void scree__store_free(scree__store *s);

/* Opens a session for a peer with the given credentials (from SO_PEERCRED);
 * NULL when out of memory. */
scree__session *scree__session_open(scree__store *s, uint32_t uid, int32_t pid);

/* Closes a session: releases its leases (completing deletes that waited on
 * them), reclaims the batches it created but did not seal, and frees it. */
void scree__session_close(scree__store *s, scree__session *sess);

/* The session's id, unique for the life of the store (for logs). */
uint64_t scree__session_id(const scree__session *sess);

/* Decodes one request packet and handles it. Always leaves a response in r
 * (r must be initialised or cleared): a packet that does not decode gets
 * SCREE_EPROTO "malformed request" with id 0. */
void scree__store_handle_packet(scree__store *s, scree__session *sess, const uint8_t *buf,
                                size_t len, scree__reply *r);

/* Handles one decoded request. Always leaves a response in r. */
void scree__store_handle(scree__store *s, scree__session *sess,
                         const Scree__V1__Request *req, scree__reply *r);

/* Fills r with an error response (status code, formatted message) for the
 * request id, counting it in the statistics like any other response. For
 * failures the server detects before the handler runs (an oversized
 * packet). */
void scree__store_reply_error(scree__store *s, scree__session *sess, scree__reply *r,
                              uint64_t id, int code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Counters for tests and logs. */
typedef struct scree__store_counts {
  uint64_t bytes_used;
  uint64_t bytes_arenas;
  uint32_t arenas;
  uint32_t batches; /* named batches, sealed or not */
  uint32_t pending_deletes;
  uint32_t leases;
  uint32_t sessions;
  uint64_t requests;
} scree__store_counts;

void scree__store_counts_get(const scree__store *s, scree__store_counts *out);

/* Gives back the memory of free space that deleted batches left and that
 * has stayed unused for min_age_ms (scree__pool_purge); screed calls it
 * from a timer. Returns the bytes given back. */
uint64_t scree__store_purge(scree__store *s, uint64_t min_age_ms);

/* Attention jobs (exec.c) read these counters; screed's metrics export
 * them. Durations are those of the kernel runs (elapsed_ns of the replies),
 * in nanoseconds; buckets[i] counts jobs that took at most
 * SCREE__ATTN_BUCKETS_NS[i] (cumulative, as Prometheus histograms are), and
 * count holds the +Inf bucket. Failed jobs count in failed, not in the
 * durations. */
#define SCREE__ATTN_NBUCKETS 6
extern const uint64_t SCREE__ATTN_BUCKETS_NS[SCREE__ATTN_NBUCKETS];
typedef struct scree__attention_counts {
  uint32_t running; /* jobs started and not yet finished */
  uint32_t queued;  /* jobs waiting for a worker */
  uint64_t total;   /* jobs finished, successful or not */
  uint64_t failed;
  uint64_t duration_ns_sum;
  uint64_t count;
  uint64_t buckets[SCREE__ATTN_NBUCKETS];
} scree__attention_counts;

/* The store's attention counters, owned by the store and updated by exec.c
 * on the loop thread. Never NULL. */
scree__attention_counts *scree__store_attention_counts(scree__store *s);

/* ---- the store as attention jobs see it (exec.c) ---------------------- */

typedef struct scree__batch scree__batch;
typedef struct scree__exec scree__exec;

/* What a job needs to know of a batch: its descriptor (pointers NULL) and
 * where its bytes are. */
typedef struct scree__batch_view {
  const char *name;
  scree_array desc;
  int sealed;
  int deleted;
  const scree__arena_mem *mem; /* the arena's memory, for host_ptr/dev_ptr */
  uint64_t values_offset;      /* bytes into the arena */
  uint64_t values_bytes;
  uint64_t offsets_offset;
  uint64_t offsets_bytes;
} scree__batch_view;

/* Hands Attention requests to exec (NULL: they are answered ENOTSUP). */
void scree__store_set_exec(scree__store *s, scree__exec *e);
scree__mem *scree__store_mem(scree__store *s);

/* The named batch, or NULL. */
scree__batch *scree__store_find(scree__store *s, const char *name);
void scree__store_view(const scree__batch *b, scree__batch_view *out);

/* Pins b as a lease would, without a session: a Delete meanwhile is
 * deferred until scree__store_unpin, which may free b. Returns 0 or
 * SCREE_EBUSY when b has as many leases as it can count. */
int scree__store_pin(scree__store *s, scree__batch *b);
void scree__store_unpin(scree__store *s, scree__batch *b);

/* Reserves a batch for a job's output: CREATED, owned by sess's peer, with
 * memory counted against the limit, but not named (no request can see it)
 * and on no session's list (closing sess does not reclaim it). Returns 0,
 * SCREE_ENOSPC or SCREE_ENOMEM with a message in msg. */
int scree__store_reserve(scree__store *s, scree__session *sess, const char *name,
                         const scree_array *desc, scree__batch **out, char *msg,
                         size_t msg_len);

/* Names and seals a reserved batch with the given max_length, and fills
 * r->info with it. Returns 0, or SCREE_EEXIST (message in r->msg) when the
 * name was taken while the job ran; the batch is then still reserved. */
int scree__store_publish(scree__store *s, scree__batch *b, int64_t max_length,
                         scree__reply *r);

/* Frees a reserved batch that is not published. */
void scree__store_discard(scree__store *s, scree__batch *b);

/* The job whose reply sess waits for (exec.c keeps it), or NULL. Closing
 * the session calls scree__exec_detach on it. */
void scree__session_set_job(scree__session *sess, void *job);
void *scree__session_job(const scree__session *sess);

/* An opaque pointer for the server (its connection). */
void scree__session_set_data(scree__session *sess, void *data);
void *scree__session_data(const scree__session *sess);

/* Turns r into a failure response for a request whose reply was deferred,
 * counting the error (not the request again: it was counted when it came). */
void scree__store_fail_deferred(scree__store *s, scree__session *sess, scree__reply *r,
                                const char *op, int code);

/* Moves the arenas freed since sess's previous response into
 * r's Response.freed_arenas. Call it on every response just before it is
 * packed for sess. Returns 0 or SCREE_ENOMEM (the notices then wait for
 * the next response). */
int scree__store_attach_notices(scree__store *s, scree__session *sess, scree__reply *r);
/* Bytes of batches owned by uid, as --quota-per-uid counts them. */
uint64_t scree__store_uid_bytes(const scree__store *s, uint32_t uid);

/* Checks a batch name: 1 to 255 bytes of valid UTF-8 without control
 * characters (C0, DEL, C1). Returns 0, SCREE_EINVAL or SCREE_ENAMETOOLONG
 * with a message. */
int scree__name_check(const char *name, char *msg, size_t msg_len);

#endif /* SCREE_DAEMON_STORE_H */
