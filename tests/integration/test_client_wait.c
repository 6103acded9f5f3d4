/* Waiting for batches and watching prefixes, through libscreeclient against
 * a real screed on host memory: each test starts its own daemon and checks
 * at teardown that SIGTERM stops it with status 0. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "scree/client.h"

static harness d;

static void start_with(const char *const *extra) {
  cr_assert_eq(harness_start(&d, extra), 0, "screed did not start (log: %s)", d.log);
}

static void start(void) {
  static const char *const extra[] = {"--memory-limit", "512M", "--arena-size", "64M", NULL};
  start_with(extra);
}

static void stop(void) {
  if (d.pid <= 0)
    return;
  int st = harness_stop(&d);
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
}

TestSuite(wait, .init = start, .fini = stop, .timeout = 120);
/* Tests that start their daemon with options of their own. */
TestSuite(wait_opts, .fini = stop, .timeout = 120);

static scree_client *connect_ok(void) {
  scree_client *c;
  int rc = scree_client_connect(d.socket, &c);
  cr_assert_eq(rc, 0, "connect: %s", scree_client_last_error(c));
  return c;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A small batch: 4 rows of 2 float32 in 2 sequences. */
static void put(scree_client *c, const char *name) {
  static float values[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  static int64_t offsets[3] = {0, 1, 4};
  scree_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = SCREE_FLOAT32;
  a.offsets_dtype = SCREE_INT64;
  a.ndim_inner = 1;
  a.inner[0] = 2;
  a.batch_size = 2;
  a.total_rows = 4;
  a.values = values;
  a.offsets = offsets;
  a.device.type = SCREE_DEVICE_CPU;
  int rc = scree_client_put(c, name, &a, NULL);
  cr_assert_eq(rc, 0, "put %s: %s", name, scree_client_last_error(c));
}

static scree_stats stats(scree_client *c) {
  scree_stats s = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &s), 0, "%s", scree_client_last_error(c));
  return s;
}

/* Polls the daemon's stats until waiters == n (or fails after 5 s). */
static void await_waiters(scree_client *c, uint32_t n) {
  for (int i = 0; i < 500; i++) {
    if (stats(c).waiters == n)
      return;
    usleep(10000);
  }
  cr_assert_fail("waiters never became %u (now %u)", n, stats(c).waiters);
}

static int readable(int fd, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, ms) > 0;
}

Test(wait, a_waiter_that_came_before_the_put_gets_the_batch) {
  scree_client *consumer = connect_ok(), *producer = connect_ok();
  cr_assert_eq(scree_client_get_wait_start(consumer, "steps/0", -1), 0);
  await_waiters(producer, 1);
  cr_assert_not(readable(scree_client_fd(consumer), 50), "answered before any seal");
  /* The connection is the wait's until it finishes. */
  scree_stats s = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(consumer, &s), SCREE_EBUSY);
  cr_assert(strstr(scree_client_last_error(consumer), "steps/0"));
  put(producer, "steps/0");
  cr_assert(readable(scree_client_fd(consumer), 5000), "no reply after the seal");
  scree_array a;
  scree_lease *l;
  int rc = scree_client_get_wait_finish(consumer, &a, &l);
  cr_assert_eq(rc, 0, "%s", scree_client_last_error(consumer));
  cr_assert_eq(a.total_rows, 4);
  cr_assert_eq(((const float *)a.values)[7], 8.0f);
  cr_assert_eq(((const int64_t *)a.offsets)[1], 1);
  cr_assert_eq(stats(consumer).leases, 1);
  cr_assert_eq(scree_client_release(consumer, l), 0);
  /* The blocking form, for a batch sealed already and one still to come. */
  cr_assert_eq(scree_client_get_wait(consumer, "steps/0", 0, &a, NULL), 0);
  scree_client_close(consumer);
  scree_client_close(producer);
}

/* A thread that puts a batch after a pause. */
typedef struct later {
  const char *socket;
  const char *name;
  int delay_ms;
} later;

static void *put_later(void *arg) {
  later *x = arg;
  usleep((useconds_t)x->delay_ms * 1000u);
  scree_client *c;
  if (scree_client_connect(x->socket, &c) == 0)
    put(c, x->name);
  scree_client_close(c);
  return NULL;
}

