/* Attention in screed, end to end: batches put through libscreeclient, the
 * daemon runs the kernel on host memory, the output is read back with get
 * and compared with a float64 reference. Also the requests it must refuse,
 * deletes and disconnects while a job runs, and the freed-arena notices.
 * Each test starts its own daemon and checks at teardown that SIGTERM stops
 * it with status 0 (under ASan: no leak, no error). */
#include <criterion/criterion.h>
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

static void start_with(const char *arena_size, const char *release_free_after) {
  const char *const extra[] = {"--memory-limit",       "512M",
                               "--arena-size",         arena_size,
                               "--release-free-after", release_free_after,
                               NULL};
  stopped = 0;
  cr_assert_eq(harness_start(&d, extra), 0, "screed did not start (log: %s)", d.log);
}

static void start(void) { start_with("64M", "10"); }
static void start_small_arenas(void) { start_with("1M", "10"); }
static void start_small_arenas_given_back_at_once(void) { start_with("1M", "0"); }

static void stop(void) {
  if (stopped)
    return;
  int st = harness_stop(&d);
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
}

TestSuite(attention, .init = start, .fini = stop, .timeout = 120);
TestSuite(freed_arenas, .init = start_small_arenas_given_back_at_once, .fini = stop,
          .timeout = 60);
TestSuite(kept_arenas, .init = start_small_arenas, .fini = stop, .timeout = 60);

static scree_client *connect_ok(void) {
  scree_client *c;
  int rc = scree_client_connect(d.socket, &c);
  cr_assert_eq(rc, 0, "connect: %s", scree_client_last_error(c));
  return c;
}

static void put_ok(scree_client *c, const char *name, const scree_array *a) {
  int rc = scree_client_put(c, name, a, NULL);
  cr_assert_eq(rc, 0, "put %s: %s", name, scree_client_last_error(c));
}

static const int64_t LENS[4] = {0, 1, 17, 100};

/* Runs attention q,k,v -> out through the daemon and checks every output
 * value against the reference, and the output's shape and offsets. */
static void check_attention(scree_client *c, const scree_array *q, const scree_array *k,
                            const scree_array *v, const scree_attention_params *p,
                            double tol) {
  put_ok(c, "q", q);
  if (k != q)
    put_ok(c, "k", k);
  put_ok(c, "v", v);
  scree_batch_info info;
  uint64_t elapsed = 0;
  int rc = scree_client_attention(c, "q", k == q ? "q" : "k", "v", "out", p, &info,
                                       &elapsed);
  cr_assert_eq(rc, 0, "attention: %s (%s)", scree_client_last_error(c), scree_err_name(rc));
  cr_assert_str_eq(info.name, "out");
  cr_assert_eq(info.state, SCREE_BATCH_SEALED);
  cr_assert_eq(info.desc.dtype, q->dtype);
  cr_assert_eq(info.desc.ndim_inner, 2);
  cr_assert_eq(info.desc.inner[0], q->inner[0]);
  cr_assert_eq(info.desc.inner[1], q->inner[1]);
  cr_assert_eq(info.desc.batch_size, q->batch_size);
  cr_assert_eq(info.desc.total_rows, q->total_rows);
  cr_assert_eq(info.desc.offsets_dtype, q->offsets_dtype);
  cr_assert_eq(info.owner_uid, (uint32_t)getuid());
  cr_assert(elapsed > 0, "elapsed_ns is 0");

  scree_array o;
  scree_lease *l;
  rc = scree_client_get(c, "out", &o, &l);
  cr_assert_eq(rc, 0, "get out: %s", scree_client_last_error(c));
  int64_t maxlen = 0;
  for (int64_t b = 0; b < q->batch_size; b++)
    if (attn_offset(q, b + 1) - attn_offset(q, b) > maxlen)
      maxlen = attn_offset(q, b + 1) - attn_offset(q, b);
  cr_assert_eq(o.max_length, maxlen);
  size_t osz = q->offsets_dtype == SCREE_INT32 ? 4 : 8;
  cr_assert_eq(memcmp(o.offsets, q->offsets, (size_t)(q->batch_size + 1) * osz), 0,
               "the output's offsets are q's");
  size_t n = (size_t)(q->total_rows * q->inner[0] * q->inner[1]);
  double *want = malloc((n ? n : 1) * sizeof(double));
  attn_reference(q, k, v, p->causal, p->has_scale ? p->scale : 0, p->window_left,
                 p->window_right, want);
  double err = attn_max_err(&o, want, n);
  cr_assert(err <= tol, "max |out - reference| = %g > %g", err, tol);
  free(want);
  cr_assert_eq(scree_client_release(c, l), 0);

  /* Inputs are unpinned again; the names stay the caller's. */
  scree_batch_info qi;
  cr_assert_eq(scree_client_stat(c, "q", &qi), 0);
  cr_assert_eq(qi.leases, 0);
}

