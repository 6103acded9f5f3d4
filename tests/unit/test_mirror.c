/* The mirrors' logic (daemon/peers_mirror.c) without UCX: this file stands
 * in for peers.c (the calls of peers_mirror.h), so that events come in and
 * fetches end exactly when a test says, over a real store. What the mirror
 * sends (WATCH) and starts (fetches) is recorded here. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "mem.h"
#include "peers_mirror.h"
#include "scree/error.h"
#include "store.h"

/* ---- peers.c, as the mirror sees it ---------------------------------------- */

typedef struct sent_watch {
  char prefix[256];
  int replay;
  uint64_t req;
} sent_watch;

typedef struct started {
  char name[256];
  scree__session *sess;
  scree__fetch_done_cb cb;
  void *arg;
  int ended;
} started;

static scree__peer_counts counts;
static sent_watch watches[256];
static int nwatches;
static started fetches[256];
static int nfetches;
static int links;
static int connected = 1;
static uint64_t next_req = 100;

size_t scree__peers_count(const scree__peers *p) {
  (void)p;
  return 1;
}

size_t scree__peers_find(const scree__peers *p, const char *name) {
  (void)p;
  return strcmp(name, "own") == 0 ? 0 : SIZE_MAX;
}

int scree__peers_link(scree__peers *p, size_t i, char *msg, size_t msg_len) {
  (void)p, (void)i, (void)msg, (void)msg_len;
  links++;
  return 0;
}

int scree__peers_send_watch(scree__peers *p, size_t i, const char *prefix, int replay,
                            uint64_t *req) {
  (void)p, (void)i;
  if (!connected)
    return SCREE_EAGAIN;
  cr_assert_lt(nwatches, 256);
  sent_watch *w = &watches[nwatches++];
  snprintf(w->prefix, sizeof(w->prefix), "%s", prefix);
  w->replay = replay;
  w->req = *req = ++next_req;
  return 0;
}

int scree__peers_fetch_own(scree__peers *p, size_t i, scree__session *sess, const char *name,
                           uint64_t timeout_ms, scree__fetch_done_cb cb, void *cb_arg,
                           char *msg, size_t msg_len) {
  (void)p, (void)i, (void)timeout_ms, (void)msg, (void)msg_len;
  cr_assert_lt(nfetches, 256);
  started *f = &fetches[nfetches++];
  snprintf(f->name, sizeof(f->name), "%s", name);
  f->sess = sess;
  f->cb = cb;
  f->arg = cb_arg;
  f->ended = 0;
  return 0;
}

scree__peer_counts *scree__peers_counts_ref(scree__peers *p, size_t i) {
  (void)p, (void)i;
  return &counts;
}

/* ---- the fixture ------------------------------------------------------------- */

static uv_loop_t loop;
static scree__mem *mem;
static scree__store *store;
static scree__mirror *ms;
static scree__session *client;
static int fake_peers; /* only its address is used */

static void start(uint32_t queue_max) {
  scree__log_threshold = SCREE__LOG_ERROR;
  char msg[256];
  memset(&counts, 0, sizeof(counts));
  nwatches = nfetches = links = 0;
  connected = 1;
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(scree__mem_host_create(&mem, msg, sizeof(msg)), 0, "%s", msg);
  scree__store_config cfg = {.memory_limit = 64u << 20, .arena_size = 1u << 20};
  cr_assert_eq(scree__store_new(mem, &cfg, &store, msg, sizeof(msg)), 0, "%s", msg);
  scree__mirror_spec spec = {.peer = "own", .prefix = "kv/"};
  cr_assert_eq(scree__mirror_new((scree__peers *)&fake_peers, &loop, store, &spec, 1, queue_max,
                                 &ms, msg, sizeof(msg)),
               0, "%s", msg);
  cr_assert_eq(counts.mirrors, 1u);
  client = scree__session_open(store, 4242, 7);
  scree__mirror_start(ms);
  cr_assert_eq(links, 1, "the mirror connects at start");
}

static void stop(void) {
  scree__mirror_shutdown(ms);
  uv_run(&loop, UV_RUN_DEFAULT);
  scree__mirror_free(ms);
  scree__store_free(store);
  mem->ops->destroy(mem);
  cr_assert_eq(uv_loop_close(&loop), 0);
}

