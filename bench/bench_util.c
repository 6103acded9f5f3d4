#include "bench_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

const char *bench_prog = "bench";

double bench_now_us(void) { return (double)scree__now_ns() / 1e3; }

void bench_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

bench_stat2 bench_summarize(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  bench_stat2 s;
  s.p50 = v[n / 2];
  int k = (int)((double)n * 0.99);
  s.p99 = v[k >= n ? n - 1 : k];
  return s;
}

static int raw_fd = -1;
static pid_t raw_pid = -1;

void bench_raw_start(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0) {
    perror("socketpair");
    exit(1);
  }
  raw_pid = fork();
  if (raw_pid == 0) {
    close(sv[0]);
    char buf[64];
    for (;;) {
      ssize_t n = recv(sv[1], buf, sizeof(buf), 0);
      if (n <= 0)
        _exit(0);
      if (send(sv[1], buf, (size_t)n, MSG_NOSIGNAL) != n)
        _exit(1);
    }
  }
  close(sv[1]);
  raw_fd = sv[0];
}

double bench_raw_one(void) {
  char msg[64];
  memset(msg, 'x', sizeof(msg));
  double t0 = bench_now_us();
  if (send(raw_fd, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg) ||
      recv(raw_fd, msg, sizeof(msg), 0) != (ssize_t)sizeof(msg)) {
    perror("ping-pong");
    exit(1);
  }
  return bench_now_us() - t0;
}

void bench_raw_sample(double *t, int n) {
  for (int i = 0; i < n; i++)
    t[i] = bench_raw_one();
}

void bench_raw_stop(void) {
  close(raw_fd);
  waitpid(raw_pid, NULL, 0);
}

uint64_t bench_parse_size(const char *s) {
  char *end;
  uint64_t v = strtoull(s, &end, 10);
  switch (*end) {
  case 'K': case 'k': v <<= 10; break;
  case 'M': case 'm': v <<= 20; break;
  case 'G': case 'g': v <<= 30; break;
  default: break;
  }
  return v;
}

int bench_can_connect(const char *path) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

int bench_await_socket(const char *path, int tries) {
  for (int i = 0; i < tries; i++) {
    if (bench_can_connect(path))
      return 1;
    bench_sleep_ms(10);
  }
  return bench_can_connect(path);
}

pid_t bench_spawn_screed(char *const *argv, const char *sock, int tries) {
  unlink(sock);
  pid_t pid = fork();
  if (pid == 0) {
    execv(argv[0], argv);
    perror("exec screed");
    _exit(127);
  }
  if (bench_await_socket(sock, tries))
    return pid;
  fprintf(stderr, "%s: screed did not start\n", bench_prog);
  kill(pid, SIGTERM);
  exit(1);
}

int bench_stop_screed(pid_t pid) {
  kill(pid, SIGTERM);
  int st;
  waitpid(pid, &st, 0);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    return 0;
  fprintf(stderr, "%s: screed exited with status 0x%x\n", bench_prog, st);
  return 1;
}

scree_client *bench_connect(const char *path) {
  scree_client *c;
  if (scree_client_connect(path, &c) != 0) {
    fprintf(stderr, "%s: %s\n", bench_prog, scree_client_last_error(c));
    exit(1);
  }
  return c;
}

void bench_must(scree_client *c, int rc, const char *what) {
  if (rc != 0) {
    fprintf(stderr, "%s: %s: %s\n", bench_prog, what, scree_client_last_error(c));
    exit(1);
  }
}

void bench_bf16_desc(scree_array *a, int64_t width, int64_t batch_size, int64_t total_rows) {
  *a = (scree_array){.dtype = SCREE_BFLOAT16, .offsets_dtype = SCREE_INT64, .ndim_inner = 1,
                     .batch_size = batch_size, .total_rows = total_rows};
  a->inner[0] = width;
}
