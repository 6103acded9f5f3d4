/* Writes the seed corpora of the fuzz harnesses from valid requests:
 *   fuzz_decode: one packed request of every type;
 *   fuzz_store:  short programs in fuzz_store's input language that walk
 *                the batch life cycle (see fuzz_store.c for the encoding).
 *
 * usage: fuzz_make_corpus DIR   (writes DIR/fuzz_decode/ and DIR/fuzz_store/,
 * which must exist). `make fuzz-corpus` runs it on tests/fuzz/corpus. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scree/dtype.h"
#include "scree/v1/scree.pb-c.h"

/* A C string as a request's bytes field (names travel as bytes; see
 * proto/scree/v1/scree.proto). NULL is empty. */
static inline ProtobufCBinaryData test_bytes(const char *s) {
  ProtobufCBinaryData b = {s != NULL ? strlen(s) : 0, (uint8_t *)s};
  return b;
}

static const char *out_dir;

static void write_file(const char *harness, const char *name, const uint8_t *buf, size_t len) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s/%s", out_dir, harness, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

static void write_request(const char *name, Scree__V1__Request *req) {
  size_t len = scree__v1__request__get_packed_size(req);
  uint8_t *buf = malloc(len ? len : 1);
  scree__v1__request__pack(req, buf);
  write_file("fuzz_decode", name, buf, len);
  free(buf);
}

static void decode_seeds(void) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.id = 7;

  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  h.client_name = "seed";
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  write_request("hello", &req);

  Scree__V1__Create c = SCREE__V1__CREATE__INIT;
  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  int64_t inner[2] = {8, 64};
  d.dtype = SCREE_BFLOAT16;
  d.offsets_dtype = SCREE_INT32;
  d.inner = inner;
  d.n_inner = 2;
  d.batch_size = 4;
  d.total_rows = 100;
  c.name = test_bytes("train/step-1");
  c.desc = &d;
  req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
  req.create = &c;
  write_request("create", &req);

  Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
  s.name = test_bytes("train/step-1");
  req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
  req.seal = &s;
  write_request("seal", &req);
  /* The same with the offsets inline. */
  int32_t offs[5] = {0, 10, 40, 70, 100};
  s.offsets.data = (uint8_t *)offs;
  s.offsets.len = sizeof(offs);
  write_request("seal_inline", &req);
  s.offsets.len = 0;

  Scree__V1__Get g = SCREE__V1__GET__INIT;
  g.name = test_bytes("train/step-1");
  req.body_case = SCREE__V1__REQUEST__BODY_GET;
  req.get = &g;
  write_request("get", &req);

  Scree__V1__Release rl = SCREE__V1__RELEASE__INIT;
  rl.lease_id = 1;
  req.body_case = SCREE__V1__REQUEST__BODY_RELEASE;
  req.release = &rl;
  write_request("release", &req);

  Scree__V1__Delete del = SCREE__V1__DELETE__INIT;
  del.name = test_bytes("train/step-1");
  req.body_case = SCREE__V1__REQUEST__BODY_DELETE;
  req.delete_ = &del;
  write_request("delete", &req);

  Scree__V1__List l = SCREE__V1__LIST__INIT;
  l.prefix = test_bytes("train/");
  l.page_token = test_bytes("train/step-0");
  l.page_size = 2;
  req.body_case = SCREE__V1__REQUEST__BODY_LIST;
  req.list = &l;
  write_request("list", &req);

  Scree__V1__Stat st = SCREE__V1__STAT__INIT;
  st.name = test_bytes("train/step-1");
  req.body_case = SCREE__V1__REQUEST__BODY_STAT;
  req.stat = &st;
  write_request("stat", &req);

  Scree__V1__Stats sts = SCREE__V1__STATS__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_STATS;
  req.stats = &sts;
  write_request("stats", &req);

  Scree__V1__Attention a = SCREE__V1__ATTENTION__INIT;
  a.q = test_bytes("q");
  a.k = test_bytes("k");
  a.v = test_bytes("v");
  a.out = test_bytes("o");
  a.causal = 1;
  a.window_right_present_case = SCREE__V1__ATTENTION__WINDOW_RIGHT_PRESENT_WINDOW_RIGHT;
  a.window_right = 0;
  req.body_case = SCREE__V1__REQUEST__BODY_ATTENTION;
  req.attention = &a;
  write_request("attention", &req);
}

/* ---- fuzz_store programs ---------------------------------------------- */

typedef struct prog {
  uint8_t b[512];
  size_t n;
} prog;

static void put(prog *p, uint8_t v) {
  if (p->n == sizeof(p->b)) {
    fprintf(stderr, "program too long\n");
    exit(1);
  }
  p->b[p->n++] = v;
}

enum { HELLO = 0, CREATE = 1, WRITE = 3, SEAL = 4, GET = 5, SEAL_INLINE = 6, RELEASE = 7, DELETE = 9,
       LIST = 10, STAT = 11, STATS = 12, CLOSE = 13, RAW = 14, ATTN = 15 };
/* Name slots of fuzz_store's kNames. */
enum { N_A = 0, N_AB = 1, N_ABC = 2, N_B = 3, N_B1 = 4, N_B2 = 5 };

static void op(prog *p, int sess, int code) { put(p, (uint8_t)((sess << 4) | code)); }

static void hello(prog *p, int sess) {
  op(p, sess, HELLO);
  put(p, 100); /* the right version */
}

