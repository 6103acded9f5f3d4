/* The attention worker's fault isolation on host memory: a worker killed
 * mid-job, one that crashes, one that hangs past --attention-timeout, and a
 * runaway job at SIGTERM with --drain-timeout 2s. Each time the request is
 * answered "attention worker died: ...", the output is not created, every
 * stored batch reads back byte for byte, and the next job (a new worker)
 * matches the float64 reference. Faults come from the test builds' switch
 * SCREE_TEST_WORKER_FAULT (worker.c); the tests that need it skip visibly
 * in a build without SCREE_TEST_HOOKS. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_ref.h"
#include "harness.h"
#include "scree/client.h"

static harness d;
static int stopped;

static void start_args(const char *const *more) {
  const char *extra[16] = {"--memory-limit", "512M", "--arena-size", "64M"};
  int n = 4;
  for (int i = 0; more != NULL && more[i] != NULL && n < 15; i++)
    extra[n++] = more[i];
  extra[n] = NULL;
  stopped = 0;
  cr_assert_eq(harness_start(&d, extra), 0, "screed did not start (log: %s)", d.log);
}

static void stop(void) {
  unsetenv("SCREE_TEST_WORKER_FAULT");
  if (stopped)
    return;
  int st = harness_stop(&d);
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
}

static void start_plain(void) { start_args(NULL); }

static void start_faulty(void) {
#ifndef SCREE_TEST_HOOKS
  cr_skip_test("screed was built without SCREE_TEST_HOOKS: no fault switch");
#endif
  /* The worker inherits screed's environment: only the jobs into these
   * outputs fault. */
  setenv("SCREE_TEST_WORKER_FAULT", "segv:crash,hang:stuck", 1);
  start_args((const char *const[]){"--attention-timeout", "1s", NULL});
}

static void start_draining(void) {
  start_args((const char *const[]){"--drain-timeout", "2s", NULL});
}

TestSuite(worker, .init = start_plain, .fini = stop, .timeout = 120);
/* A suite of its own: a test's .init runs after its suite's, so a faulty
 * daemon started by a test of `worker` left that suite's plain one running
 * (two screeds per run outlived the tests). */
TestSuite(worker_fault, .init = start_faulty, .fini = stop, .timeout = 120);
TestSuite(worker_drain, .init = start_draining, .fini = stop, .timeout = 120);

static scree_client *connect_ok(void) {
  scree_client *c;
  int rc = scree_client_connect(d.socket, &c);
  cr_assert_eq(rc, 0, "connect: %s", scree_client_last_error(c));
  return c;
}

/* ---- the stored batches ---------------------------------------------- */

#define NIN 3
static scree_array in[NIN];
static const char *const in_names[NIN] = {"q", "k", "v"};

/* q, k, v with one sequence of len rows (4 heads of 64): a job of about
 * len^2 * 2 KFLOP. */
static void put_inputs(scree_client *c, int64_t len) {
  const int64_t lens[2] = {len, 17};
  for (int i = 0; i < NIN; i++) {
    attn_make(&in[i], SCREE_FLOAT32, SCREE_INT64, 2, lens, 4, 64, 40 + (uint64_t)i);
    int rc = scree_client_put(c, in_names[i], &in[i], NULL);
    cr_assert_eq(rc, 0, "put %s: %s", in_names[i], scree_client_last_error(c));
  }
}

static void free_inputs(void) {
  for (int i = 0; i < NIN; i++)
    attn_free(&in[i]);
}