Test(attention, float32_gqa_4_2_varlen) {
  scree_client *c = connect_ok();
  scree_array q, k, v;
  attn_make(&q, SCREE_FLOAT32, SCREE_INT64, 4, LENS, 4, 16, 1);
  attn_make(&k, SCREE_FLOAT32, SCREE_INT64, 4, LENS, 2, 16, 2);
  attn_make(&v, SCREE_FLOAT32, SCREE_INT64, 4, LENS, 2, 16, 3);
  scree_attention_params p = SCREE_ATTENTION_PARAMS_INIT;
  check_attention(c, &q, &k, &v, &p, 1e-4);
  attn_free(&q);
  attn_free(&k);
  attn_free(&v);
  scree_client_close(c);
}

Test(attention, bfloat16_causal_gqa) {
  scree_client *c = connect_ok();
  scree_array q, k, v;
  attn_make(&q, SCREE_BFLOAT16, SCREE_INT64, 4, LENS, 4, 32, 4);
  attn_make(&k, SCREE_BFLOAT16, SCREE_INT64, 4, LENS, 2, 32, 5);
  attn_make(&v, SCREE_BFLOAT16, SCREE_INT64, 4, LENS, 2, 32, 6);
  scree_attention_params p = SCREE_ATTENTION_PARAMS_INIT;
  p.causal = 1;
  /* bfloat16 keeps 8 bits of mantissa: outputs in [-1, 1] round by up to
   * 2^-9, plus the kernel's float32 accumulation. */
  check_attention(c, &q, &k, &v, &p, 8e-3);
  attn_free(&q);
  attn_free(&k);
  attn_free(&v);
  scree_client_close(c);
}

Test(attention, sliding_window_and_scale) {
  scree_client *c = connect_ok();
  scree_array q, k, v;
  attn_make(&q, SCREE_FLOAT32, SCREE_INT32, 4, LENS, 2, 8, 7);
  attn_make(&k, SCREE_FLOAT32, SCREE_INT32, 4, LENS, 2, 8, 8);
  attn_make(&v, SCREE_FLOAT32, SCREE_INT32, 4, LENS, 2, 8, 9);
  scree_attention_params p = SCREE_ATTENTION_PARAMS_INIT;
  p.window_left = 5;
  p.window_right = 3;
  p.has_scale = 1;
  p.scale = 0.7f;
  check_attention(c, &q, &k, &v, &p, 1e-4);
  attn_free(&q);
  attn_free(&k);
  attn_free(&v);
  scree_client_close(c);
}

Test(attention, causal_with_left_window_self_attention) {
  scree_client *c = connect_ok();
  scree_array q, v;
  attn_make(&q, SCREE_FLOAT32, SCREE_INT64, 4, LENS, 2, 16, 10);
  attn_make(&v, SCREE_FLOAT32, SCREE_INT64, 4, LENS, 2, 16, 11);
  scree_attention_params p = SCREE_ATTENTION_PARAMS_INIT;
  p.causal = 1;
  p.window_left = 9;
  check_attention(c, &q, &q, &v, &p, 1e-4); /* k is q itself */
  attn_free(&q);
  attn_free(&v);
  scree_client_close(c);
}

