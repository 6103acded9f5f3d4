#include "raw_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys.h"

/* A C string as a request's bytes field (names travel as bytes; see
 * proto/scree/v1/scree.proto). NULL is empty. */
static inline ProtobufCBinaryData test_bytes(const char *s) {
  ProtobufCBinaryData b = {s != NULL ? strlen(s) : 0, (uint8_t *)s};
  return b;
}

#ifndef SCREED_PATH
#error "SCREED_PATH must name the screed binary"
#endif

uint64_t rc_now_ms(void) { return scree__now_ns() / 1000000u; }

void rc_socket_path(char *sock, size_t len, const char *tag) {
  static int n;
  snprintf(sock, len, "/tmp/scree-it-%d-%d-%s/screed.sock", (int)getpid(), n++, tag);
}

int rc_daemon_spawn(rc_daemon *d, const char *const *extra, int capture_stderr) {
  const char *argv[32];
  int argc = 0;
  argv[argc++] = SCREED_PATH;
  argv[argc++] = "--socket";
  argv[argc++] = d->sock;
  argv[argc++] = "--log-level";
  argv[argc++] = "error";
  for (int i = 0; extra != NULL && extra[i] != NULL && argc < 31; i++)
    argv[argc++] = extra[i];
  argv[argc] = NULL;
  int pfd[2] = {-1, -1};
  if (capture_stderr && pipe2(pfd, O_CLOEXEC) != 0)
    return -1;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    /* The daemon must not outlive a test process that failed an assertion. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    if (capture_stderr) {
      dup2(pfd[1], 2);
    }
    execv(SCREED_PATH, (char *const *)argv);
    _exit(127);
  }
  d->pid = pid;
  d->err_fd = -1;
  if (capture_stderr) {
    close(pfd[1]);
    d->err_fd = pfd[0];
  }
  return 0;
}

int rc_daemon_wait(rc_daemon *d, int timeout_ms) {
  uint64_t end = rc_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    int st;
    pid_t r = waitpid(d->pid, &st, WNOHANG);
    if (r == d->pid)
      return st;
    if (rc_now_ms() >= end)
      return -1;
    usleep(5000);
  }
}

int rc_daemon_start(rc_daemon *d, const char *const *extra) {
  if (rc_daemon_spawn(d, extra, 0) != 0)
    return -1;
  uint64_t end = rc_now_ms() + 20000;
  while (rc_now_ms() < end) {
    int fd = rc_connect(d->sock);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    int st;
    if (waitpid(d->pid, &st, WNOHANG) == d->pid)
      return -1;
    usleep(5000);
  }
  return -1;
}

int rc_daemon_stop(rc_daemon *d) {
  if (d->pid <= 0)
    return -1;
  kill(d->pid, SIGTERM);
  int st = rc_daemon_wait(d, 20000);
  if (st == -1) {
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
  }
  d->pid = 0;
  if (d->err_fd >= 0)
    close(d->err_fd);
  d->err_fd = -1;
  return st;
}

size_t rc_daemon_read_stderr(rc_daemon *d, char *buf, size_t len, int timeout_ms) {
  size_t n = 0;
  uint64_t end = rc_now_ms() + (uint64_t)timeout_ms;
  while (n + 1 < len) {
    int left = (int)(end > rc_now_ms() ? end - rc_now_ms() : 0);
    struct pollfd p = {.fd = d->err_fd, .events = POLLIN};
    if (poll(&p, 1, left) <= 0)
      break;
    ssize_t r = read(d->err_fd, buf + n, len - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  return n;
}

int rc_connect(const char *path) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
  if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int rc_send(int fd, const void *buf, size_t len, int pass_fd) {
  return scree__send_fd(fd, buf, len, pass_fd, 0) == (ssize_t)len ? 0 : -1;
}

int rc_send_request(int fd, const Scree__V1__Request *req) {
  size_t len = scree__v1__request__get_packed_size(req);
  uint8_t *buf = malloc(len ? len : 1);
  if (buf == NULL)
    return -1;
  scree__v1__request__pack(req, buf);
  int rc = rc_send(fd, buf, len, -1);
  free(buf);
  return rc;
}

Scree__V1__Response *rc_recv(int fd, int *fd_out, int timeout_ms) {
  if (fd_out)
    *fd_out = -1;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, timeout_ms) <= 0)
    return NULL;
  static uint8_t buf[1 << 20];
  /* The protocol sends at most one fd; any more are closed. */
  int got = -1, nfds = 0;
  ssize_t n = scree__recv_fds(fd, buf, sizeof(buf), 0, &got, 1, &nfds, NULL, NULL);
  if (n <= 0) {
    if (nfds > 0)
      close(got);
    return NULL;
  }
  if (nfds == 0)
    got = -1;
  if (fd_out)
    *fd_out = got;
  else if (got >= 0)
    close(got);
  return scree__v1__response__unpack(NULL, (size_t)n, buf);
}

