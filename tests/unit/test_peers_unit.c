/* Peers without UCX traffic: the HMAC against RFC 4231, the handshake's
 * proofs, the secret file's checks, the wire format, the options, and the
 * budget of log lines a remote can cause. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "peers.h"
#include "peers_auth.h"
#include "peers_wire.h"
#include "ratelimit.h"
#include "scree/error.h"

static void unhex(const char *h, unsigned char *out, size_t n) {
  for (size_t i = 0; i < n; i++)
    sscanf(h + 2 * i, "%2hhx", &out[i]);
}

/* RFC 4231 test cases 1, 2, 4, 6 and 7 (HMAC-SHA-256). */
Test(peers_auth, rfc4231) {
  struct {
    size_t klen;
    unsigned char kbyte; /* 0: the incrementing key of case 4 */
    const char *data;
    size_t dlen;
    const char *mac;
  } cases[] = {
      {20, 0x0b, "Hi There", 8,
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {0, 0, "what do ya want for nothing?", 28,
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {131, 0xaa, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    unsigned char key[131];
    const void *k = key;
    size_t kl = cases[i].klen;
    if (kl == 0) {
      k = "Jefe";
      kl = 4;
    } else {
      memset(key, cases[i].kbyte, kl);
    }
    unsigned char mac[32], want[32];
    cr_assert_eq(scree__hmac_sha256(k, kl, cases[i].data, cases[i].dlen, mac), 0);
    unhex(cases[i].mac, want, 32);
    cr_expect(memcmp(mac, want, 32) == 0, "RFC 4231 case %zu", i);
  }
  /* Case 4: key 0x01..0x19, data 50 bytes of 0xcd. */
  unsigned char key[25], data[50], mac[32], want[32];
  for (int i = 0; i < 25; i++)
    key[i] = (unsigned char)(i + 1);
  memset(data, 0xcd, sizeof(data));
  cr_assert_eq(scree__hmac_sha256(key, sizeof(key), data, sizeof(data), mac), 0);
  unhex("82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", want, 32);
  cr_expect(memcmp(mac, want, 32) == 0, "RFC 4231 case 4");
}

Test(peers_auth, proofs_differ_by_side_and_secret) {
  const unsigned char *s1 = (const unsigned char *)"0123456789abcdef";
  const unsigned char *s2 = (const unsigned char *)"0123456789abcdeg";
  unsigned char nf[32], no[32], a[32], b[32], c[32], d[32];
  cr_assert_eq(scree__peer_random(nf, 32), 0);
  cr_assert_eq(scree__peer_random(no, 32), 0);
  cr_expect(memcmp(nf, no, 32) != 0);
  cr_assert_eq(scree__peer_proof(s1, 16, SCREE__PROOF_OWNER, nf, no, a), 0);
  cr_assert_eq(scree__peer_proof(s1, 16, SCREE__PROOF_FETCHER, nf, no, b), 0);
  cr_assert_eq(scree__peer_proof(s2, 16, SCREE__PROOF_OWNER, nf, no, c), 0);
  cr_assert_eq(scree__peer_proof(s1, 16, SCREE__PROOF_OWNER, nf, no, d), 0);
  cr_expect(!scree__peer_proof_equal(a, b), "an owner's proof is not a fetcher's");
  cr_expect(!scree__peer_proof_equal(a, c), "another secret, another proof");
  cr_expect(scree__peer_proof_equal(a, d));
  /* Swapping the nonces (a reflected challenge) changes the proof. */
  cr_assert_eq(scree__peer_proof(s1, 16, SCREE__PROOF_OWNER, no, nf, d), 0);
  cr_expect(!scree__peer_proof_equal(a, d));
}

static void write_file(const char *path, const char *text, mode_t mode) {
  unlink(path);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  chmod(path, mode);
}

Test(peers_auth, secret_file) {
  char path[64];
  snprintf(path, sizeof(path), "/tmp/scree-unit-%ld.secret", (long)getpid());
  unsigned char *s;
  size_t n;
  char msg[256];
  write_file(path, "sixteen bytes ok\n", 0600);
  cr_expect_eq(scree__peer_secret_load(path, &s, &n, msg, sizeof(msg)), 0, "%s", msg);
  cr_expect_eq(n, 16u, "the trailing newline is not part of it");
  scree__peer_secret_free(s, n);
  write_file(path, "sixteen bytes ok\n", 0644);
  cr_expect_eq(scree__peer_secret_load(path, &s, &n, msg, sizeof(msg)), SCREE_EACCES);
  cr_expect(strstr(msg, "chmod 600") != NULL, "%s", msg);
  write_file(path, "short\n", 0600);
  cr_expect_eq(scree__peer_secret_load(path, &s, &n, msg, sizeof(msg)), SCREE_EINVAL);
  unlink(path);
  cr_expect_eq(scree__peer_secret_load(path, &s, &n, msg, sizeof(msg)), SCREE_ENOENT);
}

Test(peers_wire, roundtrip) {
  unsigned char buf[SCREE__PW_MAX];
  scree__pw_msg m, d;
  char msg[256];
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_OPEN_OK;
  m.req = 42;
  m.handle = 7;
  m.desc.dtype = SCREE_FLOAT16;
  m.desc.offsets_dtype = SCREE_INT32;
  m.desc.ndim_inner = 2;
  m.desc.inner[0] = 8;
  m.desc.inner[1] = 64;
  m.desc.batch_size = 3;
  m.desc.total_rows = 12;
  m.desc.max_length = 6;
  m.values_bytes = 12 * 8 * 64 * 2;
  m.offsets_bytes = 16;
  size_t n = scree__pw_encode(&m, buf, sizeof(buf));
  cr_assert_gt(n, (size_t)SCREE__PW_HEADER);
  cr_assert_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), 0, "%s", msg);
  cr_expect_eq(d.type, SCREE__PW_OPEN_OK);
  cr_expect_eq(d.req, 42u);
  cr_expect_eq(d.desc.inner[1], 64);
  cr_expect_eq(d.values_bytes, 12u * 8 * 64 * 2);
  cr_expect_eq(d.offsets_bytes, 16u);
  /* Every truncation is refused, with a message. */
  for (size_t k = 0; k < n; k++)
    cr_expect_eq(scree__pw_decode(buf, k, &d, msg, sizeof(msg)), SCREE_EPROTO, "%zu bytes", k);
  /* As is a byte too many, and a wrong magic. */
  buf[n] = 0;
  cr_expect_eq(scree__pw_decode(buf, n + 1, &d, msg, sizeof(msg)), SCREE_EPROTO);
  buf[0] ^= 1;
  cr_expect_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), SCREE_EPROTO);
  cr_expect(strstr(msg, "magic") != NULL, "%s", msg);
}