/* Cross-attention: k and v have offsets of their own (int32), q int64. */
Test(attention, kv_with_their_own_offsets) {
  scree_client *c = connect_ok();
  static const int64_t klens[4] = {5, 0, 30, 7};
  scree_array q, k, v;
  attn_make(&q, SCREE_BFLOAT16, SCREE_INT64, 4, LENS, 4, 16, 12);
  attn_make(&k, SCREE_BFLOAT16, SCREE_INT32, 4, klens, 2, 16, 13);
  attn_make(&v, SCREE_BFLOAT16, SCREE_INT32, 4, klens, 2, 16, 14);
  scree_attention_params p = SCREE_ATTENTION_PARAMS_INIT;
  check_attention(c, &q, &k, &v, &p, 8e-3);
  /* Causal with Lk != Lq aligns the diagonal bottom-right. */
  cr_assert_eq(scree_client_delete(c, "out", NULL), 0);
  cr_assert_eq(scree_client_delete(c, "q", NULL), 0);
  cr_assert_eq(scree_client_delete(c, "k", NULL), 0);
  cr_assert_eq(scree_client_delete(c, "v", NULL), 0);
  p.causal = 1;
  check_attention(c, &q, &k, &v, &p, 8e-3);
  attn_free(&q);
  attn_free(&k);
  attn_free(&v);
  scree_client_close(c);
}

/* ---- refusals ----------------------------------------------------------- */

static void expect_refusal(scree_client *c, const char *q, const char *k, const char *v,
                           const char *out, const scree_attention_params *p, int code,
                           const char *words) {
  int rc = scree_client_attention(c, q, k, v, out, p, NULL, NULL);
  const char *m = scree_client_last_error(c);
  cr_assert_eq(rc, code, "attention(%s,%s,%s->%s) gave %s (%s), expected %s", q, k, v, out,
               scree_err_name(rc), m, scree_err_name(code));
  cr_assert(strstr(m, words) != NULL, "message '%s' does not say '%s'", m, words);
  /* The daemon keeps serving, and left no output behind. */
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &st), 0, "%s", scree_client_last_error(c));
  scree_batch_info bi;
  if (strcmp(out, "o") == 0)
    cr_assert_eq(scree_client_stat(c, out, &bi), SCREE_ENOENT);
}