Scree__V1__Response *rc_call(int fd, const Scree__V1__Request *req, int *fd_out) {
  if (rc_send_request(fd, req) != 0)
    return NULL;
  return rc_recv(fd, fd_out, 10000);
}

void rc_free(Scree__V1__Response *resp) {
  if (resp)
    scree__v1__response__free_unpacked(resp, NULL);
}

int rc_hello(int fd) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  h.client_name = "raw_client";
  req.id = 1;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  Scree__V1__Response *resp = rc_call(fd, &req, NULL);
  if (resp == NULL)
    return -1;
  int st = resp->status;
  rc_free(resp);
  return st;
}

int rc_open(const char *path) {
  int fd = rc_connect(path);
  if (fd < 0)
    return -1;
  if (rc_hello(fd) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

Scree__V1__Response *rc_create(int fd, const char *name, uint32_t dtype, int64_t batch,
                               int64_t rows, int *fd_out) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Create c = SCREE__V1__CREATE__INIT;
  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  d.dtype = dtype;
  d.batch_size = batch;
  d.total_rows = rows;
  d.offsets_dtype = 5; /* SCREE_INT64 */
  c.name = test_bytes((char *)name);
  c.desc = &d;
  req.id = 11;
  req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
  req.create = &c;
  return rc_call(fd, &req, fd_out);
}

Scree__V1__Response *rc_seal(int fd, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
  s.name = test_bytes((char *)name);
  req.id = 12;
  req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
  req.seal = &s;
  return rc_call(fd, &req, NULL);
}

Scree__V1__Response *rc_get(int fd, const char *name, int *fd_out) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  g.name = test_bytes((char *)name);
  req.id = 13;
  req.body_case = SCREE__V1__REQUEST__BODY_GET;
  req.get = &g;
  return rc_call(fd, &req, fd_out);
}

Scree__V1__Response *rc_release(int fd, uint64_t lease) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Release r = SCREE__V1__RELEASE__INIT;
  r.lease_id = lease;
  req.id = 14;
  req.body_case = SCREE__V1__REQUEST__BODY_RELEASE;
  req.release = &r;
  return rc_call(fd, &req, NULL);
}

Scree__V1__Response *rc_delete(int fd, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Delete d = SCREE__V1__DELETE__INIT;
  d.name = test_bytes((char *)name);
  req.id = 15;
  req.body_case = SCREE__V1__REQUEST__BODY_DELETE;
  req.delete_ = &d;
  return rc_call(fd, &req, NULL);
}

Scree__V1__Response *rc_stats(int fd) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Stats s = SCREE__V1__STATS__INIT;
  req.id = 18;
  req.body_case = SCREE__V1__REQUEST__BODY_STATS;
  req.stats = &s;
  return rc_call(fd, &req, NULL);
}

int rc_daemon_spawn_ex(rc_daemon *d, const char *const *extra, int capture_stderr,
                       void (*setup)(void *arg), void *arg, const char *argv0,
                       const char *const *args) {
  const char *argv[48];
  int argc = 0;
  if (argv0 == NULL) {
    argv[argc++] = SCREED_PATH;
    argv[argc++] = "--socket";
    argv[argc++] = d->sock;
    argv[argc++] = "--log-level";
    argv[argc++] = "error";
    for (int i = 0; extra != NULL && extra[i] != NULL && argc < 47; i++)
      argv[argc++] = extra[i];
  } else {
    for (int i = 0; args[i] != NULL && argc < 47; i++)
      argv[argc++] = args[i];
  }
  argv[argc] = NULL;
  const char *prog = argv0 != NULL ? argv0 : SCREED_PATH;
  int pfd[2] = {-1, -1};
  if (capture_stderr && pipe2(pfd, O_CLOEXEC) != 0)
    return -1;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    if (capture_stderr)
      dup2(pfd[1], 2);
    if (setup != NULL)
      setup(arg);
    execvp(prog, (char *const *)argv);
    _exit(127);
  }
  d->pid = pid;
  d->err_fd = -1;
  if (capture_stderr) {
    close(pfd[1]);
    d->err_fd = pfd[0];
  }
  return 0;
}

int rc_daemon_wait_socket(rc_daemon *d, int timeout_ms) {
  uint64_t end = rc_now_ms() + (uint64_t)timeout_ms;
  while (rc_now_ms() < end) {
    int fd = rc_connect(d->sock);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    int st;
    if (waitpid(d->pid, &st, WNOHANG) == d->pid)
      return -1;
    usleep(5000);
  }
  return -1;
}
