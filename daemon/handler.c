#include "handler.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authz.h"
#include "log.h"
#include "metrics.h"
#include "scree/error.h"
#include "wirescan.h"

struct scree__handler {
  scree__store *store;
  scree__exec *exec; /* NULL: Attention is ENOTSUP */
  scree__peers *peers; /* NULL: Fetch is ENOTSUP */
  uint64_t max_packet;
  char version[64];
  scree__handler_deliver_cb deliver;
  void *deliver_arg;
  scree__handler_waits waits;
  uint64_t armed_ns; /* the deadline the timer is armed for; 0: none */
};

/* ---- replies ---------------------------------------------------------- */

void scree__reply_init(scree__reply *r) {
  memset(r, 0, sizeof(*r));
  scree__v1__response__init(&r->resp);
  r->fd = -1;
}

void scree__reply_clear(scree__reply *r) {
  if (r->fd >= 0)
    close(r->fd);
  free(r->list_infos);
  free(r->list_ptrs);
  free(r->list_descs);
  free(r->list_inner);
  free(r->freed);
  free(r->peer_stats);
  scree__reply_init(r);
}

/* Turns r into an error response, counting and logging it; the message is
 * already in r->msg. */
static void fail_reply(scree__handler *h, scree__session *sess, scree__reply *r,
                       const char *op, int code) {
  if (r->fd >= 0) {
    close(r->fd);
    r->fd = -1;
  }
  r->resp.status = code;
  r->resp.message = r->msg;
  r->resp.body_case = SCREE__V1__RESPONSE__BODY__NOT_SET;
  scree__store_count_error(h->store, code);
  scree__log(SCREE__LOG_INFO, "request_error", "conn=%" PRIu64 " op=%s code=%s msg=%s",
             sess ? scree__session_id(sess) : 0, op, scree_err_name(code), scree__q(r->msg));
}

/* ---- filling replies from the store's C types --------------------------- */

static void fill_desc(Scree__V1__ArrayDesc *d, int64_t *inner, const scree_array *a) {
  scree__v1__array_desc__init(d);
  d->dtype = (uint32_t)a->dtype;
  d->n_inner = (size_t)a->ndim_inner;
  memcpy(inner, a->inner, sizeof(int64_t) * (size_t)a->ndim_inner);
  d->inner = inner;
  d->batch_size = a->batch_size;
  d->total_rows = a->total_rows;
  d->max_length = a->max_length;
  d->offsets_dtype = (uint32_t)a->offsets_dtype;
}

/* Fills info (and d, inner, which it points to) for the batch v describes;
 * strings point into the store. */
static void fill_info(Scree__V1__BatchInfo *info, Scree__V1__ArrayDesc *d, int64_t *inner,
                      const scree__batch_view *v, uint64_t now) {
  scree__v1__batch_info__init(info);
  fill_desc(d, inner, &v->desc);
  info->name = (char *)v->name;
  info->desc = d;
  info->state = v->sealed ? SCREE__V1__BATCH_STATE__BATCH_STATE_SEALED
                          : SCREE__V1__BATCH_STATE__BATCH_STATE_CREATED;
  info->values_bytes = v->values_bytes;
  info->offsets_bytes = v->offsets_bytes;
  info->leases = v->leases;
  info->owner_uid = v->owner_uid;
  info->owner_pid = v->owner_pid;
  info->age_ns = now - v->created_ns;
  info->arena_id = v->arena_id;
  info->delete_pending = v->deleted != 0;
  info->batch_id = v->batch_id;
}

/* Fills r->loc from loc, moving its fd into the reply. */
static void fill_location(scree__reply *r, scree__location *loc) {
  Scree__V1__Location *l = &r->loc;
  scree__v1__location__init(l);
  l->arena_id = loc->arena_id;
  l->arena_size = loc->arena_size;
  l->values_offset = loc->values_offset;
  l->values_bytes = loc->values_bytes;
  l->offsets_offset = loc->offsets_offset;
  l->offsets_bytes = loc->offsets_bytes;
  l->handle_attached = loc->handle_attached;
  l->writable = loc->writable;
  if (loc->ipc_handle != NULL) {
    l->ipc_handle.data = (uint8_t *)loc->ipc_handle;
    l->ipc_handle.len = loc->ipc_handle_len;
  }
  r->fd = loc->fd;
  loc->fd = -1;
}

/* ---- operations ---------------------------------------------------------- */

/* Every operation returns 0 with the reply body filled, or an error code
 * with the message in r->msg (fail_reply then drops any body it made). */
#define FAIL(code, ...) scree__fail((code), r->msg, sizeof(r->msg), __VA_ARGS__)

/* Makes r->body.m (a reply message, initialised by init) the response's
 * body, member m of body case CASE, and evaluates to its address. */
#define REPLY_BODY(r, m, CASE, init)                                          \
  (init(&(r)->body.m), (r)->resp.body_case = SCREE__V1__RESPONSE__BODY_##CASE, \
   (r)->resp.m = &(r)->body.m)

/* Fills r->info (and the descriptor it points to) for the batch v
 * describes, and returns it. */
static Scree__V1__BatchInfo *reply_info(scree__reply *r, const scree__batch_view *v) {
  fill_info(&r->info, &r->desc, r->inner, v, scree__now_ns());
  return &r->info;
}

/* Room for a name from a request and its NUL. */
typedef char name_buf[SCREE__MAX_NAME_LEN + 1];