/* Every input reads back exactly as it was put, and is no longer pinned. */
static void check_inputs_intact(scree_client *c) {
  for (int i = 0; i < NIN; i++) {
    scree_array a;
    scree_lease *l;
    int rc = scree_client_get(c, in_names[i], &a, &l);
    cr_assert_eq(rc, 0, "get %s: %s", in_names[i], scree_client_last_error(c));
    size_t vb = (size_t)(in[i].total_rows * in[i].inner[0] * in[i].inner[1]) * sizeof(float);
    cr_assert_eq(memcmp(a.values, in[i].values, vb), 0, "%s's values changed", in_names[i]);
    cr_assert_eq(memcmp(a.offsets, in[i].offsets, (size_t)(in[i].batch_size + 1) * 8), 0,
                 "%s's offsets changed", in_names[i]);
    cr_assert_eq(scree_client_release(c, l), 0);
    scree_batch_info bi;
    cr_assert_eq(scree_client_stat(c, in_names[i], &bi), 0);
    cr_assert_eq(bi.leases, 0, "%s is still pinned", in_names[i]);
  }
}

/* A small job into out that must match the reference: the worker after a
 * death is a working one. */
static void check_next_job_works(scree_client *c, const char *out) {
  static const int64_t lens[3] = {5, 0, 33};
  scree_array q, k, v;
  attn_make(&q, SCREE_FLOAT32, SCREE_INT64, 3, lens, 4, 16, 7);
  attn_make(&k, SCREE_FLOAT32, SCREE_INT64, 3, lens, 2, 16, 8);
  attn_make(&v, SCREE_FLOAT32, SCREE_INT64, 3, lens, 2, 16, 9);
  char nq[64], nk[64], nv[64];
  snprintf(nq, sizeof(nq), "%s.q", out);
  snprintf(nk, sizeof(nk), "%s.k", out);
  snprintf(nv, sizeof(nv), "%s.v", out);
  cr_assert_eq(scree_client_put(c, nq, &q, NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_put(c, nk, &k, NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_put(c, nv, &v, NULL), 0, "%s", scree_client_last_error(c));
  int rc = scree_client_attention(c, nq, nk, nv, out, NULL, NULL, NULL);
  cr_assert_eq(rc, 0, "the next attention: %s (%s)", scree_client_last_error(c),
               scree_err_name(rc));
  scree_array o;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, out, &o, &l), 0, "%s", scree_client_last_error(c));
  size_t n = (size_t)(q.total_rows * q.inner[0] * q.inner[1]);
  double *want = malloc(n * sizeof(double));
  attn_reference(&q, &k, &v, 0, 0, -1, -1, want);
  double err = attn_max_err(&o, want, n);
  cr_assert(err <= 1e-4, "max |out - reference| = %g", err);
  free(want);
  scree_client_release(c, l);
  attn_free(&q);
  attn_free(&k);
  attn_free(&v);
}

/* ---- the worker process ---------------------------------------------- */

/* The pid of screed's attention worker, or -1: the child of screed whose
 * command line says --attention-worker. */
