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

/* Frees the server once the loop has run out after scree__server_shutdown. */
void scree__server_free(scree__server *srv);

#endif /* SCREE_DAEMON_SERVER_H */
