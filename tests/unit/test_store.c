/* The request handler of screed driven without sockets: each test builds
 * protobuf-c requests, calls scree__handle and checks the response and
 * the store's counters. Arena fds that come back are mapped to write
 * offsets the way a client would. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

#define LIMIT (4u << 20)
#define ARENA (1u << 20)

static scree__mem *mem;
static scree__store *store;
static scree__handler *handler;
static scree__reply r;

/* A client's view of the arenas it was given: id -> mapping. */
typedef struct mapping {
  uint64_t id;
  void *p;
  size_t size;
  int writable;
} mapping;
static mapping maps[64];
static int nmaps;

static void setup(void) {
  scree__log_threshold = SCREE__LOG_ERROR;
  char msg[256];
  cr_assert_eq(scree__mem_host_create(&mem, msg, sizeof(msg)), 0, "%s", msg);
  scree__store_config cfg = {.memory_limit = LIMIT, .arena_size = ARENA};
  cr_assert_eq(scree__store_new(mem, &cfg, &store, msg, sizeof(msg)), 0, "%s", msg);
  scree__handler_config hcfg = {.max_packet = 1 << 20, .version = "test"};
  cr_assert_eq(scree__handler_new(store, &hcfg, &handler, msg, sizeof(msg)), 0, "%s", msg);
  scree__reply_init(&r);
  nmaps = 0;
}

static void teardown(void) {
  scree__reply_clear(&r);
  for (int i = 0; i < nmaps; i++)
    munmap(maps[i].p, maps[i].size);
  scree__handler_free(handler);
  scree__store_free(store);
  mem->ops->destroy(mem);
}

TestSuite(store, .init = setup, .fini = teardown);

static scree__session *open_session(void) {
  scree__session *s = scree__session_open(store, 1000, 4242);
  cr_assert_not_null(s);
  return s;
}

/* Sends req on sess; leaves the response in r (cleared first). */
static const Scree__V1__Response *call(scree__session *sess, Scree__V1__Request *req) {
  scree__reply_clear(&r);
  scree__handle(handler, sess, req, &r);
  return &r.resp;
}

static void expect_status(const Scree__V1__Response *resp, int code) {
  cr_assert_eq(resp->status, code, "status %s (%s), expected %s", scree_err_name(resp->status),
               resp->message, scree_err_name(code));
}

static void hello(scree__session *sess) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  expect_status(call(sess, &req), 0);
}

static scree__session *client(void) {
  scree__session *s = open_session();
  hello(s);
  return s;
}

/* Records the arena fd the reply carries (mapping it, writable when
 * Location.writable says the fd allows it), or checks that the arena is
 * already known. Returns the arena's base address: a writable mapping of it
 * where one was made, since the tests' sessions share this table. */
static char *arena_of(const Scree__V1__Location *loc) {
  if (loc->handle_attached) {
    cr_assert_geq(r.fd, 0, "handle_attached without an fd");
    int prot = PROT_READ | (loc->writable ? PROT_WRITE : 0);
    void *p = mmap(NULL, loc->arena_size, prot, MAP_SHARED, r.fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    close(r.fd);
    r.fd = -1;
    cr_assert_lt(nmaps, 64);
    maps[nmaps++] = (mapping){loc->arena_id, p, loc->arena_size, loc->writable};
    return p;
  }
  cr_assert_eq(r.fd, -1, "an fd without handle_attached");
  char *found = NULL;
  for (int i = 0; i < nmaps; i++)
    if (maps[i].id == loc->arena_id && (found == NULL || maps[i].writable))
      found = maps[i].p;
  cr_assert_not_null(found, "arena %" PRIu64 " was never attached", loc->arena_id);
  return found;
}

typedef struct created {
  char *base; /* arena base in this process */
  Scree__V1__Location loc;
} created;

static const Scree__V1__Response *create_raw(scree__session *sess, const char *name,
                                             uint32_t dtype, int64_t inner0, int64_t batch,
                                             int64_t rows, uint32_t odtype) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Create c = SCREE__V1__CREATE__INIT;
  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  int64_t inner[1] = {inner0};
  d.dtype = dtype;
  d.n_inner = inner0 > 0 ? 1 : 0;
  d.inner = inner;
  d.batch_size = batch;
  d.total_rows = rows;
  d.offsets_dtype = odtype;
  c.name = test_bytes((char *)name);
  c.desc = &d;
  req.id = 7;
  req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
  req.create = &c;
  return call(sess, &req);
}

/* Creates a float32 batch of rows x 4 values with batch rows. */
static created create_ok(scree__session *sess, const char *name, int64_t batch,
                         int64_t rows) {
  const Scree__V1__Response *resp = create_raw(sess, name, SCREE_FLOAT32, 4, batch, rows,
                                               SCREE_INT64);
  expect_status(resp, 0);
  cr_assert_eq(resp->id, 7);
  cr_assert_eq(resp->body_case, SCREE__V1__RESPONSE__BODY_CREATE);
  created c;
  c.loc = *resp->create->location;
  c.base = arena_of(&c.loc);
  cr_assert_eq(c.loc.values_offset % 256, 0);
  cr_assert_eq(c.loc.offsets_offset % 256, 0);
  cr_assert_eq(c.loc.values_bytes, (uint64_t)rows * 16);
  cr_assert_eq(c.loc.offsets_bytes, (uint64_t)(batch + 1) * 8);
  return c;
}

/* Writes offsets splitting rows evenly (the last row takes the rest). */
static void write_offsets(created *c, int64_t batch, int64_t rows) {
  int64_t *o = (int64_t *)(c->base + c->loc.offsets_offset);
  for (int64_t i = 0; i <= batch; i++)
    o[i] = batch ? (i == batch ? rows : i * (rows / batch)) : 0;
  float *v = (float *)(c->base + c->loc.values_offset);
  for (int64_t i = 0; i < rows * 4; i++)
    v[i] = (float)i;
}

static const Scree__V1__Response *seal(scree__session *sess, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
  s.name = test_bytes((char *)name);
  req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
  req.seal = &s;
  return call(sess, &req);
}

static void put(scree__session *sess, const char *name, int64_t batch, int64_t rows) {
  created c = create_ok(sess, name, batch, rows);
  write_offsets(&c, batch, rows);
  expect_status(seal(sess, name), 0);
}

static const Scree__V1__Response *get(scree__session *sess, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  g.name = test_bytes((char *)name);
  req.body_case = SCREE__V1__REQUEST__BODY_GET;
  req.get = &g;
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

static const Scree__V1__Response *del(scree__session *sess, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Delete d = SCREE__V1__DELETE__INIT;
  d.name = test_bytes((char *)name);
  req.body_case = SCREE__V1__REQUEST__BODY_DELETE;
  req.delete_ = &d;
  return call(sess, &req);
}

static const Scree__V1__Response *stat_(scree__session *sess, const char *name) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Stat s = SCREE__V1__STAT__INIT;
  s.name = test_bytes((char *)name);
  req.body_case = SCREE__V1__REQUEST__BODY_STAT;
  req.stat = &s;
  return call(sess, &req);
}

static const Scree__V1__Response *list(scree__session *sess, const char *prefix,
                                       const char *token, uint32_t size) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__List l = SCREE__V1__LIST__INIT;
  l.prefix = test_bytes((char *)prefix);
  l.page_token = test_bytes((char *)token);
  l.page_size = size;
  req.body_case = SCREE__V1__REQUEST__BODY_LIST;
  req.list = &l;
  return call(sess, &req);
}