/* Encodes m, decodes it back into d and checks that every shorter prefix
 * is refused. */
static void roundtrip(const scree__pw_msg *m, scree__pw_msg *d, unsigned char *buf) {
  char msg[256];
  size_t n = scree__pw_encode(m, buf, SCREE__PW_MAX);
  cr_assert_geq(n, (size_t)SCREE__PW_HEADER, "%s does not encode", scree__pw_type_name(m->type));
  cr_assert_eq(scree__pw_decode(buf, n, d, msg, sizeof(msg)), 0, "%s", msg);
  cr_expect_eq(d->type, m->type);
  cr_expect_eq(d->req, m->req);
  for (size_t k = 0; k < n; k++)
    cr_expect_eq(scree__pw_decode(buf, k, d, msg, sizeof(msg)), SCREE_EPROTO, "%s of %zu bytes",
                 scree__pw_type_name(m->type), k);
  cr_assert_eq(scree__pw_decode(buf, n, d, msg, sizeof(msg)), 0, "%s", msg);
}

Test(peers_wire, open_watch_event) {
  unsigned char buf[SCREE__PW_MAX];
  scree__pw_msg m, d;
  char msg[256];
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_OPEN;
  m.req = 3;
  m.name = "kv/7";
  m.name_len = 4;
  m.wait_ms = 1500;
  roundtrip(&m, &d, buf);
  cr_expect_eq(d.wait_ms, 1500);
  cr_expect_eq(d.name_len, 4u);
  m.wait_ms = -1;
  roundtrip(&m, &d, buf);
  cr_expect_eq(d.wait_ms, -1);
  m.wait_ms = -2;
  cr_expect_eq(scree__pw_encode(&m, buf, sizeof(buf)), 0u, "a wait below -1 is not encoded");
  /* ... nor decoded: patch the last byte of a -1 into -2's. */
  m.wait_ms = -1;
  size_t n = scree__pw_encode(&m, buf, sizeof(buf));
  buf[n - 8] = 0xfe;
  cr_expect_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), SCREE_EPROTO);
  cr_expect(strstr(msg, "waits -2 ms") != NULL, "%s", msg);

  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_WATCH;
  m.req = 9;
  m.flags = SCREE__PW_WATCH_REPLAY;
  m.name = "kv/";
  m.name_len = 3;
  roundtrip(&m, &d, buf);
  cr_expect_eq(d.flags, SCREE__PW_WATCH_REPLAY);
  cr_expect(d.name_len == 3 && memcmp(d.name, "kv/", 3) == 0);
  m.name_len = 0; /* every name */
  roundtrip(&m, &d, buf);
  cr_expect_eq(d.name_len, 0u);
  m.flags = 0x80;
  cr_expect_eq(scree__pw_encode(&m, buf, sizeof(buf)), 0u);
  m.flags = 0;
  n = scree__pw_encode(&m, buf, sizeof(buf));
  buf[SCREE__PW_HEADER] = 0x82;
  cr_expect_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), SCREE_EPROTO);
  cr_expect(strstr(msg, "flags") != NULL, "%s", msg);

  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_EVENT;
  m.req = 9;
  m.seq = 41;
  m.kind = SCREE__PW_EV_SEALED;
  m.stamp = 0x0102030405060708ull;
  m.name = "kv/7";
  m.name_len = 4;
  roundtrip(&m, &d, buf);
  cr_expect_eq(d.seq, 41u);
  cr_expect_eq(d.kind, SCREE__PW_EV_SEALED);
  cr_expect_eq(d.stamp, 0x0102030405060708ull);
  m.kind = SCREE__PW_EV_DELETED;
  m.stamp = 0;
  roundtrip(&m, &d, buf);
  cr_expect_eq(d.kind, SCREE__PW_EV_DELETED);
  m.kind = SCREE__PW_EV_SYNCED;
  m.seq = 0;
  cr_expect_eq(scree__pw_encode(&m, buf, sizeof(buf)), 0u, "a synced event has no name");
  m.name_len = 0;
  roundtrip(&m, &d, buf);
  m.kind = SCREE__PW_EV_OVERFLOW;
  roundtrip(&m, &d, buf);
  m.kind = 5;
  cr_expect_eq(scree__pw_encode(&m, buf, sizeof(buf)), 0u);
  m.kind = SCREE__PW_EV_OVERFLOW;
  n = scree__pw_encode(&m, buf, sizeof(buf));
  buf[SCREE__PW_HEADER + 8] = 5;
  cr_expect_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), SCREE_EPROTO);
  cr_expect(strstr(msg, "unknown kind 5") != NULL, "%s", msg);
  /* A sealed event without a name is refused. */
  buf[SCREE__PW_HEADER + 8] = SCREE__PW_EV_SEALED;
  cr_expect_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), SCREE_EPROTO);

  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_WATCH_ERR;
  m.req = 9;
  m.code = SCREE_EBUSY;
  m.msg = "too many watches";
  m.msg_len = strlen(m.msg);
  roundtrip(&m, &d, buf);
  cr_expect_eq(d.code, SCREE_EBUSY);
  cr_expect_eq(d.msg_len, m.msg_len);
  cr_expect_str_eq(scree__pw_type_name(SCREE__PW_WATCH_ERR), "watch_err");
}

