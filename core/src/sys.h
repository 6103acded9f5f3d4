/* Small system helpers shared by every part of scree: libscree, the kernels,
 * libscreeclient, screed, the tests and the benchmarks. Internal (scree__),
 * never installed; built as the static library scree_sys so that each
 * library or program that needs them carries its own hidden copy. */
#ifndef SCREE_SYS_H
#define SCREE_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Formats a message into msg (when msg is not NULL and msg_len > 0) and
 * returns code, so that an error path reads
 * `return scree__fail(SCREE_EINVAL, msg, msg_len, "...", ...)`. */
int scree__fail(int code, char *msg, size_t msg_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t scree__now_ns(void);

/* CLOCK_MONOTONIC in seconds. */
double scree__now_s(void);

/* Sends one packet of len bytes on a SOCK_SEQPACKET socket, with pass_fd
 * attached as SCM_RIGHTS when pass_fd >= 0 (the fd stays the caller's).
 * flags go to sendmsg (MSG_NOSIGNAL is always added); EINTR is retried.
 * Returns the bytes sent, or -errno. */
ssize_t scree__send_fd(int sock, const void *buf, size_t len, int pass_fd, int flags);

/* Receives one packet into buf (cap bytes) with recvmsg(flags |
 * MSG_CMSG_CLOEXEC), retrying EINTR. Every fd that came with it is stored in
 * fds while fewer than max_fds are held (*nfds counts them; fds may be NULL
 * with max_fds 0) and closed otherwise, so none leaks; *extra_closed (when
 * not NULL) is increased by the number closed. *ctrunc is set when the
 * kernel dropped control data (MSG_CTRUNC). Returns the length recvmsg
 * reported (with MSG_TRUNC, a longer record's real length), or -errno. */
ssize_t scree__recv_fds(int sock, void *buf, size_t cap, int flags, int *fds, int max_fds,
                        int *nfds, unsigned *extra_closed, int *ctrunc);

#ifdef __cplusplus
}
#endif

#endif