Test(wait, get_wait_blocks_until_the_seal) {
  scree_client *c = connect_ok();
  later x = {d.socket, "blocking", 200};
  pthread_t t;
  pthread_create(&t, NULL, put_later, &x);
  uint64_t t0 = now_ms();
  scree_array a;
  scree_lease *l;
  int rc = scree_client_get_wait(c, "blocking", 10000, &a, &l);
  cr_assert_eq(rc, 0, "%s", scree_client_last_error(c));
  cr_assert_geq(now_ms() - t0, 150);
  pthread_join(t, NULL);
  cr_assert_eq(scree_client_release(c, l), 0);
  scree_client_close(c);
}

Test(wait, a_thousand_waiters_are_woken_by_one_seal) {
  enum { N = 1000 };
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 2 * N + 64) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < N + 64)
    cr_skip_test("RLIMIT_NOFILE %llu is too low for %d connections",
                 (unsigned long long)rl.rlim_cur, N);
  static scree_client *w[N];
  for (int i = 0; i < N; i++) {
    w[i] = connect_ok();
    cr_assert_eq(scree_client_get_wait_start(w[i], "big", i % 2 ? -1 : 60000), 0, "%s",
                 scree_client_last_error(w[i]));
  }
  scree_client *p = connect_ok();
  await_waiters(p, N);
  put(p, "big");
  for (int i = 0; i < N; i++) {
    cr_assert(readable(scree_client_fd(w[i]), 5000), "waiter %d was not woken", i);
    scree_array a;
    cr_assert_eq(scree_client_get_wait_finish(w[i], &a, NULL), 0, "%s",
                 scree_client_last_error(w[i]));
    cr_assert_eq(a.batch_size, 2);
  }
  scree_stats s = stats(p);
  cr_assert_eq(s.waiters, 0);
  cr_assert_eq(s.leases, N);
  for (int i = 0; i < N; i++)
    scree_client_close(w[i]);
  scree_client_close(p);
}

Test(wait, a_wait_expires_with_etimedout_naming_the_batch) {
  scree_client *c = connect_ok();
  uint64_t t0 = now_ms();
  scree_array a;
  int rc = scree_client_get_wait(c, "never", 200, &a, NULL);
  uint64_t took = now_ms() - t0;
  cr_assert_eq(rc, SCREE_ETIMEDOUT);
  cr_assert_geq(took, 195);
  cr_assert_lt(took, 2000);
  const char *m = scree_client_last_error(c);
  cr_assert(strstr(m, "'never'") && strstr(m, "200 ms"), "%s", m);
  /* Zero answers at once, and the handle serves on. */
  cr_assert_eq(scree_client_get_wait(c, "never", 0, &a, NULL), SCREE_ETIMEDOUT);
  cr_assert_eq(scree_client_get_wait(c, "never", -2, &a, NULL), SCREE_EINVAL);
  cr_assert_eq(stats(c).waiters, 0);
  scree_client_close(c);
}

/* A child that waits forever for name, for the parent to kill. */
static pid_t waiting_child(const char *name) {
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    scree_client *c;
    if (scree_client_connect(d.socket, &c) != 0)
      _exit(3);
    scree_array a;
    scree_client_get_wait(c, name, -1, &a, NULL);
    _exit(0);
  }
  return pid;
}

Test(wait, a_waiter_killed_while_waiting_leaves_nothing) {
  scree_client *c = connect_ok();
  put(c, "held");
  scree_array a;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, "held", &a, &l), 0);
  scree_stats base = stats(c);
  pid_t pid = waiting_child("x");
  await_waiters(c, 1);
  cr_assert_eq(stats(c).connections, base.connections + 1);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  for (int i = 0; i < 500 && stats(c).connections != base.connections; i++)
    usleep(10000);
  scree_stats s = stats(c);
  cr_assert_eq(s.waiters, 0);
  cr_assert_eq(s.connections, base.connections);
  cr_assert_eq(s.leases, base.leases);
  cr_assert_eq(s.batches, base.batches);
  cr_assert_eq(s.bytes_used, base.bytes_used);
  /* A seal afterwards answers nobody and breaks nothing. */
  put(c, "x");
  cr_assert_eq(stats(c).leases, base.leases);
  scree_client_release(c, l);
  scree_client_close(c);
}

