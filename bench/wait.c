/* bench/wait: waiting and watching through screed.
 *
 * 1. Seal-to-wakeup latency: a consumer process waits in
 *    scree_client_get_wait; the producer (this process) creates a batch,
 *    fills it and seals it. Measured: from the producer's Seal reply to the
 *    consumer holding its view (the definition; it can be below
 *    zero, since screed answers the waiters before the sealer), and from
 *    just before the Seal request to the view (one way in, the daemon's
 *    work, one way out). Both beside a raw 64-byte SOCK_SEQPACKET round trip
 *    between two processes, sampled interleaved with them. Target: the
 *    first's p50 within 2x the raw round trip's.
 * 2. N waiters (1,000 by default) on one name, woken by one seal: the time
 *    from the Seal request to the last of them holding its view, all read
 *    by this one thread (scree_client_get_wait_start/_finish over the fds).
 * 3. Watch events: the replay of M sealed batches (events per second from
 *    the Watch to the last event), and live events while a producer puts
 *    (the producer's rate bounds it).
 *
 * usage: wait (--socket PATH | --spawn SCREED [--device N]) [--iters N]
 *             [--waiters N] [--events N] [--rounds N]
 * With --device N (and --spawn) screed runs on that GPU; the benchmark is
 * otherwise the same (it never reads batch memory). Prints a markdown
 * table, with the machine's backend in its title. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "scree/client.h"

/* ---- helpers ---- */

static const char *sock;

/* A batch of one sequence of 64 bfloat16 rows of 64: 8 KiB, small enough
 * that every step is about the protocol. */
static void describe(scree_array *a) { bench_bf16_desc(a, 64, 1, 64); }

static void put_small(scree_client *c, const char *name) {
  static uint16_t values[64 * 64];
  static int64_t offsets[2] = {0, 64};
  scree_array a;
  describe(&a);
  a.values = values;
  a.offsets = offsets;
  a.device.type = SCREE_DEVICE_CPU;
  bench_must(c, scree_client_put(c, name, &a, NULL), name);
}

/* Names round k's batch "prefix/k" into name (64 bytes), then creates and
 * fills it, so that only the Seal is left to time. On a GPU daemon the
 * view is GPU memory, written through put's path instead: the timed step
 * is then a put. */
static void create_filled(scree_client *c, char *name, const char *prefix, int k, int gpu) {
  snprintf(name, 64, "%s/%d", prefix, k);
  if (gpu)
    return;
  scree_array desc, out;
  describe(&desc);
  bench_must(c, scree_client_create(c, name, &desc, &out, NULL), "create");
  memset(out.values, 0, 64 * 64 * 2);
  ((int64_t *)out.offsets)[0] = 0;
  ((int64_t *)out.offsets)[1] = 64;
}

static void seal_filled(scree_client *c, const char *name, int gpu) {
  if (gpu)
    put_small(c, name);
  else
    bench_must(c, scree_client_seal(c, name, NULL), "seal");
}

