#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

int scree__fail(int code, char *msg, size_t msg_len, const char *fmt, ...) {
  if (msg != NULL && msg_len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_len, fmt, ap);
    va_end(ap);
  }
  return code;
}

uint64_t scree__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double scree__now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

ssize_t scree__send_fd(int sock, const void *buf, size_t len, int pass_fd, int flags) {
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (pass_fd >= 0) {
    memset(&ctl, 0, sizeof(ctl));
    mh.msg_control = ctl.bytes;
    mh.msg_controllen = sizeof(ctl.bytes);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
  }
  for (;;) {
    ssize_t n = sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
    if (n >= 0)
      return n;
    if (errno != EINTR)
      return -errno;
  }
}

ssize_t scree__recv_fds(int sock, void *buf, size_t cap, int flags, int *fds, int max_fds,
                        int *nfds, unsigned *extra_closed, int *ctrunc) {
  /* Room for more fds than any peer of ours sends, so that a misbehaving
   * one's extra fds arrive here and are closed rather than left in flight. */
  union {
    struct cmsghdr align;
    unsigned char bytes[CMSG_SPACE(sizeof(int) * 16)];
  } ctl;
  struct iovec iov = {.iov_base = buf, .iov_len = cap};
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.bytes;
  mh.msg_controllen = sizeof(ctl.bytes);
  if (nfds != NULL)
    *nfds = 0;
  if (ctrunc != NULL)
    *ctrunc = 0;
  ssize_t n;
  for (;;) {
    n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    if (n >= 0)
      break;
    if (errno != EINTR)
      return -errno;
  }
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
      continue;
    size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int f;
      memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      if (fds != NULL && nfds != NULL && *nfds < max_fds) {
        fds[(*nfds)++] = f;
      } else {
        close(f);
        if (extra_closed != NULL)
          (*extra_closed)++;
      }
    }
  }
  if (ctrunc != NULL && (mh.msg_flags & MSG_CTRUNC))
    *ctrunc = 1;
  return n;
}
