/* Waiting Gets and watches in screed's handler and store, without sockets:
 * requests go through scree__handle, deferred replies come back through
 * the deliver callback the server would give, and deadlines are driven by
 * calling scree__handler_expire with a chosen clock. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "handler.h"
#include "log.h"
#include "mem.h"
#include "scree/error.h"
#include "store.h"

/* A C string as a request's bytes field (names travel as bytes). */
static inline ProtobufCBinaryData test_bytes(const char *s) {
  ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
  return b;
}

static scree__mem *mem;
static scree__store *store;
static scree__handler *handler;
static scree__reply r;

/* Replies delivered later, in order. */
#define MAX_DELIVERED 1100
typedef struct delivered {
  scree__session *sess;
  uint64_t id;
  int status;
  int body;
  uint64_t lease;
  char message[256];
} delivered;
static delivered dl[MAX_DELIVERED];
static int ndl;
static int ready_calls;
static uint64_t armed;

static void on_deliver(void *arg, scree__session *sess, scree__out *out) {
  (void)arg;
  Scree__V1__Response *resp = scree__v1__response__unpack(NULL, out->len, out->buf);
  cr_assert_not_null(resp);
  cr_assert_lt(ndl, MAX_DELIVERED);
  delivered *d = &dl[ndl++];
  d->sess = sess;
  d->id = resp->id;
  d->status = resp->status;
  d->body = resp->body_case;
  d->lease = resp->body_case == SCREE__V1__RESPONSE__BODY_GET ? resp->get->lease_id : 0;
  snprintf(d->message, sizeof(d->message), "%s", resp->message ? resp->message : "");
  scree__v1__response__free_unpacked(resp, NULL);
  scree__out_clear(out);
}

static void on_ready(void *arg, scree__session *sess) {
  (void)arg;
  (void)sess;
  ready_calls++;
}

static void on_arm(void *arg, uint64_t deadline_ns) {
  (void)arg;
  armed = deadline_ns;
}

static void setup_with(uint32_t watch_queue) {
  scree__log_threshold = SCREE__LOG_ERROR;
  char msg[256];
  cr_assert_eq(scree__mem_host_create(&mem, msg, sizeof(msg)), 0, "%s", msg);
  scree__store_config cfg = {.memory_limit = 64u << 20, .arena_size = 1u << 20,
                             .watch_queue = watch_queue};
  cr_assert_eq(scree__store_new(mem, &cfg, &store, msg, sizeof(msg)), 0, "%s", msg);
  scree__handler_config hcfg = {.max_packet = 1 << 20, .version = "test"};
  cr_assert_eq(scree__handler_new(store, &hcfg, &handler, msg, sizeof(msg)), 0, "%s", msg);
  scree__handler_set_deliver(handler, on_deliver, NULL);
  scree__handler_waits w = {.watch_ready = on_ready, .arm_timer = on_arm, .arg = NULL};
  scree__handler_set_waits(handler, &w);
  scree__reply_init(&r);
  ndl = 0;
  ready_calls = 0;
  armed = 0;
}

static void setup(void) { setup_with(0); }

static void teardown(void) {
  scree__reply_clear(&r);
  scree__handler_free(handler);
  scree__store_free(store);
  mem->ops->destroy(mem);
}

TestSuite(wait, .init = setup, .fini = teardown);

static const Scree__V1__Response *call(scree__session *sess, Scree__V1__Request *req) {
  scree__reply_clear(&r);
  scree__handle(handler, sess, req, &r);
  return &r.resp;
}

static void expect_status(const Scree__V1__Response *resp, int code) {
  cr_assert_eq(resp->status, code, "status %s (%s), expected %s", scree_err_name(resp->status),
               resp->message, scree_err_name(code));
}

static scree__session *client(void) {
  scree__session *s = scree__session_open(store, 1000, 4242);
  cr_assert_not_null(s);
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  expect_status(call(s, &req), 0);
  return s;
}