/* Copies a name-like field of a request (bytes on the wire, so that its
 * length comes with it) into out as a C string, refusing what a C string
 * cannot carry: an embedded NUL would otherwise make "victim\0evil" name
 * "victim". what names the field in the message ("batch name", "out").
 * The rest of the name's rules are scree__name_check's, applied where the
 * name is used. */
static int name_arg(ProtobufCBinaryData b, const char *what, char *out, scree__reply *r) {
  if (b.len > SCREE__MAX_NAME_LEN)
    return FAIL(SCREE_ENAMETOOLONG, "%s is %zu bytes; the limit is %d", what, b.len,
                SCREE__MAX_NAME_LEN);
  const uint8_t *nul = b.len > 0 ? memchr(b.data, 0, b.len) : NULL;
  if (nul != NULL)
    return FAIL(SCREE_EINVAL, "%s contains U+0000 at byte %zu; names may not", what,
                (size_t)(nul - b.data));
  if (b.len > 0)
    memcpy(out, b.data, b.len);
  out[b.len] = '\0';
  return 0;
}

static int do_hello(scree__handler *h, scree__session *sess, const Scree__V1__Hello *q,
                    scree__reply *r) {
  if (q->protocol_version != SCREE__PROTOCOL_VERSION)
    return FAIL(SCREE_EPROTO,
                "protocol version %" PRIu32 " is not supported; screed speaks version %d",
                q->protocol_version, SCREE__PROTOCOL_VERSION);
  if (!scree__session_hello_done(sess))
    scree__log(SCREE__LOG_DEBUG, "hello", "conn=%" PRIu64 " client=%s",
               scree__session_id(sess), scree__q(q->client_name));
  scree__session_set_hello_done(sess);
  const scree__mem_info *mi = &scree__store_mem(h->store)->info;
  scree__store_counts c;
  scree__store_counts_get(h->store, &c);
  Scree__V1__HelloReply *hr = REPLY_BODY(r, hello, HELLO, scree__v1__hello_reply__init);
  hr->protocol_version = SCREE__PROTOCOL_VERSION;
  hr->backend = (Scree__V1__Backend)mi->backend;
  hr->device_index = mi->device_index;
  hr->device_name = (char *)mi->device_name;
  if (mi->has_uuid) {
    hr->device_uuid.data = (uint8_t *)mi->device_uuid;
    hr->device_uuid.len = sizeof(mi->device_uuid);
  }
  hr->ipc_mode = (Scree__V1__IpcMode)mi->ipc_mode;
  hr->granularity = mi->granularity;
  hr->memory_limit = c.memory_limit;
  hr->max_packet = h->max_packet;
  hr->arena_size = c.arena_size;
  hr->max_name_len = SCREE__MAX_NAME_LEN;
  hr->version = h->version;
  /* Offered where writing them costs a memcpy. On a GPU daemon, its own
   * pageable copy into the batch (and the wait for it) took 150-170 us on
   * an H200, and delayed the producer's next copy into the arena as much:
   * five times the Seal that reads the offsets back (bench/handoff_gpu,
   * docs/benchmarks.md), so GPU clients copy them as before. Seal.offsets
   * is still taken from any client that sends it. */
  hr->inline_offsets = mi->backend == SCREE__BACKEND_HOST;
  return 0;
}

/* The descriptor a Create asks for, in C terms. Out-of-range enum values
 * stay invalid after the cast, and the store's check rejects them with a
 * message. */
static int create_desc(const Scree__V1__Create *c, const char *name, scree_array *a,
                       scree__reply *r) {
  const Scree__V1__ArrayDesc *d = c->desc;
  if (d == NULL)
    return FAIL(SCREE_EINVAL, "create of '%s' has no array descriptor", name);
  if (d->n_inner > SCREE_MAX_INNER_DIMS)
    return FAIL(SCREE_EINVAL, "%zu inner dims; at most %d are supported", d->n_inner,
                SCREE_MAX_INNER_DIMS);
  memset(a, 0, sizeof(*a));
  a->dtype = d->dtype > (uint32_t)SCREE_DTYPE_COUNT_ ? SCREE_DTYPE_INVALID
                                                    : (scree_dtype)d->dtype;
  a->offsets_dtype = d->offsets_dtype > (uint32_t)SCREE_DTYPE_COUNT_
                         ? SCREE_DTYPE_INVALID
                         : (scree_dtype)d->offsets_dtype;
  a->ndim_inner = (int32_t)d->n_inner;
  for (size_t i = 0; i < d->n_inner; i++)
    a->inner[i] = d->inner[i];
  a->batch_size = d->batch_size;
  a->total_rows = d->total_rows;
  return 0;
}

static int do_create(scree__handler *h, scree__session *sess, const Scree__V1__Create *c,
                     scree__reply *r) {
  /* The name is checked before the descriptor, as the store would. */
  name_buf name;
  int rc = name_arg(c->name, "batch name", name, r);
  if (rc != 0)
    return rc;
  rc = scree__name_check(name, r->msg, sizeof(r->msg));
  if (rc != 0)
    return rc;
  scree_array a;
  rc = create_desc(c, name, &a, r);
  if (rc != 0)
    return rc;
  scree__location loc;
  rc = scree__store_create(h->store, sess, name, &a, c->shared, &loc, r->msg,
                           sizeof(r->msg));
  if (rc != 0)
    return rc;
  fill_location(r, &loc);
  Scree__V1__CreateReply *cr = REPLY_BODY(r, create, CREATE, scree__v1__create_reply__init);
  cr->location = &r->loc;
  cr->batch_id = loc.batch_id;
  return 0;
}