static void await_waiters(scree_client *c, uint32_t n) {
  for (;;) {
    scree_stats s = SCREE_STATS_INIT;
    bench_must(c, scree_client_stats(c, &s), "stats");
    if (s.waiters >= n)
      return;
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
}

/* ---- 1. seal to wakeup ---- */

typedef struct latency {
  bench_stat2 raw, from_reply, from_request;
  int iters;
} latency;

static latency bench_latency(int iters, int gpu) {
  int tp[2];
  if (pipe(tp) != 0) {
    perror("pipe");
    exit(1);
  }
  pid_t child = fork();
  if (child == 0) {
    close(tp[0]);
    scree_client *c = bench_connect(sock);
    char name[64];
    for (int i = 0; i < iters; i++) {
      snprintf(name, sizeof(name), "bench/lat/%d", i);
      scree_array a;
      scree_lease *l;
      bench_must(c, scree_client_get_wait(c, name, -1, &a, &l), "get_wait");
      double t = bench_now_us();
      bench_must(c, scree_client_release(c, l), "release");
      if (write(tp[1], &t, sizeof(t)) != (ssize_t)sizeof(t))
        _exit(1);
    }
    scree_client_close(c);
    _exit(0);
  }
  close(tp[1]);
  scree_client *p = bench_connect(sock);
  double *raw = malloc(sizeof(double) * (size_t)iters);
  double *rep = malloc(sizeof(double) * (size_t)iters);
  double *req = malloc(sizeof(double) * (size_t)iters);
  char name[64];
  for (int i = 0; i < iters; i++) {
    create_filled(p, name, "bench/lat", i, gpu);
    await_waiters(p, 1);
    raw[i] = bench_raw_one();
    double t0 = bench_now_us();
    seal_filled(p, name, gpu);
    double t1 = bench_now_us();
    double tv;
    if (read(tp[0], &tv, sizeof(tv)) != (ssize_t)sizeof(tv)) {
      fprintf(stderr, "wait: the consumer died\n");
      exit(1);
    }
    req[i] = tv - t0;
    rep[i] = tv - t1;
    bench_must(p, scree_client_delete(p, name, NULL), "delete");
  }
  int st;
  waitpid(child, &st, 0);
  close(tp[0]);
  scree_client_close(p);
  latency r = {bench_summarize(raw, iters), bench_summarize(rep, iters), bench_summarize(req, iters), iters};
  free(raw);
  free(rep);
  free(req);
  return r;
}

/* ---- 2. many waiters, one seal ---- */

typedef struct fanout {
  int waiters, rounds;
  double last_p50, last_max, first_p50;
} fanout;

static fanout bench_fanout(int n, int rounds, int gpu) {
  scree_client **w = calloc((size_t)n, sizeof(*w));
  scree_lease **leases = calloc((size_t)n, sizeof(*leases));
  scree_client *p = bench_connect(sock);
  /* Each waiter maps the producer's arena once first, so that the rounds
   * time the wakeups, not n first imports. */
  put_small(p, "bench/fan/warm");
  for (int i = 0; i < n; i++) {
    w[i] = bench_connect(sock);
    scree_array a;
    bench_must(w[i], scree_client_get_wait(w[i], "bench/fan/warm", 0, &a, NULL), "warm get");
  }
  double *last = malloc(sizeof(double) * (size_t)rounds);
  double *first = malloc(sizeof(double) * (size_t)rounds);
  char name[64];
  for (int r = 0; r < rounds; r++) {
    create_filled(p, name, "bench/fan", r, gpu);
    for (int i = 0; i < n; i++)
      bench_must(w[i], scree_client_get_wait_start(w[i], name, -1), "get_wait_start");
    await_waiters(p, (uint32_t)n);
    double t0 = bench_now_us();
    seal_filled(p, name, gpu);
    first[r] = 0;
    for (int i = 0; i < n; i++) {
      struct pollfd pf = {.fd = scree_client_fd(w[i]), .events = POLLIN};
      while (poll(&pf, 1, -1) < 0 && errno == EINTR) {
      }
      scree_array a;
      bench_must(w[i], scree_client_get_wait_finish(w[i], &a, &leases[i]), "get_wait_finish");
      if (i == 0)
        first[r] = bench_now_us() - t0;
    }
    last[r] = bench_now_us() - t0;
    for (int i = 0; i < n; i++)
      bench_must(w[i], scree_client_release(w[i], leases[i]), "release");
    bench_must(p, scree_client_delete(p, name, NULL), "delete");
  }
  fanout f = {n, rounds, 0, 0, 0};
  f.last_p50 = bench_summarize(last, rounds).p50; /* sorts last */
  f.last_max = last[rounds - 1];
  f.first_p50 = bench_summarize(first, rounds).p50;
  for (int i = 0; i < n; i++)
    scree_client_close(w[i]);
  bench_must(p, scree_client_delete(p, "bench/fan/warm", NULL), "delete");
  scree_client_close(p);
  free(w);
  free(leases);
  free(last);
  free(first);
  return f;
}

/* ---- 3. watch events ---- */

typedef struct events {
  int n;
  double replay_per_s, live_per_s, put_per_s;
  uint64_t overflows;
} events;

static void next_or_die(scree_watch *w, scree_event *ev) {
  int rc = scree_watch_next(w, 30000, ev);
  if (rc != 0) {
    fprintf(stderr, "wait: watch: %s\n", scree_watch_last_error(w));
    exit(1);
  }
}

static events bench_events(int n) {
  events e = {n, 0, 0, 0, 0};
  /* The live producer is forked before this process connects: a process
   * whose connection to a GPU daemon initialised CUDA cannot fork a child
   * that uses CUDA. It waits on `go` until the live watch is in place. */
  int tp[2], go[2];
  if (pipe(tp) != 0 || pipe(go) != 0)
    exit(1);
  char name[64];
  pid_t child = fork();
  if (child == 0) {
    close(tp[0]);
    close(go[1]);
    char b;
    if (read(go[0], &b, 1) != 1)
      _exit(1);
    scree_client *c = bench_connect(sock);
    double s0 = bench_now_us();
    for (int i = 0; i < n; i++) {
      snprintf(name, sizeof(name), "bench/ev/l%07d", i);
      put_small(c, name);
    }
    double rate = n / ((bench_now_us() - s0) / 1e6);
    if (write(tp[1], &rate, sizeof(rate)) != (ssize_t)sizeof(rate))
      _exit(1);
    scree_client_close(c);
    _exit(0);
  }
  close(tp[1]);
  close(go[0]);
  scree_client *p = bench_connect(sock);
  for (int i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "bench/ev/r%07d", i);
    put_small(p, name);
  }
  scree_watch *w;
  double t0 = bench_now_us();
  bench_must(p, scree_client_watch(p, "bench/ev/r", 0, &w), "watch");
  for (int i = 0; i < n; i++) {
    scree_event ev = SCREE_EVENT_INIT;
    next_or_die(w, &ev);
  }
  e.replay_per_s = n / ((bench_now_us() - t0) / 1e6);
  scree_watch_close(w);

  /* Live: the child forked above puts, this process reads. */
  bench_must(p, scree_client_watch(p, "bench/ev/l", SCREE_WATCH_NO_REPLAY, &w), "watch");
  if (write(go[1], "g", 1) != 1)
    exit(1);
  close(go[1]);
  t0 = 0;
  for (int i = 0; i < n; i++) {
    scree_event ev = SCREE_EVENT_INIT;
    next_or_die(w, &ev);
    if (i == 0)
      t0 = bench_now_us();
    if (ev.kind == SCREE_EVENT_OVERFLOW) {
      fprintf(stderr, "wait: the live watcher overflowed\n");
      exit(1);
    }
  }
  e.live_per_s = (n - 1) / ((bench_now_us() - t0) / 1e6);
  if (read(tp[0], &e.put_per_s, sizeof(e.put_per_s)) != (ssize_t)sizeof(e.put_per_s))
    exit(1);
  waitpid(child, NULL, 0);
  close(tp[0]);
  scree_watch_close(w);
  scree_stats s = SCREE_STATS_INIT;
  bench_must(p, scree_client_stats(p, &s), "stats");
  e.overflows = s.watch_overflows;
  for (int i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "bench/ev/r%07d", i);
    bench_must(p, scree_client_delete(p, name, NULL), "delete");
    snprintf(name, sizeof(name), "bench/ev/l%07d", i);
    bench_must(p, scree_client_delete(p, name, NULL), "delete");
  }
  scree_client_close(p);
  return e;
}