/* Creates, writes and seals a batch of 4 rows through the store's API. */
static void create(scree__session *sess, const char *name) {
  scree_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = SCREE_FLOAT32;
  a.offsets_dtype = SCREE_INT64;
  a.batch_size = 2;
  a.total_rows = 4;
  scree__location loc;
  char msg[256];
  cr_assert_eq(scree__store_create(store, sess, name, &a, 0, &loc, msg, sizeof(msg)), 0, "%s",
               msg);
  scree__batch_view v;
  cr_assert_eq(scree__store_stat(store, name, &v, msg, sizeof(msg)), 0);
  int64_t offs[3] = {0, 2, 4};
  cr_assert_eq(mem->ops->write(mem, v.mem, v.offsets_offset, offs, sizeof(offs), msg,
                               sizeof(msg)),
               0, "%s", msg);
  if (loc.fd >= 0)
    close(loc.fd);
}

static void seal(scree__session *sess, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
  s.name = test_bytes(name);
  req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
  req.seal = &s;
  expect_status(call(sess, &req), 0);
}

static void put(scree__session *sess, const char *name) {
  create(sess, name);
  seal(sess, name);
}

static void del(scree__session *sess, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Delete d = SCREE__V1__DELETE__INIT;
  d.name = test_bytes(name);
  req.body_case = SCREE__V1__REQUEST__BODY_DELETE;
  req.delete_ = &d;
  expect_status(call(sess, &req), 0);
}

/* A Get with a wait; returns the immediate response (deferred: r.deferred). */
static const Scree__V1__Response *get_wait(scree__session *sess, const char *name, uint64_t id,
                                           int64_t wait_ms) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  g.name = test_bytes(name);
  g.wait_present_case = SCREE__V1__GET__WAIT_PRESENT_WAIT_MS;
  g.wait_ms = wait_ms;
  req.id = id;
  req.body_case = SCREE__V1__REQUEST__BODY_GET;
  req.get = &g;
  return call(sess, &req);
}

static void stats(scree__store_counts *c) { scree__store_counts_get(store, c); }

Test(wait, a_seal_wakes_a_waiter_that_came_first) {
  scree__session *consumer = client(), *producer = client();
  get_wait(consumer, "steps/0", 5, -1);
  cr_assert(r.deferred, "the Get should wait");
  cr_assert(r.cancellable);
  scree__store_counts c;
  stats(&c);
  cr_assert_eq(c.waiters, 1);
  create(producer, "steps/0");
  cr_assert_eq(ndl, 0, "a created batch must not wake anybody");
  seal(producer, "steps/0");
  cr_assert_eq(ndl, 1);
  cr_assert_eq(dl[0].sess, consumer);
  cr_assert_eq(dl[0].id, 5);
  cr_assert_eq(dl[0].status, 0, "%s", dl[0].message);
  cr_assert_eq(dl[0].body, SCREE__V1__RESPONSE__BODY_GET);
  cr_assert_neq(dl[0].lease, 0);
  stats(&c);
  cr_assert_eq(c.waiters, 0);
  cr_assert_eq(c.leases, 1);
}

Test(wait, a_sealed_batch_is_answered_at_once_and_zero_means_now) {
  scree__session *s = client();
  put(s, "b");
  expect_status(get_wait(s, "b", 1, 1000), 0);
  cr_assert_not(r.deferred);
  const Scree__V1__Response *resp = get_wait(s, "nope", 2, 0);
  expect_status(resp, SCREE_ETIMEDOUT);
  cr_assert(strstr(resp->message, "'nope'") && strstr(resp->message, "0 ms"), "%s",
            resp->message);
  expect_status(get_wait(s, "b", 3, -2), SCREE_EINVAL);
}

Test(wait, one_seal_wakes_a_thousand_waiters) {
  enum { N = 1000 };
  static scree__session *w[N];
  for (int i = 0; i < N; i++) {
    w[i] = client();
    get_wait(w[i], "big", (uint64_t)i + 1, i % 2 ? -1 : 60000);
    cr_assert(r.deferred);
  }
  scree__store_counts c;
  stats(&c);
  cr_assert_eq(c.waiters, N);
  put(client(), "big");
  cr_assert_eq(ndl, N);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(dl[i].sess, w[i], "waiters are answered in the order they came");
    cr_assert_eq(dl[i].status, 0);
  }
  stats(&c);
  cr_assert_eq(c.waiters, 0);
  cr_assert_eq(c.leases, N);
}

