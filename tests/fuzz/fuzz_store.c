/* fuzz_store: sequences of requests from a few sessions against a real store
 * on host memory.
 *
 * The input is read as a little program: each op byte picks one of four
 * session slots and a request (Hello, Create, writing offsets into the
 * arena the way a client would, Seal, Seal with inline offsets, Get,
 * Release, Delete, List, Stat,
 * Stats, Attention, closing the session, or a raw packet taken from the
 * input), and the following bytes give its arguments. Names come mostly
 * from a small set that share prefixes, sometimes straight from the input.
 *
 * After every op: the reply packs and decodes; the store's lease count
 * equals the leases the sessions were granted and still hold; bytes used
 * never pass the limit; and, when no delete is pending, bytes used equal the
 * sum of the live batches' aligned sizes as List reports them.
 * After the input: closing every session leaves no lease, no pending delete
 * and no unsealed batch; deleting every batch brings the store back to
 * empty (at most the spare arena left); freeing it leaks no memory (LSan)
 * and no fd. */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "scree/dtype.h"

/* A C string as a request's bytes field (names travel as bytes; see
 * proto/scree/v1/scree.proto). NULL is empty. */
static inline ProtobufCBinaryData test_bytes(const char *s) {
  ProtobufCBinaryData b = {s != NULL ? strlen(s) : 0, (uint8_t *)s};
  return b;
}

#define NSESS 4
#define MAX_OPS 200
#define MAX_LEASES 64
#define MAX_MAPS 32

static const char *const kNames[] = {
    "a", "ab", "abc", "b", "b/1", "b/2", "c", "\xc3\xa9t\xc3\xa9", "x", "y", "z", "zz",
};
#define NNAMES (sizeof(kNames) / sizeof(kNames[0]))

typedef struct reader {
  const uint8_t *p;
  size_t n;
} reader;

static uint8_t rd_u8(reader *r) {
  if (r->n == 0)
    return 0;
  r->n--;
  return *r->p++;
}

static uint64_t rd_u64(reader *r) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | rd_u8(r);
  return v;
}

/* Mostly small values, sometimes edges that overflow size arithmetic. */
static int64_t rd_int(reader *r) {
  static const int64_t edges[] = {
      -1, 0, 1, INT64_MAX, INT64_MIN, INT32_MAX, (int64_t)INT32_MAX + 1, 1 << 16, 1 << 20,
      (int64_t)1 << 32, (int64_t)1 << 40, (int64_t)1 << 62, 255, 256, 257, 4096,
  };
  uint8_t b = rd_u8(r);
  if (b < 200)
    return b % 33;
  if (b < 240)
    return edges[b % (sizeof(edges) / sizeof(edges[0]))];
  return (int64_t)rd_u64(r);
}

typedef struct lease {
  int sess;
  uint64_t id;
} lease;

/* Where a created batch's offsets are, as its Create reply said. */
typedef struct created {
  int valid;
  uint64_t arena_id;
  uint64_t offsets_offset;
  uint64_t offsets_bytes;
  int64_t batch_size;
  int64_t total_rows;
  uint32_t offsets_dtype;
} created;

typedef struct mapping {
  uint64_t arena_id;
  uint8_t *p;
  size_t size;
  int writable; /* mapped from a writable fd (a Create's) */
} mapping;

typedef struct state {
  scree__store *s;
  scree__handler *h;
  scree__session *sess[NSESS];
  scree__session *auditor;
  scree__reply r;
  uint64_t next_id;
  lease leases[MAX_LEASES * 4];
  size_t nleases;
  created made[NNAMES];
  mapping maps[MAX_MAPS];
  size_t nmaps;
  char name_buf[64];
} state;

static const char *rd_name(state *st, reader *r, int *slot) {
  uint8_t b = rd_u8(r);
  *slot = -1;
  if (b < 232) {
    *slot = b % (int)NNAMES;
    return kNames[*slot];
  }
  if (b < 240)
    return NULL; /* a request with the name missing */
  size_t len = rd_u8(r) % (sizeof(st->name_buf) - 1);
  for (size_t i = 0; i < len; i++)
    st->name_buf[i] = (char)rd_u8(r);
  st->name_buf[len] = '\0';
  return st->name_buf;
}