static pid_t find_worker(pid_t screed) {
  DIR *dir = opendir("/proc");
  pid_t found = -1;
  struct dirent *de;
  while (dir != NULL && found < 0 && (de = readdir(dir)) != NULL) {
    char *end;
    long pid = strtol(de->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
      continue;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* pid (comm) state ppid ...: comm may hold spaces, so read after ')'. */
    char *rp = strrchr(buf, ')');
    long ppid = -1;
    if (rp == NULL || sscanf(rp + 1, " %*c %ld", &ppid) != 1 || ppid != (long)screed)
      continue;
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    f = fopen(path, "r");
    if (f == NULL)
      continue;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
      if (buf[i] == '\0')
        buf[i] = ' ';
    buf[n] = '\0';
    if (strstr(buf, "--attention-worker") != NULL)
      found = (pid_t)pid;
  }
  if (dir != NULL)
    closedir(dir);
  return found;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for screed's exit without touching its socket file (harness_wait
 * removes it); returns the exit status or 128 + signal. */
static int wait_exit(void) {
  int st;
  pid_t r;
  do
    r = waitpid(d.pid, &st, 0);
  while (r < 0 && errno == EINTR);
  d.pid = -1;
  stopped = 1;
  if (r < 0)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits until a job has pinned q. */
static void wait_pinned(scree_client *c) {
  for (int i = 0; i < 3000; i++) {
    scree_batch_info bi;
    cr_assert_eq(scree_client_stat(c, "q", &bi), 0, "%s", scree_client_last_error(c));
    if (bi.leases > 0)
      return;
    sleep_ms(5);
  }
  cr_assert_fail("the job never pinned its input");
}

typedef struct job_thread {
  pthread_t t;
  const char *out;
  int rc;
  char msg[1024];
  double secs;
} job_thread;

static void *run_job(void *arg) {
  job_thread *j = arg;
  scree_client *c;
  double t0 = now_s();
  j->rc = scree_client_connect(d.socket, &c);
  if (j->rc == 0)
    j->rc = scree_client_attention(c, "q", "k", "v", j->out, NULL, NULL, NULL);
  snprintf(j->msg, sizeof(j->msg), "%s", scree_client_last_error(c));
  j->secs = now_s() - t0;
  scree_client_close(c);
  return NULL;
}

static void start_job(job_thread *j, const char *out) {
  memset(j, 0, sizeof(*j));
  j->out = out;
  cr_assert_eq(pthread_create(&j->t, NULL, run_job, j), 0);
}

static void expect_died(const job_thread *j, int code, const char *what) {
  cr_assert_eq(j->rc, code, "attention gave %s, not %s: %s", scree_err_name(j->rc),
               scree_err_name(code), j->msg);
  cr_assert(strstr(j->msg, "attention worker died: ") != NULL, "no 'worker died' in: %s",
            j->msg);
  cr_assert(what == NULL || strstr(j->msg, what) != NULL, "no '%s' in: %s", what, j->msg);
}

static void expect_no_output(scree_client *c, const char *out) {
  scree_batch_info bi;
  int rc = scree_client_stat(c, out, &bi);
  cr_assert_eq(rc, SCREE_ENOENT, "the failed job's output '%s' exists (%s)", out,
               scree_err_name(rc));
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &st), 0);
  cr_assert_eq(st.batches, 3, "only q, k and v are stored (%" PRIu32 " batches)", st.batches);
}

/* ---- tests --------------------------------------------------------------- */

Test(worker, killed_mid_job_fails_only_its_job) {
  scree_client *c = connect_ok();
  /* About 10 s of work on two cores: it is killed long before the end. */
  put_inputs(c, 6144);
  job_thread j;
  start_job(&j, "out");
  wait_pinned(c);
  pid_t w = find_worker(d.pid);
  cr_assert(w > 0, "no attention worker under screed %d", (int)d.pid);
  /* The output's name is held while the job runs. */
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "out", &bi), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(bi.state, SCREE_BATCH_CREATED);
  cr_assert_eq(kill(w, SIGKILL), 0);
  pthread_join(j.t, NULL);
  expect_died(&j, SCREE_EIO, "killed by signal 9");
  expect_no_output(c, "out");
  check_inputs_intact(c);
  check_next_job_works(c, "after");
  pid_t w2 = find_worker(d.pid);
  cr_assert(w2 > 0 && w2 != w, "a new worker runs (%d, was %d)", (int)w2, (int)w);
  free_inputs();
  scree_client_close(c);
}

Test(worker, output_name_is_reserved_during_the_job) {
  scree_client *c = connect_ok();
  put_inputs(c, 3072);
  job_thread j;
  start_job(&j, "held");
  wait_pinned(c);
  /* A Create of the output's name gets EEXIST, not the job; nor can the
   * name be deleted under it. */
  scree_array small;
  static const int64_t one[1] = {1};
  attn_make(&small, SCREE_FLOAT32, SCREE_INT64, 1, one, 1, 1, 1);
  int rc = scree_client_put(c, "held", &small, NULL);
  cr_assert_eq(rc, SCREE_EEXIST, "put of the held name gave %s: %s", scree_err_name(rc),
               scree_client_last_error(c));
  int deferred;
  rc = scree_client_delete(c, "held", &deferred);
  cr_assert_eq(rc, SCREE_EBUSY, "delete of the held name gave %s: %s", scree_err_name(rc),
               scree_client_last_error(c));
  attn_free(&small);
  pthread_join(j.t, NULL);
  cr_assert_eq(j.rc, 0, "the job: %s", j.msg);
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "held", &bi), 0);
  cr_assert_eq(bi.state, SCREE_BATCH_SEALED);
  check_inputs_intact(c);
  free_inputs();
  scree_client_close(c);
}

