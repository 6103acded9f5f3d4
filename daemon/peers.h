/* Peers: other screeds, on this node or others, over UCX.
 *
 * Beside the handler, like the executor: the handler turns a Fetch request
 * into scree__peers_fetch and the result back into a reply; peers use the
 * store (reserve, publish, pin) and the store never calls them.
 *
 *   fetcher screed                            owner screed
 *   Fetch from a client --------------------> (UCX endpoint, authenticated)
 *     OPEN name      ----------------------->  pin the batch: OPEN_OK
 *                    <-----------------------  (descriptor, a handle)
 *     reserve the local block
 *     READ handle, region, offset, length -->  checks the lease and bounds
 *     (16 MiB chunks, a few at a time)   <===  DATA: the bytes, as an active
 *     check each DATA, receive it into         message (rendezvous for large
 *     the reservation                          ones, from the batch's memory)
 *     check the offsets, name and seal
 *     CLOSE handle   ----------------------->  unpin
 *   FetchReply to the client
 *
 * No one-sided operation is used and UCX's RMA feature is off: nothing a
 * remote sends makes UCX read or write an address the remote names. GPU
 * memory moves as it lies where UCX supports CUDA, else through pinned
 * host stages (mem.h).
 *
 * One UCX context and one worker (UCS_THREAD_MODE_SINGLE) per daemon,
 * driven from the libuv loop through the worker's event fd: nothing here
 * blocks the loop. Every connection proves the shared secret in both
 * directions (peers_auth.h) before any other message is accepted; a peer
 * that fails is refused and logged, and learns nothing of the store.
 * docs/cluster.md has the whole design.
 *
 * Built only where UCX and libcrypto are found (SCREE_PEERS); elsewhere
 * peers_stub.c answers SCREE_ENOTSUP and screed refuses the --peer
 * options with a message saying so. */
#ifndef SCREE_DAEMON_PEERS_H
#define SCREE_DAEMON_PEERS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store.h"

typedef struct scree__peers scree__peers;

#define SCREE__PEER_NAME_MAX 63
#define SCREE__PEERS_MAX 64

/* One --peer NAME=HOST:PORT. */
typedef struct scree__peer_spec {
  char name[SCREE__PEER_NAME_MAX + 1];
  char host[256];
  uint16_t port;
} scree__peer_spec;

/* Parses "NAME=HOST:PORT" (HOST a name or IPv4 address, or [IPv6]).
 * NAME: 1 to 63 of [A-Za-z0-9._-]. Returns 0 or SCREE_EINVAL with a
 * message. */
int scree__peer_spec_parse(const char *arg, scree__peer_spec *out, char *msg, size_t msg_len);

/* Parses "HOST:PORT" (PORT may be 0 for --peer-listen: any free port).
 * Returns 0 or SCREE_EINVAL. */
int scree__peer_addr_parse(const char *arg, char *host, size_t host_len, uint16_t *port,
                           char *msg, size_t msg_len);

/* One --mirror PEER:PREFIX: keep every sealed batch under PREFIX on peer
 * PEER fetched here, under the same names (peers_mirror.c). */
typedef struct scree__mirror_spec {
  char peer[SCREE__PEER_NAME_MAX + 1];
  char prefix[SCREE__MAX_NAME_LEN + 1]; /* "" mirrors every name */
} scree__mirror_spec;

#define SCREE__MIRRORS_MAX 64

/* Parses "PEER:PREFIX": PEER as a --peer NAME, PREFIX up to 255 bytes of
 * what a batch name may hold (possibly empty). Returns 0 or SCREE_EINVAL
 * with a message naming the bad part. */
int scree__mirror_spec_parse(const char *arg, scree__mirror_spec *out, char *msg,
                             size_t msg_len);

/* Checks mirrors against the peers once every option is read: each names a
 * --peer, and no two of one peer have prefixes where one starts the other
 * (they would fetch the same names). Returns 0 or SCREE_EINVAL. */
int scree__mirror_specs_check(const scree__mirror_spec *mirrors, size_t nmirrors,
                              const scree__peer_spec *peers, size_t npeers, char *msg,
                              size_t msg_len);

typedef struct scree__peers_config {
  uv_loop_t *loop;
  scree__store *store;
  const char *listen; /* "HOST:PORT" or NULL: accept no peer */
  const scree__peer_spec *peers;
  size_t npeers;
  /* --peer-secret-file: read here (peers_auth.h says what it must be);
   * or, for tests, the secret itself in secret/secret_len (copied). */
  const char *secret_file;
  const unsigned char *secret;
  size_t secret_len;
  /* --mirror: checked as scree__mirror_specs_check does. Each mirror
   * queues at most mirror_queue names for fetching (--watch-queue; 0: the
   * store's default). */
  const scree__mirror_spec *mirrors;
  size_t nmirrors;
  uint32_t mirror_queue;
} scree__peers_config;

/* Whether this build has peers (UCX). */
int scree__peers_available(void);

/* Opens UCX, listens when cfg->listen is set, and prepares the endpoints
 * of cfg->peers; connections are made at the first fetch, or at once for a
 * peer that a mirror follows, and kept. Returns 0, SCREE_ENOTSUP (built without UCX),
 * SCREE_EINVAL, or SCREE_EIO when UCX fails (its message included). */