Test(wait, a_producer_killed_before_its_seal_leaves_the_waiter_waiting) {
  scree_client *c = connect_ok();
  int ready[2];
  cr_assert_eq(pipe(ready), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    scree_client *p;
    if (scree_client_connect(d.socket, &p) != 0)
      _exit(3);
    scree_array desc, out;
    memset(&desc, 0, sizeof(desc));
    desc.dtype = SCREE_FLOAT32;
    desc.offsets_dtype = SCREE_INT64;
    desc.batch_size = 1;
    desc.total_rows = 1;
    if (scree_client_create(p, "half", &desc, &out, NULL) != 0)
      _exit(4);
    (void)!write(ready[1], "r", 1);
    pause();
    _exit(0);
  }
  char b;
  cr_assert_eq(read(ready[0], &b, 1), 1);
  cr_assert_eq(scree_client_get_wait_start(c, "half", 1500), 0);
  scree_client *o = connect_ok();
  await_waiters(o, 1);
  uint64_t t0 = now_ms();
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  cr_assert_not(readable(scree_client_fd(c), 300), "the producer's death answered the waiter");
  cr_assert_eq(stats(o).batches, 0, "the unsealed batch was reclaimed");
  cr_assert(readable(scree_client_fd(c), 5000));
  scree_array a;
  cr_assert_eq(scree_client_get_wait_finish(c, &a, NULL), SCREE_ETIMEDOUT);
  cr_assert_geq(now_ms() - t0, 1000);
  close(ready[0]);
  close(ready[1]);
  scree_client_close(o);
  scree_client_close(c);
}

Test(wait, delete_and_recreate_while_waiting) {
  scree_client *w = connect_ok(), *p = connect_ok();
  scree_array desc, out;
  memset(&desc, 0, sizeof(desc));
  desc.dtype = SCREE_FLOAT32;
  desc.offsets_dtype = SCREE_INT64;
  desc.batch_size = 1;
  desc.total_rows = 1;
  cr_assert_eq(scree_client_create(p, "again", &desc, &out, NULL), 0);
  cr_assert_eq(scree_client_get_wait_start(w, "again", 10000), 0);
  await_waiters(p, 1);
  cr_assert_eq(scree_client_delete(p, "again", NULL), 0);
  put(p, "other");
  cr_assert_eq(scree_client_create(p, "again", &desc, &out, NULL), 0);
  cr_assert_not(readable(scree_client_fd(w), 100));
  ((int64_t *)out.offsets)[0] = 0;
  ((int64_t *)out.offsets)[1] = 1;
  cr_assert_eq(scree_client_seal(p, "again", NULL), 0);
  scree_array a;
  scree_lease *l;
  cr_assert_eq(scree_client_get_wait_finish(w, &a, &l), 0, "%s", scree_client_last_error(w));
  cr_assert_eq(a.total_rows, 1);
  scree_client_release(w, l);
  scree_client_close(w);
  scree_client_close(p);
}

/* ---- interrupting and cancelling ---- */

static volatile sig_atomic_t got_signal;
static void on_usr1(int sig) { got_signal = sig; }
static int stop_on_signal(void *arg) {
  (*(int *)arg)++;
  return got_signal != 0;
}

typedef struct waiter_thread {
  scree_client *c;
  int rc;
} waiter_thread;

static void *wait_forever(void *arg) {
  waiter_thread *t = arg;
  scree_array a;
  scree_lease *l;
  t->rc = scree_client_get_wait(t->c, "interrupted", -1, &a, &l);
  return NULL;
}

Test(wait, an_interrupted_wait_leaves_the_handle_usable) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr1; /* no SA_RESTART: poll() returns EINTR */
  sigaction(SIGUSR1, &sa, NULL);
  scree_client *c = connect_ok();
  put(c, "kept");
  scree_array kept;
  scree_lease *kl;
  cr_assert_eq(scree_client_get(c, "kept", &kept, &kl), 0);
  int calls = 0;
  cr_assert_eq(scree_client_set_interrupt(c, stop_on_signal, &calls), 0);
  waiter_thread t = {c, 1};
  pthread_t th;
  pthread_create(&th, NULL, wait_forever, &t);
  scree_client *o = connect_ok();
  await_waiters(o, 1);
  got_signal = 0;
  pthread_kill(th, SIGUSR1);
  pthread_join(th, NULL);
  cr_assert_eq(t.rc, SCREE_EINTR, "got %d (%s)", t.rc, scree_client_last_error(c));
  cr_assert_geq(calls, 1);
  cr_assert(strstr(scree_client_last_error(c), "'interrupted'"));
  /* The daemon dropped the wait; the handle and its lease are fine. */
  scree_stats s = stats(c);
  cr_assert_eq(s.waiters, 0);
  cr_assert_eq(s.leases, 1);
  cr_assert_eq(((const float *)kept.values)[0], 1.0f);
  cr_assert_eq(scree_client_get_wait(c, "interrupted", 0, &kept, NULL), SCREE_ETIMEDOUT);
  put(o, "interrupted");
  scree_array a;
  cr_assert_eq(scree_client_get_wait(c, "interrupted", 1000, &a, NULL), 0);
  cr_assert_eq(scree_client_release(c, kl), 0);
  scree_client_close(o);
  scree_client_close(c);
}