static void setup(void) { start(0); }

TestSuite(mirror, .init = setup, .fini = stop);

/* The connection is up: the mirror watches with replay; returns the
 * watch's request id. */
static uint64_t ready(void) {
  int before = nwatches;
  scree__mirror_ready(ms, 0);
  cr_assert_eq(nwatches, before + 1);
  cr_assert_str_eq(watches[before].prefix, "kv/");
  cr_assert(watches[before].replay);
  return watches[before].req;
}

static void event(uint64_t req, int kind, const char *name, uint64_t stamp) {
  scree__pw_msg m;
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_EVENT;
  m.req = req;
  m.kind = (uint8_t)kind;
  m.name = name;
  m.name_len = strlen(name);
  m.stamp = stamp;
  cr_assert_eq(scree__mirror_message(ms, 0, &m), 0);
}

static void sealed(uint64_t req, const char *name, uint64_t stamp) {
  event(req, SCREE__PW_EV_SEALED, name, stamp);
}

/* A sealed batch name in the store, made through session sess. */
static scree__batch_view make(scree__session *sess, const char *name) {
  scree_array d;
  memset(&d, 0, sizeof(d));
  d.dtype = SCREE_INT8;
  d.offsets_dtype = SCREE_INT64;
  d.batch_size = 1;
  scree__batch *b;
  char msg[256];
  cr_assert_eq(scree__store_reserve(store, sess, name, &d, &b, msg, sizeof(msg)), 0, "%s", msg);
  scree__batch_view v;
  cr_assert_eq(scree__store_publish(store, b, 0, &v, msg, sizeof(msg)), 0);
  return v;
}

/* Ends fetch k: with the batch made here (rc 0) or with rc. */
static void end_fetch(int k, int rc) {
  started *f = &fetches[k];
  cr_assert_not(f->ended, "fetch %d ended twice", k);
  f->ended = 1;
  scree__fetch_result res = {.rc = rc, .msg = rc ? "failed" : ""};
  scree__batch_view v;
  if (rc == 0) {
    v = make(f->sess, f->name);
    res.out = &v;
    res.bytes = 16;
  }
  f->cb(f->arg, f->sess, 0, &res);
}

static int exists(const char *name) { return scree__store_find(store, name) != NULL; }

static uint32_t owner_of(const char *name) {
  scree__batch_view v;
  scree__store_view(scree__store_find(store, name), &v);
  return v.owner_uid;
}

/* ---- the tests -------------------------------------------------------------- */

Test(mirror, replay_then_live_four_fetches_at_a_time) {
  uint64_t req = ready();
  char name[32];
  for (int i = 0; i < 6; i++) {
    snprintf(name, sizeof(name), "kv/%d", i);
    sealed(req, name, 1000 + (uint64_t)i);
  }
  event(req, SCREE__PW_EV_SYNCED, "", 0);
  cr_assert_eq(nfetches, 4, "four fetches at a time");
  cr_assert_str_eq(fetches[0].name, "kv/0");
  end_fetch(0, 0);
  cr_assert_eq(nfetches, 5, "an ended fetch makes room for the next");
  for (int k = 1; k < 5; k++)
    end_fetch(k, 0);
  cr_assert_eq(nfetches, 6);
  end_fetch(5, 0);
  cr_assert_eq(counts.mirrored, 6u);
  cr_assert(exists("kv/5"));
  cr_assert_eq(owner_of("kv/5"), (uint32_t)getuid(), "screed's own uid owns the copies");
  /* The same batch named again (a later replay) is not fetched again. */
  sealed(req, "kv/2", 1002);
  cr_assert_eq(nfetches, 6);
  /* Names outside the prefix are not taken. */
  sealed(req, "other/1", 7);
  cr_assert_eq(nfetches, 6);
  cr_assert_eq(counts.mirror_resyncs, 0u);
}

