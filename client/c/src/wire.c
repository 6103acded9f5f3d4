/* One packet each way on the daemon's socket; wire.h says what each does.
 * The SCM_RIGHTS work is core/src/sys.h's, shared with screed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "scree/error.h"
#include "sys.h"
#include "wire.h"

int scree__wire_send(int fd, const void *buf, size_t len, char *msg, size_t msg_len) {
  ssize_t n = scree__send_fd(fd, buf, len, -1, 0);
  if (n >= 0) {
    /* SOCK_SEQPACKET sends whole packets or fails; a short count means the
     * socket is not what we think it is. */
    if ((size_t)n != len)
      return scree__fail(SCREE_EIO, msg, msg_len, "short send: %zd of %zu bytes", n, len);
    return 0;
  }
  int e = (int)-n;
  if (e == EPIPE || e == ECONNRESET || e == ENOTCONN || e == EBADF)
    return scree__fail(SCREE_EDISCONNECTED, msg, msg_len, "lost the daemon: send: %s",
                       strerror(e));
  if (e == EMSGSIZE)
    return scree__fail(SCREE_EMSGSIZE, msg, msg_len,
                       "request of %zu bytes is too large for the socket", len);
  return scree__fail(SCREE_EIO, msg, msg_len, "send: %s", strerror(e));
}

long scree__wire_recv(int fd, unsigned char **buf, size_t *cap, size_t max_len, int *fds,
                      int max_fds, int *nfds, unsigned *extra_closed, char *msg,
                      size_t msg_len) {
  *nfds = 0;
  /* One recvmsg per reply: the buffer is sized for the largest reply the
   * daemon sends (max_len), and MSG_TRUNC reports the real length of a
   * longer record, whose rest the kernel discards. A MSG_PEEK for the size
   * first would cost a system call on every request. */
  if (*cap < max_len) {
    unsigned char *nb = realloc(*buf, max_len);
    if (nb == NULL)
      return scree__fail(SCREE_ENOMEM, msg, msg_len, "no memory for a %zu-byte reply buffer",
                         max_len);
    *buf = nb;
    *cap = max_len;
  }
  unsigned closed = 0;
  int ctrunc = 0;
  ssize_t n = scree__recv_fds(fd, *buf, *cap, MSG_TRUNC, fds, max_fds, nfds, &closed, &ctrunc);
  if (n < 0)
    return scree__fail(SCREE_EDISCONNECTED, msg, msg_len, "lost the daemon: recvmsg: %s",
                       strerror((int)-n));
  int too_big = (size_t)n > max_len;
  if (too_big || ctrunc) {
    /* A reply that is not read whole, or whose fds the kernel dropped in
     * part, cannot be trusted to hold the handles it names: none is kept. */
    for (int i = 0; i < *nfds; i++)
      close(fds[i]);
    if (too_big)
      closed += (unsigned)*nfds;
    *nfds = 0;
  }
  if (extra_closed != NULL)
    *extra_closed += closed;
  /* A zero-length read with nothing attached is the peer's orderly close. */
  if (n == 0 && *nfds == 0 && closed == 0 && !ctrunc)
    return scree__fail(SCREE_EDISCONNECTED, msg, msg_len, "lost the daemon: connection closed");
  if (too_big)
    return scree__fail(SCREE_EMSGSIZE, msg, msg_len,
                       "reply of %zd bytes exceeds the limit of %zu", n, max_len);
  if (ctrunc)
    return scree__fail(SCREE_EPROTO, msg, msg_len, "reply carried more fds than expected");
  return (long)n;
}
