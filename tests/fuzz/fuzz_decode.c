/* fuzz_decode: one request packet, as screed reads it off the socket.
 *
 * The bytes go through scree__v1__request__unpack (the generated decoder and
 * libprotobuf-c), and a decoded message is packed again and must decode to
 * the same size. Then the same bytes go through the daemon's own path,
 * scree__handle_packet, on a session that has said Hello, so that
 * every decoded request reaches the validation of names, descriptors and
 * lease ids; the reply must pack and decode as a client would read it. */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

static void roundtrip_request(const uint8_t *data, size_t size) {
  Scree__V1__Request *req = scree__v1__request__unpack(NULL, size, data);
  if (req == NULL)
    return;
  size_t len = scree__v1__request__get_packed_size(req);
  uint8_t *buf = malloc(len ? len : 1);
  FUZZ_CHECK(buf != NULL, "out of memory");
  FUZZ_CHECK(scree__v1__request__pack(req, buf) == len, "repacked size differs");
  Scree__V1__Request *again = scree__v1__request__unpack(NULL, len, buf);
  /* libprotobuf-c keeps unknown fields and packs them back, and it accepts
   * field number 0 when the tag is a padded varint (82 00) but not when it
   * is one byte (02), so a repacked unknown field may not decode: screed
   * never repacks requests, so only a decoded repack is compared. */
  if (again != NULL) {
    FUZZ_CHECK(again->id == req->id && again->body_case == req->body_case,
               "repacked request differs");
    FUZZ_CHECK(scree__v1__request__get_packed_size(again) == len, "second repack differs");
    scree__v1__request__free_unpacked(again, NULL);
  } else {
    FUZZ_CHECK(req->base.n_unknown_fields > 0 || req->body_case != SCREE__V1__REQUEST__BODY__NOT_SET,
               "a repacked request without unknown fields does not decode");
  }
  scree__v1__request__free_unpacked(req, NULL);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  roundtrip_request(data, size);

  scree__store *s = fuzz_store_new();
  scree__handler *hd = fuzz_handler_new(s);
  scree__session *sess = scree__session_open(s, 1000, 4242);
  FUZZ_CHECK(sess != NULL, "session");
  scree__reply r;
  scree__reply_init(&r);

  /* The first byte decides whether the session has said Hello, so that the
   * check that Hello comes first is fuzzed too. */
  if (size > 0 && (data[0] & 0x80) == 0) {
    Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
    Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
    h.protocol_version = SCREE__PROTOCOL_VERSION;
    req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
    req.hello = &h;
    scree__handle(hd, sess, &req, &r);
    FUZZ_CHECK(r.resp.status == 0, "hello: %s", r.resp.message);
    scree__reply_clear(&r);
  }

  uint64_t t0 = scree__now_ns();
  scree__handle_packet(hd, sess, data, size, &r);
  fuzz_note_time(scree__now_ns() - t0, "packet", size);
  fuzz_check_reply(&r);
  /* Twice: a second identical request meets the state the first left
   * (EEXIST after a Create, a lease after a Get). */
  scree__reply_clear(&r);
  t0 = scree__now_ns();
  scree__handle_packet(hd, sess, data, size, &r);
  fuzz_note_time(scree__now_ns() - t0, "packet", size);
  fuzz_check_reply(&r);
  scree__reply_clear(&r);

  scree__session_close(s, sess);
  scree__store_counts c;
  scree__store_counts_get(s, &c);
  FUZZ_CHECK(c.leases == 0 && c.sessions == 0 && c.pending_deletes == 0,
             "after close: %u leases, %u sessions, %u pending deletes", c.leases, c.sessions,
             c.pending_deletes);
  /* Two packets can create but never seal (that takes a Create and then a
   * Seal), so closing the session reclaims everything. */
  FUZZ_CHECK(c.batches == 0 && c.bytes_used == 0, "after close: %u batches, %llu bytes",
             c.batches, (unsigned long long)c.bytes_used);
  scree__handler_free(hd);
  scree__store_free(s);
  return 0;
}
