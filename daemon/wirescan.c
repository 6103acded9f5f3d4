#include "wirescan.h"

#include <string.h>

#include "scree/error.h"
#include "sys.h"

/* The fields counted per message; every scree message has fewer. Fields
 * past this index are not counted (nor refused). */
#define MAX_FIELDS 64

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Reads a varint at *p (below end). Returns 0, or -1 when it runs past end
 * or past 10 bytes. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << (shift < 64 ? shift : 0);
    if ((b & 0x80) == 0) {
      *out = v;
      return 0;
    }
  }
  return -1;
}

/* Entries of a packed repeated field of type t in n payload bytes. */
static size_t packed_count(ProtobufCType t, const uint8_t *p, size_t n) {
  switch (t) {
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_FLOAT: return n / 4;
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_DOUBLE: return n / 8;
  default: {
    /* Varints: one ends at each byte without the continuation bit. */
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
      c += (p[i] & 0x80) == 0;
    return c;
  }
  }
}

static int is_packable(ProtobufCType t) {
  return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES &&
         t != PROTOBUF_C_TYPE_MESSAGE;
}

static int scan(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth,
                char *msg, size_t msg_len) {
  if (depth > SCREE__WIRESCAN_MAX_DEPTH)
    return scree__fail(SCREE_EPROTO, msg, msg_len,
                       "request nests messages deeper than %d (in %s)",
                       SCREE__WIRESCAN_MAX_DEPTH, d->short_name);
  uint32_t counts[MAX_FIELDS];
  memset(counts, 0, sizeof(counts));
  /* The member seen of each oneof, by the oneof's quantifier offset. */
  struct {
    unsigned offset;
    const ProtobufCFieldDescriptor *f;
  } oneofs[8];
  unsigned noneofs = 0, unknown = 0;
  const uint8_t *end = p + len;
  while (p < end) {
    uint64_t key;
    if (read_varint(&p, end, &key) != 0)
      return 0;
    uint64_t number = key >> 3;
    unsigned wt = (unsigned)(key & 7);
    const uint8_t *payload = p;
    uint64_t plen = 0;
    switch (wt) {
    case WT_VARINT:
      if (read_varint(&p, end, &plen) != 0)
        return 0;
      break;
    case WT_I64:
    case WT_I32: {
      size_t w = wt == WT_I64 ? 8 : 4;
      if ((size_t)(end - p) < w)
        return 0;
      p += w;
      break;
    }
    case WT_LEN:
      if (read_varint(&p, end, &plen) != 0 || plen > (uint64_t)(end - p))
        return 0;
      payload = p;
      p += plen;
      break;
    default:
      return 0; /* groups and invalid wire types: the decoder refuses them */
    }
    const ProtobufCFieldDescriptor *f =
        number > 0 && number <= UINT32_MAX
            ? protobuf_c_message_descriptor_get_field(d, (unsigned)number)
            : NULL;
    if (f == NULL) {
      if (++unknown > SCREE__WIRESCAN_MAX_UNKNOWN)
        return scree__fail(SCREE_EPROTO, msg, msg_len,
                           "request message %s carries more than %d unknown fields",
                           d->short_name, SCREE__WIRESCAN_MAX_UNKNOWN);
      continue;
    }
    size_t idx = (size_t)(f - d->fields);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = wt == WT_LEN && is_packable(f->type) ? packed_count(f->type, payload, plen) : 1;
      if (idx < MAX_FIELDS) {
        counts[idx] += n > SCREE__WIRESCAN_MAX_REPEATED ? SCREE__WIRESCAN_MAX_REPEATED + 1
                                                        : (uint32_t)n;
        if (counts[idx] > SCREE__WIRESCAN_MAX_REPEATED)
          return scree__fail(SCREE_EPROTO, msg, msg_len,
                             "request field %s.%s has more than %d entries", d->short_name,
                             f->name, SCREE__WIRESCAN_MAX_REPEATED);
      }
    } else {
      if (idx < MAX_FIELDS && ++counts[idx] > 1)
        return scree__fail(SCREE_EPROTO, msg, msg_len,
                           "request field %s.%s appears more than once; it is a single field",
                           d->short_name, f->name);
      if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        unsigned i = 0;
        while (i < noneofs && oneofs[i].offset != f->quantifier_offset)
          i++;
        if (i < noneofs && oneofs[i].f != f)
          return scree__fail(SCREE_EPROTO, msg, msg_len,
                             "request message %s has both %s and %s, members of one oneof",
                             d->short_name, oneofs[i].f->name, f->name);
        if (i == noneofs && noneofs < sizeof(oneofs) / sizeof(oneofs[0])) {
          oneofs[noneofs].offset = f->quantifier_offset;
          oneofs[noneofs].f = f;
          noneofs++;
        }
      }
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && wt == WT_LEN) {
      int rc = scan(f->descriptor, payload, (size_t)plen, depth + 1, msg, msg_len);
      if (rc != 0)
        return rc;
    }
  }
  return 0;
}

int scree__wirescan(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                    char *msg, size_t msg_len) {
  return scan(desc, buf, len, 1, msg, msg_len);
}
