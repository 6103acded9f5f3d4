/* The server: screed's libuv loop side. It owns the listening socket and
 * the connections, checks each peer's credentials, moves packets in and out
 * (with the fds they carry) and hands each request packet to the handler
 * (handler.h), sending back the bytes it returns. It knows nothing of
 * batches or attention. Single-threaded: everything runs on the loop
 * thread. */
#ifndef SCREE_DAEMON_SERVER_H
#define SCREE_DAEMON_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "authz.h"
#include "handler.h"

struct scree__metrics;

typedef struct scree__server scree__server;

/* Refused connections (limit, allow lists) that may wait at once to be
 * answered; each holds an fd. */
#define SCREE__SERVER_REFUSALS_MAX 64

typedef struct scree__server_config {
  uv_loop_t *loop;
  scree__handler *handler; /* used, not owned; must outlive the server */
  /* The socket file. The server binds it, creating its parent directories
   * (0755) when missing and replacing a stale socket file (nobody accepts
   * on it), unless listen_fd is given. */
  const char *path;
  /* A listening socket that systemd passed (socket activation; >= 3, as
   * sd_listen_fds numbers them), which the server takes over; path then only
   * names it in logs, and the file is never unlinked. 0 or -1: bind path. */
  int listen_fd;
  uint64_t max_packet; /* larger requests are answered EMSGSIZE */
  /* Each new peer is checked against authz (authz.h) at accept, which must
   * outlive the server; NULL: every peer is allowed. A refused peer gets no
   * session and does not count toward max_connections; its first request
   * is answered with EACCES, then its connection closes. The lists may be
   * completed after creation, before the loop runs. */
  const scree__authz *authz;
  /* Where requests, accepts and refusals are counted; NULL: nowhere. */
  struct scree__metrics *metrics;
  /* Connections served at once; 0: no limit. Over it, a connection is
   * accepted, its first request is answered with SCREE_EAGAIN ("screed is
   * at its connection limit (N connections)") and it is closed; it gets no
   * session. */
  uint32_t max_connections;
} scree__server_config;

/* Makes a server and starts listening. Returns 0; SCREE_EBUSY when another
 * screed is serving path (the message names its pid when the kernel tells
 * it); SCREE_EEXIST when path exists and is not a socket;
 * SCREE_ENAMETOOLONG for a path that does not fit; another code for other
 * failures, with a message. */
int scree__server_new(const scree__server_config *cfg, scree__server **out, char *msg,
                      size_t msg_len);

/* Stops accepting (the first step of a graceful shutdown): unlinks the
 * socket file when it is ours and closes the listener; open connections go
 * on being served. scree__server_shutdown does this too. Harmless twice. */
void scree__server_stop_listening(scree__server *srv);

/* Stops accepting, closes every connection (the handler closes their
 * sessions) and unlinks the socket file when it is still ours. The handles
 * close on the next loop turns. Calling it twice is harmless. */
void scree__server_shutdown(scree__server *srv);

/* Frees the server once the loop has run out after scree__server_shutdown. */
void scree__server_free(scree__server *srv);

/* Open connections (refused ones excluded). */
uint32_t scree__server_connections(const scree__server *srv);

/* 1 when the server took its socket from systemd (cfg.listen_fd), else 0. */
int scree__server_activated(const scree__server *srv);

#endif /* SCREE_DAEMON_SERVER_H */