/* float32 rows of 4, int64 or int32 offsets; sizes below 33. */
static void create(prog *p, int sess, int name, int batch, int rows, int int32_offsets) {
  op(p, sess, CREATE);
  put(p, (uint8_t)name);
  put(p, SCREE_FLOAT32);
  put(p, int32_offsets ? 130 : 0);
  put(p, 0); /* n_inner from the next byte % 3 */
  put(p, 1);
  put(p, 4); /* inner[0] */
  put(p, (uint8_t)batch);
  put(p, (uint8_t)rows);
  put(p, 0);   /* max_length (ignored) */
  put(p, 100); /* the descriptor is present */
}

/* Seal with the offsets inline: an even split when valid, else valid but
 * for index 1. */
static void seal_inline(prog *p, int sess, int name, int valid) {
  op(p, sess, SEAL_INLINE);
  put(p, (uint8_t)name);
  put(p, valid ? 0 : 1); /* mode */
  put(p, 1);             /* the bad index */
  if (!valid)
    put(p, 0); /* value 0 - 16 */
}

static void write_offsets(prog *p, int name, int valid) {
  op(p, 0, WRITE);
  put(p, (uint8_t)name);
  if (valid) {
    put(p, 0);
  } else {
    put(p, 1);  /* valid but one index */
    put(p, 1);  /* index 1 */
    put(p, 0);  /* value 0 - 16 */
  }
}

static void named(prog *p, int sess, int code, int name) {
  op(p, sess, code);
  put(p, (uint8_t)name);
}

static void release_first(prog *p, int sess) {
  op(p, sess, RELEASE);
  put(p, 0);
  put(p, 0);
}

static void store_seed(const char *name, const prog *p) {
  write_file("fuzz_store", name, p->b, p->n);
}

static void store_seeds(void) {
  prog p;

  /* put, get, release, delete, across two sessions */
  memset(&p, 0, sizeof(p));
  hello(&p, 0);
  hello(&p, 1);
  create(&p, 0, N_A, 3, 10, 0);
  write_offsets(&p, N_A, 1);
  named(&p, 0, SEAL, N_A);
  named(&p, 1, GET, N_A);
  named(&p, 1, STAT, N_A);
  release_first(&p, 1);
  named(&p, 0, DELETE, N_A);
  op(&p, 0, STATS);
  store_seed("lifecycle", &p);

  /* delete while leased, then the lease holder goes away */
  memset(&p, 0, sizeof(p));
  hello(&p, 0);
  hello(&p, 1);
  create(&p, 0, N_B, 2, 7, 1);
  write_offsets(&p, N_B, 1);
  named(&p, 0, SEAL, N_B);
  named(&p, 1, GET, N_B);
  named(&p, 1, GET, N_B);
  named(&p, 0, DELETE, N_B);
  create(&p, 0, N_B, 1, 1, 0); /* the name is free again */
  op(&p, 1, CLOSE);
  store_seed("deferred_delete", &p);

  /* an unsealed create goes with its session; bad offsets do not seal */
  memset(&p, 0, sizeof(p));
  hello(&p, 2);
  create(&p, 2, N_ABC, 4, 20, 0);
  write_offsets(&p, N_ABC, 0);
  named(&p, 2, SEAL, N_ABC);
  op(&p, 2, CLOSE);
  store_seed("unsealed_reclaimed", &p);

  /* many batches listed in pages of one, by prefix */
  memset(&p, 0, sizeof(p));
  hello(&p, 0);
  int names[] = {N_A, N_AB, N_ABC, N_B1, N_B2};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    create(&p, 0, names[i], 1, (int)i + 1, 0);
    write_offsets(&p, names[i], 1);
    named(&p, 0, SEAL, names[i]);
  }
  op(&p, 3, LIST); /* before Hello on session 3 */
  put(&p, 0);
  put(&p, 1);
  hello(&p, 3);
  op(&p, 3, LIST);
  put(&p, 1 | 2); /* prefix and page token, page size from the next byte */
  put(&p, N_A);
  put(&p, N_AB);
  put(&p, 1);
  store_seed("list_pages", &p);

  /* a raw Get packet after a put, and one that does not decode */
  memset(&p, 0, sizeof(p));
  hello(&p, 0);
  create(&p, 0, N_A, 1, 2, 0);
  write_offsets(&p, N_A, 1);
  named(&p, 0, SEAL, N_A);
  {
    Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
    Scree__V1__Get g = SCREE__V1__GET__INIT;
    g.name = test_bytes("a");
    req.id = 9;
    req.body_case = SCREE__V1__REQUEST__BODY_GET;
    req.get = &g;
    uint8_t buf[64];
    size_t len = scree__v1__request__pack(&req, buf);
    op(&p, 0, RAW);
    put(&p, (uint8_t)len);
    for (size_t i = 0; i < len; i++)
      put(&p, buf[i]);
  }
  op(&p, 0, RAW);
  put(&p, 3);
  put(&p, 0xff);
  put(&p, 0xff);
  put(&p, 0xff);
  store_seed("raw_packets", &p);

  /* offsets inline with Seal: refused when bad (the batch stays created),
   * then sealed without a write by the client */
  memset(&p, 0, sizeof(p));
  hello(&p, 0);
  hello(&p, 1);
  create(&p, 0, N_A, 3, 10, 0);
  seal_inline(&p, 0, N_A, 0);
  seal_inline(&p, 1, N_A, 1); /* another session's */
  seal_inline(&p, 0, N_A, 1);
  named(&p, 1, GET, N_A);
  create(&p, 1, N_B, 2, 5, 1);
  seal_inline(&p, 1, N_B, 1);
  named(&p, 1, DELETE, N_B);
  op(&p, 1, CLOSE);
  store_seed("inline_offsets", &p);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuzz_make_corpus DIR\n");
    return 2;
  }
  out_dir = argv[1];
  decode_seeds();
  store_seeds();
  return 0;
}
