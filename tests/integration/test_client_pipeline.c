/* Small puts in fewer round trips, through libscreeclient against a real
 * screed on host memory: offsets inline with Seal (and the fallback when
 * they do not fit the packet limit), and the pipelined seal (put's
 * async_seal, seal's async): its success, its failure reported by
 * scree_client_flush, by the next call and by release, and a handle closed
 * while a seal is pending. */
#include <criterion/criterion.h>
#include <libgen.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raw_client.h"
#include "scree/client.h"
#include "scree/error.h"

static rc_daemon d;

static void fini(void) {
  if (d.pid > 0)
    rc_daemon_stop(&d);
  char copy[108], lock[128];
  snprintf(copy, sizeof(copy), "%s", d.sock);
  snprintf(lock, sizeof(lock), "%s.lock", d.sock);
  unlink(d.sock);
  unlink(lock);
  rmdir(dirname(copy));
}

TestSuite(pipeline, .fini = fini, .timeout = 60);

static void start(const char *tag, const char *const *extra) {
  memset(&d, 0, sizeof(d));
  d.err_fd = -1;
  rc_socket_path(d.sock, sizeof(d.sock), tag);
  cr_assert_eq(rc_daemon_start(&d, extra), 0, "screed did not start on %s", d.sock);
}

static scree_client *connect_ok(void) {
  scree_client *c = NULL;
  cr_assert_eq(scree_client_connect(d.sock, &c), 0, "%s", scree_client_last_error(c));
  return c;
}

/* Stops the daemon and checks that it exited 0. */
static void finish(void) {
  int st = rc_daemon_stop(&d);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "wait status 0x%x", st);
}

static scree_client_info info_of(scree_client *c) {
  scree_client_info i = SCREE_CLIENT_INFO_INIT;
  cr_assert_eq(scree_client_info_get(c, &i), 0);
  return i;
}

/* A float32 batch of `batch` sequences over caller storage: values[i] = i,
 * rows of 2 values, sequence k of k % 3 rows. */
static scree_array batch_of(int64_t batch, float *values, int64_t *offsets) {
  scree_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = SCREE_FLOAT32;
  a.offsets_dtype = SCREE_INT64;
  a.ndim_inner = 1;
  a.inner[0] = 2;
  a.batch_size = batch;
  offsets[0] = 0;
  for (int64_t k = 0; k < batch; k++)
    offsets[k + 1] = offsets[k] + k % 3;
  a.total_rows = offsets[batch];
  for (int64_t i = 0; i < a.total_rows * 2; i++)
    values[i] = (float)i;
  a.values = values;
  a.offsets = offsets;
  a.device.type = SCREE_DEVICE_CPU;
  return a;
}

/* Gets name on c and checks it holds what batch_of(batch) made. */
static void check_batch(scree_client *c, const char *name, int64_t batch) {
  static float values[4096];
  static int64_t offsets[2048];
  scree_array want = batch_of(batch, values, offsets);
  scree_array got;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, name, &got, &l), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(got.batch_size, batch);
  cr_assert_eq(got.total_rows, want.total_rows);
  cr_assert_eq(got.max_length, batch > 2 ? 2 : batch > 1 ? 1 : 0);
  cr_assert_eq(memcmp(got.offsets, offsets, (size_t)(batch + 1) * 8), 0, "offsets of %s",
               name);
  cr_assert_eq(memcmp(got.values, values, (size_t)want.total_rows * 8), 0, "values of %s",
               name);
  cr_assert_eq(scree_client_release(c, l), 0, "%s", scree_client_last_error(c));
}

/* The state of name as another connection sees it: 0 (no such batch),
 * SCREE_BATCH_CREATED or SCREE_BATCH_SEALED. */
static int state_of(const char *name) {
  scree_client *o = connect_ok();
  scree_batch_info bi;
  int rc = scree_client_stat(o, name, &bi);
  scree_client_close(o);
  if (rc == SCREE_ENOENT)
    return 0;
  cr_assert_eq(rc, 0);
  return (int)bi.state;
}