Test(wait, cancel_abandons_a_started_wait) {
  scree_client *c = connect_ok(), *o = connect_ok();
  cr_assert_eq(scree_client_get_wait_start(c, "c", -1), 0);
  cr_assert_eq(scree_client_get_wait_start(c, "d", -1), SCREE_EBUSY);
  await_waiters(o, 1);
  cr_assert_eq(scree_client_get_wait_cancel(c), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(stats(c).waiters, 0);
  cr_assert_eq(scree_client_get_wait_cancel(c), 0, "nothing to cancel is fine");
  scree_array a;
  cr_assert_eq(scree_client_get_wait_finish(c, &a, NULL), SCREE_EINVAL);
  /* A Get that arrives while the Cancel travels is taken and released. */
  put(o, "c");
  cr_assert_eq(scree_client_get_wait_start(c, "c", -1), 0);
  usleep(50000);
  cr_assert_eq(scree_client_get_wait_cancel(c), 0, "%s", scree_client_last_error(c));
  scree_stats s = stats(c);
  cr_assert_eq(s.leases, 0);
  cr_assert_eq(s.waiters, 0);
  cr_assert_eq(scree_client_get_wait(c, "c", 0, &a, NULL), 0, "%s", scree_client_last_error(c));
  scree_client_close(o);
  scree_client_close(c);
}

/* ---- watches ---- */

static scree_event next_event(scree_watch *w) {
  scree_event ev = SCREE_EVENT_INIT;
  int rc = scree_watch_next(w, 5000, &ev);
  cr_assert_eq(rc, 0, "watch_next: %s", scree_watch_last_error(w));
  return ev;
}

/* A child that puts names prefix0000 .. prefix(n-1). */
static pid_t producer_child(const char *prefix, int n) {
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    scree_client *p;
    if (scree_client_connect(d.socket, &p) != 0)
      _exit(3);
    char name[64];
    for (int i = 0; i < n; i++) {
      snprintf(name, sizeof(name), "%s%04d", prefix, i);
      put(p, name);
    }
    scree_client_close(p);
    _exit(0);
  }
  return pid;
}

Test(wait, watch_replay_then_live_under_a_producer_has_no_gap_or_duplicate) {
  enum { BEFORE = 200, DURING = 600 };
  scree_client *c = connect_ok();
  char name[64];
  for (int i = 0; i < BEFORE; i++) {
    snprintf(name, sizeof(name), "w/a%04d", i);
    put(c, name);
  }
  put(c, "x/outside");
  /* The producer runs while the watch starts and replays; its names sort
   * both before and after the replayed ones. */
  pid_t p1 = producer_child("w/b", DURING);
  pid_t p2 = producer_child("w/0", DURING);
  usleep(2000);
  scree_watch *w;
  cr_assert_eq(scree_client_watch(c, "w/", 0, &w), 0, "%s", scree_client_last_error(c));
  /* The client's own connection still serves requests. */
  cr_assert_eq(stats(c).watchers, 1);
  static unsigned char seen[3][DURING];
  memset(seen, 0, sizeof(seen));
  uint64_t expect_seq = 1;
  for (int n = 0; n < BEFORE + 2 * DURING; n++) {
    scree_event ev = next_event(w);
    cr_assert_eq(ev.seq, expect_seq, "seq %" PRIu64 " after %" PRIu64, ev.seq, expect_seq - 1);
    expect_seq++;
    cr_assert_eq(ev.kind, SCREE_EVENT_SEALED, "%s %s", scree_event_kind_name(ev.kind), ev.name);
    int k, i;
    cr_assert_eq(ev.name_len, strlen(ev.name));
    cr_assert_eq(sscanf(ev.name, "w/%*c%4d", &i), 1, "%s", ev.name);
    k = ev.name[2] == 'a' ? 0 : ev.name[2] == 'b' ? 1 : 2;
    cr_assert_eq(seen[k][i], 0, "duplicate event for %s", ev.name);
    seen[k][i] = 1;
  }
  scree_event ev = SCREE_EVENT_INIT;
  cr_assert_eq(scree_watch_next(w, 200, &ev), SCREE_ETIMEDOUT, "an extra event: %s", ev.name);
  int st;
  waitpid(p1, &st, 0);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  waitpid(p2, &st, 0);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  /* Live deletes. */
  cr_assert_eq(scree_client_delete(c, "w/a0000", NULL), 0);
  ev = next_event(w);
  cr_assert_eq(ev.kind, SCREE_EVENT_DELETED);
  cr_assert_str_eq(ev.name, "w/a0000");
  cr_assert_eq(ev.seq, expect_seq);
  scree_watch_close(w);
  for (int i = 0; i < 100 && stats(c).watchers != 0; i++)
    usleep(10000);
  cr_assert_eq(stats(c).watchers, 0);
  scree_client_close(c);
}

