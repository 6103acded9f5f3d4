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
 *   creator.
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

/* Checks a batch name: 1 to 255 bytes of valid UTF-8 without control
 * characters (C0, DEL, C1). Returns 0, SCREE_EINVAL or SCREE_ENAMETOOLONG
 * with a message. */
int scree__name_check(const char *name, char *msg, size_t msg_len);

#endif /* SCREE_DAEMON_STORE_H */
