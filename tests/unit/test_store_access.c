/* Ownership, per-uid quotas and arena pools in the request handler, driven
 * without sockets like test_store.c: sessions are opened with the uid that
 * SO_PEERCRED would have given, and the responses are checked. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "authz.h"
#include "log.h"
#include "mem.h"
#include "scree/error.h"
#include "handler.h"
#include "store.h"

/* A C string as a request's bytes field (names travel as bytes; see
 * proto/scree/v1/scree.proto). NULL is empty. */
static inline ProtobufCBinaryData test_bytes(const char *s) {
  ProtobufCBinaryData b = {s != NULL ? strlen(s) : 0, (uint8_t *)s};
  return b;
}

#define LIMIT (16u << 20)
#define ARENA (1u << 20)
#define ALICE 1000u
#define BOB 1001u
#define ADMIN 4242u

static scree__mem *mem;
static scree__store *store;
static scree__handler *handler;
static scree__authz authz;
static scree__reply r;

static void unmap_all(void);

static void start(uint64_t quota, int shared_arenas) {
  scree__log_threshold = SCREE__LOG_ERROR;
  char msg[256];
  cr_assert_eq(scree__mem_host_create(&mem, msg, sizeof(msg)), 0, "%s", msg);
  scree__authz_init(&authz);
  cr_assert_eq(scree__authz_add(&authz, SCREE__AUTHZ_ADMIN, ADMIN), 0);
  scree__store_config cfg = {.memory_limit = LIMIT,
                             .arena_size = ARENA,
                             .authz = &authz,
                             .quota_per_uid = quota,
                             .shared_arenas = shared_arenas};
  cr_assert_eq(scree__store_new(mem, &cfg, &store, msg, sizeof(msg)), 0, "%s", msg);
  scree__handler_config hcfg = {.max_packet = 1 << 20, .version = "test"};
  cr_assert_eq(scree__handler_new(store, &hcfg, &handler, msg, sizeof(msg)), 0, "%s", msg);
  scree__reply_init(&r);
}

static void teardown(void) {
  if (store == NULL)
    return;
  scree__reply_clear(&r);
  unmap_all();
  scree__handler_free(handler);
  scree__store_free(store);
  mem->ops->destroy(mem);
  scree__authz_free(&authz);
  store = NULL;
}

TestSuite(access, .fini = teardown);

static const Scree__V1__Response *call(scree__session *sess, Scree__V1__Request *req) {
  scree__reply_clear(&r);
  scree__handle(handler, sess, req, &r);
  return &r.resp;
}

static void expect_status(const Scree__V1__Response *resp, int code) {
  cr_assert_eq(resp->status, code, "status %s (%s), expected %s", scree_err_name(resp->status),
               resp->message, scree_err_name(code));
}

static scree__session *client(uint32_t uid) {
  scree__session *s = scree__session_open(store, uid, 100 + (int32_t)uid);
  cr_assert_not_null(s);
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  expect_status(call(s, &req), 0);
  return s;
}

/* Creates a float32 batch of rows x 256 floats (1 KiB a row) and 1 row per
 * batch entry; returns the response. */
static const Scree__V1__Response *create(scree__session *sess, const char *name, int64_t rows,
                                         int shared) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Create c = SCREE__V1__CREATE__INIT;
  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  int64_t inner[1] = {256};
  d.dtype = SCREE_FLOAT32;
  d.n_inner = 1;
  d.inner = inner;
  d.batch_size = rows;
  d.total_rows = rows;
  d.offsets_dtype = SCREE_INT64;
  c.name = test_bytes((char *)name);
  c.desc = &d;
  c.shared = shared != 0;
  req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
  req.create = &c;
  return call(sess, &req);
}

/* The arenas this process has mapped, by id: every session here is in one
 * process, so one mapping serves all of them. */
typedef struct mapping {
  uint64_t id;
  char *p;
  size_t size;
} mapping;
static mapping maps[32];
static int nmaps;

static void unmap_all(void) {
  for (int i = 0; i < nmaps; i++)
    munmap(maps[i].p, maps[i].size);
  nmaps = 0;
}

/* The arena's base in this process, mapping the fd the reply carries when
 * the arena is new here (and closing it otherwise). */