static int do_seal(scree__handler *h, scree__session *sess, const Scree__V1__Seal *q,
                   scree__reply *r) {
  scree__batch_view v;
  name_buf name;
  int rc = name_arg(q->name, "batch name", name, r);
  /* Empty offsets: none inline (a batch always has at least one offset). */
  const void *offsets = q->offsets.len > 0 ? q->offsets.data : NULL;
  if (rc == 0)
    rc = scree__store_seal(h->store, sess, name, offsets, q->offsets.len, &v, r->msg,
                           sizeof(r->msg));
  if (rc == 0)
    REPLY_BODY(r, seal, SEAL, scree__v1__seal_reply__init)->info = reply_info(r, &v);
  return rc;
}

/* A Get of name for sess, answered now: the reply's body, or a code. */
static int get_now(scree__handler *h, scree__session *sess, const char *name, scree__reply *r) {
  scree__location loc;
  scree__batch_view v;
  uint64_t lease_id;
  int rc = scree__store_get(h->store, sess, name, &loc, &lease_id, &v, r->msg, sizeof(r->msg));
  if (rc != 0)
    return rc;
  fill_location(r, &loc);
  Scree__V1__GetReply *gr = REPLY_BODY(r, get, GET, scree__v1__get_reply__init);
  gr->info = reply_info(r, &v);
  gr->location = &r->loc;
  gr->lease_id = lease_id;
  return 0;
}

static void arm_timer(scree__handler *h);

/* Get, with its optional wait: a name that is not sealed yet (unknown, or
 * still being written) makes a waiter in the store, and the reply is
 * deferred until wait_done. */
static int do_get(scree__handler *h, scree__session *sess, uint64_t id, const Scree__V1__Get *q,
                  scree__reply *r) {
  int waits = q->wait_present_case == SCREE__V1__GET__WAIT_PRESENT_WAIT_MS;
  if (waits && (q->wait_ms < -1 || q->wait_ms > SCREE__MAX_WAIT_MS))
    return FAIL(SCREE_EINVAL, "wait_ms is %" PRId64 "; it must be -1 (no limit) or 0 to %" PRId64,
                q->wait_ms, (int64_t)SCREE__MAX_WAIT_MS);
  name_buf name;
  int rc = name_arg(q->name, "batch name", name, r);
  if (rc != 0)
    return rc;
  rc = get_now(h, sess, name, r);
  if (rc == 0 || !waits || (rc != SCREE_ENOENT && rc != SCREE_ESTATE))
    return rc;
  if (q->wait_ms == 0)
    return FAIL(SCREE_ETIMEDOUT, "batch '%s' was not sealed within 0 ms (Get's wait)", name);
  rc = scree__store_wait(h->store, sess, name, id, q->wait_ms, r->msg, sizeof(r->msg));
  if (rc != 0)
    return rc;
  r->deferred = 1;
  r->cancellable = 1;
  arm_timer(h);
  return 0;
}

/* Cancel: the waiting Get (if any) is answered first, through wait_done and
 * the deliver callback, so that its reply goes before this one. */
static int do_cancel(scree__handler *h, scree__session *sess, scree__reply *r) {
  int cancelled = scree__store_wait_cancel(h->store, sess);
  REPLY_BODY(r, cancel, CANCEL, scree__v1__cancel_reply__init)->cancelled = cancelled != 0;
  return 0;
}

static int do_watch(scree__handler *h, scree__session *sess, uint64_t id,
                    const Scree__V1__Watch *q, scree__reply *r) {
  name_buf prefix;
  int rc = name_arg(q->prefix, "watch prefix", prefix, r);
  if (rc != 0)
    return rc;
  rc = scree__store_watch(h->store, sess, prefix, !q->no_replay, id, r->msg, sizeof(r->msg));
  if (rc != 0)
    return rc;
  scree__log(SCREE__LOG_DEBUG, "watch", "conn=%" PRIu64 " prefix=%s replay=%d",
             scree__session_id(sess), scree__q(prefix), !q->no_replay);
  REPLY_BODY(r, watch, WATCH, scree__v1__watch_reply__init);
  return 0;
}

static int do_release(scree__handler *h, scree__session *sess, const Scree__V1__Release *q,
                      scree__reply *r) {
  int rc = scree__store_release(h->store, sess, q->lease_id, r->msg, sizeof(r->msg));
  if (rc != 0)
    return rc;
  REPLY_BODY(r, release, RELEASE, scree__v1__release_reply__init);
  return 0;
}

static int do_delete(scree__handler *h, scree__session *sess, const Scree__V1__Delete *q,
                     scree__reply *r) {
  int deferred = 0;
  name_buf name;
  int rc = name_arg(q->name, "batch name", name, r);
  if (rc == 0)
    rc = scree__store_delete(h->store, sess, name, &deferred, r->msg, sizeof(r->msg));
  if (rc == 0)
    REPLY_BODY(r, delete_, DELETE, scree__v1__delete_reply__init)->deferred = deferred;
  return rc;
}