Test(wait, a_wait_expires_with_a_message_naming_it) {
  scree__session *a = client(), *b = client();
  uint64_t t0 = scree__now_ns();
  get_wait(a, "late", 9, 50);
  get_wait(b, "late", 10, 5000);
  cr_assert_neq(armed, 0, "the timer is armed");
  cr_assert_geq(armed, t0 + 50 * 1000000ull);
  cr_assert_lt(armed, t0 + 5000 * 1000000ull, "armed for the earlier deadline");
  scree__handler_expire(handler, armed - 1);
  cr_assert_eq(ndl, 0, "nothing is due before the deadline");
  scree__handler_expire(handler, armed);
  cr_assert_eq(ndl, 1);
  cr_assert_eq(dl[0].sess, a);
  cr_assert_eq(dl[0].id, 9);
  cr_assert_eq(dl[0].status, SCREE_ETIMEDOUT);
  cr_assert(strstr(dl[0].message, "'late'") && strstr(dl[0].message, "50 ms"), "%s",
            dl[0].message);
  cr_assert_geq(armed, t0 + 5000 * 1000000ull, "armed again for the next deadline");
  /* The session is usable again. */
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Stats st = SCREE__V1__STATS__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_STATS;
  req.stats = &st;
  const Scree__V1__Response *resp = call(a, &req);
  expect_status(resp, 0);
  cr_assert_eq(resp->stats->waiters, 1);
}

Test(wait, closing_a_waiting_session_leaves_nothing) {
  scree__session *a = client();
  get_wait(a, "x", 1, 100);
  get_wait(client(), "y", 1, -1);
  scree__session_close(store, a);
  scree__store_counts c;
  stats(&c);
  cr_assert_eq(c.waiters, 1);
  scree__handler_expire(handler, UINT64_MAX);
  cr_assert_eq(ndl, 0, "a closed session is answered nothing");
}

Test(wait, delete_and_recreate_keep_waiters_waiting) {
  scree__session *w = client(), *p = client();
  create(p, "n");
  get_wait(w, "n", 4, -1);
  cr_assert(r.deferred, "a batch being written is waited for");
  del(p, "n");
  create(p, "n");
  cr_assert_eq(ndl, 0);
  seal(p, "n");
  cr_assert_eq(ndl, 1);
  cr_assert_eq(dl[0].status, 0);
}

Test(wait, cancel_answers_the_get_first) {
  scree__session *w = client();
  get_wait(w, "c", 11, -1);
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Stat st = SCREE__V1__STAT__INIT;
  st.name = test_bytes("c");
  req.body_case = SCREE__V1__REQUEST__BODY_STAT;
  req.stat = &st;
  expect_status(call(w, &req), SCREE_EBUSY);
  Scree__V1__Request cq = SCREE__V1__REQUEST__INIT;
  Scree__V1__Cancel cancel = SCREE__V1__CANCEL__INIT;
  cq.id = 12;
  cq.body_case = SCREE__V1__REQUEST__BODY_CANCEL;
  cq.cancel = &cancel;
  const Scree__V1__Response *resp = call(w, &cq);
  expect_status(resp, 0);
  cr_assert(resp->cancel->cancelled);
  cr_assert_eq(ndl, 1);
  cr_assert_eq(dl[0].id, 11);
  cr_assert_eq(dl[0].status, SCREE_ECANCELED);
  resp = call(w, &cq);
  expect_status(resp, 0);
  cr_assert_not(resp->cancel->cancelled, "nothing waits any more");
  cr_assert_eq(ndl, 1);
}

/* ---- watches ---- */

static void watch(scree__session *sess, const char *prefix, int replay, uint64_t id) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Watch w = SCREE__V1__WATCH__INIT;
  w.prefix.data = (uint8_t *)prefix;
  w.prefix.len = strlen(prefix);
  w.no_replay = !replay;
  req.id = id;
  req.body_case = SCREE__V1__REQUEST__BODY_WATCH;
  req.watch = &w;
  const Scree__V1__Response *resp = call(sess, &req);
  expect_status(resp, 0);
  cr_assert_eq(resp->body_case, SCREE__V1__RESPONSE__BODY_WATCH);
}

typedef struct ev {
  int kind;
  uint64_t seq;
  uint64_t id;
  char name[256];
} ev;