/* Encodes m, and expects the decoder to refuse the bytes with a message
 * containing want (the encoder refuses such a message itself, so the
 * bytes are patched in after encoding a valid one). */
static void expect_refused(const unsigned char *buf, size_t n, const char *want) {
  scree__pw_msg d;
  char msg[256] = "";
  cr_expect_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), SCREE_EPROTO);
  cr_expect(strstr(msg, want) != NULL, "'%s' does not say '%s'", msg, want);
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

Test(peers_wire, read_and_data) {
  unsigned char buf[SCREE__PW_MAX];
  scree__pw_msg m, d;
  char msg[256];
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_READ;
  m.req = 9;
  m.handle = 3;
  m.region = SCREE__PW_REGION_OFFSETS;
  m.offset = 1u << 20;
  m.length = SCREE__PW_READ_MAX;
  size_t n = scree__pw_encode(&m, buf, sizeof(buf));
  cr_assert_eq(n, (size_t)SCREE__PW_HEADER + 25);
  cr_assert_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), 0, "%s", msg);
  cr_expect_eq(d.type, SCREE__PW_READ);
  cr_expect_eq(d.req, 9u);
  cr_expect_eq(d.handle, 3u);
  cr_expect_eq(d.region, SCREE__PW_REGION_OFFSETS);
  cr_expect_eq(d.offset, 1u << 20);
  cr_expect_eq(d.length, SCREE__PW_READ_MAX);
  for (size_t k = 0; k < n; k++)
    cr_expect_eq(scree__pw_decode(buf, k, &d, msg, sizeof(msg)), SCREE_EPROTO, "%zu bytes", k);
  /* Out-of-range fields: the encoder will not write them, the decoder
   * refuses them by name. The body: handle(8) region(1) offset(8)
   * length(8). */
  unsigned char bad[SCREE__PW_MAX];
  memcpy(bad, buf, n);
  bad[SCREE__PW_HEADER + 8] = 2;
  expect_refused(bad, n, "region 2");
  memcpy(bad, buf, n);
  put_u64(bad + SCREE__PW_HEADER + 17, 0);
  expect_refused(bad, n, "1 to");
  put_u64(bad + SCREE__PW_HEADER + 17, (uint64_t)SCREE__PW_READ_MAX + 1);
  expect_refused(bad, n, "1 to");
  put_u64(bad + SCREE__PW_HEADER + 17, 4096);
  put_u64(bad + SCREE__PW_HEADER + 9, UINT64_MAX - 100);
  expect_refused(bad, n, "overflows");
  m.region = 2;
  cr_expect_eq(scree__pw_encode(&m, buf, sizeof(buf)), 0u);
  m.region = 0;
  m.length = 0;
  cr_expect_eq(scree__pw_encode(&m, buf, sizeof(buf)), 0u);

  /* A DATA that carries bytes has code 0 and no message; one that does
   * not says why. */
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_DATA;
  m.req = 9;
  m.handle = 3;
  m.offset = 0;
  m.length = 1;
  n = scree__pw_encode(&m, buf, sizeof(buf));
  cr_assert_eq(n, (size_t)SCREE__PW_HEADER + 31);
  cr_assert_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), 0, "%s", msg);
  cr_expect_eq(d.type, SCREE__PW_DATA);
  cr_expect_eq(d.code, 0);
  cr_expect_eq(d.msg_len, 0u);
  m.code = SCREE_ECUDA;
  m.msg = "copy failed";
  m.msg_len = strlen(m.msg);
  n = scree__pw_encode(&m, buf, sizeof(buf));
  cr_assert_gt(n, 0u);
  cr_assert_eq(scree__pw_decode(buf, n, &d, msg, sizeof(msg)), 0, "%s", msg);
  cr_expect_eq(d.code, SCREE_ECUDA);
  cr_expect_eq(d.msg_len, strlen("copy failed"));
  cr_expect(memcmp(d.msg, "copy failed", d.msg_len) == 0);
  memcpy(bad, buf, n);
  bad[SCREE__PW_HEADER + 25] = 1; /* code 1 (little-endian low byte) */
  bad[SCREE__PW_HEADER + 26] = bad[SCREE__PW_HEADER + 27] = bad[SCREE__PW_HEADER + 28] = 0;
  expect_refused(bad, n, "code 1");
  memcpy(bad, buf, n);
  memset(bad + SCREE__PW_HEADER + 25, 0, 4); /* code 0 with a message */
  expect_refused(bad, n, "with bytes");
  m.code = 0;
  cr_expect_eq(scree__pw_encode(&m, buf, sizeof(buf)), 0u, "code 0 with a message");
}