/* The heap arrays of a List reply for up to n entries. */
static int list_alloc(scree__reply *r, size_t n) {
  r->list_infos = calloc(n, sizeof(*r->list_infos));
  r->list_ptrs = calloc(n, sizeof(*r->list_ptrs));
  r->list_descs = calloc(n, sizeof(*r->list_descs));
  r->list_inner = calloc(n * SCREE_MAX_INNER_DIMS, sizeof(int64_t));
  if (!r->list_infos || !r->list_ptrs || !r->list_descs || !r->list_inner)
    return FAIL(SCREE_ENOMEM, "out of host memory");
  return 0;
}

static int do_list(scree__handler *h, const Scree__V1__List *q, scree__reply *r) {
  uint32_t want = q->page_size == 0 ? SCREE__LIST_DEFAULT : q->page_size;
  if (want > SCREE__LIST_MAX)
    want = SCREE__LIST_MAX;
  name_buf prefix, token;
  int rc = name_arg(q->prefix, "List prefix", prefix, r);
  if (rc == 0)
    rc = name_arg(q->page_token, "List page_token", token, r);
  if (rc != 0)
    return rc;
  size_t start = scree__store_list_start(h->store, prefix, token);
  scree__batch_view v;
  size_t avail = 0;
  while (avail < want && scree__store_list_at(h->store, start + avail, prefix, &v))
    avail++;

  Scree__V1__ListReply *lr = REPLY_BODY(r, list, LIST, scree__v1__list_reply__init);
  lr->next_page_token = "";
  if (avail > 0 && list_alloc(r, avail) != 0)
    return SCREE_ENOMEM;
  uint64_t now = scree__now_ns();
  size_t n = 0, bytes = 0;
  const char *last = NULL;
  for (; n < avail; n++) {
    scree__store_list_at(h->store, start + n, prefix, &v);
    Scree__V1__BatchInfo *info = &r->list_infos[n];
    fill_info(info, &r->list_descs[n], &r->list_inner[n * SCREE_MAX_INNER_DIMS], &v, now);
    /* Each entry costs its own size plus a tag and a length prefix. */
    size_t sz = scree__v1__batch_info__get_packed_size(info) + 6;
    if (n > 0 && bytes + sz > SCREE__LIST_REPLY_BUDGET)
      break;
    bytes += sz;
    r->list_ptrs[n] = info;
    last = v.name;
  }
  lr->n_batches = n;
  lr->batches = r->list_ptrs;
  if (n > 0 && scree__store_list_at(h->store, start + n, prefix, &v))
    lr->next_page_token = (char *)last;
  return 0;
}

static int do_stat(scree__handler *h, const Scree__V1__Stat *q, scree__reply *r) {
  scree__batch_view v;
  name_buf name;
  int rc = name_arg(q->name, "batch name", name, r);
  if (rc == 0)
    rc = scree__store_stat(h->store, name, &v, r->msg, sizeof(r->msg));
  if (rc == 0)
    REPLY_BODY(r, stat, STAT, scree__v1__stat_reply__init)->info = reply_info(r, &v);
  return rc;
}

/* StatsReply.peers: the counters of each --peer, in one heap block that
 * the reply frees. */
static int fill_peer_stats(scree__handler *h, Scree__V1__StatsReply *st, scree__reply *r) {
  size_t n = scree__peers_count(h->peers);
  if (n == 0)
    return 0;
  typedef struct one {
    Scree__V1__PeerStats ps;
    Scree__V1__PeerFailure fails[SCREE__FETCH_FAIL_CAUSES];
    Scree__V1__PeerFailure *fail_ptrs[SCREE__FETCH_FAIL_CAUSES];
  } one;
  char *block = calloc(1, n * (sizeof(one) + sizeof(Scree__V1__PeerStats *)));
  if (block == NULL)
    return FAIL(SCREE_ENOMEM, "out of host memory");
  r->peer_stats = block;
  one *all = (one *)block;
  Scree__V1__PeerStats **ptrs = (Scree__V1__PeerStats **)(block + n * sizeof(one));
  for (size_t i = 0; i < n; i++) {
    scree__peer_counts pc;
    scree__peers_counts(h->peers, i, &pc);
    one *o = &all[i];
    scree__v1__peer_stats__init(&o->ps);
    o->ps.name = (char *)pc.name;
    o->ps.connected = pc.connected != 0;
    o->ps.batches_fetched = pc.batches;
    o->ps.bytes_fetched = pc.bytes;
    o->ps.mirrors = pc.mirrors;
    o->ps.batches_mirrored = pc.mirrored;
    o->ps.mirror_deletes = pc.mirror_deletes;
    o->ps.mirror_resyncs = pc.mirror_resyncs;
    size_t nf = 0;
    for (int k = 0; k < SCREE__FETCH_FAIL_CAUSES; k++) {
      if (pc.failures[k] == 0)
        continue;
      scree__v1__peer_failure__init(&o->fails[nf]);
      o->fails[nf].cause = (char *)scree__fetch_fail_name(k);
      o->fails[nf].count = pc.failures[k];
      o->fail_ptrs[nf] = &o->fails[nf];
      nf++;
    }
    o->ps.n_failures = nf;
    o->ps.failures = o->fail_ptrs;
    ptrs[i] = &o->ps;
  }
  st->n_peers = n;
  st->peers = ptrs;
  return 0;
}