/* Waits up to 5 s for name to reach state (as state_of). */
static int state_becomes(const char *name, int state) {
  for (int i = 0; i < 500; i++) {
    if (state_of(name) == state)
      return 1;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

/* A created batch of 3 sequences whose offsets go backwards at index 2. */
static void create_bad(scree_client *c, const char *name) {
  static float values[64];
  static int64_t offsets[8];
  scree_array desc = batch_of(3, values, offsets), out;
  cr_assert_eq(scree_client_create(c, name, &desc, &out, NULL), 0, "%s",
               scree_client_last_error(c));
  int64_t bad[4] = {0, 2, 1, 3};
  memcpy(out.offsets, bad, sizeof(bad));
}

static int seal_async(scree_client *c, const char *name) {
  scree_seal_options o = SCREE_SEAL_OPTIONS_INIT;
  o.async = 1;
  return scree_client_seal(c, name, &o);
}

static int put_async(scree_client *c, const char *name, const scree_array *a) {
  scree_put_options o = SCREE_PUT_OPTIONS_INIT;
  o.async_seal = 1;
  return scree_client_put(c, name, a, &o);
}

/* ---- offsets inline with Seal -------------------------------------------- */

Test(pipeline, puts_send_their_offsets_inline_when_they_fit) {
  const char *extra[] = {"--max-packet", "4K", NULL};
  start("inline", extra);
  scree_client *c = connect_ok();
  scree_client_info i = info_of(c);
  cr_assert_eq(i.inline_offsets, 1, "screed takes offsets with Seal");
  cr_assert_eq(i.inline_puts, 0);
  static float values[4096];
  static int64_t offsets[2048];
  /* 101 offsets (808 bytes) fit 4 KiB with room to spare. */
  scree_array a = batch_of(100, values, offsets);
  cr_assert_eq(scree_client_put(c, "small", &a, NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(info_of(c).inline_puts, 1);
  check_batch(c, "small", 100);
  /* 1001 offsets (8 KiB) do not: they are written into the batch and
   * checked at seal, as before. */
  a = batch_of(1000, values, offsets);
  cr_assert_eq(scree_client_put(c, "large", &a, NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(info_of(c).inline_puts, 1, "the large put went the old way");
  check_batch(c, "large", 1000);
  /* At the limit: 359 offsets, a 199-byte name and 1 KiB to spare are
   * 4095 bytes of the 4096. */
  a = batch_of(358, values, offsets);
  char name[200];
  memset(name, 'n', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0';
  cr_assert_eq(scree_client_put(c, name, &a, NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(info_of(c).inline_puts, 2);
  check_batch(c, name, 358);
  /* Bad offsets are refused here before anything is sent. */
  offsets[5] = offsets[4] - 1;
  cr_assert_eq(scree_client_put(c, "bad", &a, NULL), SCREE_EINVAL);
  cr_assert(strstr(scree_client_last_error(c), "offsets[4]=") != NULL, "%s",
            scree_client_last_error(c));
  cr_assert_eq(state_of("bad"), 0);
  scree_client_close(c);
  finish();
}

Test(pipeline, int32_offsets_and_an_empty_batch_go_inline) {
  start("inline32", NULL);
  scree_client *c = connect_ok();
  float values[4] = {1, 2, 3, 4};
  int32_t offsets[3] = {0, 2, 2};
  scree_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = SCREE_FLOAT32;
  a.offsets_dtype = SCREE_INT32;
  a.batch_size = 2;
  a.total_rows = 2;
  a.ndim_inner = 1;
  a.inner[0] = 2;
  a.values = values;
  a.offsets = offsets;
  cr_assert_eq(scree_client_put(c, "i32", &a, NULL), 0, "%s", scree_client_last_error(c));
  int64_t zero = 0;
  scree_array e;
  memset(&e, 0, sizeof(e));
  e.dtype = SCREE_INT8;
  e.offsets_dtype = SCREE_INT64;
  e.offsets = &zero;
  cr_assert_eq(scree_client_put(c, "empty", &e, NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(info_of(c).inline_puts, 2);
  scree_array got;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, "i32", &got, &l), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(got.max_length, 2);
  cr_assert_eq(memcmp(got.offsets, offsets, sizeof(offsets)), 0);
  scree_client_release(c, l);
  scree_client_close(c);
  finish();
}

/* ---- the pipelined seal -------------------------------------------------- */

Test(pipeline, a_pipelined_put_is_sealed_and_its_reply_taken_by_the_next_call) {
  start("async", NULL);
  scree_client *c = connect_ok();
  static float values[4096];
  static int64_t offsets[2048];
  scree_array a = batch_of(10, values, offsets);
  cr_assert_eq(scree_client_flush(c), 0, "nothing pending");
  cr_assert_eq(put_async(c, "p1", &a), 0, "%s", scree_client_last_error(c));
  /* The caller's buffers are its own again once put returns. */
  memset(values, 0xff, sizeof(values));
  cr_assert_eq(scree_client_flush(c), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_flush(c), 0, "a second flush has nothing to take");
  cr_assert_eq(state_of("p1"), SCREE_BATCH_SEALED);
  check_batch(c, "p1", 10);
  /* Put after put: each takes the previous seal's reply first. */
  for (int i = 0; i < 20; i++) {
    char name[16];
    snprintf(name, sizeof(name), "q%d", i);
    a = batch_of(10, values, offsets);
    cr_assert_eq(put_async(c, name, &a), 0, "%s", scree_client_last_error(c));
  }
  /* A get taking the last reply sees its own connection's batch sealed:
   * requests are served in order. */
  check_batch(c, "q19", 10);
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &st), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(st.batches, 21);
  /* A pipelined seal of a batch made in place. */
  static float v2[64];
  static int64_t o2[8];
  scree_array desc = batch_of(3, v2, o2), out;
  cr_assert_eq(scree_client_create(c, "inplace", &desc, &out, NULL), 0);
  memcpy(out.offsets, o2, 4 * sizeof(int64_t));
  memcpy(out.values, v2, (size_t)desc.total_rows * 8);
  cr_assert_eq(seal_async(c, "inplace"), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_flush(c), 0, "%s", scree_client_last_error(c));
  check_batch(c, "inplace", 3);
  scree_client_close(c);
  finish();
}

Test(pipeline, a_failed_pipelined_seal_is_reported_by_flush) {
  start("flushfail", NULL);
  scree_client *c = connect_ok();
  create_bad(c, "bad");
  cr_assert_eq(seal_async(c, "bad"), 0, "sending needs no reply");
  cr_assert_eq(scree_client_flush(c), SCREE_EINVAL);
  cr_assert_str_eq(scree_client_last_error(c),
                   "the seal of 'bad', sent without waiting for its reply, failed: offsets of "
                   "'bad' are invalid: offsets[1]=2 > offsets[2]=1");
  cr_assert_eq(scree_client_flush(c), 0, "a failure is reported once");
  /* A seal's batch stays created, as after a seal that waits. */
  cr_assert_eq(state_of("bad"), SCREE_BATCH_CREATED);
  scree_client_close(c);
  finish();
}

Test(pipeline, a_failed_pipelined_seal_is_reported_by_the_next_call_instead_of_its_work) {
  start("nextfail", NULL);
  scree_client *c = connect_ok();
  static float values[64];
  static int64_t offsets[8];
  scree_array a = batch_of(3, values, offsets);
  create_bad(c, "bad");
  cr_assert_eq(seal_async(c, "bad"), 0);
  /* The next put reports the seal and does not run. */
  cr_assert_eq(scree_client_put(c, "next", &a, NULL), SCREE_EINVAL);
  cr_assert(strstr(scree_client_last_error(c), "the seal of 'bad', sent without waiting") !=
                NULL,
            "%s", scree_client_last_error(c));
  cr_assert_eq(state_of("next"), 0);
  /* Called again, it does. */
  cr_assert_eq(scree_client_put(c, "next", &a, NULL), 0, "%s", scree_client_last_error(c));
  /* Stats reports it the same way. */
  create_bad(c, "bad2");
  cr_assert_eq(seal_async(c, "bad2"), 0);
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &st), SCREE_EINVAL);
  cr_assert(strstr(scree_client_last_error(c), "'bad2'") != NULL, "%s",
            scree_client_last_error(c));
  cr_assert_eq(scree_client_stats(c, &st), 0, "%s", scree_client_last_error(c));
  /* A second pipelined seal takes the first's reply before it is sent. */
  cr_assert_eq(seal_async(c, "bad2"), 0);
  cr_assert_eq(seal_async(c, "bad"), SCREE_EINVAL, "the first one's failure");
  cr_assert(strstr(scree_client_last_error(c), "'bad2'") != NULL, "%s",
            scree_client_last_error(c));
  /* The batches were left created, for their creator to delete. */
  cr_assert_eq(scree_client_delete(c, "bad", NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_delete(c, "bad2", NULL), 0, "%s", scree_client_last_error(c));
  scree_client_close(c);
  finish();
}

Test(pipeline, release_reports_a_failed_seal_and_still_releases) {
  start("release", NULL);
  scree_client *c = connect_ok();
  static float values[64];
  static int64_t offsets[8];
  scree_array a = batch_of(3, values, offsets), got;
  cr_assert_eq(scree_client_put(c, "held", &a, NULL), 0, "%s", scree_client_last_error(c));
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, "held", &got, &l), 0, "%s", scree_client_last_error(c));
  create_bad(c, "bad");
  cr_assert_eq(seal_async(c, "bad"), 0);
  cr_assert_eq(scree_client_release(c, l), SCREE_EINVAL);
  cr_assert(strstr(scree_client_last_error(c), "the seal of 'bad'") != NULL, "%s",
            scree_client_last_error(c));
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &st), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(st.leases, 0, "the lease was released all the same");
  scree_client_close(c);
  finish();
}

Test(pipeline, a_handle_closed_with_a_seal_pending_leaves_the_batch_sealed) {
  start("close", NULL);
  static float values[64];
  static int64_t offsets[8];
  scree_array a = batch_of(3, values, offsets);
  scree_client *c = connect_ok();
  cr_assert_eq(put_async(c, "kept", &a), 0, "%s", scree_client_last_error(c));
  scree_client_close(c);
  /* The daemon served the Seal before it saw the connection close. */
  scree_client *o = connect_ok();
  scree_array got;
  scree_lease *l;
  cr_assert_eq(scree_client_get_wait(o, "kept", 5000, &got, &l), 0, "%s",
               scree_client_last_error(o));
  cr_assert_eq(got.batch_size, 3);
  scree_client_release(o, l);
  /* A pending seal that fails: its batch goes with the connection. */
  c = connect_ok();
  create_bad(c, "lost");
  cr_assert_eq(seal_async(c, "lost"), 0);
  scree_client_close(c);
  cr_assert(state_becomes("lost", 0), "the unsealed batch was reclaimed");
  scree_client_close(o);
  finish();
}

Test(pipeline, a_daemon_lost_before_the_seal_reply_is_reported_with_the_batch_name) {
  start("lost", NULL);
  scree_client *c = connect_ok();
  static float values[64];
  static int64_t offsets[8];
  scree_array desc = batch_of(3, values, offsets), out;
  cr_assert_eq(scree_client_create(c, "orphan", &desc, &out, NULL), 0);
  memcpy(out.offsets, offsets, 4 * sizeof(int64_t));
  /* Stopped, the daemon cannot answer; killed, it never will. */
  cr_assert_eq(kill(d.pid, SIGSTOP), 0);
  cr_assert_eq(seal_async(c, "orphan"), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(kill(d.pid, SIGKILL), 0);
  int st;
  cr_assert_eq(waitpid(d.pid, &st, 0), d.pid);
  d.pid = -1;
  cr_assert_eq(scree_client_flush(c), SCREE_EDISCONNECTED);
  cr_assert(strstr(scree_client_last_error(c), "the seal of 'orphan', sent without waiting "
                                               "for its reply, failed: lost the daemon") != NULL,
            "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_flush(c), 0);
  scree_stats s = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &s), SCREE_EDISCONNECTED);
  scree_client_close(c);
}

Test(pipeline, options_of_the_first_published_size_are_accepted) {
  start("sizes", NULL);
  scree_client *c = connect_ok();
  static float values[64];
  static int64_t offsets[8];
  scree_array a = batch_of(3, values, offsets);
  /* A program built before async_seal existed: its options end at stream,
   * and whatever follows in its memory is not read. */
  scree_put_options old;
  memset(&old, 0, sizeof(old));
  old.struct_size = offsetof(scree_put_options, async_seal);
  old.async_seal = 1; /* beyond struct_size: not read */
  cr_assert_eq(scree_client_put(c, "old", &a, &old), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(state_of("old"), SCREE_BATCH_SEALED, "put waited for its seal");
  scree_seal_options so = SCREE_SEAL_OPTIONS_INIT;
  so.struct_size = offsetof(scree_seal_options, async);
  cr_assert_eq(scree_client_seal(c, "nope", &so), SCREE_ENOENT);
  so.struct_size = offsetof(scree_seal_options, async) - 1;
  cr_assert_eq(scree_client_seal(c, "nope", &so), SCREE_EINVAL);
  cr_assert(strstr(scree_client_last_error(c), "scree_seal_options.struct_size") != NULL, "%s",
            scree_client_last_error(c));
  scree_client_info i;
  memset(&i, 0, sizeof(i));
  i.struct_size = offsetof(scree_client_info, last_call_ns);
  cr_assert_eq(scree_client_info_get(c, &i), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(i.last_call_ns, 0, "not written past struct_size");
  cr_assert_eq(i.protocol_version, 1);
  scree_client_info full = info_of(c);
  cr_assert_gt(full.last_call_ns, 0, "the last round trip was timed");
  cr_assert_gt(full.last_import_ns, 0, "the arena's import was timed");
  scree_client_close(c);
  finish();
}