static const Scree__V1__StatsReply *stats(scree__session *sess) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Stats st = SCREE__V1__STATS__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_STATS;
  req.stats = &st;
  const Scree__V1__Response *resp = call(sess, &req);
  expect_status(resp, 0);
  return resp->stats;
}

static scree__store_counts counts(void) {
  scree__store_counts c;
  scree__store_counts_get(store, &c);
  return c;
}

/* ---- session rules ---------------------------------------------------- */

Test(store, hello_reply_describes_the_daemon) {
  scree__session *s = open_session();
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  h.client_name = "unit";
  req.id = 99;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  const Scree__V1__Response *resp = call(s, &req);
  expect_status(resp, 0);
  cr_assert_eq(resp->id, 99);
  const Scree__V1__HelloReply *hr = resp->hello;
  cr_assert_eq(hr->protocol_version, 1);
  cr_assert_eq(hr->backend, SCREE__V1__BACKEND__BACKEND_HOST);
  cr_assert_eq(hr->ipc_mode, SCREE__V1__IPC_MODE__IPC_MODE_MEMFD);
  cr_assert_eq(hr->device_index, -1);
  cr_assert_eq(hr->device_uuid.len, 0);
  cr_assert_eq(hr->granularity, (uint64_t)sysconf(_SC_PAGESIZE));
  cr_assert_eq(hr->memory_limit, LIMIT);
  cr_assert_eq(hr->max_packet, 1 << 20);
  cr_assert_eq(hr->arena_size, ARENA);
  cr_assert_eq(hr->max_name_len, 255);
  cr_assert_str_eq(hr->version, "test");
  cr_assert(hr->inline_offsets, "the daemon takes Create.offsets");
}

Test(store, hello_with_another_version_is_eproto) {
  scree__session *s = open_session();
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 2;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  const Scree__V1__Response *resp = call(s, &req);
  expect_status(resp, SCREE_EPROTO);
  cr_assert_str_eq(resp->message,
                   "protocol version 2 is not supported; screed speaks version 1");
  /* Still no session: other requests need a good Hello first. */
  cr_assert_eq(stat_(s, "x")->status, SCREE_EPROTO);
}

Test(store, requests_before_hello_are_eproto) {
  scree__session *s = open_session();
  const Scree__V1__Response *resp = get(s, "x");
  expect_status(resp, SCREE_EPROTO);
  cr_assert_str_eq(resp->message, "the first request on a connection must be Hello, not get");
  hello(s);
  expect_status(get(s, "x"), SCREE_ENOENT);
}

Test(store, unknown_request_type_is_eproto) {
  scree__session *s = client();
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.id = 5;
  const Scree__V1__Response *resp = call(s, &req);
  expect_status(resp, SCREE_EPROTO);
  cr_assert_eq(resp->id, 5);
  cr_assert_str_eq(resp->message, "unknown request type");
}

Test(store, malformed_packets_are_eproto_with_id_0) {
  scree__session *s = client();
  const uint8_t junk[] = {0x08, 0xff, 0xff, 0xff}; /* a truncated varint */
  scree__reply_clear(&r);
  scree__handle_packet(handler, s, junk, sizeof(junk), &r);
  expect_status(&r.resp, SCREE_EPROTO);
  cr_assert_eq(r.resp.id, 0);
  cr_assert(strstr(r.resp.message, "malformed request") != NULL, "%s", r.resp.message);
  /* A field number the daemon does not know decodes to no body. */
  const uint8_t unknown[] = {0x08, 0x03, 0xfa, 0x01, 0x00}; /* id=3, field 31 = {} */
  scree__reply_clear(&r);
  scree__handle_packet(handler, s, unknown, sizeof(unknown), &r);
  expect_status(&r.resp, SCREE_EPROTO);
  cr_assert_eq(r.resp.id, 3);
  cr_assert_str_eq(r.resp.message, "unknown request type");
}

Test(store, attention_without_an_executor_is_enotsup) {
  scree__session *s = client();
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Attention a = SCREE__V1__ATTENTION__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_ATTENTION;
  req.attention = &a;
  const Scree__V1__Response *resp = call(s, &req);
  expect_status(resp, SCREE_ENOTSUP);
  cr_assert_str_eq(resp->message, "attention is not available in this daemon");
}

/* ---- the batch life cycle --------------------------------------------- */

Test(store, create_seal_get_release_delete) {
  scree__session *s = client();
  created c = create_ok(s, "batch/one", 3, 10);
  cr_assert(c.loc.handle_attached);
  cr_assert_eq(c.loc.values_offset, 0);
  cr_assert_eq(c.loc.offsets_offset, 256, "values (160 bytes) then offsets, 256-aligned");
  cr_assert_eq(counts().bytes_used, 512);
  write_offsets(&c, 3, 10); /* 0 3 6 10 */

  const Scree__V1__Response *resp = seal(s, "batch/one");
  expect_status(resp, 0);
  const Scree__V1__BatchInfo *info = resp->seal->info;
  cr_assert_str_eq(info->name, "batch/one");
  cr_assert_eq(info->state, SCREE__V1__BATCH_STATE__BATCH_STATE_SEALED);
  cr_assert_eq(info->desc->max_length, 4);
  cr_assert_eq(info->desc->batch_size, 3);
  cr_assert_eq(info->desc->total_rows, 10);
  cr_assert_eq(info->desc->n_inner, 1);
  cr_assert_eq(info->desc->inner[0], 4);
  cr_assert_eq(info->owner_uid, 1000);
  cr_assert_eq(info->owner_pid, 4242);

  resp = get(s, "batch/one");
  expect_status(resp, 0);
  uint64_t lease = resp->get->lease_id;
  cr_assert_neq(lease, 0);
  cr_assert_not(resp->get->location->handle_attached, "this session has the arena already");
  cr_assert_eq(r.fd, -1);
  cr_assert_eq(resp->get->location->values_offset, c.loc.values_offset);
  cr_assert_eq(resp->get->info->leases, 1);
  cr_assert_eq(counts().leases, 1);

  /* Another session gets the fd once, then never again for this arena. */
  scree__session *s2 = client();
  resp = get(s2, "batch/one");
  expect_status(resp, 0);
  cr_assert(resp->get->location->handle_attached);
  char *base2 = arena_of(resp->get->location);
  cr_assert_eq(memcmp(base2 + resp->get->location->values_offset,
                      c.base + c.loc.values_offset, 160),
               0, "both mappings show the same bytes");
  uint64_t lease2 = resp->get->lease_id;
  cr_assert_neq(lease2, lease);
  resp = get(s2, "batch/one");
  expect_status(resp, 0);
  cr_assert_not(resp->get->location->handle_attached);
  uint64_t lease3 = resp->get->lease_id;

  expect_status(release(s, lease), 0);
  expect_status(release(s2, lease2), 0);
  expect_status(release(s2, lease3), 0);
  cr_assert_eq(counts().leases, 0);
  resp = del(s, "batch/one");
  expect_status(resp, 0);
  cr_assert_not(resp->delete_->deferred);
  cr_assert_eq(counts().bytes_used, 0);
  cr_assert_eq(counts().batches, 0);
  expect_status(get(s, "batch/one"), SCREE_ENOENT);
}