static int do_stats(scree__handler *h, scree__reply *r) {
  scree__store_counts c;
  scree__store_counts_get(h->store, &c);
  scree__error_count errs[SCREE__STORE_ERROR_SLOTS];
  size_t nerrs = scree__store_errors(h->store, errs);
  Scree__V1__StatsReply *st = REPLY_BODY(r, stats, STATS, scree__v1__stats_reply__init);
  st->bytes_used = c.bytes_used;
  st->bytes_limit = c.memory_limit;
  st->bytes_arenas = c.bytes_arenas;
  st->batches = c.batches;
  st->connections = c.sessions;
  st->leases = c.leases;
  /* The Stats request itself is counted: requests includes this one. */
  st->requests = c.requests;
  for (size_t i = 0; i < nerrs; i++) {
    scree__v1__error_count__init(&r->errs[i]);
    r->errs[i].code = errs[i].code;
    r->errs[i].count = errs[i].count;
    r->err_ptrs[i] = &r->errs[i];
  }
  st->n_errors = nerrs;
  st->errors = r->err_ptrs;
  st->arenas = c.arenas;
  st->uptime_ns = scree__now_ns() - c.start_ns;
  st->pending_deletes = c.pending_deletes;
  st->waiters = c.waiters;
  st->watchers = c.watchers;
  st->watch_overflows = c.watch_overflows;
  return fill_peer_stats(h, st, r) != 0 ? SCREE_ENOMEM : 0;
}

/* ---- attention ----------------------------------------------------------- */

/* The names of an Attention request as C strings. */
typedef struct attention_names {
  name_buf q, k, v, out;
} attention_names;

/* The request in C terms: an absent window bound is unbounded (-1), never
 * a window of width 0. The names are copied into nm, which out points
 * into; out is filled only on success. */
static int attention_req(const Scree__V1__Attention *a, attention_names *nm,
                         scree__attention_req *out, scree__reply *r) {
  int rc = name_arg(a->q, "q", nm->q, r);
  if (rc == 0)
    rc = name_arg(a->k, "k", nm->k, r);
  if (rc == 0)
    rc = name_arg(a->v, "v", nm->v, r);
  if (rc == 0)
    rc = name_arg(a->out, "out", nm->out, r);
  if (rc != 0)
    return rc;
  *out = (scree__attention_req){
      .q = nm->q, .k = nm->k, .v = nm->v, .out = nm->out,
      .causal = a->causal,
      .has_scale = a->has_scale,
      .scale = a->scale,
      .window_left =
          a->window_left_present_case == SCREE__V1__ATTENTION__WINDOW_LEFT_PRESENT_WINDOW_LEFT
              ? a->window_left
              : -1,
      .window_right =
          a->window_right_present_case == SCREE__V1__ATTENTION__WINDOW_RIGHT_PRESENT_WINDOW_RIGHT
              ? a->window_right
              : -1,
  };
  return 0;
}

static int encode(scree__handler *h, scree__session *sess, scree__reply *r, scree__out *out);

/* Starts a deferred reply (attention, fetch) for request id: on success
 * (code 0) with the info of the batch made, out. */
static void begin_deferred(scree__reply *r, uint64_t id, int op, int code,
                           const scree__batch_view *out) {
  scree__reply_init(r);
  r->resp.id = id;
  r->op = op;
  if (code == 0)
    reply_info(r, out);
}

static void deliver(scree__handler *h, scree__session *sess, scree__reply *r);

/* Ends a deferred reply (attention, fetch): a failure is made the reply,
 * in place of the body the caller filled (counted as an error, not as a
 * request again: it was counted when it came), then the reply is
 * delivered. */
static void deliver_deferred(scree__handler *h, scree__session *sess, scree__reply *r,
                             const char *op, int code, const char *msg) {
  if (code != 0) {
    snprintf(r->msg, sizeof(r->msg), "%s", msg);
    fail_reply(h, sess, r, op, code);
  }
  deliver(h, sess, r);
}

/* A job's end (exec.h): the deferred reply, encoded and delivered. */
static void attention_done(void *arg, scree__session *sess, uint64_t id,
                           const scree__attention_result *res) {
  scree__handler *h = arg;
  scree__reply r;
  begin_deferred(&r, id, SCREE__REQ_ATTENTION, res->rc, res->out);
  Scree__V1__AttentionReply *ar =
      REPLY_BODY(&r, attention, ATTENTION, scree__v1__attention_reply__init);
  ar->elapsed_ns = res->elapsed_ns;
  ar->info = &r.info;
  deliver_deferred(h, sess, &r, "attention", res->rc, res->msg);
}

static int do_attention(scree__handler *h, scree__session *sess, uint64_t id,
                        const Scree__V1__Attention *a, scree__reply *r) {
  if (h->exec == NULL)
    return FAIL(SCREE_ENOTSUP, "attention is not available in this daemon");
  scree__attention_req q;
  attention_names nm;
  int rc = attention_req(a, &nm, &q, r);
  if (rc != 0)
    return rc;
  rc = scree__exec_attention(h->exec, sess, id, &q, attention_done, h, r->msg,
                                 sizeof(r->msg));
  if (rc == 0)
    r->deferred = 1;
  return rc;
}

/* ---- fetch (peers) ----------------------------------------------------------- */