Test(attention, bad_requests_are_refused_with_a_reason) {
  scree_client *c = connect_ok();
  scree_array q, k, v, k3, kf, q3, k5, kd;
  static const int64_t three[3] = {1, 2, 3};
  static const int64_t other[4] = {0, 2, 16, 100};
  attn_make(&q, SCREE_BFLOAT16, SCREE_INT64, 4, LENS, 12, 16, 1);
  attn_make(&k, SCREE_BFLOAT16, SCREE_INT64, 4, LENS, 4, 16, 2);
  attn_make(&v, SCREE_BFLOAT16, SCREE_INT64, 4, LENS, 4, 16, 3);
  attn_make(&k5, SCREE_BFLOAT16, SCREE_INT64, 4, LENS, 5, 16, 4);
  attn_make(&kf, SCREE_FLOAT32, SCREE_INT64, 4, LENS, 4, 16, 5);
  attn_make(&k3, SCREE_BFLOAT16, SCREE_INT64, 3, three, 4, 16, 6);
  attn_make(&kd, SCREE_BFLOAT16, SCREE_INT64, 4, other, 4, 16, 7);
  attn_make(&q3, SCREE_BFLOAT16, SCREE_INT64, 4, LENS, 12, 8, 8);
  put_ok(c, "q", &q);
  put_ok(c, "k", &k);
  put_ok(c, "v", &v);
  put_ok(c, "k5", &k5);
  put_ok(c, "kf", &kf);
  put_ok(c, "k3", &k3);
  put_ok(c, "kd", &kd);
  put_ok(c, "qd8", &q3);
  put_ok(c, "taken", &q);
  /* A batch with three inner dims. */
  scree_array q4 = q;
  q4.ndim_inner = 3;
  q4.inner[0] = 12;
  q4.inner[1] = 4;
  q4.inner[2] = 4;
  put_ok(c, "q4d", &q4);
  /* An unsealed input: created, never sealed. */
  scree_array w;
  cr_assert_eq(scree_client_create(c, "unsealed", &k, &w, NULL), 0, "%s", scree_client_last_error(c));
  scree_stats before = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &before), 0);

  scree_attention_params p = SCREE_ATTENTION_PARAMS_INIT;
  expect_refusal(c, "nope", "k", "v", "o", &p, SCREE_ENOENT, "q: no batch named 'nope'");
  expect_refusal(c, "q", "k", "nope", "o", &p, SCREE_ENOENT, "v: no batch named 'nope'");
  expect_refusal(c, "q", "unsealed", "v", "o", &p, SCREE_ESTATE, "k: batch 'unsealed' is not sealed");
  expect_refusal(c, "q", "k", "v", "taken", &p, SCREE_EEXIST, "out: batch 'taken' already exists");
  expect_refusal(c, "q", "kf", "v", "o", &p, SCREE_EINVAL, "k is float32");
  expect_refusal(c, "q", "k5", "k5", "o", &p, SCREE_EINVAL,
                 "q has 12 heads, k has 5: 12 is not a multiple of 5");
  expect_refusal(c, "q", "k", "k5", "o", &p, SCREE_EINVAL, "k has 4 heads, v has 5");
  expect_refusal(c, "q", "k3", "k3", "o", &p, SCREE_EINVAL, "q has 4 sequences, k has 3");
  expect_refusal(c, "q", "k", "k3", "o", &p, SCREE_EINVAL, "k and v must share offsets");
  expect_refusal(c, "q", "k", "kd", "o", &p, SCREE_EINVAL,
                 "k's offsets[2]=1, v's offsets[2]=2");
  expect_refusal(c, "qd8", "k", "v", "o", &p, SCREE_EINVAL, "q has head_dim 8, k 16");
  expect_refusal(c, "q4d", "k", "v", "o", &p, SCREE_EINVAL, "q has 3 inner dims (12, 4, 4)");
  expect_refusal(c, "q", "k", "v", "bad\x01name", &p, SCREE_EINVAL, "out: batch name");
  scree_attention_params bad = p;
  bad.causal = 1;
  bad.window_right = 2;
  expect_refusal(c, "q", "k", "v", "o", &bad, SCREE_EINVAL, "window_right is 2 with causal");
  bad = p;
  bad.window_left = -3;
  expect_refusal(c, "q", "k", "v", "o", &bad, SCREE_EINVAL, "window_left is -3");
  bad = p;
  bad.has_scale = 1;
  bad.scale = -1.0f;
  expect_refusal(c, "q", "k", "v", "o", &bad, SCREE_EINVAL, "scale is -1");

  /* Nothing leaked: memory and pins as before, and a good request works. */
  scree_stats after = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &after), 0);
  cr_assert_eq(after.bytes_used, before.bytes_used);
  cr_assert_eq(after.batches, before.batches);
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "q", &bi), 0);
  cr_assert_eq(bi.leases, 0);
  cr_assert_eq(scree_client_attention(c, "q", "k", "v", "o", &p, NULL, NULL), 0, "%s",
               scree_client_last_error(c));

  attn_free(&q);
  attn_free(&k);
  attn_free(&v);
  attn_free(&k5);
  attn_free(&kf);
  attn_free(&k3);
  attn_free(&kd);
  attn_free(&q3);
  scree_client_close(c);
}

/* ---- jobs that take a while --------------------------------------------- */

/* One long sequence: a job of about a second on two cores, long enough
 * that the other connection acts while it runs. */
static void put_big(scree_client *c) {
  static const int64_t len[1] = {1536};
  scree_array q, k, v;
  attn_make(&q, SCREE_FLOAT32, SCREE_INT64, 1, len, 4, 64, 21);
  attn_make(&k, SCREE_FLOAT32, SCREE_INT64, 1, len, 4, 64, 22);
  attn_make(&v, SCREE_FLOAT32, SCREE_INT64, 1, len, 4, 64, 23);
  put_ok(c, "bq", &q);
  put_ok(c, "bk", &k);
  put_ok(c, "bv", &v);
  attn_free(&q);
  attn_free(&k);
  attn_free(&v);
}

typedef struct job_thread {
  pthread_t t;
  int rc;
  char msg[1024];
} job_thread;

static void *run_job(void *arg) {
  job_thread *j = arg;
  scree_client *c;
  j->rc = scree_client_connect(d.socket, &c);
  if (j->rc == 0)
    j->rc = scree_client_attention(c, "bq", "bk", "bv", "bout", NULL, NULL, NULL);
  snprintf(j->msg, sizeof(j->msg), "%s", scree_client_last_error(c));
  scree_client_close(c);
  return NULL;
}