Test(store, delete_with_leases_is_deferred) {
  scree__session *s = client();
  scree__session *reader = client();
  put(s, "d", 2, 4);
  uint64_t l1 = get(reader, "d")->get->lease_id;
  uint64_t l2 = get(reader, "d")->get->lease_id;
  const Scree__V1__Response *resp = del(s, "d");
  expect_status(resp, 0);
  cr_assert(resp->delete_->deferred);
  cr_assert_eq(counts().pending_deletes, 1);
  cr_assert_eq(counts().batches, 0, "the name is gone at once");
  cr_assert_neq(counts().bytes_used, 0, "the memory stays while leased");
  expect_status(get(s, "d"), SCREE_ENOENT);
  /* The name can be reused at once. */
  put(s, "d", 1, 1);
  expect_status(release(reader, l1), 0);
  cr_assert_eq(counts().pending_deletes, 1);
  expect_status(release(reader, l2), 0);
  cr_assert_eq(counts().pending_deletes, 0);
  cr_assert_eq(counts().bytes_used, 512, "only the new 'd' is left");
  const Scree__V1__StatsReply *st = stats(s);
  cr_assert_eq(st->pending_deletes, 0);
  cr_assert_eq(st->batches, 1);
}

Test(store, release_of_a_lease_not_held_is_einval) {
  scree__session *s = client();
  scree__session *other = client();
  put(s, "x", 1, 1);
  uint64_t lease = get(s, "x")->get->lease_id;
  const Scree__V1__Response *resp = release(other, lease);
  expect_status(resp, SCREE_EINVAL);
  char want[128];
  snprintf(want, sizeof(want), "lease %" PRIu64 " is not held by this connection", lease);
  cr_assert_str_eq(resp->message, want);
  resp = release(s, 42);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "lease 42 is not held by this connection");
  expect_status(release(s, lease), 0);
  expect_status(release(s, lease), SCREE_EINVAL);
}

Test(store, seal_rules) {
  scree__session *s = client();
  scree__session *other = client();
  created c = create_ok(s, "w", 2, 2);
  expect_status(get(other, "w"), SCREE_ESTATE);
  cr_assert_str_eq(r.resp.message, "batch 'w' is not sealed yet");
  const Scree__V1__Response *resp = seal(other, "w");
  expect_status(resp, SCREE_EPERM);
  cr_assert_str_eq(resp->message, "batch 'w' was created by another connection");
  resp = del(other, "w");
  expect_status(resp, SCREE_EPERM);
  cr_assert_str_eq(resp->message, "batch 'w' is being written by another connection");
  write_offsets(&c, 2, 2);
  expect_status(seal(s, "w"), 0);
  resp = seal(s, "w");
  expect_status(resp, SCREE_ESTATE);
  cr_assert_str_eq(resp->message, "batch 'w' is already sealed");
  expect_status(seal(s, "nope"), SCREE_ENOENT);
  /* Once sealed, anyone may delete it. */
  expect_status(del(other, "w"), 0);
}

Test(store, invalid_offsets_fail_seal_and_can_be_fixed) {
  scree__session *s = client();
  created c = create_ok(s, "bad", 7, 40);
  int64_t *o = (int64_t *)(c.base + c.loc.offsets_offset);
  int64_t vals[8] = {0, 5, 10, 20, 30, 40, 38, 40};
  memcpy(o, vals, sizeof(vals));
  const Scree__V1__Response *resp = seal(s, "bad");
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "offsets of 'bad' are invalid: offsets[5]=40 > offsets[6]=38");
  resp = stat_(s, "bad");
  expect_status(resp, 0);
  cr_assert_eq(resp->stat->info->state, SCREE__V1__BATCH_STATE__BATCH_STATE_CREATED);
  o[0] = 3;
  resp = seal(s, "bad");
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "offsets of 'bad' are invalid: offsets[0]=3, expected 0");
  o[0] = 0;
  o[6] = 40;
  o[7] = 39;
  resp = seal(s, "bad");
  expect_status(resp, SCREE_EINVAL);
  cr_assert(strstr(resp->message, "offsets[6]=40 > offsets[7]=39") != NULL, "%s",
            resp->message);
  o[7] = 40;
  resp = seal(s, "bad");
  expect_status(resp, 0);
  cr_assert_eq(resp->seal->info->desc->max_length, 10);
}

Test(store, int32_offsets_and_empty_batches) {
  scree__session *s = client();
  const Scree__V1__Response *resp = create_raw(s, "i32", SCREE_BFLOAT16, 0, 2, 5, SCREE_INT32);
  expect_status(resp, 0);
  Scree__V1__Location loc = *resp->create->location;
  char *base = arena_of(&loc);
  cr_assert_eq(loc.offsets_bytes, 12);
  int32_t o[3] = {0, 5, 5};
  memcpy(base + loc.offsets_offset, o, sizeof(o));
  resp = seal(s, "i32");
  expect_status(resp, 0);
  cr_assert_eq(resp->seal->info->desc->max_length, 5);
  cr_assert_eq(resp->seal->info->desc->offsets_dtype, SCREE_INT32);
  /* A batch of no rows still has its one offset. */
  resp = create_raw(s, "empty", SCREE_INT8, 0, 0, 0, SCREE_INT64);
  expect_status(resp, 0);
  cr_assert_eq(resp->create->location->values_bytes, 0);
  cr_assert_eq(resp->create->location->offsets_bytes, 8);
  expect_status(seal(s, "empty"), 0);
}

/* ---- offsets inline with Seal -------------------------------------------- */

/* A Seal of name with n bytes of inline offsets. */
static const Scree__V1__Response *seal_inline(scree__session *sess, const char *name,
                                              const void *offsets, size_t n) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Seal q = SCREE__V1__SEAL__INIT;
  q.name = test_bytes(name);
  q.offsets.data = (uint8_t *)offsets;
  q.offsets.len = n;
  req.id = 9;
  req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
  req.seal = &q;
  return call(sess, &req);
}

/* The fences the store asks of the backend: the host backend's ops with a
 * counting fence, so that the tests see the store wait for its writes (the
 * CUDA backend's fence waits for its copies to land). */
static int fences;
static struct scree__mem_ops fenced_ops;

static int count_fence(scree__mem *m, char *msg, size_t msg_len) {
  (void)m;
  (void)msg;
  (void)msg_len;
  fences++;
  return 0;
}

static void use_fenced_ops(void) {
  fenced_ops = *mem->ops;
  fenced_ops.fence = count_fence;
  mem->ops = &fenced_ops;
  fences = 0;
}

Test(store, inline_offsets_are_written_by_seal_and_nothing_is_read_back) {
  use_fenced_ops();
  scree__session *s = client();
  created c = create_ok(s, "in", 3, 12);
  /* Whatever the batch's memory holds is not read. */
  memset(c.base + c.loc.offsets_offset, 0xee, c.loc.offsets_bytes);
  int64_t o[4] = {0, 3, 10, 12};
  const Scree__V1__Response *resp = seal_inline(s, "in", o, sizeof(o));
  expect_status(resp, 0);
  cr_assert_eq(resp->id, 9);
  cr_assert_eq(resp->seal->info->desc->max_length, 7);
  cr_assert_eq(memcmp(c.base + c.loc.offsets_offset, o, sizeof(o)), 0,
               "the daemon wrote the inline offsets into the batch");
  cr_assert_eq(fences, 1, "the write was fenced before the batch was sealed");
  /* A batch whose offsets were written by the client is read back as
   * before, and there is no write to wait for. */
  put(s, "plain", 2, 4);
  cr_assert_eq(fences, 1);
  resp = get(s, "in");
  expect_status(resp, 0);
  cr_assert_eq(resp->get->info->desc->max_length, 7);
  /* Sealed once, sealed for good: inline offsets change nothing then. */
  resp = seal_inline(s, "in", o, sizeof(o));
  expect_status(resp, SCREE_ESTATE);
  cr_assert_eq(fences, 1);
}