/* A fetch's end (peers.h): the deferred reply, encoded and delivered. */
static void fetch_done(void *arg, scree__session *sess, uint64_t id,
                       const scree__fetch_result *res) {
  scree__handler *h = arg;
  scree__reply r;
  begin_deferred(&r, id, SCREE__REQ_FETCH, res->rc, res->out);
  Scree__V1__FetchReply *fr = REPLY_BODY(&r, fetch, FETCH, scree__v1__fetch_reply__init);
  fr->info = &r.info;
  fr->bytes = res->bytes;
  fr->elapsed_ns = res->elapsed_ns;
  deliver_deferred(h, sess, &r, "fetch", res->rc, res->msg);
}

static int do_fetch(scree__handler *h, scree__session *sess, uint64_t id,
                    const Scree__V1__Fetch *q, scree__reply *r) {
  if (h->peers == NULL)
    return FAIL(SCREE_ENOTSUP, "this screed has no peers (start it with --peer NAME=HOST:PORT"
                " and --peer-secret-file)");
  scree__fetch_req f = {
      .peer = q->peer,
      .name = q->name,
      .as_name = q->as_name,
      .wait_ms = q->wait_present_case == SCREE__V1__FETCH__WAIT_PRESENT_WAIT_MS
                     ? (q->wait_ms < 0 ? -1 : q->wait_ms)
                     : SCREE__FETCH_NO_WAIT,
      .timeout_ms = q->timeout_ms,
  };
  int rc = scree__peers_fetch(h->peers, sess, id, &f, fetch_done, h, r->msg, sizeof(r->msg));
  if (rc == 0)
    r->deferred = 1;
  return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

/* The request types (metrics.h): their body case, their metrics type and
 * their name in logs. */
static const struct {
  Scree__V1__Request__BodyCase body;
  int op;
  const char *name;
} req_types[] = {
#define XX(name, label) {SCREE__V1__REQUEST__BODY_##name, SCREE__REQ_##name, #label},
    SCREE__REQUEST_MAP(XX)
#undef XX
};
#define NREQ_TYPES (sizeof(req_types) / sizeof(req_types[0]))

static int req_op(Scree__V1__Request__BodyCase c) {
  for (size_t i = 0; i < NREQ_TYPES; i++)
    if (req_types[i].body == c)
      return req_types[i].op;
  return SCREE__REQ_INVALID;
}

static const char *req_name(Scree__V1__Request__BodyCase c) {
  for (size_t i = 0; i < NREQ_TYPES; i++)
    if (req_types[i].body == c)
      return req_types[i].name;
  return "unknown";
}

static int dispatch(scree__handler *h, scree__session *sess, const Scree__V1__Request *req,
                    scree__reply *r) {
  switch (req->body_case) {
  case SCREE__V1__REQUEST__BODY_HELLO: return do_hello(h, sess, req->hello, r);
  case SCREE__V1__REQUEST__BODY_CREATE: return do_create(h, sess, req->create, r);
  case SCREE__V1__REQUEST__BODY_SEAL: return do_seal(h, sess, req->seal, r);
  case SCREE__V1__REQUEST__BODY_GET: return do_get(h, sess, req->id, req->get, r);
  case SCREE__V1__REQUEST__BODY_RELEASE: return do_release(h, sess, req->release, r);
  case SCREE__V1__REQUEST__BODY_DELETE: return do_delete(h, sess, req->delete_, r);
  case SCREE__V1__REQUEST__BODY_LIST: return do_list(h, req->list, r);
  case SCREE__V1__REQUEST__BODY_STAT: return do_stat(h, req->stat, r);
  case SCREE__V1__REQUEST__BODY_STATS: return do_stats(h, r);
  case SCREE__V1__REQUEST__BODY_ATTENTION: return do_attention(h, sess, req->id, req->attention, r);
  case SCREE__V1__REQUEST__BODY_WATCH: return do_watch(h, sess, req->id, req->watch, r);
  case SCREE__V1__REQUEST__BODY_CANCEL: return do_cancel(h, sess, r);
  case SCREE__V1__REQUEST__BODY_FETCH: return do_fetch(h, sess, req->id, req->fetch, r);
  default: return FAIL(SCREE_EPROTO, "unknown request type");
  }
}

void scree__handle(scree__handler *h, scree__session *sess, const Scree__V1__Request *req,
                   scree__reply *r) {
  scree__store_count_request(h->store);
  r->resp.id = req->id;
  r->op = req_op(req->body_case);
  int rc;
  if (req->body_case == SCREE__V1__REQUEST__BODY__NOT_SET) {
    rc = FAIL(SCREE_EPROTO, "unknown request type");
  } else if (scree__session_job(sess) != NULL) {
    /* The server reads nothing of a session that waits for a deferred
     * reply; a direct caller that does gets this rather than replies out
     * of order. */
    rc = FAIL(SCREE_EBUSY, "an attention request is still running on this connection");
  } else if (scree__session_fetch(sess) != NULL) {
    rc = FAIL(SCREE_EBUSY, "a fetch is still running on this connection");
  } else if (!scree__session_hello_done(sess) &&
             req->body_case != SCREE__V1__REQUEST__BODY_HELLO) {
    rc = FAIL(SCREE_EPROTO, "the first request on a connection must be Hello, not %s",
              req_name(req->body_case));
  } else if (scree__session_watching(sess) && req->body_case != SCREE__V1__REQUEST__BODY_WATCH &&
             req->body_case != SCREE__V1__REQUEST__BODY_HELLO) {
    rc = FAIL(SCREE_EPROTO,
              "this connection is watching: it takes only Watch, not %s (use another "
              "connection)",
              req_name(req->body_case));
  } else if (scree__session_waiting(sess) &&
             req->body_case != SCREE__V1__REQUEST__BODY_CANCEL) {
    /* As for attention: the server reads nothing but a Cancel while a Get
     * waits; a direct caller that does gets this. */
    rc = FAIL(SCREE_EBUSY, "a Get is waiting on this connection; only Cancel is taken");
  } else {
    rc = dispatch(h, sess, req, r);
  }
  if (rc != 0)
    fail_reply(h, sess, r, req_name(req->body_case), rc);
}

void scree__handle_packet(scree__handler *h, scree__session *sess, const uint8_t *buf,
                          size_t len, scree__reply *r) {
  /* One linear pass first, so that the decoder never merges a repeated
   * singular message (its cost grew with the square of the packet). */
  if (scree__wirescan(&scree__v1__request__descriptor, buf, len, r->msg, sizeof(r->msg)) != 0) {
    scree__store_count_request(h->store);
    r->resp.id = scree__authz_request_id(buf, len);
    fail_reply(h, sess, r, "packet", SCREE_EPROTO);
    return;
  }
  Scree__V1__Request *req = scree__v1__request__unpack(NULL, len, buf);
  if (req == NULL) {
    scree__store_count_request(h->store);
    snprintf(r->msg, sizeof(r->msg), "malformed request (%zu bytes do not decode)", len);
    r->resp.id = 0;
    fail_reply(h, sess, r, "packet", SCREE_EPROTO);
    return;
  }
  scree__handle(h, sess, req, r);
  /* Strings in the reply point into the store, never into req. */
  scree__v1__request__free_unpacked(req, NULL);
}

int scree__handler_attach_notices(scree__handler *h, scree__session *sess, scree__reply *r) {
  (void)h;
  if (sess == NULL || r->freed != NULL)
    return 0;
  size_t n = scree__session_take_freed(sess, &r->freed);
  r->resp.n_freed_arenas = n;
  r->resp.freed_arenas = r->freed;
  return 0;
}

/* ---- encoding -------------------------------------------------------------- */

void scree__out_clear(scree__out *out) {
  free(out->buf);
  if (out->fd >= 0)
    close(out->fd);
  memset(out, 0, sizeof(*out));
  out->fd = -1;
}

/* Packs r for sess into out (the arenas freed since sess's last response
 * ride along), taking r's fd. Returns 0 or SCREE_ENOMEM. */
static int encode(scree__handler *h, scree__session *sess, scree__reply *r, scree__out *out) {
  memset(out, 0, sizeof(*out));
  out->fd = -1;
  out->op = r->op;
  out->status = r->resp.status;
  scree__handler_attach_notices(h, sess, r);
  size_t len = scree__v1__response__get_packed_size(&r->resp);
  out->buf = malloc(len ? len : 1);
  if (out->buf == NULL)
    return SCREE_ENOMEM;
  out->len = scree__v1__response__pack(&r->resp, out->buf);
  out->fd = r->fd;
  r->fd = -1;
  return 0;
}

int scree__handler_serve(scree__handler *h, scree__session *sess, const uint8_t *buf,
                         size_t len, scree__out *out) {
  scree__reply r;
  scree__reply_init(&r);
  scree__handle_packet(h, sess, buf, len, &r);
  int rc = 0;
  if (r.deferred) {
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    out->op = r.op;
    out->deferred = 1;
    out->cancellable = r.cancellable;
  } else {
    rc = encode(h, sess, &r, out);
  }
  scree__reply_clear(&r);
  return rc;
}

int scree__handler_refuse(scree__handler *h, scree__session *sess, const uint8_t *req,
                          size_t req_len, int code, scree__out *out, const char *fmt, ...) {
  scree__reply r;
  scree__reply_init(&r);
  scree__store_count_request(h->store);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r.msg, sizeof(r.msg), fmt, ap);
  va_end(ap);
  r.resp.id = req != NULL ? scree__authz_request_id(req, req_len) : 0;
  fail_reply(h, sess, &r, "packet", code);
  int rc = encode(h, sess, &r, out);
  scree__reply_clear(&r);
  return rc;
}