/* Waits until the job has pinned bq (its lease count shows the pin). */
static void wait_pinned(scree_client *c) {
  for (int i = 0; i < 3000; i++) {
    scree_batch_info bi;
    cr_assert_eq(scree_client_stat(c, "bq", &bi), 0, "%s", scree_client_last_error(c));
    if (bi.leases > 0)
      return;
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  cr_assert_fail("the job never pinned its input");
}

Test(attention, delete_of_an_input_during_a_job_is_deferred) {
  scree_client *c = connect_ok();
  put_big(c);
  job_thread j;
  cr_assert_eq(pthread_create(&j.t, NULL, run_job, &j), 0);
  wait_pinned(c);
  int deferred = -1;
  cr_assert_eq(scree_client_delete(c, "bq", &deferred), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(deferred, 1, "the running job's pin defers the delete");
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "bq", &bi), SCREE_ENOENT, "the name goes at once");
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &st), 0);
  cr_assert_eq(st.pending_deletes, 1);
  /* Other requests of other connections are served while the job runs. */
  cr_assert_eq(scree_client_stat(c, "bk", &bi), 0);

  pthread_join(j.t, NULL);
  cr_assert_eq(j.rc, 0, "attention: %s", j.msg);
  cr_assert_eq(scree_client_stats(c, &st), 0);
  cr_assert_eq(st.pending_deletes, 0, "the delete completed with the job");
  cr_assert_eq(scree_client_stat(c, "bout", &bi), 0);
  cr_assert_eq(bi.state, SCREE_BATCH_SEALED);
  scree_client_close(c);
}

Test(attention, client_gone_mid_job_keeps_the_output) {
  scree_client *c = connect_ok();
  put_big(c);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    scree_client *cc;
    if (scree_client_connect(d.socket, &cc) == 0)
      scree_client_attention(cc, "bq", "bk", "bv", "bout", NULL, NULL, NULL);
    _exit(0);
  }
  wait_pinned(c);
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  /* The job finishes; its output is kept, sealed, owned by the client's
   * uid; the inputs are unpinned. */
  scree_batch_info bi;
  int rc = SCREE_ENOENT;
  /* The output's name is held, unsealed, from the request on. */
  for (int i = 0; i < 6000; i++) {
    rc = scree_client_stat(c, "bout", &bi);
    cr_assert_eq(rc, 0, "the output is named while the job runs: %s",
                 scree_client_last_error(c));
    if (bi.state == SCREE_BATCH_SEALED)
      break;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  cr_assert_eq(bi.state, SCREE_BATCH_SEALED);
  cr_assert_eq(bi.owner_uid, (uint32_t)getuid());
  cr_assert_eq(scree_client_stat(c, "bq", &bi), 0);
  cr_assert_eq(bi.leases, 0);
  /* The dead client's connection is gone (the daemon notices its hang-up
   * on its own loop turn). */
  scree_stats s = SCREE_STATS_INIT;
  for (int i = 0; i < 1000; i++) {
    cr_assert_eq(scree_client_stats(c, &s), 0);
    if (s.connections == 1)
      break;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  cr_assert_eq(s.connections, 1);
  scree_client_close(c);
}

Test(attention, sigterm_mid_job_waits_for_it_and_exits_0) {
  scree_client *c = connect_ok();
  put_big(c);
  job_thread j;
  cr_assert_eq(pthread_create(&j.t, NULL, run_job, &j), 0);
  wait_pinned(c);
  scree_client_close(c);
  int st = harness_stop(&d);
  stopped = 1;
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
  pthread_join(j.t, NULL);
  /* The drain keeps connections served until running jobs are done, so the
   * job's result reaches its client before screed exits. */
  cr_assert_eq(j.rc, 0, "attention gave %s: %s", scree_err_name(j.rc), j.msg);
}

Test(attention, a_job_asked_for_while_draining_is_refused) {
  scree_client *c = connect_ok();
  put_big(c);
  job_thread j;
  cr_assert_eq(pthread_create(&j.t, NULL, run_job, &j), 0);
  wait_pinned(c);
  cr_assert_eq(kill(d.pid, SIGTERM), 0);
  /* The drain has begun once the socket's name is gone. */
  for (int i = 0; i < 3000 && harness_can_connect(d.socket); i++) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  cr_assert(!harness_can_connect(d.socket), "screed still accepts after SIGTERM");
  int rc = scree_client_attention(c, "bq", "bk", "bv", "late", NULL, NULL, NULL);
  cr_assert_eq(rc, SCREE_EAGAIN, "got %s: %s", scree_err_name(rc), scree_client_last_error(c));
  cr_assert(strstr(scree_client_last_error(c), "shutting down") != NULL, "%s",
            scree_client_last_error(c));
  scree_client_close(c);
  /* No second SIGTERM (it would end the drain at once): once the job's
   * reply is out, screed exits by itself. */
  pthread_join(j.t, NULL);
  cr_assert_eq(j.rc, 0, "the running job still finished: %s", j.msg);
  int st = harness_wait(&d);
  stopped = 1;
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
}

/* ---- freed-arena notices ------------------------------------------------ */

/* With 1 MiB arenas, a batch of 2 MiB gets an arena of its own. Deleted, it
 * stays (same id, same mappings) for its owner's next batch that fits,
 * until screed has had it empty for --release-free-after: the freed_arenas
 * suite runs with 0, so the next purge (one a second) gives it back. */
static void make_big(scree_array *a) {
  static const int64_t len[2] = {256, 256};
  attn_make(a, SCREE_FLOAT32, SCREE_INT64, 2, len, 8, 128, 31);
}

static int mapped(const void *p) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi)
      found = 1;
  }
  if (f != NULL)
    fclose(f);
  return found;
}