static char *arena_base(const Scree__V1__Location *loc) {
  for (int i = 0; i < nmaps; i++) {
    if (maps[i].id == loc->arena_id) {
      if (r.fd >= 0) {
        close(r.fd);
        r.fd = -1;
      }
      return maps[i].p;
    }
  }
  cr_assert(loc->handle_attached, "arena %" PRIu64 " never came with a handle",
            loc->arena_id);
  cr_assert_geq(r.fd, 0);
  void *p = mmap(NULL, loc->arena_size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
  cr_assert_neq(p, MAP_FAILED);
  close(r.fd);
  r.fd = -1;
  cr_assert_lt(nmaps, 32);
  maps[nmaps++] = (mapping){loc->arena_id, p, loc->arena_size};
  return p;
}

/* Creates, writes offsets 0..rows, seals; returns the arena id. */
static uint64_t put(scree__session *sess, const char *name, int64_t rows, int shared) {
  const Scree__V1__Response *resp = create(sess, name, rows, shared);
  expect_status(resp, 0);
  Scree__V1__Location loc = *resp->create->location;
  int64_t *offs = (int64_t *)(arena_base(&loc) + loc.offsets_offset);
  for (int64_t i = 0; i <= rows; i++)
    offs[i] = i;
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
  s.name = test_bytes((char *)name);
  req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
  req.seal = &s;
  expect_status(call(sess, &req), 0);
  return loc.arena_id;
}

static const Scree__V1__Response *get(scree__session *sess, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  g.name = test_bytes((char *)name);
  req.body_case = SCREE__V1__REQUEST__BODY_GET;
  req.get = &g;
  return call(sess, &req);
}

static const Scree__V1__Response *del(scree__session *sess, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Delete d = SCREE__V1__DELETE__INIT;
  d.name = test_bytes((char *)name);
  req.body_case = SCREE__V1__REQUEST__BODY_DELETE;
  req.delete_ = &d;
  return call(sess, &req);
}

static const Scree__V1__Response *release(scree__session *sess, uint64_t lease) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Release rl = SCREE__V1__RELEASE__INIT;
  rl.lease_id = lease;
  req.body_case = SCREE__V1__REQUEST__BODY_RELEASE;
  req.release = &rl;
  return call(sess, &req);
}

static uint64_t stat_arena(scree__session *sess, const char *name, uint32_t *owner) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Stat st = SCREE__V1__STAT__INIT;
  st.name = test_bytes((char *)name);
  req.body_case = SCREE__V1__REQUEST__BODY_STAT;
  req.stat = &st;
  const Scree__V1__Response *resp = call(sess, &req);
  expect_status(resp, 0);
  if (owner != NULL)
    *owner = resp->stat->info->owner_uid;
  return resp->stat->info->arena_id;
}

/* ---- ownership ----------------------------------------------------------- */

Test(access, only_the_owner_or_an_admin_deletes_a_sealed_batch) {
  start(0, 0);
  scree__session *alice = client(ALICE);
  scree__session *alice2 = client(ALICE);
  scree__session *bob = client(BOB);
  scree__session *admin = client(ADMIN);
  put(alice, "a", 4, 0);
  put(alice, "b", 4, 0);
  put(bob, "c", 4, 0);

  const Scree__V1__Response *resp = del(bob, "a");
  expect_status(resp, SCREE_EPERM);
  cr_assert_str_eq(resp->message, "batch 'a' is owned by uid 1000");
  /* The refusal changed nothing: bob can still read it. */
  resp = get(bob, "a");
  expect_status(resp, 0);
  uint64_t lease = resp->get->lease_id;
  uint32_t owner;
  stat_arena(bob, "a", &owner);
  cr_assert_eq(owner, ALICE);

  /* Another connection of the same uid is the owner too. */
  expect_status(del(alice2, "a"), 0);
  cr_assert(r.resp.delete_->deferred, "bob's lease keeps the memory");
  expect_status(release(bob, lease), 0);
  /* An admin may delete anyone's batch; the owner may not delete bob's. */
  resp = del(alice, "c");
  expect_status(resp, SCREE_EPERM);
  cr_assert_str_eq(resp->message, "batch 'c' is owned by uid 1001");
  expect_status(del(admin, "c"), 0);
  expect_status(del(admin, "b"), 0);
  scree__store_counts n;
  scree__store_counts_get(store, &n);
  cr_assert_eq(n.batches, 0);
  cr_assert_eq(n.bytes_used, 0);
}

Test(access, without_an_authz_nobody_is_admin) {
  start(0, 0);
  /* A store made without access control: the owner rule still holds. */
  scree__handler_free(handler);
  scree__store_free(store);
  char msg[256];
  scree__store_config cfg = {.memory_limit = LIMIT, .arena_size = ARENA};
  cr_assert_eq(scree__store_new(mem, &cfg, &store, msg, sizeof(msg)), 0, "%s", msg);
  scree__handler_config hcfg = {.max_packet = 1 << 20, .version = "t"};
  cr_assert_eq(scree__handler_new(store, &hcfg, &handler, msg, sizeof(msg)), 0, "%s", msg);
  scree__session *alice = client(ALICE);
  scree__session *root = client(0);
  put(alice, "a", 4, 0);
  expect_status(del(root, "a"), SCREE_EPERM);
  expect_status(del(alice, "a"), 0);
}

