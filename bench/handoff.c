/* bench/handoff: how long publishing (put) and attaching (get) take through
 * screed on host memory, beside the floor for any request on this machine:
 * a 64-byte SOCK_SEQPACKET round trip between two processes, measured in the
 * same run.
 *
 * usage: handoff (--socket PATH | --spawn SCREED) [--sizes 1M,1G] [--iters N]
 *                [--put-iters N] [--big-put-iters N] [--raw-iters N]
 * Prints a markdown table. The target: get p50 within 1.5x of the raw round
 * trip, whatever the batch size. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "scree/client.h"

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct stat2 {
  double p50, p99;
} stat2;

static stat2 summarize(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  stat2 s;
  s.p50 = v[n / 2];
  int k = (int)((double)n * 0.99);
  s.p99 = v[k >= n ? n - 1 : k];
  return s;
}

/* The raw round trip runs against an echo child that lives for the whole
 * run, so that its samples can be taken interleaved with the scree ones:
 * on a shared machine the load changes within seconds, and only samples
 * taken side by side compare. */
static int raw_fd = -1;
static pid_t raw_pid = -1;

static void raw_start(void) {
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

/* Stores n round-trip times (us) into t. */
static void raw_sample(double *t, int n) {
  char msg[64];
  memset(msg, 'x', sizeof(msg));
  for (int i = 0; i < n; i++) {
    double t0 = now_us();
    if (send(raw_fd, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg) ||
        recv(raw_fd, msg, sizeof(msg), 0) != (ssize_t)sizeof(msg)) {
      perror("ping-pong");
      exit(1);
    }
    t[i] = now_us() - t0;
  }
}

static void raw_stop(void) {
  close(raw_fd);
  waitpid(raw_pid, NULL, 0);
}

static uint64_t parse_size(const char *s) {
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

static void format_size(uint64_t b, char *out, size_t len) {
  if (b >= (1ull << 30) && b % (1ull << 30) == 0)
    snprintf(out, len, "%" PRIu64 " GiB", b >> 30);
  else if (b >= (1ull << 20) && b % (1ull << 20) == 0)
    snprintf(out, len, "%" PRIu64 " MiB", b >> 20);
  else
    snprintf(out, len, "%" PRIu64 " B", b);
}

static scree_client *must_connect(const char *path) {
  scree_client *c;
  if (scree_client_connect(path, &c) != 0) {
    fprintf(stderr, "handoff: %s\n", scree_client_last_error(c));
    exit(1);
  }
  return c;
}

static void must(scree_client *c, int rc, const char *what) {
  if (rc != 0) {
    fprintf(stderr, "handoff: %s: %s\n", what, scree_client_last_error(c));
    exit(1);
  }
}

typedef struct row {
  uint64_t bytes;
  stat2 raw, put, get, get_release;
  double first_get;
  int put_iters, get_iters;
} row;

static row bench_size(const char *sock, uint64_t bytes, int put_iters, int get_iters) {
  row r;
  memset(&r, 0, sizeof(r));
  r.bytes = bytes;
  r.put_iters = put_iters;
  r.get_iters = get_iters;
  /* One batch of 64 rows of bf16, 1024 wide: the shape of a small activation
   * batch; total_rows grows with the size. */
  scree_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = SCREE_BFLOAT16;
  a.offsets_dtype = SCREE_INT64;
  a.ndim_inner = 1;
  a.inner[0] = 1024;
  a.batch_size = 64;
  a.total_rows = (int64_t)(bytes / 2048);
  int64_t *off = malloc(sizeof(int64_t) * 65);
  for (int i = 0; i <= 64; i++)
    off[i] = a.total_rows * i / 64;
  a.offsets = off;
  a.values = malloc(bytes);
  memset(a.values, 0x3c, bytes);

  /* put: batches that fit the daemon's default arena reuse it, so they are
   * timed on one warm connection. A batch larger than an arena gets an arena
   * of its own, created for it and freed at delete; the client cannot learn
   * that the arena is gone and would keep its mapping (and its pages) until
   * the connection closes, so large puts use a fresh connection each,
   * connected outside the timing. Their time includes the arena's creation
   * and first touch, as it would in use. */
  double *t = malloc(sizeof(double) * (size_t)(get_iters > put_iters ? get_iters : put_iters));
  int fresh = bytes >= (256ull << 20);
  scree_client *pc = fresh ? NULL : must_connect(sock);
  for (int i = -(fresh ? 0 : 3); i < put_iters; i++) {
    if (fresh)
      pc = must_connect(sock);
    double t0 = now_us();
    must(pc, scree_client_put(pc, "bench/put", &a, NULL), "put");
    if (i >= 0)
      t[i] = now_us() - t0;
    must(pc, scree_client_delete(pc, "bench/put", NULL), "delete");
    if (fresh)
      scree_client_close(pc);
  }
  if (!fresh)
    scree_client_close(pc);
  r.put = summarize(t, put_iters);

  scree_client *p = must_connect(sock);
  must(p, scree_client_put(p, "bench/get", &a, NULL), "put");
  scree_client_close(p);
  free(a.values);

  scree_client *c = must_connect(sock);
  scree_array g;
  scree_lease *l;
  double t0 = now_us();
  must(c, scree_client_get(c, "bench/get", &g, &l), "get");
  r.first_get = now_us() - t0;
  must(c, scree_client_release(c, l), "release");
  /* Gets in chunks of 100, each followed by 100 raw round trips. */
  double *raw = malloc(sizeof(double) * (size_t)get_iters);
  for (int i = 0; i < get_iters; i++) {
    t0 = now_us();
    must(c, scree_client_get(c, "bench/get", &g, &l), "get");
    t[i] = now_us() - t0;
    must(c, scree_client_release(c, l), "release");
    if (i % 100 == 99 || i == get_iters - 1) {
      int from = i - i % 100;
      raw_sample(raw + from, i - from + 1);
    }
  }
  r.get = summarize(t, get_iters);
  r.raw = summarize(raw, get_iters);
  free(raw);
  for (int i = 0; i < get_iters; i++) {
    t0 = now_us();
    must(c, scree_client_get(c, "bench/get", &g, &l), "get");
    must(c, scree_client_release(c, l), "release");
    t[i] = now_us() - t0;
  }
  r.get_release = summarize(t, get_iters);
  /* Touch the view so the attach is shown to be usable. */
  volatile unsigned char sink = ((unsigned char *)g.values)[0];
  (void)sink;
  must(c, scree_client_delete(c, "bench/get", NULL), "delete");
  scree_client_close(c);
  free(t);
  free(off);
  return r;
}

static pid_t spawn(const char *screed, char *sock, size_t len) {
  snprintf(sock, len, "/tmp/scree-bench-%ld.sock", (long)getpid());
  unlink(sock);
  pid_t pid = fork();
  if (pid == 0) {
    execl(screed, screed, "--socket", sock, "--memory-limit", "4G", "--log-level", "warn",
          (char *)NULL);
    perror("exec screed");
    _exit(127);
  }
  for (int i = 0; i < 1000; i++) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    if (ok)
      return pid;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "handoff: screed did not start\n");
  kill(pid, SIGTERM);
  exit(1);
}

int main(int argc, char **argv) {
  const char *sock = NULL, *screed = NULL, *sizes = "1M,1G";
  int iters = 2000, put_iters = 100, big_put_iters = 5, raw_iters = 20000;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--socket") == 0 && v) {
      sock = v;
    } else if (strcmp(argv[i], "--spawn") == 0 && v) {
      screed = v;
    } else if (strcmp(argv[i], "--sizes") == 0 && v) {
      sizes = v;
    } else if (strcmp(argv[i], "--iters") == 0 && v) {
      iters = atoi(v);
    } else if (strcmp(argv[i], "--put-iters") == 0 && v) {
      put_iters = atoi(v);
    } else if (strcmp(argv[i], "--big-put-iters") == 0 && v) {
      big_put_iters = atoi(v);
    } else if (strcmp(argv[i], "--raw-iters") == 0 && v) {
      raw_iters = atoi(v);
    } else {
      fprintf(stderr,
              "usage: handoff (--socket PATH | --spawn SCREED) [--sizes 1M,1G] [--iters N]\n"
              "               [--put-iters N] [--big-put-iters N] [--raw-iters N]\n"
              "--big-put-iters applies to sizes of 256 MiB and more.\n");
      return strcmp(argv[i], "--help") == 0 ? 0 : 1;
    }
    i++;
  }
  if ((sock == NULL) == (screed == NULL) || iters < 1 || put_iters < 1 || big_put_iters < 1 ||
      raw_iters < 1) {
    fprintf(stderr, "handoff: give exactly one of --socket and --spawn (see --help)\n");
    return 1;
  }
  char spawned[108];
  pid_t pid = -1;
  if (screed != NULL) {
    pid = spawn(screed, spawned, sizeof(spawned));
    sock = spawned;
  }

  raw_start();
  double *rt = malloc(sizeof(double) * (size_t)raw_iters);
  raw_sample(rt, 1000); /* warm up */
  raw_sample(rt, raw_iters);
  stat2 raw = summarize(rt, raw_iters);
  free(rt);
  row rows[8];
  int n = 0;
  char *list = strdup(sizes);
  for (char *tok = strtok(list, ","); tok != NULL && n < 8; tok = strtok(NULL, ",")) {
    uint64_t b = parse_size(tok);
    if (b < 2048) {
      fprintf(stderr, "handoff: size %s is below 2 KiB\n", tok);
      return 1;
    }
    rows[n] = bench_size(sock, b, b >= (256ull << 20) ? big_put_iters : put_iters, iters);
    n++;
  }
  free(list);
  raw_stop();

  printf("| what | size | iterations | p50 (us) | p99 (us) | p50 / raw RTT p50 |\n");
  printf("| --- | --- | ---: | ---: | ---: | ---: |\n");
  printf("| raw SOCK_SEQPACKET round trip, 64 B, two processes, at start | - | %d | %.1f | %.1f | 1.00 |\n",
         raw_iters, raw.p50, raw.p99);
  for (int i = 0; i < n; i++) {
    char sz[32];
    format_size(rows[i].bytes, sz, sizeof(sz));
    printf("| raw round trip, interleaved with the gets below | %s | %d | %.1f | %.1f | 1.00 |\n",
           sz, rows[i].get_iters, rows[i].raw.p50, rows[i].raw.p99);
    printf("| get (attach, warm) | %s | %d | %.1f | %.1f | **%.2f** |\n", sz,
           rows[i].get_iters, rows[i].get.p50, rows[i].get.p99,
           rows[i].get.p50 / rows[i].raw.p50);
    printf("| get + release | %s | %d | %.1f | %.1f | %.2f |\n", sz, rows[i].get_iters,
           rows[i].get_release.p50, rows[i].get_release.p99,
           rows[i].get_release.p50 / rows[i].raw.p50);
    printf("| first get (imports the arena) | %s | 1 | %.1f | - | %.2f |\n", sz,
           rows[i].first_get, rows[i].first_get / rows[i].raw.p50);
    printf("| put (create + copy + seal) | %s | %d | %.1f | %.1f | %.2f |\n", sz,
           rows[i].put_iters, rows[i].put.p50, rows[i].put.p99, rows[i].put.p50 / rows[i].raw.p50);
  }
  if (pid > 0) {
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      fprintf(stderr, "handoff: screed exited badly (status %d)\n", st);
  }
  return 0;
}
