/* The server: screed's libuv loop side. It owns the listening socket and
 * the connections, moves packets in and out, and hands each request to the
 * store (store.h). Single-threaded: everything runs on the loop thread. */
#ifndef SCREE_DAEMON_SERVER_H
#define SCREE_DAEMON_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store.h"

typedef struct scree__server scree__server;

/* Binds and listens on path (a SOCK_SEQPACKET Unix socket), creating its
 * parent directory (0755) when missing. A stale socket file (nobody accepts
 * on it) is replaced. Returns 0; SCREE_EBUSY when another screed is serving
 * path (the message names its pid when the kernel tells it); SCREE_EEXIST
 * when path exists and is not a socket; another code for other failures.
 * The server uses store but does not own it. */
int scree__server_new(uv_loop_t *loop, scree__store *store, const char *path,
                      uint64_t max_packet, scree__server **out, char *msg, size_t msg_len);

/* Stops accepting, closes every connection (releasing what they hold in the
 * store) and unlinks the socket file when it is still ours. The handles
 * close on the next loop turns; the loop then runs out of work. Calling it
 * twice is harmless. */
void scree__server_shutdown(scree__server *srv);

/* Makes the server check each new peer against authz (authz.h), which must
 * outlive the server. Without it every peer is allowed. A refused peer's
 * first request is answered with EACCES, then its connection closes. Call
 * it before the loop runs, so that no connection is accepted unchecked. */
void scree__server_set_authz(scree__server *srv, const scree__authz *authz);

/* Frees the server once the loop has run out after scree__server_shutdown. */
void scree__server_free(scree__server *srv);

/* ---- operations (limits, metrics, socket activation, draining) ---- */

struct scree__metrics;

/* Sets where the server counts requests, accepts and refusals (may be
 * NULL: nothing is counted) and the connection limit (0: none). Over the
 * limit, a connection is accepted, its first request is answered with
 * SCREE_EAGAIN ("screed is at its connection limit (N connections)") and it
 * is closed; it gets no session. */
void scree__server_set_ops(scree__server *srv, struct scree__metrics *metrics,
                           uint32_t max_connections);

/* How long host memory that deleted batches left free stays resident for
 * reuse before it goes back to the system (scree__store_purge, checked
 * every second; default 10 s). */
void scree__server_set_release_free(scree__server *srv, uint64_t ms);

struct scree__drain;

/* Hands the shutdown drain to the attention executor (after
 * scree__server_set_ops, whose metrics it also takes): jobs count as
 * running in it, and none is accepted once it has started. */
void scree__server_set_drain(scree__server *srv, struct scree__drain *drain);

/* Open connections (refused ones excluded). */
uint32_t scree__server_connections(const scree__server *srv);

/* Like scree__server_new, but serves fd, a listening socket that systemd
 * passed (socket activation), which the server takes over. path is only
 * for logs: the file belongs to systemd and is never unlinked. */
int scree__server_new_fd(uv_loop_t *loop, scree__store *store, int fd, const char *path,
                         uint64_t max_packet, scree__server **out, char *msg,
                         size_t msg_len);

/* Stops accepting (the first step of a graceful shutdown): unlinks the
 * socket file when it is ours and closes the listener; open connections go
 * on being served. scree__server_shutdown does this too. Harmless twice. */
void scree__server_stop_listening(scree__server *srv);

#endif /* SCREE_DAEMON_SERVER_H */