/* ---- main ---- */

static pid_t spawn(const char *screed, const char *device, char *path, size_t len) {
  snprintf(path, len, "/tmp/scree-bench-wait-%ld.sock", (long)getpid());
  char *argv[] = {(char *)screed, "--socket", path, "--memory-limit", "4G", "--log-level",
                  "warn", "--device", (char *)device, "--max-connections", "4096", NULL};
  return bench_spawn_screed(argv, path, 3000);
}

/* Runs body in a forked child and copies the plain struct var it fills back
 * into this process through a pipe; exits when the child fails. */
#define IN_CHILD(var, body)                                                  \
  do {                                                                       \
    int p_[2];                                                               \
    if (pipe(p_) != 0)                                                       \
      exit(1);                                                               \
    pid_t c_ = fork();                                                       \
    if (c_ == 0) {                                                           \
      close(p_[0]);                                                          \
      body;                                                                  \
      _exit(write(p_[1], &(var), sizeof(var)) == (ssize_t)sizeof(var) ? 0 : 1); \
    }                                                                        \
    close(p_[1]);                                                            \
    ssize_t n_ = read(p_[0], &(var), sizeof(var));                           \
    close(p_[0]);                                                            \
    int st_;                                                                 \
    waitpid(c_, &st_, 0);                                                    \
    if (n_ != (ssize_t)sizeof(var) || !WIFEXITED(st_) || WEXITSTATUS(st_) != 0) { \
      fprintf(stderr, "wait: a part of the bench failed (%s)\n", #var);      \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

int main(int argc, char **argv) {
  bench_prog = "wait";
  const char *screed = NULL, *device = "cpu";
  int iters = 2000, waiters = 1000, nevents = 20000, rounds = 5;
  /* Every option takes a value; one without is a usage error. */
  int bad = argc % 2 == 0;
  for (int i = 1; i + 1 < argc && !bad; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--socket") == 0) sock = v;
    else if (strcmp(a, "--spawn") == 0) screed = v;
    else if (strcmp(a, "--device") == 0) device = v;
    else if (strcmp(a, "--iters") == 0) iters = atoi(v);
    else if (strcmp(a, "--waiters") == 0) waiters = atoi(v);
    else if (strcmp(a, "--events") == 0) nevents = atoi(v);
    else if (strcmp(a, "--rounds") == 0) rounds = atoi(v);
    else bad = 1;
  }
  if (bad) {
    fprintf(stderr, "usage: wait (--socket PATH | --spawn SCREED [--device N]) [--iters N]\n"
                    "            [--waiters N] [--events N] [--rounds N]\n");
    return 2;
  }
  if ((sock == NULL) == (screed == NULL) || iters < 1 || waiters < 1 || nevents < 2 ||
      rounds < 1) {
    fprintf(stderr, "wait: give exactly one of --socket and --spawn, and positive counts\n");
    return 2;
  }
  /* One fd per waiter, here and in screed (which inherits the limit). */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  char spawned[108];
  pid_t pid = -1;
  if (screed != NULL) {
    pid = spawn(screed, device, spawned, sizeof(spawned));
    sock = spawned;
  }
  /* Each part runs in a process of its own, and this one never connects: a
   * connection to a GPU daemon initialises CUDA, after which a forked child
   * cannot use CUDA (the parts fork their consumers and producers). */
  scree_client_info info = SCREE_CLIENT_INFO_INIT;
  IN_CHILD(info, {
    scree_client *c = bench_connect(sock);
    bench_must(c, scree_client_info_get(c, &info), "info");
    scree_client_close(c);
  });
  int gpu = info.backend == SCREE_BACKEND_CUDA;
  bench_raw_start();

  latency l;
  fanout f;
  events e;
  IN_CHILD(l, l = bench_latency(iters, gpu));
  IN_CHILD(f, f = bench_fanout(waiters, rounds, gpu));
  IN_CHILD(e, e = bench_events(nevents));
  bench_raw_stop();

  printf("## Waiting and watching: screed %s on %s%s%s\n\n", info.daemon_version,
         scree_backend_name(info.backend), gpu ? ", " : "", gpu ? info.device_name : "");
  if (gpu)
    printf("(GPU daemon: the timed step of 1 and 2 is a put of host data, create + copy + "
           "seal, since the view is GPU memory.)\n\n");
  printf("| what | iterations | p50 (us) | p99 (us) | p50 / raw RTT p50 |\n");
  printf("| --- | ---: | ---: | ---: | ---: |\n");
  printf("| raw SOCK_SEQPACKET round trip, 64 B, interleaved | %d | %.1f | %.1f | 1.00 |\n",
         l.iters, l.raw.p50, l.raw.p99);
  printf("| seal reply -> waiting consumer holds its view | %d | %.1f | %.1f | **%.2f** |\n",
         l.iters, l.from_reply.p50, l.from_reply.p99, l.from_reply.p50 / l.raw.p50);
  printf("| %s request sent -> waiting consumer holds its view | %d | %.1f | %.1f | %.2f |\n",
         gpu ? "put" : "seal", l.iters, l.from_request.p50, l.from_request.p99,
         l.from_request.p50 / l.raw.p50);
  printf("\n| %d waiters on one name, one seal (one reader thread) | rounds | p50 (us) | "
         "max (us) |\n",
         f.waiters);
  printf("| --- | ---: | ---: | ---: |\n");
  printf("| seal sent -> first waiter holds its view | %d | %.1f | - |\n", f.rounds,
         f.first_p50);
  printf("| seal sent -> last waiter holds its view | %d | %.1f | %.1f |\n", f.rounds,
         f.last_p50, f.last_max);
  printf("\n| watch events | events | events/s |\n");
  printf("| --- | ---: | ---: |\n");
  printf("| replay of sealed batches | %d | %.0f |\n", e.n, e.replay_per_s);
  printf("| live, while one producer puts (its rate: %.0f puts/s) | %d | %.0f |\n",
         e.put_per_s, e.n, e.live_per_s);
  printf("\noverflows during the run: %" PRIu64 " (expected 0)\n", e.overflows);
  fflush(stdout);

  return pid > 0 ? bench_stop_screed(pid) : 0;
}