/* Takes the next event through the handler's encoding; 0 when none. */
static int next(scree__session *sess, ev *e) {
  scree__out out;
  int rc = scree__handler_next_event(handler, sess, &out);
  cr_assert_geq(rc, 0);
  if (rc == 0)
    return 0;
  Scree__V1__Response *resp = scree__v1__response__unpack(NULL, out.len, out.buf);
  cr_assert_not_null(resp);
  cr_assert_eq(resp->body_case, SCREE__V1__RESPONSE__BODY_EVENT);
  e->kind = resp->event->kind;
  e->seq = resp->event->seq;
  e->id = resp->id;
  snprintf(e->name, sizeof(e->name), "%.*s", (int)resp->event->name.len,
           (const char *)resp->event->name.data);
  scree__v1__response__free_unpacked(resp, NULL);
  scree__out_clear(&out);
  return 1;
}

Test(wait, watch_replays_then_goes_live_without_gap_or_duplicate) {
  scree__session *p = client(), *w = client();
  put(p, "s/1");
  put(p, "s/3");
  create(p, "s/5"); /* being written: not replayed */
  put(p, "t/1");    /* outside the prefix */
  watch(w, "s/", 1, 77);
  ev e;
  cr_assert(next(w, &e));
  cr_assert_eq(e.kind, SCREE__EVENT_SEALED);
  cr_assert_str_eq(e.name, "s/1");
  cr_assert_eq(e.seq, 1);
  cr_assert_eq(e.id, 77);
  /* During the replay: a change behind the cursor is queued, one ahead of
   * it is left to the replay. */
  put(p, "s/0");
  del(p, "s/3");
  put(p, "s/3");
  seal(p, "s/5");
  put(p, "s/9");
  const char *want[] = {"s/3", "s/5", "s/9", "s/0"};
  for (int i = 0; i < 4; i++) {
    cr_assert(next(w, &e), "event %d missing", i);
    cr_assert_str_eq(e.name, want[i]);
    cr_assert_eq(e.kind, SCREE__EVENT_SEALED);
    cr_assert_eq(e.seq, (uint64_t)i + 2);
  }
  cr_assert_not(next(w, &e), "no duplicate");
  int before = ready_calls;
  del(p, "s/0");
  cr_assert_eq(ready_calls, before + 1, "an idle watch says it has an event");
  cr_assert(next(w, &e));
  cr_assert_eq(e.kind, SCREE__EVENT_DELETED);
  cr_assert_str_eq(e.name, "s/0");
  cr_assert_eq(e.seq, 6);
  /* A watching connection takes only Watch. */
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Stats st = SCREE__V1__STATS__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_STATS;
  req.stats = &st;
  expect_status(call(w, &req), SCREE_EPROTO);
}

Test(wait, no_replay_sees_only_live_changes) {
  scree__session *p = client(), *w = client();
  put(p, "a");
  watch(w, "", 0, 1);
  ev e;
  cr_assert_not(next(w, &e));
  put(p, "b");
  cr_assert(next(w, &e));
  cr_assert_str_eq(e.name, "b");
  cr_assert_eq(e.seq, 1);
}

Test(wait, a_slow_watcher_gets_one_overflow_then_resyncs) {
  teardown();
  setup_with(4);
  scree__session *p = client(), *w = client();
  watch(w, "q/", 0, 3);
  char name[32];
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof(name), "q/%02d", i);
    put(p, name);
  }
  scree__store_counts c;
  stats(&c);
  cr_assert_eq(c.watch_overflows, 1);
  ev e;
  for (int i = 0; i < 4; i++) {
    cr_assert(next(w, &e));
    cr_assert_eq(e.kind, SCREE__EVENT_SEALED);
    cr_assert_eq(e.seq, (uint64_t)i + 1);
  }
  cr_assert(next(w, &e));
  cr_assert_eq(e.kind, SCREE__EVENT_OVERFLOW);
  cr_assert_eq(e.seq, 5);
  cr_assert_str_eq(e.name, "");
  cr_assert_not(next(w, &e), "everything after the overflow is dropped");
  put(p, "q/99");
  cr_assert_not(next(w, &e));
  /* Resync: a new Watch replays the whole state. */
  watch(w, "q/", 1, 4);
  int n = 0;
  while (next(w, &e)) {
    n++;
    cr_assert_eq(e.seq, (uint64_t)n);
    cr_assert_eq(e.id, 4);
  }
  cr_assert_eq(n, 21);
  stats(&c);
  cr_assert_eq(c.watchers, 1);
  scree__session_close(store, w);
  stats(&c);
  cr_assert_eq(c.watchers, 0);
}