Test(peers_options, parse) {
  scree__peer_spec s;
  char msg[256];
  cr_expect_eq(scree__peer_spec_parse("a=127.0.0.1:5000", &s, msg, sizeof(msg)), 0);
  cr_expect_str_eq(s.name, "a");
  cr_expect_str_eq(s.host, "127.0.0.1");
  cr_expect_eq(s.port, 5000);
  cr_expect_eq(scree__peer_spec_parse("node-2.gpu0=[::1]:7", &s, msg, sizeof(msg)), 0);
  cr_expect_str_eq(s.host, "::1");
  cr_expect_eq(scree__peer_spec_parse("127.0.0.1:5000", &s, msg, sizeof(msg)), SCREE_EINVAL);
  cr_expect_eq(scree__peer_spec_parse("a b=h:1", &s, msg, sizeof(msg)), SCREE_EINVAL);
  cr_expect_eq(scree__peer_spec_parse("a=h:0", &s, msg, sizeof(msg)), SCREE_EINVAL);
  cr_expect_eq(scree__peer_spec_parse("a=h:70000", &s, msg, sizeof(msg)), SCREE_EINVAL);
  cr_expect_eq(scree__peer_spec_parse("a=::1:5", &s, msg, sizeof(msg)), SCREE_EINVAL);
  char host[64];
  uint16_t port;
  cr_expect_eq(scree__peer_addr_parse("0.0.0.0:0", host, sizeof(host), &port, msg, sizeof(msg)),
               0);
  cr_expect_eq(port, 0);
}