Test(access, unsealed_batches_stay_the_creating_connections) {
  start(0, 0);
  scree__session *alice = client(ALICE);
  scree__session *alice2 = client(ALICE);
  scree__session *admin = client(ADMIN);
  expect_status(create(alice, "w", 4, 0), 0);
  /* Neither the same uid nor an admin may pull a batch being written. */
  expect_status(del(alice2, "w"), SCREE_EPERM);
  expect_status(del(admin, "w"), SCREE_EPERM);
  expect_status(del(alice, "w"), 0);
}

/* ---- quotas -------------------------------------------------------------- */

/* A batch of rows rows takes rows KiB of values plus 8 * (rows + 1) bytes
 * of offsets, each rounded to 256. */
static uint64_t block_of(int64_t rows) {
  uint64_t v = (uint64_t)rows * 1024;
  uint64_t o = ((uint64_t)(rows + 1) * 8 + 255) / 256 * 256;
  return v + o;
}

Test(access, quota_per_uid_is_enospc_naming_the_quota) {
  start(64 << 10, 0);
  scree__session *alice = client(ALICE);
  scree__session *bob = client(BOB);
  put(alice, "a1", 40, 0);
  cr_assert_eq(scree__store_uid_bytes(store, ALICE), block_of(40));
  const Scree__V1__Response *resp = create(alice, "a2", 40, 0);
  expect_status(resp, SCREE_ENOSPC);
  char want[256];
  snprintf(want, sizeof(want),
           "uid 1000 quota: needs %" PRIu64 " bytes, %" PRIu64 " used of 65536 (batch 'a2')",
           block_of(40), block_of(40));
  cr_assert_str_eq(resp->message, want);
  /* Another uid has its own quota; a smaller batch still fits alice's. */
  put(bob, "b1", 40, 0);
  put(alice, "a3", 20, 0);
  cr_assert_eq(scree__store_uid_bytes(store, ALICE), block_of(40) + block_of(20));
  cr_assert_eq(scree__store_uid_bytes(store, BOB), block_of(40));
  /* Exactly up to the quota is allowed. */
  uint64_t left = (64 << 10) - block_of(40) - block_of(20);
  cr_assert_eq(block_of(3), left);
  expect_status(create(alice, "a4", 3, 0), 0);
  cr_assert_eq(scree__store_uid_bytes(store, ALICE), 64 << 10, "unsealed batches count");
  expect_status(create(alice, "a5", 0, 0), SCREE_ENOSPC);
  expect_status(create(bob, "b2", 3, 0), 0);
}

Test(access, quota_bytes_return_when_freed_pending_deletes_still_count) {
  start(64 << 10, 0);
  scree__session *alice = client(ALICE);
  scree__session *bob = client(BOB);
  put(alice, "a1", 40, 0);
  const Scree__V1__Response *resp = get(bob, "a1");
  expect_status(resp, 0);
  uint64_t lease = resp->get->lease_id;
  expect_status(del(alice, "a1"), 0);
  cr_assert(r.resp.delete_->deferred);
  /* The name is gone but the bytes are held by bob's lease: still alice's. */
  cr_assert_eq(scree__store_uid_bytes(store, ALICE), block_of(40));
  expect_status(create(alice, "a2", 40, 0), SCREE_ENOSPC);
  expect_status(release(bob, lease), 0);
  cr_assert_eq(scree__store_uid_bytes(store, ALICE), 0);
  expect_status(create(alice, "a2", 40, 0), 0);
  /* A connection that closes gives its unsealed batches' bytes back. */
  scree__session_close(store, alice);
  cr_assert_eq(scree__store_uid_bytes(store, ALICE), 0);
}

Test(access, the_memory_limit_is_reported_before_the_quota) {
  start(LIMIT * 2ull, 0);
  scree__session *alice = client(ALICE);
  const Scree__V1__Response *resp = create(alice, "huge", (int64_t)LIMIT / 1024 + 1, 0);
  expect_status(resp, SCREE_ENOSPC);
  cr_assert(strstr(resp->message, "free of") != NULL, "%s", resp->message);
}

/* ---- arena pools --------------------------------------------------------- */

