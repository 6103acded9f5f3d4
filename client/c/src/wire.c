#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "scree/error.h"
#include "wire.h"

int scree__wire_send(int fd, const void *buf, size_t len, char *msg, size_t msg_len) {
  for (;;) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) {
      if ((size_t)n != len) {
        /* SOCK_SEQPACKET sends whole packets or fails; a short count means
         * the socket is not what we think it is. */
        snprintf(msg, msg_len, "short send: %zd of %zu bytes", n, len);
        return SCREE_EIO;
      }
      return 0;
    }
    int e = errno;
    if (e == EINTR)
      continue;
    if (e == EPIPE || e == ECONNRESET || e == ENOTCONN || e == EBADF) {
      snprintf(msg, msg_len, "lost the daemon: send: %s", strerror(e));
      return SCREE_EDISCONNECTED;
    }
    if (e == EMSGSIZE) {
      snprintf(msg, msg_len, "request of %zu bytes is too large for the socket", len);
      return SCREE_EMSGSIZE;
    }
    snprintf(msg, msg_len, "send: %s", strerror(e));
    return SCREE_EIO;
  }
}

/* Closes every fd in the control messages of m, or stores them in fds while
 * there is room. */
static void take_fds(struct msghdr *m, int *fds, int max_fds, int *nfds,
                     unsigned *extra_closed) {
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm != NULL; cm = CMSG_NXTHDR(m, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
      continue;
    size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char *data = CMSG_DATA(cm);
    for (size_t i = 0; i < n; i++) {
      int f;
      memcpy(&f, data + i * sizeof(int), sizeof(int));
      if (fds != NULL && *nfds < max_fds) {
        fds[(*nfds)++] = f;
      } else {
        close(f);
        if (extra_closed != NULL)
          (*extra_closed)++;
      }
    }
  }
}

long scree__wire_recv(int fd, unsigned char **buf, size_t *cap, size_t max_len, int *fds,
                      int max_fds, int *nfds, unsigned *extra_closed, char *msg,
                      size_t msg_len) {
  *nfds = 0;
  ssize_t size;
  for (;;) {
    /* No control buffer on the peek, so no fd is installed twice. */
    size = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC);
    if (size >= 0 || errno != EINTR)
      break;
  }
  if (size < 0) {
    int e = errno;
    snprintf(msg, msg_len, "lost the daemon: recv: %s", strerror(e));
    return SCREE_EDISCONNECTED;
  }

  int too_big = (size_t)size > max_len;
  if (!too_big && (size_t)size > *cap) {
    unsigned char *nb = realloc(*buf, (size_t)size);
    if (nb == NULL) {
      too_big = 1; /* consume it anyway so the stream stays in step */
    } else {
      *buf = nb;
      *cap = (size_t)size;
    }
  }

  union {
    struct cmsghdr align;
    unsigned char bytes[CMSG_SPACE(sizeof(int) * 16)];
  } ctrl;
  unsigned char sink;
  struct iovec iov;
  iov.iov_base = too_big ? (void *)&sink : (void *)*buf;
  iov.iov_len = too_big ? 1 : (size_t)size;
  if (!too_big && size == 0) {
    iov.iov_base = &sink;
    iov.iov_len = 1;
  }
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctrl.bytes;
  m.msg_controllen = sizeof(ctrl.bytes);

  ssize_t n;
  for (;;) {
    n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    if (n >= 0 || errno != EINTR)
      break;
  }
  if (n < 0) {
    int e = errno;
    snprintf(msg, msg_len, "lost the daemon: recvmsg: %s", strerror(e));
    return SCREE_EDISCONNECTED;
  }
  take_fds(&m, too_big ? NULL : fds, max_fds, nfds, extra_closed);
  if (n == 0 && size == 0 && m.msg_controllen == 0) {
    /* A zero-length read with nothing attached is the peer's orderly close. */
    snprintf(msg, msg_len, "lost the daemon: connection closed");
    return SCREE_EDISCONNECTED;
  }
  if (too_big) {
    snprintf(msg, msg_len, "reply of %zd bytes exceeds the limit of %zu", size, max_len);
    return (size_t)size > max_len ? SCREE_EMSGSIZE : SCREE_ENOMEM;
  }
  if (m.msg_flags & MSG_CTRUNC) {
    /* The kernel dropped fds that did not fit: the reply cannot be trusted
     * to have the handle it names. */
    for (int i = 0; i < *nfds; i++)
      close(fds[i]);
    *nfds = 0;
    snprintf(msg, msg_len, "reply carried more fds than expected");
    return SCREE_EPROTO;
  }
  return (long)n;
}
