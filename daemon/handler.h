/* The request handler: protocol v1 on top of the store and the executor.
 *
 * The handler decodes a request packet, checks it, calls the store (or
 * hands an Attention request to the executor) and builds the reply; it
 * encodes the reply too, so that the server below it only moves bytes and
 * fds. It is the one part of screed that sees protobuf types: the store and
 * the executor speak plain C.
 *
 *   server (sockets, framing)  ->  handler  ->  store  ->  arena / mem
 *                                           ->  exec (attention, beside it)
 *
 * Tests and fuzzers drive scree__handle and scree__handle_packet directly,
 * with no socket. Peers (another screed over UCX) will be served beside this
 * handler, through the same store. */
#ifndef SCREE_DAEMON_HANDLER_H
#define SCREE_DAEMON_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#include "exec.h"
#include "peers.h"
#include "scree/v1/scree.pb-c.h"
#include "store.h"

#define SCREE__PROTOCOL_VERSION 1
#define SCREE__LIST_DEFAULT 100
#define SCREE__LIST_MAX 1000
/* A List page stops before its packed size passes this, whatever page_size
 * asks for, so that a reply always fits one packet on a default socket
 * buffer. The client continues with next_page_token. */
#define SCREE__LIST_REPLY_BUDGET (96u * 1024u)

typedef struct scree__handler scree__handler;

typedef struct scree__handler_config {
  uint64_t max_packet; /* reported in HelloReply; the server enforces it */
  const char *version; /* screed's version string (copied) */
  /* Runs Attention requests; NULL: they are answered ENOTSUP. Must outlive
   * the handler. */
  scree__exec *exec;
  /* Serves Fetch (peers over UCX); NULL: Fetch is answered ENOTSUP. Must
   * outlive the handler. */
  scree__peers *peers;
} scree__handler_config;

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
    Scree__V1__DeleteReply delete_; /* named as in Scree__V1__Response */
    Scree__V1__ListReply list;
    Scree__V1__StatReply stat;
    Scree__V1__StatsReply stats;
    Scree__V1__AttentionReply attention;
    Scree__V1__WatchReply watch;
    Scree__V1__CancelReply cancel;
    Scree__V1__Event event;
    Scree__V1__FetchReply fetch;
  } body;
  Scree__V1__Location loc;
  Scree__V1__BatchInfo info;
  Scree__V1__ArrayDesc desc;
  int64_t inner[SCREE_MAX_INNER_DIMS];
  Scree__V1__ErrorCount errs[SCREE__STORE_ERROR_SLOTS];
  Scree__V1__ErrorCount *err_ptrs[SCREE__STORE_ERROR_SLOTS];
  /* List replies: heap arrays, freed by scree__reply_clear. */
  Scree__V1__BatchInfo *list_infos;
  Scree__V1__BatchInfo **list_ptrs;
  Scree__V1__ArrayDesc *list_descs;
  int64_t *list_inner;
  /* The request type as metrics count it (SCREE__REQ_*, metrics.h). */
  int op;
  /* Set when the response comes later (an attention job, a Get that
   * waits): the caller sends nothing now and reads no further request of
   * the session until the deferred reply is delivered, except a Cancel
   * when cancellable is set (scree__handler_is_cancel). */
  int deferred;
  int cancellable;
  /* Response.freed_arenas: a heap array, freed by scree__reply_clear. */
  uint64_t *freed;
  /* StatsReply.peers: one heap block, freed by scree__reply_clear. */
  void *peer_stats;
} scree__reply;

void scree__reply_init(scree__reply *r);
/* Frees what the reply holds (closing its fd) and makes it empty again. */
void scree__reply_clear(scree__reply *r);

/* An encoded response for the server to send: buf (malloc'd, len bytes)
 * and fd (-1 or one to attach) are the receiver's. op and status are for
 * the server's metrics. deferred: nothing to send now (buf NULL). */
typedef struct scree__out {
  uint8_t *buf;
  size_t len;
  int fd;
  int op;
  int status;
  int deferred;
  int cancellable; /* with deferred: a Cancel may be read meanwhile */
} scree__out;

/* Where deferred replies go (the server): called on the loop thread with
 * the encoded reply for sess, which the callee then owns. */
typedef void (*scree__handler_deliver_cb)(void *arg, scree__session *sess, scree__out *out);