/* Sends c a request every 20 ms until it has unmapped `unmaps` arenas in
 * all (the notices come with replies), for at most 5 s. */
static void wait_unmaps(scree_client *c, uint64_t unmaps, scree_client_info *info) {
  for (int i = 0; i < 250; i++) {
    scree_stats st = SCREE_STATS_INIT;
    cr_assert_eq(scree_client_stats(c, &st), 0, "%s", scree_client_last_error(c));
    cr_assert_eq(scree_client_info_get(c, info), 0);
    if (info->arena_unmaps >= unmaps)
      return;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  cr_assert_fail("%llu arenas unmapped after 5 s, expected %llu",
                 (unsigned long long)info->arena_unmaps, (unsigned long long)unmaps);
}

Test(freed_arenas, a_reader_unmaps_an_arena_freed_by_another_connection) {
  scree_client *a = connect_ok();
  scree_client *b = connect_ok();
  scree_array big;
  make_big(&big);
  put_ok(b, "big", &big);

  scree_array view;
  scree_lease *l;
  cr_assert_eq(scree_client_get(a, "big", &view, &l), 0, "%s", scree_client_last_error(a));
  scree_client_info ia = SCREE_CLIENT_INFO_INIT;
  cr_assert_eq(scree_client_info_get(a, &ia), 0);
  cr_assert_eq(ia.arenas_mapped, 1);
  cr_assert_eq(ia.arena_unmaps, 0);
  void *base = view.values;
  cr_assert(mapped(base));
  cr_assert_eq(scree_client_release(a, l), 0);

  int deferred = -1;
  cr_assert_eq(scree_client_delete(b, "big", &deferred), 0);
  cr_assert_eq(deferred, 0);
  /* screed gives the arena back at its next purge; a hears of it with its
   * next reply after that, whatever the request. */
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(a, "big", &bi), SCREE_ENOENT);
  wait_unmaps(a, 1, &ia);
  cr_assert_eq(ia.arenas_mapped, 0, "the freed arena is unmapped");
  cr_assert_eq(ia.arena_unmaps, 1);
  cr_assert(!mapped(base), "the mapping is gone from /proc/self/maps");

  /* b, which created the batch, also dropped its mapping. */
  scree_client_info ib = SCREE_CLIENT_INFO_INIT;
  wait_unmaps(b, 1, &ib);
  cr_assert_eq(ib.arena_unmaps, 1);
  cr_assert_eq(ib.arenas_mapped, 0);

  /* A new batch of the same size comes in a new arena, imported anew. */
  put_ok(b, "big2", &big);
  cr_assert_eq(scree_client_get(a, "big2", &view, &l), 0, "%s", scree_client_last_error(a));
  cr_assert_eq(((const float *)view.values)[5], ((const float *)big.values)[5]);
  cr_assert_eq(scree_client_info_get(a, &ia), 0);
  cr_assert_eq(ia.arenas_mapped, 1);
  cr_assert_eq(ia.arena_imports, 2);
  cr_assert_eq(scree_client_release(a, l), 0);
  attn_free(&big);
  scree_client_close(a);
  scree_client_close(b);
}