int scree__handler_refuse_bare(const uint8_t *req, size_t req_len, int code, const char *text,
                               scree__out *out) {
  Scree__V1__Response resp = SCREE__V1__RESPONSE__INIT;
  resp.id = req != NULL ? scree__authz_request_id(req, req_len) : 0;
  resp.status = code;
  resp.message = (char *)text;
  memset(out, 0, sizeof(*out));
  out->fd = -1;
  out->status = code;
  size_t len = scree__v1__response__get_packed_size(&resp);
  out->buf = malloc(len ? len : 1);
  if (out->buf == NULL)
    return SCREE_ENOMEM;
  out->len = scree__v1__response__pack(&resp, out->buf);
  return 0;
}

/* ---- waits and watches ------------------------------------------------------ */

/* Encodes r for sess, clears it and hands the bytes to the server: the
 * end of every reply that does not answer a request as it comes (deferred
 * replies, waits). The server sees a reply that never comes only as a
 * client that waits, so a reply that cannot go out is said in the log. */
static void deliver(scree__handler *h, scree__session *sess, scree__reply *r) {
  scree__out out;
  int rc = encode(h, sess, r, &out);
  scree__reply_clear(r);
  if (rc != 0 || h->deliver == NULL) {
    scree__log(SCREE__LOG_ERROR, "reply_lost", "conn=%" PRIu64 " reason=%s",
               scree__session_id(sess), rc != 0 ? "out_of_memory" : "no_server");
    if (rc == 0)
      scree__out_clear(&out);
    return;
  }
  h->deliver(h->deliver_arg, sess, &out);
}