Test(access, owners_get_arenas_of_their_own) {
  start(0, 0);
  scree__session *alice = client(ALICE);
  scree__session *alice2 = client(ALICE);
  scree__session *bob = client(BOB);
  uint64_t a1 = put(alice, "a1", 4, 0);
  uint64_t b1 = put(bob, "b1", 4, 0);
  uint64_t a2 = put(alice2, "a2", 4, 0);
  cr_assert_neq(a1, b1, "alice and bob never share an arena");
  cr_assert_eq(a1, a2, "one uid's batches share its arenas");
  cr_assert_eq(stat_arena(bob, "a1", NULL), a1);

  /* Bob reading alice's batch is sent alice's arena, which holds nothing
   * of bob's. */
  const Scree__V1__Response *resp = get(bob, "a1");
  expect_status(resp, 0);
  cr_assert_eq(resp->get->location->arena_id, a1);
  cr_assert(resp->get->location->handle_attached);
  cr_assert_neq(stat_arena(bob, "b1", NULL), a1);
}

Test(access, create_shared_uses_the_shared_pool) {
  start(0, 0);
  scree__session *alice = client(ALICE);
  scree__session *bob = client(BOB);
  uint64_t a1 = put(alice, "a1", 4, 0);
  uint64_t as = put(alice, "as", 4, 1);
  uint64_t bs = put(bob, "bs", 4, 1);
  uint64_t b1 = put(bob, "b1", 4, 0);
  cr_assert_eq(as, bs, "shared batches of two owners share the shared pool");
  cr_assert_neq(as, a1);
  cr_assert_neq(as, b1);
  cr_assert_neq(a1, b1);
  uint32_t owner;
  stat_arena(alice, "bs", &owner);
  cr_assert_eq(owner, BOB, "a shared batch keeps its owner");
  expect_status(del(alice, "bs"), SCREE_EPERM);
}

Test(access, shared_arenas_turns_pools_off) {
  start(0, 1);
  scree__session *alice = client(ALICE);
  scree__session *bob = client(BOB);
  uint64_t a1 = put(alice, "a1", 4, 0);
  uint64_t b1 = put(bob, "b1", 4, 0);
  uint64_t bs = put(bob, "bs", 4, 1);
  cr_assert_eq(a1, b1);
  cr_assert_eq(a1, bs);
  scree__store_counts n;
  scree__store_counts_get(store, &n);
  cr_assert_eq(n.arenas, 1);
}

/* ---- hardening ----------------------------------------------------------- */

/* Seal reads offsets in chunks of 32768 (bounded host memory, whatever the
 * batch size); errors and max_length must be the same across chunk edges as
 * in one pass. */
Test(access, seal_checks_offsets_across_chunk_edges) {
  start(0, 0);
  scree__session *alice = client(ALICE);
  const int64_t n = 70000;
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Create c = SCREE__V1__CREATE__INIT;
  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  d.dtype = SCREE_UINT8;
  d.batch_size = n;
  d.total_rows = n;
  d.offsets_dtype = SCREE_INT64;
  c.name = test_bytes("big");
  c.desc = &d;
  req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
  req.create = &c;
  const Scree__V1__Response *resp = call(alice, &req);
  expect_status(resp, 0);
  Scree__V1__Location loc = *resp->create->location;
  int64_t *o = (int64_t *)(arena_base(&loc) + loc.offsets_offset);
  for (int64_t i = 0; i <= n; i++)
    o[i] = i;

  Scree__V1__Request sreq = SCREE__V1__REQUEST__INIT;
  Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
  s.name = test_bytes("big");
  sreq.body_case = SCREE__V1__REQUEST__BODY_SEAL;
  sreq.seal = &s;

  o[32768] = 32766; /* the first entry of the second chunk */
  resp = call(alice, &sreq);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message,
                   "offsets of 'big' are invalid: offsets[32767]=32767 > offsets[32768]=32766");
  o[32768] = 32768;
  o[65536] = n + 1;
  resp = call(alice, &sreq);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message,
                   "offsets of 'big' are invalid: offsets[65536]=70001 > total_rows=70000");
  o[65536] = 65536;
  o[n] = n - 1;
  resp = call(alice, &sreq);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message,
                   "offsets of 'big' are invalid: offsets[70000]=69999 (the last) != "
                   "total_rows=70000");
  o[n] = n;
  /* A row of 3 straddling the first chunk edge sets max_length. */
  o[32767] = 32766;
  o[32768] = 32769;
  o[32769] = 32769;
  resp = call(alice, &sreq);
  expect_status(resp, 0);
  cr_assert_eq(resp->seal->info->desc->max_length, 3);
}
