/* libscreeclient's internals shared by its source files: the handle, the
 * arena cache's types, and the functions each file offers the others.
 *
 * client.c   the public calls: argument checks, request bodies, results
 * rpc.c      one round trip: pack, send, receive, unpack, check the reply
 * wait.c     waiting Gets (blocking, interruptible, or started and finished
 *            over the socket's fd) and watch handles
 * arena_cache.c  arenas imported by this connection, and views into them
 * names.c    the names of the public enums
 * wire.c     one packet each way on the socket (no protobuf)
 * import*.c  mapping an arena's handle into this process
 *
 * Every function here expects the caller to hold c->mu, except where said. */
#ifndef SCREE_CLIENT_IMPL_H
#define SCREE_CLIENT_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "import.h"
#include "scree/client.h"
#include "scree/v1/scree.pb-c.h"
#include "sys.h"
#include "wire.h"

/* The largest reply accepted. The daemon keeps every reply under 1 MiB
 * (List pages stop near 96 KiB); the bound keeps a confused peer from
 * making us allocate more. */
#define SCREE__MAX_REPLY (1u << 20)

/* One import of an arena: where it is mapped here, and the importer's
 * state for unmapping it. base NULL: no such mapping. */
typedef struct scree__mapping {
  void *base;
  void *state;
  scree_device device;
} scree__mapping;

/* An arena can be mapped twice. On host memory a Get brings a read-only fd
 * and a Create a writable one: a connection that reads an arena first and
 * then creates a batch in it receives both, and maps the second at a new
 * address (see scree__arena_resolve). Get views go into ro where there is
 * one, so that they cannot be written by mistake; Create views into rw. */
typedef struct scree__arena {
  uint64_t id;
  size_t size;
  scree__mapping ro; /* mapped without write access */
  scree__mapping rw; /* mapped writable */
} scree__arena;

struct scree_lease {
  uint64_t id;
  uint64_t batch_id; /* BatchInfo.batch_id of the batch it holds (0: not said) */
  scree_lease *prev;
  scree_lease *next;
};

struct scree_client {
  pthread_mutex_t mu;
  int fd;
  int dead; /* 1 once the connection is unusable; err says why */
  uint64_t next_id;
  char err[1024];
  char dead_reason[1024];
  scree_client_info info;
  const scree__importer *imp; /* NULL when this build cannot import */
  char imp_err[256];
  scree__arena *arenas;
  size_t n_arenas;
  size_t cap_arenas;
  scree_lease *leases; /* outstanding lease objects, freed at close */
  unsigned char *rbuf;
  size_t rcap;
  int fds[SCREE__WIRE_MAX_FDS]; /* fds of the last reply not yet consumed */
  int nfds;
  char path[SCREE_SOCKET_PATH_MAX]; /* the socket connected to (or tried first) */
  /* Consulted when a wait is interrupted by a signal (wait.c). */
  scree_interrupt_fn intr;
  void *intr_arg;
  /* A Get started by scree_client_get_wait_start and not finished: its
   * request id (0: none) and name. Every other request is refused
   * meanwhile, since its reply is the next on the socket. */
  uint64_t wait_id;
  char wait_name[SCREE_CLIENT_NAME_MAX + 1];
  /* A Seal sent without waiting for its reply (scree_client_flush): its
   * request id (0: none), the batch's name (malloc'd), and whether a
   * failure deletes the batch (put) or leaves it created (seal). */
  uint64_t seal_id;
  char *seal_name;
  int seal_delete;
};

/* Writes the handle's message (what scree_client_last_error returns) and
 * evaluates to code: `return scree__client_fail(c, SCREE_EINVAL, "...")`. */
#define scree__client_fail(c, code, ...) \
  scree__fail((code), (c)->err, sizeof((c)->err), __VA_ARGS__)

/* ---- connect.c ---- */

/* Connects c->fd to path, or, when path is NULL or "", to the first socket
 * of the resolution order (scree_default_socket_paths) where a daemon
 * answers; c->path gets the path. Returns 0, or a code with a message in
 * c->err that names every path tried and, when nobody answered, how to
 * start a daemon. */