/* The budget of screed's lines about refused peers and of UCX's: burst
 * lines per window, the rest counted and reported once, when the window
 * has ended (at the next line or the next tick) or at shutdown. */
Test(peers_log, ratelimit_window) {
  const uint64_t s = 1000000000ull;
  scree__ratelimit rl = SCREE__RATELIMIT_INIT(60 * s, 3);
  uint64_t held = 99;
  uint64_t t = 5 * s;
  cr_assert_eq(scree__ratelimit_roll(&rl, t), 0u, "no window is open yet");
  int written = 0;
  for (int i = 0; i < 2000; i++) {
    written += scree__ratelimit_take(&rl, t + (uint64_t)i * 1000, &held);
    cr_assert_eq(held, 0u, "the window has not ended at line %d", i);
  }
  cr_assert_eq(written, 3, "2000 lines in one window: the first 3 are written");
  cr_assert_eq(scree__ratelimit_roll(&rl, t + 59 * s), 0u, "the window is still open");
  /* The next line after the window ends reports the 1997 held back. */
  cr_assert_eq(scree__ratelimit_take(&rl, t + 61 * s, &held), 1);
  cr_assert_eq(held, 1997u);
  cr_assert_eq(scree__ratelimit_take(&rl, t + 62 * s, &held), 1);
  cr_assert_eq(scree__ratelimit_take(&rl, t + 63 * s, &held), 1);
  cr_assert_eq(scree__ratelimit_take(&rl, t + 64 * s, &held), 0);
  cr_assert_eq(held, 0u);
  /* A tick after the window ends reports without a new line; the next
   * window starts with the next line, whenever it comes. */
  cr_assert_eq(scree__ratelimit_roll(&rl, t + 121 * s), 1u);
  cr_assert_eq(scree__ratelimit_roll(&rl, t + 500 * s), 0u);
  cr_assert_eq(scree__ratelimit_take(&rl, t + 900 * s, &held), 1);
  cr_assert_eq(held, 0u);
  for (int i = 0; i < 10; i++)
    scree__ratelimit_take(&rl, t + 900 * s, &held);
  cr_assert_eq(scree__ratelimit_drain(&rl), 8u, "shutdown reports what is held back");
  cr_assert_eq(scree__ratelimit_drain(&rl), 0u);
}

/* UCX's lines, which may hold newlines and come from UCX's threads, are
 * quoted into the caller's buffer. */
Test(peers_log, quoting_into_a_buffer) {
  char out[32];
  cr_assert_str_eq(scree__q_buf(out, sizeof(out), "payload:\n\"ab\""),
                   "\"payload:\\x0a\\\"ab\\\"\"");
  const char *cut = scree__q_buf(out, sizeof(out), "0123456789012345678901234567890123456789");
  cr_assert_lt(strlen(cut), sizeof(out));
  cr_assert(strstr(cut, "...\"") != NULL, "%s", cut);
  cr_assert_str_eq(scree__q_buf(out, sizeof(out), NULL), "\"\"");
}