static mapping *map_find(state *st, uint64_t arena_id) {
  for (size_t i = 0; i < st->nmaps; i++)
    if (st->maps[i].arena_id == arena_id)
      return &st->maps[i];
  return NULL;
}

/* Maps an arena fd from a reply, as a client would: writable when the
 * Location says the fd is (a Create's), read-only otherwise; a writable fd
 * for an arena mapped read-only replaces that mapping. Ids are never
 * reused, so a mapping of a freed arena is merely stale memory of our own. */
static void map_fd(state *st, const Scree__V1__Location *loc, int fd) {
  if (fd < 0 || loc == NULL)
    return;
  mapping *mp = map_find(st, loc->arena_id);
  if ((mp != NULL && (mp->writable || !loc->writable)) || (mp == NULL && st->nmaps == MAX_MAPS))
    return;
  int prot = PROT_READ | (loc->writable ? PROT_WRITE : 0);
  void *p = mmap(NULL, loc->arena_size, prot, MAP_SHARED, fd, 0);
  FUZZ_CHECK(p != MAP_FAILED, "mapping arena %llu of %llu bytes",
             (unsigned long long)loc->arena_id, (unsigned long long)loc->arena_size);
  if (mp != NULL)
    munmap(mp->p, mp->size);
  else
    mp = &st->maps[st->nmaps++];
  mp->arena_id = loc->arena_id;
  mp->p = p;
  mp->size = loc->arena_size;
  mp->writable = loc->writable;
}

/* Sends req on sess and checks what every reply must satisfy. The reply
 * stays in st->r until the next call. */
static const Scree__V1__Response *call(state *st, scree__session *sess, Scree__V1__Request *req) {
  scree__reply_clear(&st->r);
  req->id = ++st->next_id;
  uint64_t t0 = scree__now_ns();
  scree__handle(st->h, sess, req, &st->r);
  fuzz_note_time(scree__now_ns() - t0, "request", 0);
  FUZZ_CHECK(st->r.resp.id == req->id, "reply id %llu for request %llu",
             (unsigned long long)st->r.resp.id, (unsigned long long)req->id);
  fuzz_check_reply(&st->r);
  if (fuzz_trace())
    fprintf(stderr, "fuzz_store: session %p request %d: status %d %s\n", (void *)sess,
            (int)req->body_case, st->r.resp.status,
            st->r.resp.message ? st->r.resp.message : "");
  return &st->r.resp;
}

static void hello(state *st, scree__session *sess, uint32_t version) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = version;
  h.client_name = "fuzz";
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  const Scree__V1__Response *resp = call(st, sess, &req);
  FUZZ_CHECK((resp->status == 0) == (version == SCREE__PROTOCOL_VERSION),
             "hello version %u: status %d", version, resp->status);
}

/* Sums the aligned sizes of every named batch through List pages on the
 * auditor session, and counts them and the unsealed and leased ones. */
typedef struct audit {
  uint64_t bytes;
  uint32_t batches;
  uint32_t unsealed;
  uint32_t leased;
} audit;

static audit audit_list(state *st) {
  audit a = {0, 0, 0, 0};
  char token[SCREE__MAX_NAME_LEN + 1] = "";
  for (int page = 0;; page++) {
    FUZZ_CHECK(page < 10000, "List does not end");
    Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
    Scree__V1__List l = SCREE__V1__LIST__INIT;
    l.page_token = test_bytes(token);
    l.page_size = SCREE__LIST_MAX;
    req.body_case = SCREE__V1__REQUEST__BODY_LIST;
    req.list = &l;
    const Scree__V1__Response *resp = call(st, st->auditor, &req);
    FUZZ_CHECK(resp->status == 0 && resp->body_case == SCREE__V1__RESPONSE__BODY_LIST,
               "list: %d %s", resp->status, resp->message);
    for (size_t i = 0; i < resp->list->n_batches; i++) {
      const Scree__V1__BatchInfo *b = resp->list->batches[i];
      a.bytes += scree__align_up(b->values_bytes) + scree__align_up(b->offsets_bytes);
      a.batches++;
      a.unsealed += b->state != SCREE__V1__BATCH_STATE__BATCH_STATE_SEALED;
      a.leased += b->leases != 0;
      FUZZ_CHECK(!b->delete_pending, "a listed batch is pending delete");
    }
    const char *next = resp->list->next_page_token;
    if (next == NULL || next[0] == '\0')
      break;
    FUZZ_CHECK(resp->list->n_batches > 0, "empty page with a next token");
    snprintf(token, sizeof(token), "%s", next);
  }
  return a;
}

