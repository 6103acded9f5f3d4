/* fuzz_peer_wire: one message from another screed, as peers.c receives it
 * from UCX (daemon/peers_wire.c): a control message, or the header of a
 * DATA.
 *
 * Whatever the bytes, the decoder must return, never read outside them,
 * and point only inside them; a message that decodes must encode back to
 * the very same bytes (the format has one encoding per message), except
 * where the decoder mapped an out-of-range dtype to invalid. */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "peers_wire.h"

static void check_inside(const uint8_t *data, size_t size, const void *p, size_t n,
                         const char *what) {
  if (n == 0)
    return;
  const uint8_t *q = p;
  FUZZ_CHECK(q >= data && q + n <= data + size, "%s points outside the message", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  scree__pw_msg m;
  char msg[256];
  /* A copy of exactly size bytes, so that ASan sees any read past them. */
  uint8_t *buf = malloc(size ? size : 1);
  FUZZ_CHECK(buf != NULL, "out of memory");
  memcpy(buf, data, size);
  int rc = scree__pw_decode(buf, size, &m, msg, sizeof(msg));
  if (rc != 0) {
    FUZZ_CHECK(msg[0] != '\0', "a refusal without a message");
    free(buf);
    return 0;
  }
  check_inside(buf, size, m.node, m.node_len, "node");
  check_inside(buf, size, m.name, m.name_len, "name");
  check_inside(buf, size, m.msg, m.msg_len, "msg");
  if (m.type == SCREE__PW_OPEN)
    FUZZ_CHECK(m.wait_ms >= -1 && m.name_len > 0, "open with wait %lld, name of %zu bytes",
               (long long)m.wait_ms, m.name_len);
  if (m.type == SCREE__PW_WATCH)
    FUZZ_CHECK((m.flags & ~SCREE__PW_WATCH_REPLAY) == 0 && m.name_len <= SCREE__PW_NAME_MAX,
               "watch with flags 0x%x", m.flags);
  if (m.type == SCREE__PW_EVENT) {
    int named = m.kind == SCREE__PW_EV_SEALED || m.kind == SCREE__PW_EV_DELETED;
    FUZZ_CHECK(named || m.kind == SCREE__PW_EV_OVERFLOW || m.kind == SCREE__PW_EV_SYNCED,
               "event of kind %u", m.kind);
    FUZZ_CHECK(named ? m.name_len > 0 && m.name_len <= SCREE__PW_NAME_MAX
                     : m.name_len == 0 && m.stamp == 0,
               "event of kind %u with a name of %zu bytes", m.kind, m.name_len);
  }
  /* A READ or DATA that decodes names a real region and a range of 1 to
   * SCREE__PW_READ_MAX bytes that does not wrap; a DATA's code is 0 (then
   * without a message) or an error. peers.c relies on these. */
  if (m.type == SCREE__PW_READ || m.type == SCREE__PW_DATA) {
    FUZZ_CHECK(m.region <= SCREE__PW_REGION_OFFSETS, "region %u decoded", m.region);
    FUZZ_CHECK(m.length >= 1 && m.length <= SCREE__PW_READ_MAX, "length %llu decoded",
               (unsigned long long)m.length);
    FUZZ_CHECK(m.offset <= UINT64_MAX - m.length, "a wrapping range decoded");
  }
  if (m.type == SCREE__PW_DATA)
    FUZZ_CHECK(m.code < 0 || (m.code == 0 && m.msg_len == 0), "data code %d with %zu bytes"
               " of message decoded", (int)m.code, m.msg_len);
  uint8_t out[SCREE__PW_MAX];
  size_t n = scree__pw_encode(&m, out, sizeof(out));
  FUZZ_CHECK(n > 0, "a decoded %s message does not encode", scree__pw_type_name(m.type));
  int mapped = m.type == SCREE__PW_OPEN_OK &&
               (m.desc.dtype == SCREE_DTYPE_INVALID || m.desc.offsets_dtype == SCREE_DTYPE_INVALID);
  if (!mapped)
    FUZZ_CHECK(n == size && memcmp(out, buf, size) == 0, "%s does not encode back the same",
               scree__pw_type_name(m.type));
  free(buf);
  return 0;
}
