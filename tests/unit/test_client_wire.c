/* libscreeclient's packet layer over a socketpair: sizes learnt by peeking,
 * fds taken or closed, oversized packets skipped, a vanished peer reported. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "scree/error.h"
#include "wire.h"

static int sv[2];

static void setup(void) {
  cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
}

static void teardown(void) {
  close(sv[0]);
  close(sv[1]);
}

static void send_with_fds(int s, const void *buf, size_t len, const int *fds, int n) {
  struct iovec iov = {(void *)buf, len};
  union {
    struct cmsghdr align;
    char b[CMSG_SPACE(sizeof(int) * 8)];
  } ctrl;
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (n > 0) {
    m.msg_control = ctrl.b;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
  }
  cr_assert_eq(sendmsg(s, &m, 0), (ssize_t)len);
}

TestSuite(wire, .init = setup, .fini = teardown);

Test(wire, packet_and_fds_arrive_cloexec) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  send_with_fds(sv[1], "hello", 5, &p[0], 1);
  unsigned char *buf = NULL;
  size_t cap = 0;
  int fds[4], nfds = 0;
  unsigned extra = 0;
  char msg[256];
  long n = scree__wire_recv(sv[0], &buf, &cap, 1024, fds, 4, &nfds, &extra, msg, sizeof(msg));
  cr_assert_eq(n, 5, "%s", msg);
  cr_assert_eq(memcmp(buf, "hello", 5), 0);
  cr_assert_eq(nfds, 1);
  cr_assert(fcntl(fds[0], F_GETFD) & FD_CLOEXEC, "received fds are close-on-exec");
  close(fds[0]);
  close(p[0]);
  close(p[1]);
  free(buf);
}

Test(wire, extra_fds_are_closed) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  int three[3] = {p[0], p[1], p[0]};
  send_with_fds(sv[1], "x", 1, three, 3);
  close(p[0]);
  close(p[1]);
  unsigned char *buf = NULL;
  size_t cap = 0;
  int fds[1], nfds = 0;
  unsigned extra = 0;
  char msg[256];
  int before = dup(0);
  close(before);
  cr_assert_eq(scree__wire_recv(sv[0], &buf, &cap, 1024, fds, 1, &nfds, &extra, msg,
                                sizeof(msg)),
               1);
  cr_assert_eq(nfds, 1);
  cr_assert_eq(extra, 2u);
  close(fds[0]);
  /* Every received fd is now closed: the lowest free fd is the same again. */
  int after = dup(0);
  cr_assert_eq(after, before);
  close(after);
  free(buf);
}

Test(wire, oversized_packet_is_skipped_with_its_fds) {
  char big[4096];
  memset(big, 'a', sizeof(big));
  int p[2];
  cr_assert_eq(pipe(p), 0);
  send_with_fds(sv[1], big, sizeof(big), &p[0], 1);
  close(p[0]);
  send_with_fds(sv[1], "ok", 2, NULL, 0);
  unsigned char *buf = NULL;
  size_t cap = 0;
  int fds[4], nfds = 0;
  unsigned extra = 0;
  char msg[256];
  cr_assert_eq(scree__wire_recv(sv[0], &buf, &cap, 1024, fds, 4, &nfds, &extra, msg,
                                sizeof(msg)),
               SCREE_EMSGSIZE);
  cr_assert(strstr(msg, "4096") != NULL, "%s", msg);
  cr_assert_eq(nfds, 0);
  cr_assert_eq(extra, 1u);
  /* The pipe's read end was the only other holder: its write end sees EPIPE
   * once the skipped fd is closed. */
  signal(SIGPIPE, SIG_IGN);
  cr_assert_eq(write(p[1], "z", 1), -1);
  close(p[1]);
  cr_assert_eq(scree__wire_recv(sv[0], &buf, &cap, 1024, fds, 4, &nfds, &extra, msg,
                                sizeof(msg)),
               2, "the next packet is read whole");
  cr_assert_eq(memcmp(buf, "ok", 2), 0);
  free(buf);
}

Test(wire, peer_gone_is_disconnected_without_sigpipe) {
  close(sv[1]);
  sv[1] = -1;
  unsigned char *buf = NULL;
  size_t cap = 0;
  int fds[4], nfds = 0;
  char msg[256];
  cr_assert_eq(scree__wire_recv(sv[0], &buf, &cap, 1024, fds, 4, &nfds, NULL, msg,
                                sizeof(msg)),
               SCREE_EDISCONNECTED);
  cr_assert(strstr(msg, "lost the daemon") != NULL, "%s", msg);
  /* SIGPIPE is at its default (terminate): MSG_NOSIGNAL must keep us alive. */
  signal(SIGPIPE, SIG_DFL);
  cr_assert_eq(scree__wire_send(sv[0], "x", 1, msg, sizeof(msg)), SCREE_EDISCONNECTED);
  free(buf);
}