Test(mirror, deletes_only_its_own_copies) {
  uint64_t req = ready();
  sealed(req, "kv/a", 1);
  end_fetch(0, 0);
  make(client, "kv/mine");
  event(req, SCREE__PW_EV_DELETED, "kv/a", 0);
  cr_assert_not(exists("kv/a"));
  cr_assert_eq(counts.mirror_deletes, 1u);
  event(req, SCREE__PW_EV_DELETED, "kv/mine", 0);
  cr_assert(exists("kv/mine"), "a batch the mirror did not make stays");
  cr_assert_eq(counts.mirror_deletes, 1u);
  /* Sealed on the peer while a local batch holds the name: a conflict,
   * counted, and nothing fetched. */
  sealed(req, "kv/mine", 5);
  cr_assert_eq(nfetches, 1);
  cr_assert_eq(counts.failures[SCREE__FETCH_FAIL_LOCAL], 1u);
  /* A copy an admin deleted and a client made again is not the mirror's
   * any more. */
  sealed(req, "kv/b", 2);
  end_fetch(1, 0);
  int deferred;
  char msg[256];
  scree__session *admin = scree__session_open(store, (uint32_t)getuid(), 1);
  cr_assert_eq(scree__store_delete(store, admin, "kv/b", &deferred, msg, sizeof(msg)), 0);
  make(client, "kv/b");
  event(req, SCREE__PW_EV_DELETED, "kv/b", 0);
  cr_assert(exists("kv/b"));
  cr_assert_eq(owner_of("kv/b"), 4242u);
}

Test(mirror, a_changed_name_during_a_fetch) {
  uint64_t req = ready();
  /* Deleted on the peer while it is fetched: the copy goes when it comes. */
  sealed(req, "kv/d", 1);
  event(req, SCREE__PW_EV_DELETED, "kv/d", 0);
  end_fetch(0, 0);
  cr_assert_not(exists("kv/d"));
  cr_assert_eq(counts.mirror_deletes, 1u);
  /* Replaced on the peer while it is fetched: fetched again. */
  sealed(req, "kv/r", 10);
  event(req, SCREE__PW_EV_DELETED, "kv/r", 0);
  sealed(req, "kv/r", 11);
  cr_assert_eq(nfetches, 2);
  end_fetch(1, 0);
  cr_assert_not(exists("kv/r"), "the old copy goes");
  cr_assert_eq(nfetches, 3, "and the new batch is fetched");
  end_fetch(2, 0);
  cr_assert(exists("kv/r"));
  /* A newer batch of a name mirrored already (another stamp) replaces the
   * copy. */
  sealed(req, "kv/r", 12);
  cr_assert_not(exists("kv/r"));
  cr_assert_eq(nfetches, 4);
  end_fetch(3, 0);
  cr_assert(exists("kv/r"));
  /* A failed fetch is not retried before a resync. */
  sealed(req, "kv/f", 20);
  end_fetch(4, SCREE_EIO);
  cr_assert_eq(nfetches, 5);
  cr_assert_not(exists("kv/f"));
}

Test(mirror, an_overflow_resyncs_and_old_events_are_dropped) {
  uint64_t req = ready();
  sealed(req, "kv/1", 1);
  end_fetch(0, 0);
  event(req, SCREE__PW_EV_OVERFLOW, "", 0);
  cr_assert_eq(counts.mirror_resyncs, 1u);
  cr_assert_eq(nwatches, 2);
  cr_assert(watches[1].replay, "the resync replays");
  uint64_t req2 = watches[1].req;
  /* Events of the old watch still on the way are dropped. */
  sealed(req, "kv/old", 2);
  cr_assert_eq(nfetches, 1);
  /* The replay: kv/1, the same batch, is kept; kv/2 is new. */
  sealed(req2, "kv/1", 1);
  sealed(req2, "kv/2", 3);
  cr_assert_eq(nfetches, 2);
  end_fetch(1, 0);
  cr_assert(exists("kv/1"));
  cr_assert(exists("kv/2"));
}