Test(freed_arenas, leased_arenas_are_not_announced) {
  scree_client *a = connect_ok();
  scree_client *b = connect_ok();
  scree_array big;
  make_big(&big);
  put_ok(b, "big", &big);
  scree_array view;
  scree_lease *l;
  cr_assert_eq(scree_client_get(a, "big", &view, &l), 0);
  int deferred = -1;
  cr_assert_eq(scree_client_delete(b, "big", &deferred), 0);
  cr_assert_eq(deferred, 1);
  /* Two purges pass: a's lease keeps the batch, so its arena is not empty. */
  struct timespec ts = {2, 200 * 1000 * 1000};
  nanosleep(&ts, NULL);
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(a, &st), 0);
  scree_client_info ia = SCREE_CLIENT_INFO_INIT;
  cr_assert_eq(scree_client_info_get(a, &ia), 0);
  cr_assert_eq(ia.arenas_mapped, 1, "a's lease keeps the arena");
  cr_assert_eq(((const float *)view.values)[7], ((const float *)big.values)[7]);
  cr_assert_eq(scree_client_release(a, l), 0);
  wait_unmaps(a, 1, &ia);
  cr_assert_eq(ia.arenas_mapped, 0, "freed after a's release, announced in a reply");
  attn_free(&big);
  scree_client_close(a);
  scree_client_close(b);
}

/* With the default delay, a producer that deletes its big batch and puts
 * the next of the same size gets the same arena back: no new arena, no new
 * import in its readers, and their mapping stays where it was. */
Test(kept_arenas, the_next_batch_of_a_size_reuses_the_emptied_arena) {
  scree_client *a = connect_ok();
  scree_client *b = connect_ok();
  scree_array big;
  make_big(&big);
  put_ok(b, "step-0", &big);
  scree_array view;
  scree_lease *l;
  cr_assert_eq(scree_client_get(a, "step-0", &view, &l), 0, "%s", scree_client_last_error(a));
  const void *base = view.values;
  cr_assert_eq(scree_client_release(a, l), 0);
  scree_batch_info i0, i1;
  cr_assert_eq(scree_client_stat(a, "step-0", &i0), 0);
  for (int step = 1; step <= 3; step++) {
    char prev[16], name[16];
    snprintf(prev, sizeof(prev), "step-%d", step - 1);
    snprintf(name, sizeof(name), "step-%d", step);
    cr_assert_eq(scree_client_delete(b, prev, NULL), 0);
    ((float *)big.values)[3] = (float)step;
    put_ok(b, name, &big);
    cr_assert_eq(scree_client_stat(a, name, &i1), 0);
    cr_assert_eq(i1.arena_id, i0.arena_id, "step %d: a new arena", step);
    cr_assert_eq(scree_client_get(a, name, &view, &l), 0, "%s", scree_client_last_error(a));
    cr_assert_eq(view.values, base, "step %d: the view moved", step);
    cr_assert_eq(((const float *)view.values)[3], (float)step);
    cr_assert_eq(scree_client_release(a, l), 0);
  }
  scree_client_info ia = SCREE_CLIENT_INFO_INIT, ib = SCREE_CLIENT_INFO_INIT;
  cr_assert_eq(scree_client_info_get(a, &ia), 0);
  cr_assert_eq(scree_client_info_get(b, &ib), 0);
  cr_assert_eq(ia.arena_imports, 1, "the reader imported the arena once");
  cr_assert_eq(ib.arena_imports, 1, "the producer imported the arena once");
  cr_assert_eq(ia.arena_unmaps, 0);
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(a, &st), 0);
  cr_assert_eq(st.arenas, 1, "one arena for every step");
  attn_free(&big);
  scree_client_close(a);
  scree_client_close(b);
}