Test(store, inline_int32_offsets_and_an_empty_batch) {
  scree__session *s = client();
  const Scree__V1__Response *resp = create_raw(s, "i32", SCREE_BFLOAT16, 0, 2, 5, SCREE_INT32);
  expect_status(resp, 0);
  Scree__V1__Location loc = *resp->create->location;
  char *base = arena_of(&loc);
  int32_t o[3] = {0, 5, 5};
  resp = seal_inline(s, "i32", o, sizeof(o));
  expect_status(resp, 0);
  cr_assert_eq(resp->seal->info->desc->max_length, 5);
  cr_assert_eq(memcmp(base + loc.offsets_offset, o, sizeof(o)), 0);
  expect_status(create_raw(s, "none", SCREE_INT8, 0, 0, 0, SCREE_INT64), 0);
  int64_t zero = 0;
  expect_status(seal_inline(s, "none", &zero, sizeof(zero)), 0);
}

Test(store, bad_inline_offsets_are_refused_as_offsets_in_memory_are) {
  use_fenced_ops();
  scree__session *s = client();
  static const struct {
    int64_t o[4];
    const char *msg;
  } cases[] = {
      {{3, 5, 10, 12}, "offsets of 'x' are invalid: offsets[0]=3, expected 0"},
      {{0, 5, 4, 12}, "offsets of 'x' are invalid: offsets[1]=5 > offsets[2]=4"},
      {{0, 5, 13, 12}, "offsets of 'x' are invalid: offsets[2]=13 > total_rows=12"},
      {{0, 5, 10, 11}, "offsets of 'x' are invalid: offsets[3]=11 (the last) != total_rows=12"},
  };
  created c = create_ok(s, "x", 3, 12);
  memset(c.base + c.loc.offsets_offset, 0, c.loc.offsets_bytes);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const Scree__V1__Response *resp = seal_inline(s, "x", cases[i].o, sizeof(cases[i].o));
    expect_status(resp, SCREE_EINVAL);
    cr_assert_str_eq(resp->message, cases[i].msg);
    /* Nothing was written: the batch's memory is as it was. */
    int64_t zeros[4] = {0, 0, 0, 0};
    cr_assert_eq(memcmp(c.base + c.loc.offsets_offset, zeros, sizeof(zeros)), 0);
    /* The same offsets written into the batch get the same words. */
    memcpy(c.base + c.loc.offsets_offset, cases[i].o, sizeof(cases[i].o));
    resp = seal(s, "x");
    expect_status(resp, SCREE_EINVAL);
    cr_assert_str_eq(resp->message, cases[i].msg);
    memset(c.base + c.loc.offsets_offset, 0, c.loc.offsets_bytes);
  }
  cr_assert_eq(fences, 0, "nothing was written, nothing fenced");
  /* Too few or too many bytes for the batch. */
  int64_t o[5] = {0, 3, 10, 12, 12};
  const Scree__V1__Response *resp = seal_inline(s, "x", o, 24);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "seal of 'x' carries 24 bytes of inline offsets; the batch "
                                  "has 32 (batch_size + 1 = 4 int64 offsets)");
  resp = seal_inline(s, "x", o, 40);
  expect_status(resp, SCREE_EINVAL);
  cr_assert(strstr(resp->message, "carries 40 bytes") != NULL, "%s", resp->message);
  resp = seal_inline(s, "x", o, 31);
  expect_status(resp, SCREE_EINVAL);
  /* The batch stayed created: good offsets seal it. */
  resp = stat_(s, "x");
  expect_status(resp, 0);
  cr_assert_eq(resp->stat->info->state, SCREE__V1__BATCH_STATE__BATCH_STATE_CREATED);
  resp = seal_inline(s, "x", o, 32);
  expect_status(resp, 0);
  cr_assert_eq(resp->seal->info->desc->max_length, 7);
  /* int32 offsets are read as int32. */
  resp = create_raw(s, "y", SCREE_INT8, 0, 2, 5, SCREE_INT32);
  expect_status(resp, 0);
  int32_t o32[3] = {0, 6, 5};
  resp = seal_inline(s, "y", o32, sizeof(o32));
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "offsets of 'y' are invalid: offsets[1]=6 > total_rows=5");
}

Test(store, inline_offsets_follow_the_seal_rules_first) {
  scree__session *s = client();
  scree__session *other = client();
  int64_t o[3] = {0, 1, 2};
  created c = create_ok(s, "w", 2, 2);
  /* Another connection's seal is refused before its offsets are looked
   * at, and writes nothing. */
  memset(c.base + c.loc.offsets_offset, 0, c.loc.offsets_bytes);
  const Scree__V1__Response *resp = seal_inline(other, "w", o, sizeof(o));
  expect_status(resp, SCREE_EPERM);
  int64_t zeros[3] = {0, 0, 0};
  cr_assert_eq(memcmp(c.base + c.loc.offsets_offset, zeros, sizeof(zeros)), 0);
  resp = seal_inline(other, "w", o, 8);
  expect_status(resp, SCREE_EPERM);
  expect_status(seal_inline(s, "nope", o, sizeof(o)), SCREE_ENOENT);
  expect_status(seal_inline(s, "w", o, sizeof(o)), 0);
}

/* ---- bad input ---------------------------------------------------------- */