Test(worker_fault, crash_in_the_worker_fails_only_its_job) {
  scree_client *c = connect_ok();
  put_inputs(c, 64);
  job_thread j;
  start_job(&j, "crash");
  pthread_join(j.t, NULL);
  /* A plain build dies of SIGSEGV; under ASan the worker reports the
   * fault and exits 1. Either way the job says the worker died. */
  expect_died(&j, SCREE_EIO, NULL);
  expect_no_output(c, "crash");
  check_inputs_intact(c);
  check_next_job_works(c, "after");
  free_inputs();
  scree_client_close(c);
}

Test(worker_fault, a_hung_worker_is_killed_at_the_job_timeout) {
  scree_client *c = connect_ok();
  put_inputs(c, 64);
  job_thread j;
  start_job(&j, "stuck");
  pthread_join(j.t, NULL);
  expect_died(&j, SCREE_ETIMEDOUT, "ran past --attention-timeout (1000 ms)");
  cr_assert(j.secs >= 0.9 && j.secs < 5.0, "answered after %.2f s", j.secs);
  expect_no_output(c, "stuck");
  check_inputs_intact(c);
  check_next_job_works(c, "after");
  free_inputs();
  scree_client_close(c);
}

/* A runaway job (minutes of work) at SIGTERM: screed kills its worker when
 * the 2 s drain timeout passes, answers the job, and exits 0. */
Test(worker_drain, sigterm_with_a_runaway_job_exits_at_the_drain_timeout) {
  scree_client *c = connect_ok();
  put_inputs(c, 16384);
  job_thread j;
  start_job(&j, "runaway");
  wait_pinned(c);
  pid_t w = find_worker(d.pid);
  cr_assert(w > 0);
  scree_client_close(c);
  double t0 = now_s();
  cr_assert_eq(kill(d.pid, SIGTERM), 0);
  int st = wait_exit();
  double secs = now_s() - t0;
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
  cr_assert(access(d.socket, F_OK) != 0, "the socket file is still there");
  fprintf(stderr, "worker_drain: SIGTERM to exit with a runaway job: %.2f s "
                  "(--drain-timeout 2s)\n", secs);
  cr_assert(secs >= 1.9 && secs < 4.0, "SIGTERM to exit took %.2f s", secs);
  cr_assert(kill(w, 0) != 0, "the worker %d outlived screed", (int)w);
  pthread_join(j.t, NULL);
  expect_died(&j, SCREE_EAGAIN, "drain timeout (2000 ms) passed");
  free_inputs();
}

/* A second SIGTERM during the drain stops the wait at once, and still
 * cleans up: the worker killed, the job answered, the socket file gone,
 * exit status 0. */
Test(worker_drain, a_second_sigterm_stops_now_and_cleans_up) {
  scree_client *c = connect_ok();
  put_inputs(c, 16384);
  job_thread j;
  start_job(&j, "runaway");
  wait_pinned(c);
  pid_t w = find_worker(d.pid);
  cr_assert(w > 0);
  scree_client_close(c);
  double t0 = now_s();
  cr_assert_eq(kill(d.pid, SIGTERM), 0);
  sleep_ms(300);
  cr_assert_eq(kill(d.pid, SIGTERM), 0);
  int st = wait_exit();
  double secs = now_s() - t0;
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
  cr_assert(secs < 1.9, "the second SIGTERM did not stop the wait (%.2f s)", secs);
  cr_assert(access(d.socket, F_OK) != 0, "the socket file is still there");
  cr_assert(kill(w, 0) != 0, "the worker %d outlived screed", (int)w);
  pthread_join(j.t, NULL);
  expect_died(&j, SCREE_EAGAIN, "second signal");
  free_inputs();
}