int scree__peers_new(const scree__peers_config *cfg, scree__peers **out, char *msg,
                     size_t msg_len);

/* The port the listener is bound to (0 when not listening), for
 * --peer-listen HOST:0 and the startup line. */
uint16_t scree__peers_listen_port(const scree__peers *p);

#define SCREE__FETCH_NO_WAIT (-2)

/* A Fetch in C terms. */
typedef struct scree__fetch_req {
  const char *peer;    /* a NAME of --peer */
  const char *name;    /* the batch on the peer */
  const char *as_name; /* the local name; NULL or "": name */
  /* How long the batch may take to appear sealed on the peer:
   * SCREE__FETCH_NO_WAIT fails at once when it is missing; -1 waits until
   * the timeout; >= 0 waits that many milliseconds. */
  int64_t wait_ms;
  uint64_t timeout_ms; /* the whole fetch; 0: the default (60 s) */
} scree__fetch_req;

/* How a fetch ended: rc 0 with out (the sealed local batch), the bytes
 * read and the time taken; or an error code with msg. Valid during the
 * callback only. */
typedef struct scree__fetch_result {
  int rc;
  const char *msg;
  const scree__batch_view *out;
  uint64_t bytes;
  uint64_t elapsed_ns;
} scree__fetch_result;

/* Receives a fetch's end for the session that asked, on the loop thread,
 * with the id of its request; not called when the session closed first. */
typedef void (*scree__fetch_done_cb)(void *arg, scree__session *sess, uint64_t id,
                                     const scree__fetch_result *res);

/* Starts a fetch for sess. Returns 0 when it is under way: its end comes
 * through cb later, and until then the session's fetch
 * (scree__session_fetch) is set. Otherwise returns a code with the message
 * in msg, having changed nothing: SCREE_EINVAL (a bad or unknown name),
 * SCREE_EEXIST (the local name is taken), SCREE_EAGAIN (shutting down). */
int scree__peers_fetch(scree__peers *p, scree__session *sess, uint64_t id,
                       const scree__fetch_req *q, scree__fetch_done_cb cb, void *cb_arg,
                       char *msg, size_t msg_len);

/* Called when the fetch's session closes: a fetch whose reads have
 * started goes on without its callback and keeps its batch if it
 * completes; one still waiting for the peer's answer stops there. */
void scree__peers_detach(void *fetch);

/* Counters of one peer (of --peer), for Stats and metrics. */
typedef struct scree__peer_counts {
  const char *name; /* points into p */
  uint64_t batches;    /* fetches completed */
  uint64_t bytes;      /* bytes read by completed fetches */
  uint64_t failures[8]; /* by SCREE__FETCH_FAIL_* */
  int connected;
  /* The mirrors of this peer (--mirror PEER:PREFIX): */
  uint32_t mirrors;        /* how many follow it */
  uint64_t mirrored;       /* batches they fetched (also in batches) */
  uint64_t mirror_deletes; /* local copies deleted because the peer deleted its batch */
  uint64_t mirror_resyncs; /* times they watched again with replay (an overflow, a full
                            * queue, a lost connection) */
} scree__peer_counts;

/* Causes of failed fetches, the index into failures[]. */
enum {
  SCREE__FETCH_FAIL_AUTH = 0,     /* the secret was not proven either way */
  SCREE__FETCH_FAIL_UNREACHABLE,  /* no connection to the peer */
  SCREE__FETCH_FAIL_LOST,         /* the connection failed during the fetch */
  SCREE__FETCH_FAIL_REMOTE,       /* the peer refused (no such batch, ...) */
  SCREE__FETCH_FAIL_LOCAL,        /* the local store refused (memory, name) */
  SCREE__FETCH_FAIL_TIMEOUT,      /* the fetch's time ran out */
  SCREE__FETCH_FAIL_INVALID,      /* the bytes or descriptor did not check */
  SCREE__FETCH_FAIL_OTHER,
  SCREE__FETCH_FAIL_CAUSES
};

/* The cause's label in metrics ("auth", "unreachable", ...). */
const char *scree__fetch_fail_name(int cause);

/* The number of peers of --peer; counts of peer i (< that number) into
 * out. NULL p: 0. */
size_t scree__peers_count(const scree__peers *p);
void scree__peers_counts(const scree__peers *p, size_t i, scree__peer_counts *out);

/* Owner-side counters: authenticated connections now, connections refused
 * (auth failures, garbage), leases held for peers now. */
typedef struct scree__peers_served {
  uint32_t conns;
  uint64_t refused;
  uint32_t leases;
  uint64_t opened; /* OPENs answered with OK since start */
} scree__peers_served;
void scree__peers_served_get(const scree__peers *p, scree__peers_served *out);

/* Appends the Prometheus text of the peers to *buf (malloc'd; *len and
 * *cap are updated). Returns 0 or SCREE_ENOMEM. */
int scree__peers_render_metrics(const scree__peers *p, char **buf, size_t *len, size_t *cap);

/* Fails the fetches under way (SCREE_EAGAIN), ends the leases peers hold,
 * closes every endpoint and the listener, and closes the loop handles, so
 * that the loop can run out. Harmless twice; NULL is allowed. */
void scree__peers_shutdown(scree__peers *p);

/* Frees everything once the loop has run out. NULL is allowed. */
void scree__peers_free(scree__peers *p);

#endif /* SCREE_DAEMON_PEERS_H */