Test(store, bad_names_are_refused) {
  scree__session *s = client();
  const Scree__V1__Response *resp = create_raw(s, "", SCREE_FLOAT32, 1, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "batch name is empty");

  char long_name[300];
  memset(long_name, 'a', 256);
  long_name[256] = '\0';
  resp = create_raw(s, long_name, SCREE_FLOAT32, 1, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_ENAMETOOLONG);
  cr_assert_str_eq(resp->message, "batch name is 256 bytes; the limit is 255");
  long_name[255] = '\0';
  expect_status(create_raw(s, long_name, SCREE_FLOAT32, 1, 1, 1, SCREE_INT64), 0);

  resp = create_raw(s, "tab\there", SCREE_FLOAT32, 1, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "batch name has a control character (U+0009) at byte 3");
  resp = create_raw(s, "del\x7f", SCREE_FLOAT32, 1, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  resp = create_raw(s, "c1\xc2\x85", SCREE_FLOAT32, 1, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "batch name has a control character (U+0085) at byte 2");
  resp = create_raw(s, "bad\xff", SCREE_FLOAT32, 1, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "batch name is not valid UTF-8 at byte 3");
  resp = create_raw(s, "overlong\xc0\xaf", SCREE_FLOAT32, 1, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  resp = create_raw(s, "cut\xe2\x82", SCREE_FLOAT32, 1, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  resp = create_raw(s, "surrogate\xed\xa0\x80", SCREE_FLOAT32, 1, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  /* Printable UTF-8, spaces and slashes are fine. */
  expect_status(create_raw(s, "ns/r\xc3\xa9sum\xc3\xa9 \xe2\x82\xac 1", SCREE_FLOAT32, 1, 1, 1,
                           SCREE_INT64),
                0);
  expect_status(get(s, ""), SCREE_EINVAL);
  expect_status(stat_(s, "a\nb"), SCREE_EINVAL);
  cr_assert_eq(counts().batches, 2);
}

Test(store, duplicate_names_are_eexist) {
  scree__session *s = client();
  scree__session *other = client();
  create_ok(s, "dup", 1, 1);
  const Scree__V1__Response *resp = create_raw(other, "dup", SCREE_FLOAT32, 4, 1, 1,
                                               SCREE_INT64);
  expect_status(resp, SCREE_EEXIST);
  cr_assert_str_eq(resp->message, "batch 'dup' already exists (being written)");
  put(s, "dup2", 1, 1);
  resp = create_raw(s, "dup2", SCREE_FLOAT32, 4, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EEXIST);
  cr_assert_str_eq(resp->message, "batch 'dup2' already exists (sealed)");
}

Test(store, bad_descriptors_are_refused) {
  scree__session *s = client();
  const Scree__V1__Response *resp =
      create_raw(s, "o", SCREE_FLOAT64, INT64_MAX / 2, 1, 1000, SCREE_INT64);
  expect_status(resp, SCREE_EOVERFLOW);
  cr_assert(strstr(resp->message, "overflows") != NULL, "%s", resp->message);
  resp = create_raw(s, "o", SCREE_FLOAT32, 0, INT64_MAX - 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EOVERFLOW);
  cr_assert(strstr(resp->message, "offsets size overflows") != NULL, "%s", resp->message);
  resp = create_raw(s, "o", SCREE_FLOAT32, 0, 1, (int64_t)INT32_MAX + 1, SCREE_INT32);
  expect_status(resp, SCREE_EOVERFLOW);
  resp = create_raw(s, "o", 99, 0, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "dtype 0 is not a scree dtype");
  resp = create_raw(s, "o", 0xffffffffu, 0, 1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  resp = create_raw(s, "o", SCREE_FLOAT32, 0, 1, 1, SCREE_FLOAT32);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "offsets dtype float32 is not int32 or int64");
  resp = create_raw(s, "o", SCREE_FLOAT32, 0, -1, 1, SCREE_INT64);
  expect_status(resp, SCREE_EINVAL);
  /* create_raw sends at most one positive inner dim; a negative dim and
   * too many dims are built by hand. */
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Create c = SCREE__V1__CREATE__INIT;
  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  int64_t inner[12] = {2, -1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
  d.dtype = SCREE_FLOAT32;
  d.offsets_dtype = SCREE_INT64;
  d.inner = inner;
  d.n_inner = 2;
  d.batch_size = 1;
  d.total_rows = 1;
  c.name = test_bytes("o");
  c.desc = &d;
  req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
  req.create = &c;
  resp = call(s, &req);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "inner[1]=-1 is negative");
  d.n_inner = 12;
  resp = call(s, &req);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "12 inner dims; at most 8 are supported");
  c.desc = NULL;
  resp = call(s, &req);
  expect_status(resp, SCREE_EINVAL);
  cr_assert_str_eq(resp->message, "create of 'o' has no array descriptor");
  cr_assert_eq(counts().batches, 0);
  cr_assert_eq(counts().bytes_used, 0);
}

Test(store, over_the_memory_limit_is_enospc) {
  scree__session *s = client();
  /* 3 MiB of values + 256 for the offsets: fits the 4 MiB limit. */
  put(s, "big", 1, (3 << 20) / 16);
  cr_assert_eq(counts().bytes_used, (3u << 20) + 256);
  const Scree__V1__Response *resp =
      create_raw(s, "more", SCREE_FLOAT32, 4, 1, (1 << 20) / 16, SCREE_INT64);
  expect_status(resp, SCREE_ENOSPC);
  char want[256];
  snprintf(want, sizeof(want), "batch 'more' needs %u bytes, %u free of %u", (1u << 20) + 256,
           LIMIT - ((3u << 20) + 256), LIMIT);
  cr_assert_str_eq(resp->message, want);
  /* Exactly the free bytes fit: no spurious ENOSPC. */
  uint64_t free_bytes = LIMIT - ((3u << 20) + 256);
  resp = create_raw(s, "exact", SCREE_UINT8, 0, 1, (int64_t)(free_bytes - 256), SCREE_INT64);
  expect_status(resp, 0);
  cr_assert_eq(counts().bytes_used, LIMIT);
  resp = create_raw(s, "one-more", SCREE_UINT8, 0, 0, 0, SCREE_INT64);
  expect_status(resp, SCREE_ENOSPC);
  cr_assert_str_eq(resp->message, "batch 'one-more' needs 256 bytes, 0 free of 4194304");
  /* A size that wraps uint64 is still a clean ENOSPC. */
  resp = create_raw(s, "huge", SCREE_UINT8, 0, 1, INT64_MAX, SCREE_INT64);
  expect_status(resp, SCREE_ENOSPC);
  expect_status(del(s, "big"), 0);
  expect_status(create_raw(s, "more", SCREE_FLOAT32, 4, 1, (1 << 20) / 16, SCREE_INT64), 0);
}

/* ---- listing and statistics ------------------------------------------- */

Test(store, list_pages_in_name_order) {
  scree__session *s = client();
  char name[32];
  for (int i = 24; i >= 0; i--) {
    snprintf(name, sizeof(name), "p/%02d", i);
    if (i % 2)
      put(s, name, 1, 1);
    else
      create_ok(s, name, 1, 1);
  }
  put(s, "other", 1, 1);
  put(s, "p", 1, 1); /* has the prefix "p" but not "p/" */

  char token[64] = "";
  int seen = 0;
  for (int page = 0; page < 10; page++) {
    const Scree__V1__Response *resp = list(s, "p/", token, 10);
    expect_status(resp, 0);
    const Scree__V1__ListReply *lr = resp->list;
    for (size_t i = 0; i < lr->n_batches; i++, seen++) {
      snprintf(name, sizeof(name), "p/%02d", seen);
      cr_assert_str_eq(lr->batches[i]->name, name);
      cr_assert_eq(lr->batches[i]->state, seen % 2 ? SCREE__V1__BATCH_STATE__BATCH_STATE_SEALED
                                                   : SCREE__V1__BATCH_STATE__BATCH_STATE_CREATED);
    }
    if (seen < 25) {
      cr_assert_eq(lr->n_batches, 10);
      cr_assert_str_eq(lr->next_page_token, lr->batches[9]->name);
    } else {
      cr_assert_str_eq(lr->next_page_token, "");
    }
    snprintf(token, sizeof(token), "%s", lr->next_page_token);
    if (token[0] == '\0')
      break;
  }
  cr_assert_eq(seen, 25);

  /* Default page size, everything. */
  const Scree__V1__Response *resp = list(s, "", "", 0);
  expect_status(resp, 0);
  cr_assert_eq(resp->list->n_batches, 27);
  cr_assert_str_eq(resp->list->batches[0]->name, "other");
  cr_assert_str_eq(resp->list->batches[1]->name, "p");
  cr_assert_str_eq(resp->list->next_page_token, "");
  /* A token between names, and a prefix nothing has. */
  resp = list(s, "p/", "p/10x", 3);
  cr_assert_eq(resp->list->n_batches, 3);
  cr_assert_str_eq(resp->list->batches[0]->name, "p/11");
  resp = list(s, "zz", "", 0);
  cr_assert_eq(resp->list->n_batches, 0);
  cr_assert_str_eq(resp->list->next_page_token, "");
}

Test(store, list_page_size_is_capped) {
  scree__session *s = client();
  char name[32];
  for (int i = 0; i < 1005; i++) {
    snprintf(name, sizeof(name), "n%04d", i);
    create_ok(s, name, 0, 0);
  }
  const Scree__V1__Response *resp = list(s, "", "", 5000);
  expect_status(resp, 0);
  cr_assert_leq(resp->list->n_batches, 1000);
  cr_assert_gt(resp->list->n_batches, 0);
  cr_assert_str_neq(resp->list->next_page_token, "");
  cr_assert_leq(scree__v1__response__get_packed_size(&r.resp),
                SCREE__LIST_REPLY_BUDGET + 1024, "a page fits the reply budget");
}

Test(store, list_reply_stays_under_the_budget_with_long_names) {
  scree__session *s = client();
  char name[300];
  int total = 600;
  for (int i = 0; i < total; i++) {
    memset(name, 'x', 250);
    snprintf(name + 250, 50, "%04d", i);
    create_ok(s, name, 0, 0);
  }
  int seen = 0;
  char token[300] = "";
  for (;;) {
    const Scree__V1__Response *resp = list(s, "", token, 1000);
    expect_status(resp, 0);
    cr_assert_leq(scree__v1__response__get_packed_size(&r.resp), SCREE__LIST_REPLY_BUDGET + 1024);
    seen += (int)resp->list->n_batches;
    snprintf(token, sizeof(token), "%s", resp->list->next_page_token);
    if (token[0] == '\0')
      break;
  }
  cr_assert_eq(seen, total);
}

Test(store, stat_reports_batch_info) {
  scree__session *s = client();
  put(s, "st", 4, 8);
  const Scree__V1__Response *resp = stat_(s, "st");
  expect_status(resp, 0);
  const Scree__V1__BatchInfo *info = resp->stat->info;
  cr_assert_str_eq(info->name, "st");
  cr_assert_eq(info->values_bytes, 8 * 16);
  cr_assert_eq(info->offsets_bytes, 5 * 8);
  cr_assert_eq(info->leases, 0);
  cr_assert_eq(info->desc->dtype, SCREE_FLOAT32);
  cr_assert_eq(info->desc->max_length, 2);
  cr_assert_neq(info->arena_id, 0);
  cr_assert_not(info->delete_pending);
  expect_status(stat_(s, "missing"), SCREE_ENOENT);
  cr_assert_str_eq(r.resp.message, "no batch named 'missing'");
}

Test(store, stats_count_everything) {
  scree__session *s = client();
  scree__session *s2 = client();
  put(s, "a", 1, 1);
  create_ok(s, "b", 1, 1);
  get(s2, "a");
  expect_status(get(s, "nope"), SCREE_ENOENT);
  expect_status(get(s, "nope"), SCREE_ENOENT);
  expect_status(seal(s2, "b"), SCREE_EPERM);
  const Scree__V1__StatsReply *st = stats(s);
  cr_assert_eq(st->batches, 2);
  cr_assert_eq(st->connections, 2);
  cr_assert_eq(st->leases, 1);
  cr_assert_eq(st->bytes_used, 1024);
  cr_assert_eq(st->bytes_limit, LIMIT);
  cr_assert_eq(st->arenas, 1);
  cr_assert_eq(st->bytes_arenas, ARENA);
  cr_assert_eq(st->requests, 10, "2 hellos, create+seal, create, get, 3 failures, stats");
  cr_assert_gt(st->uptime_ns, 0);
  cr_assert_eq(st->pending_deletes, 0);
  int found_noent = 0, found_perm = 0;
  for (size_t i = 0; i < st->n_errors; i++) {
    if (st->errors[i]->code == SCREE_ENOENT) {
      cr_assert_eq(st->errors[i]->count, 2);
      found_noent = 1;
    }
    if (st->errors[i]->code == SCREE_EPERM) {
      cr_assert_eq(st->errors[i]->count, 1);
      found_perm = 1;
    }
  }
  cr_assert(found_noent && found_perm);
  cr_assert_eq(st->n_errors, 2);
}

/* ---- connection close --------------------------------------------------- */

Test(store, closing_a_session_cleans_up) {
  scree__session *keeper = client();
  put(keeper, "kept", 2, 2);
  scree__store_counts base = counts();

  scree__session *s = client();
  put(s, "sealed-by-s", 1, 3);
  create_ok(s, "unsealed-1", 3, 3);
  create_ok(s, "unsealed-2", 1, 100);
  get(s, "kept");
  get(s, "kept");
  get(s, "sealed-by-s");
  expect_status(del(keeper, "kept"), 0); /* deferred: s holds leases */
  cr_assert(r.resp.delete_->deferred);
  cr_assert_eq(counts().leases, 3);
  cr_assert_eq(counts().pending_deletes, 1);

  scree__session_close(store, s);
  scree__store_counts after = counts();
  cr_assert_eq(after.leases, 0);
  cr_assert_eq(after.pending_deletes, 0, "the deferred delete completed");
  cr_assert_eq(after.sessions, base.sessions);
  /* The sealed batch of s stays: a producer may exit after sealing. */
  cr_assert_eq(after.batches, 1);
  expect_status(stat_(keeper, "sealed-by-s"), 0);
  expect_status(stat_(keeper, "unsealed-1"), SCREE_ENOENT);
  expect_status(stat_(keeper, "kept"), SCREE_ENOENT);
  expect_status(del(keeper, "sealed-by-s"), 0);
  after = counts();
  cr_assert_eq(after.bytes_used, base.bytes_used - 512, "'kept' is gone too");
  cr_assert_eq(after.batches, 0);
  cr_assert_eq(after.bytes_used, 0);
  cr_assert_leq(after.arenas, 1, "at most the spare arena is left");
}

Test(store, accounting_returns_to_baseline_over_many_cycles) {
  scree__session *s = client();
  scree__store_counts base = counts();
  char name[32];
  for (int round = 0; round < 5; round++) {
    scree__session *t = client();
    for (int i = 0; i < 40; i++) {
      snprintf(name, sizeof(name), "r%d-%d", round, i);
      if (i % 3 == 0)
        create_ok(t, name, 2, 17 + i);
      else
        put(t, name, 2, 17 + i * 100);
      if (i % 4 == 0)
        get(s, name);
    }
    scree__session_close(store, t);
    for (int i = 0; i < 40; i++) {
      snprintf(name, sizeof(name), "r%d-%d", round, i);
      del(s, name);
    }
  }
  /* s holds leases on some deleted batches: closing it frees them. */
  cr_assert_gt(counts().pending_deletes, 0);
  scree__session_close(store, s);
  scree__store_counts end = counts();
  cr_assert_eq(end.bytes_used, base.bytes_used);
  cr_assert_eq(end.batches, base.batches);
  cr_assert_eq(end.leases, 0);
  cr_assert_eq(end.pending_deletes, 0);
  cr_assert_eq(end.sessions, 0);
  /* Emptied arenas are kept for reuse until a purge finds them old enough. */
  scree__store_purge(store, 0);
  cr_assert_eq(counts().arenas, 0);
}

Test(store, arena_fd_is_sent_once_per_session_per_arena) {
  scree__session *s = client();
  created a = create_ok(s, "f1", 1, 1);
  cr_assert(a.loc.handle_attached);
  created b = create_ok(s, "f2", 1, 1);
  cr_assert_not(b.loc.handle_attached);
  cr_assert_eq(a.loc.arena_id, b.loc.arena_id);
  /* A batch bigger than an arena has its own, and its own fd. */
  created c = create_ok(s, "f3", 1, (ARENA * 2) / 16);
  cr_assert(c.loc.handle_attached);
  cr_assert_neq(c.loc.arena_id, a.loc.arena_id);
  cr_assert_geq(c.loc.arena_size, 2 * ARENA);
}

/* ---- robustness ------------------------------------------------------- */

/* Packs req into buf; returns its length. */
static size_t pack(const Scree__V1__Request *req, uint8_t *buf) {
  cr_assert_leq(scree__v1__request__get_packed_size(req), 512);
  return scree__v1__request__pack(req, buf);
}

static int names_has_seed(char names[][300], int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(names[i], "seed") == 0)
      return 1;
  return 0;
}

Test(store, mutated_packets_never_break_the_store) {
  scree__session *keeper = client();
  put(keeper, "seed", 2, 8);
  scree__store_counts base = counts();

  /* A valid packet of each kind, to mutate. */
  uint8_t seeds[8][512];
  size_t lens[8];
  int nseeds = 0;
  {
    Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
    Scree__V1__Create c = SCREE__V1__CREATE__INIT;
    Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
    int64_t inner[2] = {3, 5};
    d.dtype = SCREE_FLOAT16;
    d.inner = inner;
    d.n_inner = 2;
    d.batch_size = 4;
    d.total_rows = 12;
    d.offsets_dtype = SCREE_INT32;
    c.name = test_bytes("fuzz/a");
    c.desc = &d;
    req.id = 1;
    req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
    req.create = &c;
    lens[nseeds] = pack(&req, seeds[nseeds]);
    nseeds++;
    Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
    s.name = test_bytes("fuzz/a");
    req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
    req.seal = &s;
    lens[nseeds] = pack(&req, seeds[nseeds]);
    nseeds++;
    Scree__V1__Get g = SCREE__V1__GET__INIT;
    g.name = test_bytes("seed");
    req.body_case = SCREE__V1__REQUEST__BODY_GET;
    req.get = &g;
    lens[nseeds] = pack(&req, seeds[nseeds]);
    nseeds++;
    Scree__V1__Release rl = SCREE__V1__RELEASE__INIT;
    rl.lease_id = 1;
    req.body_case = SCREE__V1__REQUEST__BODY_RELEASE;
    req.release = &rl;
    lens[nseeds] = pack(&req, seeds[nseeds]);
    nseeds++;
    Scree__V1__List l = SCREE__V1__LIST__INIT;
    l.prefix = test_bytes("fuzz");
    l.page_size = 3;
    req.body_case = SCREE__V1__REQUEST__BODY_LIST;
    req.list = &l;
    lens[nseeds] = pack(&req, seeds[nseeds]);
    nseeds++;
    Scree__V1__Delete dl = SCREE__V1__DELETE__INIT;
    dl.name = test_bytes("fuzz/a");
    req.body_case = SCREE__V1__REQUEST__BODY_DELETE;
    req.delete_ = &dl;
    lens[nseeds] = pack(&req, seeds[nseeds]);
    nseeds++;
    Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
    h.protocol_version = 1;
    req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
    req.hello = &h;
    lens[nseeds] = pack(&req, seeds[nseeds]);
    nseeds++;
    Scree__V1__Stats st = SCREE__V1__STATS__INIT;
    req.body_case = SCREE__V1__REQUEST__BODY_STATS;
    req.stats = &st;
    lens[nseeds] = pack(&req, seeds[nseeds]);
    nseeds++;
  }

  unsigned seed = 7;
  for (int round = 0; round < 20; round++) {
    scree__session *s = round % 2 ? client() : open_session();
    for (int i = 0; i < 1000; i++) {
      int k = rand_r(&seed) % nseeds;
      uint8_t buf[600];
      size_t len = lens[k];
      memcpy(buf, seeds[k], len);
      int flips = rand_r(&seed) % 4;
      for (int f = 0; f < flips && len > 0; f++)
        buf[rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
      if (rand_r(&seed) % 4 == 0 && len > 0)
        len = (size_t)rand_r(&seed) % len;
      scree__reply_clear(&r);
      scree__handle_packet(handler, s, buf, len, &r);
      /* Every packet gets a response that packs, with a known status. */
      cr_assert(scree_err_known(r.resp.status), "status %d", r.resp.status);
      cr_assert(r.resp.status == 0 || r.resp.message != NULL);
      uint8_t out[128 * 1024];
      cr_assert_leq(scree__v1__response__get_packed_size(&r.resp), sizeof(out));
      scree__v1__response__pack(&r.resp, out);
    }
    scree__reply_clear(&r);
    scree__session_close(store, s);
  }
  /* Whatever the mutated packets did, what they made went with their
   * sessions, except sealed batches (which are legitimate) and what they
   * deleted. Delete the survivors and compare. */
  char names[64][300];
  int n = 0;
  const Scree__V1__Response *resp = list(keeper, "", "", 64);
  for (size_t i = 0; i < resp->list->n_batches && n < 64; i++)
    snprintf(names[n++], sizeof(names[0]), "%s", resp->list->batches[i]->name);
  for (int i = 0; i < n; i++)
    if (strcmp(names[i], "seed") != 0)
      expect_status(del(keeper, names[i]), 0);
  scree__store_counts end = counts();
  cr_assert_eq(end.leases, 0);
  cr_assert_eq(end.pending_deletes, 0);
  cr_assert_eq(end.sessions, 1);
  cr_assert_eq(end.bytes_used, names_has_seed(names, n) ? base.bytes_used : 0);
  cr_assert_eq(end.batches, names_has_seed(names, n) ? 1u : 0u);
}

/* ---- freed-arena notices ---------------------------------------------- */

/* A session that was sent an arena hears of its end in its next response,
 * once; a session that never had it hears nothing. */
Test(store, freed_arenas_are_announced_once_to_sessions_that_had_them) {
  scree__session *a = client();
  scree__session *other = client();
  /* Larger than the 1 MiB arena: an arena of its own. */
  int64_t rows = (2 << 20) / 16;
  created c = create_ok(a, "big", 1, rows);
  uint64_t id = c.loc.arena_id;
  cr_assert(c.loc.handle_attached);
  expect_status(del(a, "big"), 0);
  /* Kept for the next batch of its owner that fits, until a purge gives it
   * back. */
  cr_assert_eq(scree__handler_attach_notices(handler, a, &r), 0);
  cr_assert_eq(r.resp.n_freed_arenas, 0);
  scree__store_purge(store, 0);
  cr_assert_eq(scree__handler_attach_notices(handler, a, &r), 0);
  cr_assert_eq(r.resp.n_freed_arenas, 1);
  cr_assert_eq(r.resp.freed_arenas[0], id);
  /* Once only. */
  stats(a);
  cr_assert_eq(scree__handler_attach_notices(handler, a, &r), 0);
  cr_assert_eq(r.resp.n_freed_arenas, 0);
  stats(other);
  cr_assert_eq(scree__handler_attach_notices(handler, other, &r), 0);
  cr_assert_eq(r.resp.n_freed_arenas, 0);
  /* The packed response carries them as field 20. */
  created c2 = create_ok(a, "big2", 1, rows);
  expect_status(del(a, "big2"), 0);
  scree__store_purge(store, 0);
  cr_assert_eq(scree__handler_attach_notices(handler, a, &r), 0);
  size_t len = scree__v1__response__get_packed_size(&r.resp);
  uint8_t *buf = malloc(len);
  scree__v1__response__pack(&r.resp, buf);
  Scree__V1__Response *back = scree__v1__response__unpack(NULL, len, buf);
  cr_assert_not_null(back);
  cr_assert_eq(back->n_freed_arenas, 1);
  cr_assert_eq(back->freed_arenas[0], c2.loc.arena_id);
  scree__v1__response__free_unpacked(back, NULL);
  free(buf);
}

/* ---- read-only handles for readers (docs/security.md) ----------------- */

/* Opens /proc/self/fd/fd with O_RDWR as an unprivileged user: as root
 * (which passes every permission check) it tries from a child that first
 * becomes nobody. Returns 0 when the open succeeded, else its errno. */
static int reopen_rw_errno(int fd) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  if (geteuid() != 0) {
    int w = open(path, O_RDWR | O_CLOEXEC);
    if (w < 0)
      return errno;
    close(w);
    return 0;
  }
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
      _exit(200);
    /* After setuid the process is not dumpable and its /proc/self/fd would
     * belong to root: make it its own again, so that only the memfd's mode
     * decides. */
    prctl(PR_SET_DUMPABLE, 1);
    int w = open(path, O_RDWR | O_CLOEXEC);
    _exit(w >= 0 ? 0 : (errno & 0x7f));
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st), "child status 0x%x", st);
  cr_assert_neq(WEXITSTATUS(st), 200, "could not become nobody");
  return WEXITSTATUS(st);
}