Test(mirror, the_end_of_a_replay_deletes_what_the_peer_no_longer_has) {
  uint64_t req = ready();
  sealed(req, "kv/keep", 1);
  sealed(req, "kv/gone", 2);
  end_fetch(0, 0);
  end_fetch(1, 0);
  event(req, SCREE__PW_EV_SYNCED, "", 0);
  cr_assert(exists("kv/gone"), "named in this replay");
  /* The connection goes and comes back: the peer's replay names kv/keep
   * only (kv/gone was deleted while events could not come). */
  scree__mirror_down(ms, 0);
  uint64_t req2 = ready();
  cr_assert_eq(counts.mirror_resyncs, 1u, "connecting again is a resync");
  sealed(req2, "kv/keep", 1);
  cr_assert(exists("kv/gone"), "nothing is deleted before the replay has ended");
  event(req2, SCREE__PW_EV_SYNCED, "", 0);
  cr_assert_not(exists("kv/gone"));
  cr_assert(exists("kv/keep"));
  cr_assert_eq(counts.mirror_deletes, 1u);
  cr_assert_eq(nfetches, 2, "kv/keep, the same batch, is not fetched again");
}

Test(mirror, a_lost_connection_drops_the_queue_and_reconnects) {
  uint64_t req = ready();
  char name[32];
  for (int i = 0; i < 6; i++) {
    snprintf(name, sizeof(name), "kv/%d", i);
    sealed(req, name, (uint64_t)i + 1);
  }
  cr_assert_eq(nfetches, 4);
  connected = 0;
  scree__mirror_down(ms, 0);
  /* The fetches under way fail with the connection. */
  for (int k = 0; k < 4; k++)
    end_fetch(k, SCREE_EIO);
  cr_assert_eq(nfetches, 4, "nothing starts without a connection");
  /* The backoff's timer asks for a connection again. */
  int before = links;
  uv_run(&loop, UV_RUN_ONCE);
  cr_assert_gt(links, before, "the mirror connects again after its backoff");
  connected = 1;
  uint64_t req2 = ready();
  for (int i = 0; i < 6; i++) {
    snprintf(name, sizeof(name), "kv/%d", i);
    sealed(req2, name, (uint64_t)i + 1);
  }
  cr_assert_eq(nfetches, 8);
}

/* A queue of two names: a replay of ten fills it; the mirror asks the
 * peer to stop replaying (a watch without replay), takes no event, fetches
 * what it holds, then watches again with replay, until all are here. */
static void setup_small(void) { start(2); }

TestSuite(mirror_small_queue, .init = setup_small, .fini = stop);

Test(mirror_small_queue, a_full_queue_pauses_then_resyncs) {
  uint64_t req = ready();
  char name[32];
  for (int round = 0; round < 10 && counts.mirrored < 10; round++) {
    for (int i = 0; i < 10; i++) {
      snprintf(name, sizeof(name), "kv/%d", i);
      sealed(req, name, (uint64_t)i + 1);
    }
    event(req, SCREE__PW_EV_SYNCED, "", 0);
    /* End every fetch started; each makes room for the next. */
    for (int k = 0; k < nfetches; k++)
      if (!fetches[k].ended)
        end_fetch(k, 0);
    for (int k = 0; k < nfetches; k++)
      if (!fetches[k].ended)
        end_fetch(k, 0);
    req = watches[nwatches - 1].req;
    if (counts.mirrored < 10) {
      cr_assert(watches[nwatches - 1].replay, "a drained pause resyncs with replay");
      cr_assert_not(watches[nwatches - 2].replay, "the pause stopped the replay");
    }
  }
  cr_assert_eq(counts.mirrored, 10u);
  cr_assert_eq(nfetches, 10, "each batch fetched once");
  cr_assert_geq(counts.mirror_resyncs, 1u);
  for (int i = 0; i < 10; i++) {
    snprintf(name, sizeof(name), "kv/%d", i);
    cr_assert(exists(name), "%s", name);
  }
}

Test(mirror, a_refused_watch_is_asked_again) {
  ready();
  scree__pw_msg m;
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_WATCH_ERR;
  m.req = watches[0].req;
  m.code = SCREE_EBUSY;
  m.msg = "too many";
  m.msg_len = 8;
  cr_assert_eq(scree__mirror_message(ms, 0, &m), 0);
  uv_run(&loop, UV_RUN_ONCE);
  cr_assert_eq(nwatches, 2, "asked again after the backoff");
  cr_assert(watches[1].replay);
  /* A peer that no mirror follows sends nothing a mirror takes. */
  cr_assert_eq(scree__mirror_message(ms, 3, &m), -1);
}