static void check_invariants(state *st) {
  scree__store_counts c;
  scree__store_counts_get(st->s, &c);
  FUZZ_CHECK(c.leases == st->nleases, "store has %u leases, sessions hold %zu", c.leases,
             st->nleases);
  FUZZ_CHECK(c.bytes_used <= FUZZ_MEMORY_LIMIT, "bytes used %llu over the limit",
             (unsigned long long)c.bytes_used);
  FUZZ_CHECK(c.bytes_used <= c.bytes_arenas, "bytes used %llu > arena bytes %llu",
             (unsigned long long)c.bytes_used, (unsigned long long)c.bytes_arenas);
  FUZZ_CHECK(c.pending_deletes <= c.leases, "%u pending deletes with %u leases",
             c.pending_deletes, c.leases);
  audit a = audit_list(st);
  FUZZ_CHECK(a.batches == c.batches, "List shows %u batches, the store counts %u", a.batches,
             c.batches);
  if (c.pending_deletes == 0)
    FUZZ_CHECK(a.bytes == c.bytes_used, "live batches sum to %llu bytes, the store counts %llu",
               (unsigned long long)a.bytes, (unsigned long long)c.bytes_used);
  else
    FUZZ_CHECK(a.bytes < c.bytes_used, "pending deletes hold no bytes");
}

static void forget_leases_of(state *st, int sess) {
  size_t k = 0;
  for (size_t i = 0; i < st->nleases; i++)
    if (st->leases[i].sess != sess)
      st->leases[k++] = st->leases[i];
  st->nleases = k;
}

static void write_offsets(state *st, reader *r, int slot) {
  if (slot < 0 || !st->made[slot].valid)
    return;
  const created *m = &st->made[slot];
  mapping *mp = map_find(st, m->arena_id);
  if (mp == NULL || !mp->writable || m->offsets_offset > mp->size || m->offsets_bytes > mp->size - m->offsets_offset)
    return;
  uint8_t *dst = mp->p + m->offsets_offset;
  int wide = m->offsets_dtype == SCREE_INT64;
  size_t esz = wide ? 8 : 4;
  size_t n = (size_t)(m->offsets_bytes / esz);
  uint8_t mode = rd_u8(r) % 4;
  int64_t rows = m->total_rows, b = m->batch_size;
  for (size_t i = 0; i < n; i++) {
    int64_t v;
    if (mode == 0) /* even split: valid */
      v = b > 0 ? (int64_t)((__int128)rows * (int64_t)i / b) : 0;
    else if (mode == 1) /* valid but for one index the input picks */
      v = b > 0 ? (int64_t)((__int128)rows * (int64_t)i / b) : 0;
    else /* straight from the input */
      v = rd_int(r);
    if (wide)
      memcpy(dst + i * 8, &v, 8);
    else {
      int32_t w = (int32_t)v;
      memcpy(dst + i * 4, &w, 4);
    }
  }
  if (mode == 1 && n > 0) {
    size_t i = rd_u8(r) % n;
    int64_t v = (int64_t)((uint64_t)rd_int(r) - 16);
    if (wide)
      memcpy(dst + i * 8, &v, 8);
    else {
      int32_t w = (int32_t)v;
      memcpy(dst + i * 4, &w, 4);
    }
  }
}