Test(store, readers_are_sent_read_only_fds) {
  scree__session *w = client();
  /* The creator's fd is writable, and says so. */
  const Scree__V1__Response *resp =
      create_raw(w, "ro/one", SCREE_FLOAT32, 4, 2, 8, SCREE_INT64);
  expect_status(resp, 0);
  cr_assert(resp->create->location->handle_attached);
  cr_assert(resp->create->location->writable);
  cr_assert_eq(fcntl(r.fd, F_GETFL) & O_ACCMODE, O_RDWR);
  created c;
  c.loc = *resp->create->location;
  c.base = arena_of(&c.loc);
  write_offsets(&c, 2, 8);
  expect_status(seal(w, "ro/one"), 0);

  scree__session *rd = client();
  resp = get(rd, "ro/one");
  expect_status(resp, 0);
  const Scree__V1__Location *loc = resp->get->location;
  cr_assert(loc->handle_attached);
  cr_assert_not(loc->writable, "a Get's fd is read-only");
  int fd = r.fd;
  cr_assert_geq(fd, 0);
  cr_assert_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
  /* The same memfd: same size, same seals. */
  struct stat st;
  cr_assert_eq(fstat(fd, &st), 0);
  cr_assert_eq((uint64_t)st.st_size, loc->arena_size);
  cr_assert_eq(fcntl(fd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
               F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  /* No way to write through it. */
  errno = 0;
  void *p = mmap(NULL, loc->arena_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  cr_assert_eq(p, MAP_FAILED, "a writable shared mapping of a read-only fd");
  cr_assert_eq(errno, EACCES, "%s", strerror(errno));
  p = mmap(NULL, loc->arena_size, PROT_READ, MAP_SHARED, fd, 0);
  cr_assert_neq(p, MAP_FAILED);
  cr_assert_eq(mprotect(p, loc->arena_size, PROT_READ | PROT_WRITE), -1);
  cr_assert_eq(errno, EACCES);
  cr_assert_eq(memcmp((char *)p + loc->values_offset, c.base + c.loc.values_offset, 8 * 16),
               0, "a reader sees the batch");
  cr_assert_neq(write(fd, "x", 1), 1);
  cr_assert_neq(ftruncate(fd, 0), 0);
  cr_assert_neq(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), 0);
  /* Nor by opening it again through /proc: the memfd has no write bits. */
  cr_assert_eq(st.st_mode & 0222, 0, "mode 0%o", (unsigned)(st.st_mode & 07777));
  cr_assert_eq(reopen_rw_errno(fd), EACCES);
  munmap(p, loc->arena_size);
}

/* A session that reads an arena first and creates in it later is sent the
 * writable fd with the Create, once; one that created first gets nothing
 * more with its Gets. */
Test(store, a_reader_that_creates_is_sent_the_writable_fd_once) {
  scree__session *w = client();
  created c = create_ok(w, "mix/a", 2, 8);
  write_offsets(&c, 2, 8);
  expect_status(seal(w, "mix/a"), 0);

  scree__session *rd = client();
  const Scree__V1__Response *resp = get(rd, "mix/a");
  expect_status(resp, 0);
  cr_assert(resp->get->location->handle_attached);
  cr_assert_not(resp->get->location->writable);
  uint64_t arena = resp->get->location->arena_id;
  close(r.fd);
  r.fd = -1;

  /* Same owner uid: the same arena. */
  resp = create_raw(rd, "mix/b", SCREE_FLOAT32, 4, 1, 4, SCREE_INT64);
  expect_status(resp, 0);
  cr_assert_eq(resp->create->location->arena_id, arena);
  cr_assert(resp->create->location->handle_attached, "the writable fd follows");
  cr_assert(resp->create->location->writable);
  cr_assert_geq(r.fd, 0);
  cr_assert_eq(fcntl(r.fd, F_GETFL) & O_ACCMODE, O_RDWR);
  created b;
  b.loc = *resp->create->location;
  b.base = arena_of(&b.loc);
  write_offsets(&b, 1, 4);
  expect_status(seal(rd, "mix/b"), 0);

  /* Nothing more for this session in this arena, for either kind. */
  resp = create_raw(rd, "mix/c", SCREE_FLOAT32, 4, 1, 4, SCREE_INT64);
  expect_status(resp, 0);
  cr_assert_eq(resp->create->location->arena_id, arena);
  cr_assert_not(resp->create->location->handle_attached);
  cr_assert_eq(r.fd, -1);
  resp = get(rd, "mix/b");
  expect_status(resp, 0);
  cr_assert_not(resp->get->location->handle_attached);
  cr_assert_eq(r.fd, -1);
  /* The creator had the writable fd first: its Gets bring nothing. */
  resp = get(w, "mix/b");
  expect_status(resp, 0);
  cr_assert_not(resp->get->location->handle_attached);
  cr_assert_eq(r.fd, -1);
}

/* The upgrade is remembered only once it is certain: a Create that fails
 * after the fd was chosen leaves the session holding the read-only fd, and
 * the next Create sends the writable one. */
Test(store, a_failed_create_does_not_count_as_sent) {
  scree__session *w = client();
  created c = create_ok(w, "fail/a", 1, 4);
  write_offsets(&c, 1, 4);
  expect_status(seal(w, "fail/a"), 0);
  scree__session *rd = client();
  expect_status(get(rd, "fail/a"), 0);
  cr_assert_not(r.resp.get->location->writable);
  /* EEXIST comes before any fd. */
  expect_status(create_raw(rd, "fail/a", SCREE_FLOAT32, 4, 1, 4, SCREE_INT64), SCREE_EEXIST);
  cr_assert_eq(r.fd, -1);
  const Scree__V1__Response *resp =
      create_raw(rd, "fail/b", SCREE_FLOAT32, 4, 1, 4, SCREE_INT64);
  expect_status(resp, 0);
  cr_assert(resp->create->location->handle_attached);
  cr_assert(resp->create->location->writable);
}

/* A backend without read-only handles (CUDA): readers get the writable
 * handle, marked so, and a Create after a Get sends nothing more. */
Test(store, without_read_only_handles_the_first_fd_is_writable_and_the_only_one) {
  static struct scree__mem_ops no_ro;
  no_ro = *mem->ops;
  no_ro.share_fd_ro = NULL;
  mem->ops = &no_ro;
  scree__session *w = client();
  created c = create_ok(w, "cuda/a", 1, 4);
  write_offsets(&c, 1, 4);
  expect_status(seal(w, "cuda/a"), 0);

  scree__session *rd = client();
  const Scree__V1__Response *resp = get(rd, "cuda/a");
  expect_status(resp, 0);
  cr_assert(resp->get->location->handle_attached);
  cr_assert(resp->get->location->writable, "the only handle there is: writable");
  cr_assert_eq(fcntl(r.fd, F_GETFL) & O_ACCMODE, O_RDWR);
  resp = create_raw(rd, "cuda/b", SCREE_FLOAT32, 4, 1, 4, SCREE_INT64);
  expect_status(resp, 0);
  cr_assert_not(resp->create->location->handle_attached, "the session has a writable handle");
  cr_assert_eq(r.fd, -1);
}
