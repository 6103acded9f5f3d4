/* A minimal protocol client for screed's integration tests: starts and
 * stops a real screed process and exchanges raw protobuf-c packets with it
 * over SOCK_SEQPACKET. It deliberately does not use libscreeclient, so that
 * the daemon is tested against the wire format itself, including packets no
 * well-behaved client would send. Functions return 0 / an fd / a message on
 * success and -1 / NULL on failure, with errno set where a call failed. */
#ifndef SCREE_TESTS_RAW_CLIENT_H
#define SCREE_TESTS_RAW_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "scree/v1/scree.pb-c.h"

typedef struct rc_daemon {
  pid_t pid;
  char sock[108];
  int err_fd; /* read end of the daemon's stderr when captured, else -1 */
} rc_daemon;

/* Fills sock with a socket path unique to this process and tag. */
void rc_socket_path(char *sock, size_t len, const char *tag);

/* Starts screed on d->sock (which the caller fills) with extra arguments
 * (NULL-terminated list, may be NULL). When capture_stderr is set the
 * daemon's stderr goes to a pipe (d->err_fd); otherwise it is inherited.
 * Does not wait for the socket. Returns 0 or -1. */
int rc_daemon_spawn(rc_daemon *d, const char *const *extra, int capture_stderr);

/* rc_daemon_spawn, then waits up to 20 s until the socket accepts. */
int rc_daemon_start(rc_daemon *d, const char *const *extra);

/* Waits up to timeout_ms for the daemon to exit; returns its wait status,
 * or -1 when it is still running. */
int rc_daemon_wait(rc_daemon *d, int timeout_ms);

/* Sends SIGTERM and waits for the exit; returns the wait status (or -1,
 * after killing it with SIGKILL, when it did not stop within 20 s). */
int rc_daemon_stop(rc_daemon *d);

/* Reads what the daemon wrote to its captured stderr so far (up to len-1
 * bytes, NUL-terminated). */
size_t rc_daemon_read_stderr(rc_daemon *d, char *buf, size_t len, int timeout_ms);

/* Connects a SOCK_SEQPACKET socket to path; -1 on failure. */
/* CLOCK_MONOTONIC in milliseconds (scree__now_ns), for test deadlines. */
uint64_t rc_now_ms(void);

int rc_connect(const char *path);

/* Sends one packet, with pass_fd attached as SCM_RIGHTS when >= 0. */
int rc_send(int fd, const void *buf, size_t len, int pass_fd);

/* Packs and sends req. */
int rc_send_request(int fd, const Scree__V1__Request *req);

/* Receives one response within timeout_ms. Stores an attached fd in
 * *fd_out (-1 when none; fd_out may be NULL, and an fd is then closed).
 * Returns the unpacked response (free with rc_free) or NULL. */
Scree__V1__Response *rc_recv(int fd, int *fd_out, int timeout_ms);

/* rc_send_request then rc_recv with a 10 s timeout. */
Scree__V1__Response *rc_call(int fd, const Scree__V1__Request *req, int *fd_out);

void rc_free(Scree__V1__Response *resp);

/* Sends Hello (version 1) and returns the response's status, or -1. */
int rc_hello(int fd);

/* Connects and says Hello; -1 on failure. */
int rc_open(const char *path);

/* Request builders: each returns the response of one call (NULL when the
 * exchange failed). */
Scree__V1__Response *rc_create(int fd, const char *name, uint32_t dtype, int64_t batch,
                               int64_t rows, int *fd_out);
Scree__V1__Response *rc_seal(int fd, const char *name);
Scree__V1__Response *rc_get(int fd, const char *name, int *fd_out);
Scree__V1__Response *rc_release(int fd, uint64_t lease);
Scree__V1__Response *rc_delete(int fd, const char *name);
Scree__V1__Response *rc_stats(int fd);

/* rc_daemon_spawn with a hook that runs in the child between fork and exec
 * (to set environment variables naming the child's pid, resource limits,
 * or the fds of socket activation); setup may be NULL. When argv0 is not
 * NULL, the child runs argv0 with args (NULL-terminated, args[0] being the
 * program name) instead of screed --socket d->sock --log-level error
 * extra...; that is for wrappers such as systemd-socket-activate. */
int rc_daemon_spawn_ex(rc_daemon *d, const char *const *extra, int capture_stderr,
                       void (*setup)(void *arg), void *arg, const char *argv0,
                       const char *const *args);

/* Waits up to timeout_ms until d->sock accepts a connection; 0 or -1 (also
 * when the daemon exits meanwhile). */
int rc_daemon_wait_socket(rc_daemon *d, int timeout_ms);

#endif /* SCREE_TESTS_RAW_CLIENT_H */