static void run_op(state *st, reader *r) {
  uint8_t op_byte = rd_u8(r);
  int si = (op_byte >> 4) & (NSESS - 1);
  scree__session *sess = st->sess[si];
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  int slot;
  switch (op_byte & 15) {
  case 0:
    hello(st, sess, rd_u8(r) < 16 ? (uint32_t)rd_u64(r) : SCREE__PROTOCOL_VERSION);
    break;
  case 1:
  case 2: {
    Scree__V1__Create c = SCREE__V1__CREATE__INIT;
    Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
    int64_t inner[12];
    c.name = test_bytes((char *)rd_name(st, r, &slot));
    uint8_t shape = rd_u8(r);
    d.dtype = shape < 240 ? shape % 13 : rd_u8(r);
    uint8_t od = rd_u8(r);
    d.offsets_dtype = od < 120 ? SCREE_INT64 : od < 240 ? SCREE_INT32 : od;
    d.n_inner = rd_u8(r) % 11 < 8 ? rd_u8(r) % 3 : rd_u8(r) % 12;
    for (size_t i = 0; i < d.n_inner; i++)
      inner[i] = rd_int(r);
    d.inner = inner;
    d.batch_size = rd_int(r);
    d.total_rows = rd_int(r);
    d.max_length = rd_int(r);
    if (rd_u8(r) >= 8)
      c.desc = &d;
    req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
    req.create = &c;
    const Scree__V1__Response *resp = call(st, sess, &req);
    if (resp->status == 0) {
      FUZZ_CHECK(resp->body_case == SCREE__V1__RESPONSE__BODY_CREATE, "create body");
      const Scree__V1__Location *loc = resp->create->location;
      FUZZ_CHECK(!loc->handle_attached || loc->writable, "a Create's fd is writable");
      map_fd(st, loc, st->r.fd);
      if (slot >= 0) {
        created *m = &st->made[slot];
        m->valid = 1;
        m->arena_id = loc->arena_id;
        m->offsets_offset = loc->offsets_offset;
        m->offsets_bytes = loc->offsets_bytes;
        m->batch_size = d.batch_size;
        m->total_rows = d.total_rows;
        m->offsets_dtype = d.offsets_dtype;
      }
    }
    break;
  }
  case 3:
    rd_name(st, r, &slot);
    write_offsets(st, r, slot);
    break;
  case 4: {
    Scree__V1__Seal q = SCREE__V1__SEAL__INIT;
    q.name = test_bytes((char *)rd_name(st, r, &slot));
    req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
    req.seal = &q;
    call(st, sess, &req);
    break;
  }
  case 6: {
    /* Seal with inline offsets, made as write_offsets makes them for the
     * batch the name was created as (or for a count the input picks), and
     * sometimes a few bytes short or long. */
    Scree__V1__Seal q = SCREE__V1__SEAL__INIT;
    uint8_t inl[65 * 8 + 8];
    q.name = test_bytes((char *)rd_name(st, r, &slot));
    const created *m = slot >= 0 && st->made[slot].valid ? &st->made[slot] : NULL;
    int wide = m == NULL || m->offsets_dtype != SCREE_INT32;
    size_t esz = wide ? 8 : 4;
    size_t n = m != NULL && m->batch_size >= 0 && m->batch_size < 65
                   ? (size_t)m->batch_size + 1
                   : rd_u8(r) % 66;
    int64_t rows = m != NULL ? m->total_rows : rd_int(r);
    uint8_t mode = rd_u8(r) % 4;
    size_t bad = n > 0 ? rd_u8(r) % n : 0;
    int64_t b = n > 0 ? (int64_t)n - 1 : 0;
    memset(inl, 0, sizeof(inl));
    for (size_t i = 0; i < n; i++) {
      int64_t v = b > 0 ? (int64_t)((__int128)rows * (int64_t)i / b) : 0;
      if (mode == 2) /* straight from the input */
        v = rd_int(r);
      else if (mode == 1 && i == bad) /* valid but for one index */
        v = (int64_t)((uint64_t)rd_int(r) - 16);
      if (wide)
        memcpy(inl + i * 8, &v, 8);
      else {
        int32_t w = (int32_t)v;
        memcpy(inl + i * 4, &w, 4);
      }
    }
    int64_t len = (int64_t)(n * esz);
    if (mode == 3) /* an even split, from 4 bytes short to 4 long */
      len += 4 - (int64_t)(rd_u8(r) % 9);
    if (len < 1)
      len = 1;
    q.offsets.data = inl;
    q.offsets.len = (size_t)len;
    req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
    req.seal = &q;
    const Scree__V1__Response *resp = call(st, sess, &req);
    if (resp->status == 0 && m != NULL) {
      mapping *mp = map_find(st, m->arena_id);
      if (mp != NULL && m->offsets_offset <= mp->size && (size_t)len <= mp->size - m->offsets_offset)
        FUZZ_CHECK(memcmp(mp->p + m->offsets_offset, inl, (size_t)len) == 0,
                   "inline offsets were written into the batch");
    }
    break;
  }
  case 5: {
    Scree__V1__Get q = SCREE__V1__GET__INIT;
    q.name = test_bytes((char *)rd_name(st, r, &slot));
    req.body_case = SCREE__V1__REQUEST__BODY_GET;
    req.get = &q;
    const Scree__V1__Response *resp = call(st, sess, &req);
    if (resp->status == 0) {
      FUZZ_CHECK(resp->body_case == SCREE__V1__RESPONSE__BODY_GET, "get body");
      FUZZ_CHECK(st->nleases < sizeof(st->leases) / sizeof(st->leases[0]), "lease table");
      FUZZ_CHECK(!resp->get->location->writable, "a Get's fd is read-only");
      if (st->r.fd >= 0)
        FUZZ_CHECK((fcntl(st->r.fd, F_GETFL) & O_ACCMODE) == O_RDONLY, "a Get's fd is O_RDONLY");
      map_fd(st, resp->get->location, st->r.fd);
      for (size_t i = 0; i < st->nleases; i++)
        FUZZ_CHECK(st->leases[i].id != resp->get->lease_id, "lease id %llu given twice",
                   (unsigned long long)resp->get->lease_id);
      st->leases[st->nleases].sess = si;
      st->leases[st->nleases].id = resp->get->lease_id;
      st->nleases++;
    }
    break;
  }
  case 7:
  case 8: {
    Scree__V1__Release q = SCREE__V1__RELEASE__INIT;
    uint8_t how = rd_u8(r);
    if (how < 200 && st->nleases > 0)
      q.lease_id = st->leases[rd_u8(r) % st->nleases].id; /* maybe another session's */
    else
      q.lease_id = how < 230 ? rd_u8(r) : rd_u64(r);
    req.body_case = SCREE__V1__REQUEST__BODY_RELEASE;
    req.release = &q;
    const Scree__V1__Response *resp = call(st, sess, &req);
    size_t held = st->nleases;
    for (size_t i = 0; i < st->nleases; i++) {
      if (st->leases[i].id == q.lease_id) {
        FUZZ_CHECK((resp->status == 0) == (st->leases[i].sess == si),
                   "release of a lease held by session %d from session %d: status %d",
                   st->leases[i].sess, si, resp->status);
        if (resp->status == 0)
          st->leases[i] = st->leases[--st->nleases];
        break;
      }
    }
    FUZZ_CHECK(resp->status != 0 || st->nleases == held - 1, "release of an unknown lease %llu",
               (unsigned long long)q.lease_id);
    break;
  }
  case 9: {
    Scree__V1__Delete q = SCREE__V1__DELETE__INIT;
    q.name = test_bytes((char *)rd_name(st, r, &slot));
    req.body_case = SCREE__V1__REQUEST__BODY_DELETE;
    req.delete_ = &q;
    call(st, sess, &req);
    break;
  }
  case 10: {
    Scree__V1__List q = SCREE__V1__LIST__INIT;
    uint8_t how = rd_u8(r);
    q.prefix = test_bytes(how & 1 ? (char *)rd_name(st, r, &slot) : (char *)"");
    char tok[64] = "";
    if (how & 2) {
      const char *t = rd_name(st, r, &slot);
      snprintf(tok, sizeof(tok), "%s", t ? t : "");
      q.page_token = test_bytes(tok);
    }
    q.page_size = how & 4 ? (uint32_t)rd_u64(r) : rd_u8(r) % 4;
    req.body_case = SCREE__V1__REQUEST__BODY_LIST;
    req.list = &q;
    call(st, sess, &req);
    break;
  }
  case 11: {
    Scree__V1__Stat q = SCREE__V1__STAT__INIT;
    q.name = test_bytes((char *)rd_name(st, r, &slot));
    req.body_case = SCREE__V1__REQUEST__BODY_STAT;
    req.stat = &q;
    call(st, sess, &req);
    break;
  }
  case 12: {
    Scree__V1__Stats q = SCREE__V1__STATS__INIT;
    req.body_case = SCREE__V1__REQUEST__BODY_STATS;
    req.stats = &q;
    call(st, sess, &req);
    break;
  }
  case 13:
    /* The peer goes away: its leases go, its unsealed creates are
     * reclaimed, and a new peer takes the slot. */
    scree__session_close(st->s, sess);
    forget_leases_of(st, si);
    st->sess[si] = scree__session_open(st->s, 1000 + (uint32_t)si, 100 + si);
    FUZZ_CHECK(st->sess[si] != NULL, "session");
    break;
  case 14: {
    /* A raw packet of up to 255 bytes, taken from the input in one copy
     * (zeros past its end, as rd_u8 gives). */
    uint8_t buf[256] = {0};
    size_t len = rd_u8(r);
    size_t have = len < r->n ? len : r->n;
    memcpy(buf, r->p, have);
    r->p += have;
    r->n -= have;
    scree__reply_clear(&st->r);
    uint64_t t0 = scree__now_ns();
    scree__handle_packet(st->h, sess, buf, len, &st->r);
    fuzz_note_time(scree__now_ns() - t0, "packet", len);
    fuzz_check_reply(&st->r);
    /* A raw Get may have made a lease: learn it as a client would. */
    if (st->r.resp.status == 0 && st->r.resp.body_case == SCREE__V1__RESPONSE__BODY_GET &&
        st->nleases < sizeof(st->leases) / sizeof(st->leases[0])) {
      st->leases[st->nleases].sess = si;
      st->leases[st->nleases].id = st->r.resp.get->lease_id;
      st->nleases++;
    }
    /* A raw Release of a lease the model holds. */
    if (st->r.resp.status == 0 && st->r.resp.body_case == SCREE__V1__RESPONSE__BODY_RELEASE) {
      Scree__V1__Request *q = scree__v1__request__unpack(NULL, len, buf);
      FUZZ_CHECK(q != NULL && q->body_case == SCREE__V1__REQUEST__BODY_RELEASE, "raw release");
      for (size_t i = 0; i < st->nleases; i++)
        if (st->leases[i].id == q->release->lease_id) {
          st->leases[i] = st->leases[--st->nleases];
          break;
        }
      scree__v1__request__free_unpacked(q, NULL);
    }
    break;
  }
  case 15: {
    Scree__V1__Attention q = SCREE__V1__ATTENTION__INIT;
    q.q = test_bytes((char *)rd_name(st, r, &slot));
    q.k = test_bytes((char *)rd_name(st, r, &slot));
    q.v = test_bytes((char *)rd_name(st, r, &slot));
    char out[64];
    const char *o = rd_name(st, r, &slot);
    snprintf(out, sizeof(out), "%s", o ? o : "");
    q.out = test_bytes(o ? out : NULL);
    uint8_t f = rd_u8(r);
    q.causal = f & 1;
    q.has_scale = (f >> 1) & 1;
    q.scale = (float)rd_int(r) / 8.0f;
    /* Bits 2 and 3 say whether each window bound is present at all. */
    q.window_left = (int32_t)(uint32_t)((uint64_t)rd_int(r) - 1);
    q.window_right = (int32_t)(uint32_t)((uint64_t)rd_int(r) - 1);
    if ((f >> 2) & 1)
      q.window_left_present_case = SCREE__V1__ATTENTION__WINDOW_LEFT_PRESENT_WINDOW_LEFT;
    if ((f >> 3) & 1)
      q.window_right_present_case = SCREE__V1__ATTENTION__WINDOW_RIGHT_PRESENT_WINDOW_RIGHT;
    req.body_case = SCREE__V1__REQUEST__BODY_ATTENTION;
    req.attention = &q;
    call(st, sess, &req);
    break;
  }
  }
  scree__reply_clear(&st->r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Counted per input: libFuzzer itself opens and closes files between
   * inputs. */
  fuzz_mem();
  int fds_at_start = fuzz_count_fds();
  state *st = calloc(1, sizeof(*st));
  FUZZ_CHECK(st != NULL, "out of memory");
  st->s = fuzz_store_new();
  st->h = fuzz_handler_new(st->s);
  scree__reply_init(&st->r);
  for (int i = 0; i < NSESS; i++) {
    st->sess[i] = scree__session_open(st->s, 1000 + (uint32_t)i, 100 + i);
    FUZZ_CHECK(st->sess[i] != NULL, "session");
  }
  st->auditor = scree__session_open(st->s, 0, 1);
  FUZZ_CHECK(st->auditor != NULL, "session");
  hello(st, st->auditor, SCREE__PROTOCOL_VERSION);

  reader r = {data, size};
  for (int ops = 0; r.n > 0 && ops < MAX_OPS; ops++) {
    run_op(st, &r);
    check_invariants(st);
  }

  /* Every peer goes away: nothing they held may stay. */
  for (int i = 0; i < NSESS; i++)
    scree__session_close(st->s, st->sess[i]);
  st->nleases = 0;
  scree__store_counts c;
  scree__store_counts_get(st->s, &c);
  FUZZ_CHECK(c.leases == 0 && c.pending_deletes == 0 && c.sessions == 1,
             "after closing every session: %u leases, %u pending deletes, %u sessions",
             c.leases, c.pending_deletes, c.sessions);
  audit a = audit_list(st);
  FUZZ_CHECK(a.unsealed == 0 && a.leased == 0, "%u unsealed and %u leased batches left",
             a.unsealed, a.leased);
  FUZZ_CHECK(a.bytes == c.bytes_used && a.batches == c.batches,
             "sealed batches sum to %llu bytes in %u, the store counts %llu in %u",
             (unsigned long long)a.bytes, a.batches, (unsigned long long)c.bytes_used,
             c.batches);

  /* Delete everything: the store is back to empty. */
  for (int round = 0; round < 100; round++) {
    Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
    Scree__V1__List l = SCREE__V1__LIST__INIT;
    l.page_size = SCREE__LIST_MAX;
    req.body_case = SCREE__V1__REQUEST__BODY_LIST;
    req.list = &l;
    const Scree__V1__Response *resp = call(st, st->auditor, &req);
    FUZZ_CHECK(resp->status == 0, "list");
    size_t n = resp->list->n_batches;
    if (n == 0)
      break;
    char **names = calloc(n, sizeof(*names));
    FUZZ_CHECK(names != NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
      names[i] = strdup(resp->list->batches[i]->name);
    for (size_t i = 0; i < n; i++) {
      Scree__V1__Request dq = SCREE__V1__REQUEST__INIT;
      Scree__V1__Delete d = SCREE__V1__DELETE__INIT;
      d.name = test_bytes(names[i]);
      dq.body_case = SCREE__V1__REQUEST__BODY_DELETE;
      dq.delete_ = &d;
      const Scree__V1__Response *dr = call(st, st->auditor, &dq);
      FUZZ_CHECK(dr->status == 0 && !dr->delete_->deferred, "delete of '%s': %d %s", names[i],
                 dr->status, dr->message);
      free(names[i]);
    }
    free(names);
  }
  scree__reply_clear(&st->r);
  scree__store_counts_get(st->s, &c);
  FUZZ_CHECK(c.bytes_used == 0 && c.batches == 0 && c.leases == 0,
             "after deleting everything: %llu bytes, %u batches, %u leases",
             (unsigned long long)c.bytes_used, c.batches, c.leases);
  /* Emptied arenas are kept for reuse until a purge finds them old enough;
   * one with no age limit gives every one back. */
  scree__store_purge(st->s, 0);
  scree__store_counts_get(st->s, &c);
  FUZZ_CHECK(c.arenas == 0 && c.bytes_arenas == 0,
             "after deleting everything and a purge: %u arenas of %llu bytes", c.arenas,
             (unsigned long long)c.bytes_arenas);

  scree__session_close(st->s, st->auditor);
  scree__handler_free(st->h);
  scree__store_free(st->s);
  for (size_t i = 0; i < st->nmaps; i++)
    munmap(st->maps[i].p, st->maps[i].size);
  free(st);
  int fds = fuzz_count_fds();
  FUZZ_CHECK(fds == fds_at_start, "%d fds open after the input, %d before", fds, fds_at_start);
  return 0;
}