int scree__client_dial(scree_client *c, const char *path);

/* ---- rpc.c ---- */

/* Marks the connection unusable; later calls answer SCREE_EDISCONNECTED with
 * the message in c->err as their reason. Returns code. */
int scree__client_kill(scree_client *c, int code);

/* Closes the fds of the last reply that nobody consumed, counting them in
 * info.stray_fds_closed. */
void scree__client_drop_fds(scree_client *c);

/* Sends one request whose body is `body`, the message that goes with kind
 * (a Scree__V1__Get for SCREE__V1__REQUEST__BODY_GET, ...), and receives
 * the reply into *out (freed by the caller with
 * scree__v1__response__free_unpacked; out may be NULL when the caller needs
 * nothing from it). A non-zero status is returned with the daemon's message
 * in c->err. A reply of another kind, or one that answers another request,
 * means the stream is out of step: the connection is closed for good. */
int scree__call(scree_client *c, Scree__V1__Request__BodyCase kind, void *body,
                Scree__V1__Response **out);

/* The two halves of scree__call, for replies that come later (a waiting
 * Get, a pipelined Seal): send gives the request its id, recv takes the
 * reply to that id. send takes the reply of a pending pipelined Seal first
 * (scree__seal_collect) and returns its failure without sending. */
int scree__call_send(scree_client *c, Scree__V1__Request__BodyCase kind, void *body,
                     uint64_t *id);
int scree__call_recv(scree_client *c, Scree__V1__Request__BodyCase kind, uint64_t id,
                     Scree__V1__Response **out);

/* Receives the next response, whatever it answers, handling freed-arena
 * notices (a watch's events). */
int scree__recv_response(scree_client *c, Scree__V1__Response **out);

/* SCREE_EBUSY with a message while a wait started by
 * scree_client_get_wait_start owns the connection (its reply comes next);
 * else 0. */
int scree__client_busy(scree_client *c);

/* ---- client.c ---- */

/* Turns a GetReply into a view in *out and, when lease is not NULL, hands
 * out l (allocated by the caller, taken here whatever happens) as *lease.
 * On failure the daemon's lease is released. */
int scree__get_finish(scree_client *c, const Scree__V1__Response *resp, scree_array *out,
                      scree_lease *l, scree_lease **lease);

/* Sends Release for lease_id. */
int scree__release_locked(scree_client *c, uint64_t lease_id);

/* Takes the reply of the pending pipelined Seal, if any (c->seal_id):
 * returns 0, or the seal's code with a message naming the batch, after
 * deleting a failed put's batch. */
int scree__seal_collect(scree_client *c);

/* ---- arena_cache.c ---- */

/* Turns a Location into the mapping its batch is to be bound to, importing
 * the arena the first time it is named (and again, writable, when a Create
 * names an arena that a Get imported read-only). The reply's fds are
 * consumed: used for an import, or closed when not needed. *out points into
 * c->arenas and is valid until the next round trip. */
int scree__arena_resolve(scree_client *c, const Scree__V1__Location *loc, int writable,
                         scree__mapping **out);

/* Points a's values and offsets into mapping ar after checking that the
 * location holds the bytes a's descriptor needs. */
int scree__arena_bind(scree_client *c, const Scree__V1__Location *loc, scree__mapping *ar,
                      scree_array *a);

/* Unmaps the arenas in ids (those the daemon says it freed); ids never
 * mapped here are ignored. */
void scree__arenas_forget(scree_client *c, const uint64_t *ids, size_t n);

/* Unmaps every arena and frees the cache (scree_client_close). */
void scree__arenas_free(scree_client *c);

/* A C string as a request's bytes field (names travel as bytes so that
 * their length comes with them; proto/scree/v1/scree.proto). NULL is
 * empty. */
static inline ProtobufCBinaryData scree__bytes(const char *s) {
  ProtobufCBinaryData b = {s != NULL ? strlen(s) : 0, (uint8_t *)s};
  return b;
}

#endif /* SCREE_CLIENT_IMPL_H */