/* A waiter's end (store.h): the deferred Get reply. A seal means getting
 * the batch now, which can still fail (the lease limit). */
static void wait_done(void *arg, scree__session *sess, const scree__wait_end *end) {
  scree__handler *h = arg;
  scree__reply reply;
  scree__reply *r = &reply;
  scree__reply_init(r);
  r->resp.id = end->req_id;
  r->op = SCREE__REQ_GET;
  int rc;
  if (end->rc == 0)
    rc = get_now(h, sess, end->name, r);
  else if (end->rc == SCREE_ETIMEDOUT)
    rc = FAIL(SCREE_ETIMEDOUT, "batch '%s' was not sealed within %" PRId64 " ms (Get's wait)",
              end->name, end->wait_ms);
  else
    rc = FAIL(end->rc, "the wait for batch '%s' was cancelled", end->name);
  if (rc != 0)
    fail_reply(h, sess, r, "get", rc);
  deliver(h, sess, r);
}

static void watch_ready(void *arg, scree__session *sess) {
  scree__handler *h = arg;
  if (h->waits.watch_ready != NULL)
    h->waits.watch_ready(h->waits.arg, sess);
}

/* Asks for the timer at the earliest deadline, unless it is armed for that
 * or earlier already. A timer left armed for a waiter that went early just
 * fires, finds nothing due and is armed again. */
static void arm_timer(scree__handler *h) {
  uint64_t d = scree__store_wait_deadline(h->store);
  if (d == 0 || h->waits.arm_timer == NULL || (h->armed_ns != 0 && h->armed_ns <= d))
    return;
  h->armed_ns = d;
  h->waits.arm_timer(h->waits.arg, d);
}

void scree__handler_set_waits(scree__handler *h, const scree__handler_waits *w) {
  if (w != NULL)
    h->waits = *w;
  else
    memset(&h->waits, 0, sizeof(h->waits));
  h->armed_ns = 0;
  arm_timer(h);
}

void scree__handler_expire(scree__handler *h, uint64_t now_ns) {
  h->armed_ns = 0;
  scree__store_wait_expire(h->store, now_ns);
  arm_timer(h);
}

int scree__handler_watch_pending(scree__handler *h, scree__session *sess) {
  return sess != NULL && scree__store_watch_pending(h->store, sess);
}

int scree__handler_next_event(scree__handler *h, scree__session *sess, scree__out *out) {
  scree__event ev;
  if (!scree__store_watch_next(h->store, sess, &ev))
    return 0;
  scree__reply r;
  scree__reply_init(&r);
  r.resp.id = ev.req_id;
  r.op = SCREE__REQ_WATCH;
  Scree__V1__Event *e = REPLY_BODY(&r, event, EVENT, scree__v1__event__init);
  e->kind = (Scree__V1__EventKind)ev.kind;
  e->name.data = (uint8_t *)ev.name;
  e->name.len = strlen(ev.name);
  e->seq = ev.seq;
  int rc = encode(h, sess, &r, out);
  scree__reply_clear(&r);
  return rc == 0 ? 1 : rc;
}

int scree__handler_is_cancel(const uint8_t *buf, size_t len) {
  Scree__V1__Request *req = scree__v1__request__unpack(NULL, len, buf);
  if (req == NULL)
    return 0;
  int yes = req->body_case == SCREE__V1__REQUEST__BODY_CANCEL;
  scree__v1__request__free_unpacked(req, NULL);
  return yes;
}

/* ---- life ---------------------------------------------------------------- */

int scree__handler_new(scree__store *store, const scree__handler_config *cfg,
                       scree__handler **out, char *msg, size_t msg_len) {
  scree__handler *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  h->store = store;
  h->exec = cfg->exec;
  h->peers = cfg->peers;
  h->max_packet = cfg->max_packet;
  snprintf(h->version, sizeof(h->version), "%s", cfg->version ? cfg->version : "");
  scree__store_hooks hooks = {.wait_done = wait_done, .watch_ready = watch_ready, .arg = h};
  scree__store_set_hooks(store, &hooks);
  *out = h;
  return 0;
}

void scree__handler_free(scree__handler *h) {
  if (h != NULL)
    scree__store_set_hooks(h->store, NULL);
  free(h);
}

void scree__handler_set_deliver(scree__handler *h, scree__handler_deliver_cb cb, void *arg) {
  h->deliver = cb;
  h->deliver_arg = arg;
}

scree__session *scree__handler_open(scree__handler *h, uint32_t uid, int32_t pid) {
  return scree__session_open(h->store, uid, pid);
}

void scree__handler_close(scree__handler *h, scree__session *sess) {
  /* A running job finishes on its own; it must not reply to this session. */
  void *job = scree__session_job(sess);
  if (job != NULL)
    scree__exec_detach(job);
  /* A fetch whose reads have started goes on and keeps its batch (peers.h);
   * it must not reply either. */
  void *fetch = scree__session_fetch(sess);
  if (fetch != NULL)
    scree__peers_detach(fetch);
  scree__session_close(h->store, sess);
}