/* Makes a handler over store (which it uses but does not own). Returns 0 or
 * SCREE_ENOMEM with a message. */
int scree__handler_new(scree__store *store, const scree__handler_config *cfg,
                       scree__handler **out, char *msg, size_t msg_len);

/* Frees the handler; its sessions must have been closed. NULL is allowed. */
void scree__handler_free(scree__handler *h);

/* Sets where deferred replies are delivered (the server, at its creation).
 * Without it they are dropped. */
void scree__handler_set_deliver(scree__handler *h, scree__handler_deliver_cb cb, void *arg);

/* What else the server offers the handler for waits and watches, on the
 * loop thread: watch_ready says sess has events to send (the server then
 * calls scree__handler_next_event when its socket takes more); arm_timer
 * asks for one call of scree__handler_expire at deadline_ns (the
 * scree__now_ns() clock) or later, replacing any earlier request, or for
 * none (0). Without them, events wait for the server to ask and waits have
 * no deadline. */
typedef struct scree__handler_waits {
  void (*watch_ready)(void *arg, scree__session *sess);
  void (*arm_timer)(void *arg, uint64_t deadline_ns);
  void *arg;
} scree__handler_waits;

void scree__handler_set_waits(scree__handler *h, const scree__handler_waits *w);

/* Answers the Gets whose wait has run out by now_ns (SCREE_ETIMEDOUT,
 * through the deliver callback) and arms the timer for the next deadline. */
void scree__handler_expire(scree__handler *h, uint64_t now_ns);

/* Whether sess is a watch with an event to send now. */
int scree__handler_watch_pending(scree__handler *h, scree__session *sess);

/* Encodes sess's next watch event into out. Returns 1 (out filled), 0 when
 * there is none now, or SCREE_ENOMEM. */
int scree__handler_next_event(scree__handler *h, scree__session *sess, scree__out *out);

/* Whether a request packet is a Cancel: the one request the server reads
 * while a Get of the connection waits. */
int scree__handler_is_cancel(const uint8_t *buf, size_t len);

/* Opens a session for a peer (credentials from SO_PEERCRED); NULL when out
 * of memory. */
scree__session *scree__handler_open(scree__handler *h, uint32_t uid, int32_t pid);

/* Closes a session: a job it waits for finishes without replying, then the
 * store releases what the session holds. */
void scree__handler_close(scree__handler *h, scree__session *sess);

/* Decodes one request packet and handles it. Always leaves a response in r
 * (r must be initialised or cleared): a packet that does not decode gets
 * SCREE_EPROTO "malformed request" with id 0. */
void scree__handle_packet(scree__handler *h, scree__session *sess, const uint8_t *buf,
                          size_t len, scree__reply *r);

/* Handles one decoded request. Always leaves a response in r. */
void scree__handle(scree__handler *h, scree__session *sess, const Scree__V1__Request *req,
                   scree__reply *r);

/* Moves the arenas freed since sess's previous response into r's
 * Response.freed_arenas. scree__handler_serve does it on every response;
 * tests call it directly. Returns 0. */
int scree__handler_attach_notices(scree__handler *h, scree__session *sess, scree__reply *r);

/* ---- bytes in, bytes out (for the server) ------------------------------ */

/* Handles one request packet of sess and encodes the response into out.
 * Returns 0 (out filled, or out->deferred set), or SCREE_ENOMEM when the
 * response cannot be encoded (the connection should close). */
int scree__handler_serve(scree__handler *h, scree__session *sess, const uint8_t *buf,
                         size_t len, scree__out *out);

/* Answers a request packet with an error without handling it (a packet over
 * --max-packet, a peer the allow lists refuse), counting it like any other
 * response. Only the request id is read from req (NULL: id 0). Returns 0 or
 * SCREE_ENOMEM, as scree__handler_serve. */
int scree__handler_refuse(scree__handler *h, scree__session *sess, const uint8_t *req,
                          size_t req_len, int code, scree__out *out, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Encodes an error response to req for a connection that has no session
 * (over --max-connections), counting nothing. Returns 0 or SCREE_ENOMEM. */
int scree__handler_refuse_bare(const uint8_t *req, size_t req_len, int code, const char *text,
                               scree__out *out);

/* Frees what out holds (closing its fd). */
void scree__out_clear(scree__out *out);

#endif /* SCREE_DAEMON_HANDLER_H */