/* ---- sessions screed holds for itself (peers) ---- */

typedef struct own_log {
  int waits;
  int rc;
  char name[SCREE__MAX_NAME_LEN + 1];
  int ready;
} own_log;

static void own_wait_done(void *arg, scree__session *sess, const scree__wait_end *end) {
  own_log *l = arg;
  l->waits++;
  l->rc = end->rc;
  snprintf(l->name, sizeof(l->name), "%s", end->name);
  /* The hook may close its own session: the waiter is gone already. */
  scree__session_close(store, sess);
}

static void own_watch_ready(void *arg, scree__session *sess) {
  (void)sess;
  ((own_log *)arg)->ready++;
}

Test(wait, own_sessions_answer_through_their_own_hooks_and_are_not_counted) {
  own_log l;
  memset(&l, 0, sizeof(l));
  scree__store_hooks hk = {.wait_done = own_wait_done, .watch_ready = own_watch_ready, .arg = &l};
  scree__store_counts c0, c;
  stats(&c0);
  scree__session *a = scree__session_open_own(store, 0, 1, &hk);
  scree__session *b = scree__session_open_own(store, 0, 1, &hk);
  cr_assert_not_null(a);
  cr_assert_not_null(b);
  stats(&c);
  cr_assert_eq(c.sessions, c0.sessions, "screed's own sessions are not clients'");
  char msg[256];
  cr_assert_eq(scree__store_wait(store, a, "o/1", 1, -1, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(scree__store_watch(store, b, "o/", 1, 2, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert(scree__store_watch_replaying(b), "a watch with replay starts replaying");
  scree__event e;
  cr_assert_not(scree__store_watch_next(store, b, &e), "nothing to replay");
  cr_assert_not(scree__store_watch_replaying(b), "the replay found its end");
  /* A client's waiter of the same name goes to the handler, the own one to
   * its hooks. */
  scree__session *cl = client();
  get_wait(cl, "o/1", 7, -1);
  cr_assert(r.deferred);
  put(client(), "o/1");
  cr_assert_eq(l.waits, 1);
  cr_assert_eq(l.rc, 0);
  cr_assert_str_eq(l.name, "o/1");
  cr_assert_eq(ndl, 1, "the client's Get is answered by the handler");
  cr_assert_eq(dl[0].sess, cl);
  cr_assert_eq(l.ready, 1, "the own watch is told through its hook");
  cr_assert_eq(ready_calls, 0, "and not through the handler's");
  cr_assert(scree__store_watch_next(store, b, &e));
  cr_assert_str_eq(e.name, "o/1");
  cr_assert_eq(e.req_id, 2);
  /* Expiry reaches own waiters as well. */
  scree__session *d = scree__session_open_own(store, 0, 1, &hk);
  cr_assert_eq(scree__store_wait(store, d, "o/never", 3, 10, msg, sizeof(msg)), 0);
  scree__store_wait_expire(store, UINT64_MAX);
  cr_assert_eq(l.waits, 2);
  cr_assert_eq(l.rc, SCREE_ETIMEDOUT);
  scree__session_close(store, b);
  stats(&c);
  cr_assert_eq(c.waiters, 0);
  cr_assert_eq(c.watchers, 0);
  cr_assert_eq(c.sessions, c0.sessions + 2, "the two clients");
}

/* ---- hooks that close other waiting sessions during a wake ---- */

/* What the hook does when it answers session `on`, once: close the
 * victims (other sessions, waiting or not), and create and seal a name (a
 * wake inside the wake). */
typedef struct closer {
  scree__session *on;
  scree__session *victims[4];
  const char *seal; /* NULL: none */
} closer;

/* The closers in force, NULL-terminated. */
static closer *closers[4];
/* The sessions the hook answered, in order. */
static scree__session *answered_log[16];
static int nanswered;

static void closing_wait_done(void *arg, scree__session *sess, const scree__wait_end *end) {
  (void)arg;
  cr_assert_eq(end->rc, 0, "%s", end->name);
  cr_assert_lt(nanswered, 16);
  answered_log[nanswered++] = sess;
  for (int k = 0; k < 4 && closers[k] != NULL; k++) {
    closer *c = closers[k];
    if (c->on != sess)
      continue;
    for (int i = 0; i < 4; i++)
      if (c->victims[i] != NULL) {
        scree__session_close(store, c->victims[i]);
        c->victims[i] = NULL;
      }
    if (c->seal != NULL) {
      const char *name = c->seal;
      c->seal = NULL;
      scree__session *p = client();
      create(p, name);
      scree__batch_view v;
      char msg[256];
      cr_assert_eq(scree__store_seal(store, p, name, NULL, 0, &v, msg, sizeof(msg)), 0, "%s",
                   msg);
    }
  }
}

/* One of screed's own sessions, answered through closing_wait_done,
 * waiting for name. */
static scree__session *own_waiting(const char *name) {
  scree__store_hooks hk = {.wait_done = closing_wait_done};
  scree__session *s = scree__session_open_own(store, 0, 1, &hk);
  cr_assert_not_null(s);
  char msg[256];
  cr_assert_eq(scree__store_wait(store, s, name, 1, -1, msg, sizeof(msg)), 0, "%s", msg);
  return s;
}

/* The first hook of a wake closes two sessions still waiting in it, one
 * of screed's own and one of a client: they are answered nothing, the
 * others are answered in order, and nothing freed is handed to a hook
 * (the sanitizer build would catch it: the wake used to call the hook of a
 * closed session with the freed session). */
Test(wait, a_hook_that_closes_waiting_sessions_during_a_wake) {
  nanswered = 0;
  scree__session *a = own_waiting("w");
  scree__session *b = client();
  get_wait(b, "w", 2, -1);
  cr_assert(r.deferred);
  scree__session *c = own_waiting("w");
  scree__session *d = own_waiting("w");
  scree__session *e = own_waiting("w");
  closer k = {.on = a, .victims = {b, d}};
  closers[0] = &k;
  closers[1] = NULL;
  put(client(), "w");
  closers[0] = NULL;
  cr_assert_eq(nanswered, 3, "a, c and e are answered");
  cr_assert_eq(answered_log[0], a);
  cr_assert_eq(answered_log[1], c);
  cr_assert_eq(answered_log[2], e);
  cr_assert_eq(ndl, 0, "the closed client's Get is answered nothing");
  scree__store_counts cnt;
  stats(&cnt);
  cr_assert_eq(cnt.waiters, 0);
  /* The survivors wait again and are woken by the next seal. */
  char msg[256];
  cr_assert_eq(scree__store_wait(store, c, "w2", 3, -1, msg, sizeof(msg)), 0, "%s", msg);
  put(client(), "w2");
  cr_assert_eq(nanswered, 4);
  cr_assert_eq(answered_log[3], c);
  scree__session_close(store, a);
  scree__session_close(store, c);
  scree__session_close(store, e);
}

/* A hook seals another name (a wake inside the wake), whose own hook
 * closes a session still waiting in the outer wake: the outer wake skips
 * it and goes on. */
Test(wait, a_nested_wake_that_closes_a_waiter_of_the_outer_one) {
  nanswered = 0;
  scree__session *a = own_waiting("x");
  scree__session *c = own_waiting("x");
  scree__session *f = own_waiting("x");
  scree__session *e = own_waiting("y");
  closer outer = {.on = a, .seal = "y"};
  closer inner = {.on = e, .victims = {c}};
  closers[0] = &outer;
  closers[1] = &inner;
  closers[2] = NULL;
  put(client(), "x");
  closers[0] = NULL;
  cr_assert_eq(nanswered, 3, "a, then e inside a's hook, then f");
  cr_assert_eq(answered_log[0], a);
  cr_assert_eq(answered_log[1], e);
  cr_assert_eq(answered_log[2], f);
  scree__store_counts cnt;
  stats(&cnt);
  cr_assert_eq(cnt.waiters, 0);
  scree__session_close(store, a);
  scree__session_close(store, e);
  scree__session_close(store, f);
}
