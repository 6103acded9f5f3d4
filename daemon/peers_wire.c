#include "peers_wire.h"

#include <inttypes.h>
#include <string.h>

#include "scree/error.h"
#include "sys.h"

/* ---- little-endian cursors ------------------------------------------------ */

typedef struct rd {
  const unsigned char *p;
  size_t left;
  int bad; /* set by the first read past the end; every later read yields 0 */
} rd;

static const unsigned char *take(rd *r, size_t n) {
  if (r->bad || n > r->left) {
    r->bad = 1;
    return NULL;
  }
  const unsigned char *p = r->p;
  r->p += n;
  r->left -= n;
  return p;
}

static uint64_t get_le(rd *r, size_t n) {
  const unsigned char *p = take(r, n);
  uint64_t v = 0;
  if (p != NULL)
    for (size_t i = 0; i < n; i++)
      v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void get_bytes(rd *r, void *dst, size_t n) {
  const unsigned char *p = take(r, n);
  if (p != NULL)
    memcpy(dst, p, n);
  else
    memset(dst, 0, n);
}

typedef struct wr {
  unsigned char *p;
  size_t len;
  size_t cap;
  int bad;
} wr;

static void put_le(wr *w, uint64_t v, size_t n) {
  if (w->bad || n > w->cap - w->len) {
    w->bad = 1;
    return;
  }
  for (size_t i = 0; i < n; i++)
    w->p[w->len++] = (unsigned char)(v >> (8 * i));
}

static void put_bytes(wr *w, const void *src, size_t n) {
  if (w->bad || n > w->cap - w->len) {
    w->bad = 1;
    return;
  }
  if (n > 0)
    memcpy(w->p + w->len, src, n);
  w->len += n;
}

/* ---- names ------------------------------------------------------------------ */

const char *scree__pw_type_name(int type) {
  switch (type) {
  case SCREE__PW_HELLO: return "hello";
  case SCREE__PW_CHALLENGE: return "challenge";
  case SCREE__PW_PROOF: return "proof";
  case SCREE__PW_WELCOME: return "welcome";
  case SCREE__PW_DENIED: return "denied";
  case SCREE__PW_OPEN: return "open";
  case SCREE__PW_OPEN_OK: return "open_ok";
  case SCREE__PW_OPEN_ERR: return "open_err";
  case SCREE__PW_CLOSE: return "close";
  case SCREE__PW_READ: return "read";
  case SCREE__PW_DATA: return "data";
  case SCREE__PW_WATCH: return "watch";
  case SCREE__PW_EVENT: return "event";
  case SCREE__PW_WATCH_ERR: return "watch_err";
  default: return "unknown";
  }
}

/* ---- decoding -------------------------------------------------------------- */

#define BAD(...) scree__fail(SCREE_EPROTO, msg, msg_len, __VA_ARGS__)

int scree__pw_decode(const void *buf, size_t len, scree__pw_msg *out, char *msg,
                     size_t msg_len) {
  memset(out, 0, sizeof(*out));
  if (buf == NULL || len < SCREE__PW_HEADER)
    return BAD("peer message of %zu bytes is shorter than its header", len);
  if (len > SCREE__PW_MAX)
    return BAD("peer message of %zu bytes is larger than %d", len, SCREE__PW_MAX);
  rd r = {.p = buf, .left = len, .bad = 0};
  uint32_t magic = (uint32_t)get_le(&r, 4);
  uint16_t type = (uint16_t)get_le(&r, 2);
  uint16_t reserved = (uint16_t)get_le(&r, 2);
  out->req = get_le(&r, 8);
  uint32_t body = (uint32_t)get_le(&r, 4);
  if (magic != SCREE__PW_MAGIC)
    return BAD("peer message has magic 0x%08x, not scree's", magic);
  if (reserved != 0)
    return BAD("peer message header has reserved bits 0x%04x set", reserved);
  if (body != r.left)
    return BAD("peer message says %u body bytes but has %zu", body, r.left);
  out->type = (scree__pw_type)type;

  switch (type) {
  case SCREE__PW_HELLO:
    out->version = (uint8_t)get_le(&r, 1);
    get_bytes(&r, out->nonce, SCREE__PW_NONCE);
    out->node_len = (size_t)get_le(&r, 1);
    if (out->node_len > SCREE__PW_NODE_MAX)
      return BAD("hello names a node of %zu bytes; at most %d", out->node_len,
                 SCREE__PW_NODE_MAX);
    out->node = (const char *)take(&r, out->node_len);
    break;
  case SCREE__PW_CHALLENGE:
    get_bytes(&r, out->nonce, SCREE__PW_NONCE);
    get_bytes(&r, out->mac, SCREE__PW_MAC);
    break;
  case SCREE__PW_PROOF:
    get_bytes(&r, out->mac, SCREE__PW_MAC);
    break;
  case SCREE__PW_WELCOME:
  case SCREE__PW_DENIED:
    break;
  case SCREE__PW_OPEN:
    out->name_len = (size_t)get_le(&r, 2);
    if (out->name_len == 0 || out->name_len > SCREE__PW_NAME_MAX)
      return BAD("open names a batch of %zu bytes; 1 to %d", out->name_len,
                 SCREE__PW_NAME_MAX);
    out->name = (const char *)take(&r, out->name_len);
    out->wait_ms = (int64_t)get_le(&r, 8);
    if (!r.bad && out->wait_ms < -1)
      return BAD("open waits %" PRId64 " ms; -1 (no limit), 0 or more", out->wait_ms);
    break;
  case SCREE__PW_OPEN_OK: {
    out->handle = get_le(&r, 8);
    uint32_t dtype = (uint32_t)get_le(&r, 4);
    uint32_t odtype = (uint32_t)get_le(&r, 4);
    uint32_t ndim = (uint32_t)get_le(&r, 4);
    if (ndim > SCREE_MAX_INNER_DIMS)
      return BAD("open_ok has %u inner dims; at most %d", ndim, SCREE_MAX_INNER_DIMS);
    /* Out-of-range dtypes become invalid; the receiver's check of the
     * descriptor names them. */
    out->desc.dtype = dtype > (uint32_t)SCREE_DTYPE_COUNT_ ? SCREE_DTYPE_INVALID
                                                           : (scree_dtype)dtype;
    out->desc.offsets_dtype = odtype > (uint32_t)SCREE_DTYPE_COUNT_ ? SCREE_DTYPE_INVALID
                                                                    : (scree_dtype)odtype;
    out->desc.ndim_inner = (int32_t)ndim;
    for (uint32_t i = 0; i < ndim; i++)
      out->desc.inner[i] = (int64_t)get_le(&r, 8);
    out->desc.batch_size = (int64_t)get_le(&r, 8);
    out->desc.total_rows = (int64_t)get_le(&r, 8);
    out->desc.max_length = (int64_t)get_le(&r, 8);
    out->values_bytes = get_le(&r, 8);
    out->offsets_bytes = get_le(&r, 8);
    break;
  }
  case SCREE__PW_OPEN_ERR:
  case SCREE__PW_WATCH_ERR:
    out->code = (int32_t)(uint32_t)get_le(&r, 4);
    out->msg_len = (size_t)get_le(&r, 2);
    if (out->msg_len > SCREE__PW_MSG_MAX)
      return BAD("%s carries a message of %zu bytes; at most %d", scree__pw_type_name(type),
                 out->msg_len, SCREE__PW_MSG_MAX);
    out->msg = (const char *)take(&r, out->msg_len);
    break;
  case SCREE__PW_CLOSE:
    out->handle = get_le(&r, 8);
    break;
  case SCREE__PW_WATCH:
    out->flags = (uint8_t)get_le(&r, 1);
    if (out->flags & ~SCREE__PW_WATCH_REPLAY)
      return BAD("watch has unknown flags 0x%02x", out->flags);
    out->name_len = (size_t)get_le(&r, 2);
    if (out->name_len > SCREE__PW_NAME_MAX)
      return BAD("watch has a prefix of %zu bytes; at most %d", out->name_len,
                 SCREE__PW_NAME_MAX);
    out->name = (const char *)take(&r, out->name_len);
    break;
  case SCREE__PW_EVENT: {
    out->seq = get_le(&r, 8);
    out->kind = (uint8_t)get_le(&r, 1);
    out->stamp = get_le(&r, 8);
    out->name_len = (size_t)get_le(&r, 2);
    if (r.bad)
      break;
    int named = out->kind == SCREE__PW_EV_SEALED || out->kind == SCREE__PW_EV_DELETED;
    if (!named && out->kind != SCREE__PW_EV_OVERFLOW && out->kind != SCREE__PW_EV_SYNCED)
      return BAD("event of unknown kind %u", out->kind);
    if (named ? out->name_len == 0 || out->name_len > SCREE__PW_NAME_MAX
              : out->name_len != 0 || out->stamp != 0)
      return BAD("event of kind %u with a name of %zu bytes and stamp %" PRIu64, out->kind,
                 out->name_len, out->stamp);
    out->name = (const char *)take(&r, out->name_len);
    break;
  }
  case SCREE__PW_READ:
  case SCREE__PW_DATA: {
    const char *what = scree__pw_type_name(type);
    out->handle = get_le(&r, 8);
    out->region = (uint8_t)get_le(&r, 1);
    out->offset = get_le(&r, 8);
    out->length = get_le(&r, 8);
    if (r.bad)
      break;
    if (out->region > SCREE__PW_REGION_OFFSETS)
      return BAD("%s names region %u; 0 (values) or 1 (offsets)", what, out->region);
    if (out->length == 0 || out->length > SCREE__PW_READ_MAX)
      return BAD("%s of %" PRIu64 " bytes; 1 to %u", what, out->length, SCREE__PW_READ_MAX);
    if (out->offset > UINT64_MAX - out->length)
      return BAD("%s of %" PRIu64 " bytes at offset %" PRIu64 " overflows", what, out->length,
                 out->offset);
    if (type == SCREE__PW_READ)
      break;
    out->code = (int32_t)(uint32_t)get_le(&r, 4);
    out->msg_len = (size_t)get_le(&r, 2);
    if (out->code > 0)
      return BAD("data carries code %d; 0 or a negative error", out->code);
    if (out->code == 0 && out->msg_len != 0)
      return BAD("data with bytes carries a message of %zu bytes", out->msg_len);
    if (out->msg_len > SCREE__PW_MSG_MAX)
      return BAD("data carries a message of %zu bytes; at most %d", out->msg_len,
                 SCREE__PW_MSG_MAX);
    out->msg = (const char *)take(&r, out->msg_len);
    break;
  }
  default:
    return BAD("peer message of unknown type %u", type);
  }
  if (r.bad)
    return BAD("%s message is truncated (%zu bytes)", scree__pw_type_name(type), len);
  if (r.left != 0)
    return BAD("%s message has %zu bytes past its end", scree__pw_type_name(type), r.left);
  return 0;
}

/* ---- encoding -------------------------------------------------------------- */

size_t scree__pw_encode(const scree__pw_msg *m, void *buf, size_t cap) {
  wr w = {.p = buf, .len = 0, .cap = cap, .bad = 0};
  put_le(&w, SCREE__PW_MAGIC, 4);
  put_le(&w, (uint64_t)m->type, 2);
  put_le(&w, 0, 2);
  put_le(&w, m->req, 8);
  put_le(&w, 0, 4); /* body length, filled in below */
  switch (m->type) {
  case SCREE__PW_HELLO:
    if (m->node_len > SCREE__PW_NODE_MAX)
      return 0;
    put_le(&w, m->version, 1);
    put_bytes(&w, m->nonce, SCREE__PW_NONCE);
    put_le(&w, m->node_len, 1);
    put_bytes(&w, m->node, m->node_len);
    break;
  case SCREE__PW_CHALLENGE:
    put_bytes(&w, m->nonce, SCREE__PW_NONCE);
    put_bytes(&w, m->mac, SCREE__PW_MAC);
    break;
  case SCREE__PW_PROOF:
    put_bytes(&w, m->mac, SCREE__PW_MAC);
    break;
  case SCREE__PW_WELCOME:
  case SCREE__PW_DENIED:
    break;
  case SCREE__PW_OPEN:
    if (m->name_len == 0 || m->name_len > SCREE__PW_NAME_MAX)
      return 0;
    if (m->wait_ms < -1)
      return 0;
    put_le(&w, m->name_len, 2);
    put_bytes(&w, m->name, m->name_len);
    put_le(&w, (uint64_t)m->wait_ms, 8);
    break;
  case SCREE__PW_OPEN_OK:
    if (m->desc.ndim_inner < 0 || m->desc.ndim_inner > SCREE_MAX_INNER_DIMS)
      return 0;
    put_le(&w, m->handle, 8);
    put_le(&w, (uint32_t)m->desc.dtype, 4);
    put_le(&w, (uint32_t)m->desc.offsets_dtype, 4);
    put_le(&w, (uint32_t)m->desc.ndim_inner, 4);
    for (int32_t i = 0; i < m->desc.ndim_inner; i++)
      put_le(&w, (uint64_t)m->desc.inner[i], 8);
    put_le(&w, (uint64_t)m->desc.batch_size, 8);
    put_le(&w, (uint64_t)m->desc.total_rows, 8);
    put_le(&w, (uint64_t)m->desc.max_length, 8);
    put_le(&w, m->values_bytes, 8);
    put_le(&w, m->offsets_bytes, 8);
    break;
  case SCREE__PW_OPEN_ERR:
  case SCREE__PW_WATCH_ERR: {
    size_t n = m->msg_len > SCREE__PW_MSG_MAX ? SCREE__PW_MSG_MAX : m->msg_len;
    put_le(&w, (uint32_t)m->code, 4);
    put_le(&w, n, 2);
    put_bytes(&w, m->msg, n);
    break;
  }
  case SCREE__PW_CLOSE:
    put_le(&w, m->handle, 8);
    break;
  case SCREE__PW_WATCH:
    if ((m->flags & ~SCREE__PW_WATCH_REPLAY) || m->name_len > SCREE__PW_NAME_MAX)
      return 0;
    put_le(&w, m->flags, 1);
    put_le(&w, m->name_len, 2);
    put_bytes(&w, m->name, m->name_len);
    break;
  case SCREE__PW_EVENT: {
    int named = m->kind == SCREE__PW_EV_SEALED || m->kind == SCREE__PW_EV_DELETED;
    if (!named && m->kind != SCREE__PW_EV_OVERFLOW && m->kind != SCREE__PW_EV_SYNCED)
      return 0;
    if (named ? m->name_len == 0 || m->name_len > SCREE__PW_NAME_MAX
              : m->name_len != 0 || m->stamp != 0)
      return 0;
    put_le(&w, m->seq, 8);
    put_le(&w, m->kind, 1);
    put_le(&w, m->stamp, 8);
    put_le(&w, m->name_len, 2);
    put_bytes(&w, m->name, m->name_len);
    break;
  }
  case SCREE__PW_READ:
  case SCREE__PW_DATA:
    /* The decoder's bounds, so that nothing encoded here is refused there. */
    if (m->region > SCREE__PW_REGION_OFFSETS || m->length == 0 ||
        m->length > SCREE__PW_READ_MAX || m->offset > UINT64_MAX - m->length)
      return 0;
    put_le(&w, m->handle, 8);
    put_le(&w, m->region, 1);
    put_le(&w, m->offset, 8);
    put_le(&w, m->length, 8);
    if (m->type == SCREE__PW_READ)
      break;
    if (m->code > 0 || (m->code == 0 && m->msg_len != 0))
      return 0;
    size_t n = m->msg_len > SCREE__PW_MSG_MAX ? SCREE__PW_MSG_MAX : m->msg_len;
    put_le(&w, (uint32_t)m->code, 4);
    put_le(&w, n, 2);
    put_bytes(&w, m->msg, n);
    break;
  default:
    return 0;
  }
  if (w.bad)
    return 0;
  uint32_t body = (uint32_t)(w.len - SCREE__PW_HEADER);
  for (int i = 0; i < 4; i++)
    w.p[16 + i] = (unsigned char)(body >> (8 * i));
  return w.len;
}
