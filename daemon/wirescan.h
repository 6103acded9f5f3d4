/* A pass over a request's wire format before protobuf-c decodes it.
 *
 * protobuf-c merges a singular message field that appears more than once
 * (proto3 says the occurrences merge), copying the repeated fields inside
 * it again on each: a Create whose desc appears thousands of times in one
 * packet kept the loop thread busy for tens of seconds. Whatever the packet
 * limit, the decoder's work should be linear in the packet, and a request
 * no client writes should be refused with a message that says why. This
 * scan, driven by the generated descriptors, costs one pass over the bytes
 * and no allocation. */
#ifndef SCREE_DAEMON_WIRESCAN_H
#define SCREE_DAEMON_WIRESCAN_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Messages nested deeper than this are refused (a Request's deepest valid
 * path is Request -> Create -> ArrayDesc). */
#define SCREE__WIRESCAN_MAX_DEPTH 8
/* Entries of one repeated field in one message (the only repeated field of
 * any request, ArrayDesc.inner, takes at most SCREE_MAX_INNER_DIMS). */
#define SCREE__WIRESCAN_MAX_REPEATED 64
/* Fields of one message that its descriptor does not know (room for newer
 * clients' fields; protobuf-c keeps a copy of each). */
#define SCREE__WIRESCAN_MAX_UNKNOWN 64

/* Scans buf as a message of type desc. Refuses, with SCREE_EPROTO and a
 * message naming the field ("request field Create.desc appears more than
 * once; it is a single field"): a singular field that appears twice, two
 * members of one oneof, a repeated field with more than
 * SCREE__WIRESCAN_MAX_REPEATED entries, more than
 * SCREE__WIRESCAN_MAX_UNKNOWN unknown fields in one message, and nesting
 * past SCREE__WIRESCAN_MAX_DEPTH. Bytes that are not valid wire format are
 * left to the decoder, which refuses them (returns 0). Returns 0 or
 * SCREE_EPROTO. */
int scree__wirescan(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                    char *msg, size_t msg_len);

#endif /* SCREE_DAEMON_WIRESCAN_H */