Test(wait, the_watch_fd_turns_readable_for_an_event) {
  scree_client *c = connect_ok();
  scree_watch *w;
  cr_assert_eq(scree_client_watch(c, "", SCREE_WATCH_NO_REPLAY, &w), 0);
  put(c, "before-no-replay");
  cr_assert(readable(scree_watch_fd(w), 5000));
  scree_event ev = SCREE_EVENT_INIT;
  cr_assert_eq(scree_watch_next(w, 0, &ev), 0);
  cr_assert_str_eq(ev.name, "before-no-replay");
  cr_assert_eq(ev.seq, 1);
  cr_assert_eq(scree_watch_next(w, 0, &ev), SCREE_ETIMEDOUT);
  cr_assert_eq(scree_client_watch(c, "", 0x80, &w), SCREE_EINVAL);
  scree_watch_close(w);
  scree_client_close(c);
}

Test(wait_opts, a_slow_watcher_gets_one_overflow_with_bounded_memory_then_resyncs) {
  enum { N = 3000 };
  static const char *const extra[] = {"--watch-queue", "16", NULL};
  start_with(extra);
  scree_client *c = connect_ok();
  scree_watch *w;
  cr_assert_eq(scree_client_watch(c, "s/", SCREE_WATCH_NO_REPLAY, &w), 0);
  pid_t p = producer_child("s/", N);
  int st;
  waitpid(p, &st, 0);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  scree_stats s = stats(c);
  cr_assert_eq(s.watch_overflows, 1);
  /* What was sent or queued comes, in order, then one overflow, then
   * nothing: the socket's buffer and 16 queued events, not 3000. */
  uint64_t n = 0;
  scree_event ev = SCREE_EVENT_INIT;
  for (;;) {
    ev = next_event(w);
    n++;
    cr_assert_eq(ev.seq, n);
    if (ev.kind == SCREE_EVENT_OVERFLOW)
      break;
    cr_assert_eq(ev.kind, SCREE_EVENT_SEALED);
  }
  cr_assert_lt(n, N / 2, "%" PRIu64 " events reached a watcher that did not read", n);
  cr_assert_str_eq(ev.name, "");
  cr_assert_eq(scree_watch_next(w, 200, &ev), SCREE_ETIMEDOUT);
  /* Resync: the replay gives the whole state again, from seq 1. */
  cr_assert_eq(scree_watch_resync(w, 0), 0, "%s", scree_watch_last_error(w));
  for (uint64_t i = 1; i <= N; i++) {
    ev = next_event(w);
    cr_assert_eq(ev.seq, i);
    cr_assert_eq(ev.kind, SCREE_EVENT_SEALED);
  }
  put(c, "s/live");
  ev = next_event(w);
  cr_assert_str_eq(ev.name, "s/live");
  cr_assert_eq(ev.seq, (uint64_t)N + 1);
  cr_assert_eq(stats(c).watch_overflows, 1);
  scree_watch_close(w);
  scree_client_close(c);
}
