/* Helpers shared by the GPU tests: spawning gpu_child and talking to it. */
#ifndef SCREE_TESTS_GPU_UTIL_H
#define SCREE_TESTS_GPU_UTIL_H

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu_child.h"
#include "gpu_main.h"

extern char **environ;

typedef struct gpu_child {
  pid_t pid;
  int sock;
} gpu_child;

static inline void gpu_child_start(gpu_child *ch) {
  struct timeval tv = {120, 0};
  char fdarg[16];
  char *argv[3];
  int sv[2];

  /* The child's end must survive exec; ours must not leak into it. */
  T_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  T_EQ(fcntl(sv[0], F_SETFD, FD_CLOEXEC), 0);
  setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
  argv[0] = (char *)SCREE_GPU_CHILD;
  argv[1] = fdarg;
  argv[2] = NULL;
  T_EQM(posix_spawn(&ch->pid, SCREE_GPU_CHILD, NULL, NULL, argv, environ), 0, "cannot start %s", SCREE_GPU_CHILD);
  close(sv[1]);
  ch->sock = sv[0];
}

/* Sends job (with fd as SCM_RIGHTS when fd >= 0) and returns the reply. */
static inline gpu_reply gpu_child_do(gpu_child *ch, const gpu_job *job, int fd) {
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {(void *)job, sizeof(*job)};
  struct msghdr mh;
  gpu_reply reply;

  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    struct cmsghdr *c;

    memset(&ctl, 0, sizeof(ctl));
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof(ctl.buf);
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  T_EQ(sendmsg(ch->sock, &mh, MSG_NOSIGNAL), (ssize_t)sizeof(*job));
  T_EQM(recv(ch->sock, &reply, sizeof(reply), 0), (ssize_t)sizeof(reply), "gpu_child gave no reply to job %d", job->kind);
  return reply;
}

static inline void gpu_child_finish(gpu_child *ch) {
  gpu_job job;
  int status;

  memset(&job, 0, sizeof(job));
  job.kind = GPU_JOB_EXIT;
  send(ch->sock, &job, sizeof(job), MSG_NOSIGNAL);
  T_EQ(waitpid(ch->pid, &status, 0), ch->pid);
  T_CHECKM(WIFEXITED(status) && WEXITSTATUS(status) == 0, "gpu_child status %d", status);
  close(ch->sock);
}

static inline unsigned char *gpu_pattern_buf(uint64_t len, uint32_t seed) {
  unsigned char *p = malloc(len);
  uint64_t i;

  T_CHECK((p) != NULL);
  for (i = 0; i < len; i++)
    p[i] = gpu_pattern(i, seed);
  return p;
}

#endif /* SCREE_TESTS_GPU_UTIL_H */
