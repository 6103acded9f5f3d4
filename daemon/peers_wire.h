/* The peer protocol: the messages two screeds exchange over UCX.
 *
 * A small fixed binary format rather than a second protobuf schema, for
 * three reasons: there are a dozen messages with fixed fields and one opaque
 * blob (a packed UCX rkey); the handshake's HMAC covers exact bytes, which
 * a fixed layout defines with no question of canonical encoding; and the
 * whole decoder is this file's one bounds-checked function, which the
 * fuzzer drives (tests/fuzz/fuzz_peer_wire.c). The version byte of HELLO
 * is how the format evolves.
 *
 * Every message is one UCX active message: a 20-byte header, then the body.
 * Integers are little-endian.
 *
 *   header: magic u32 ("SCP1") | type u16 | reserved u16 (0) | req u64 |
 *           body_len u32 (the bytes after the header, exactly)
 *
 *   HELLO     fetcher -> owner   version u8 | nonce[32] | node_len u8 | node
 *   CHALLENGE owner -> fetcher   nonce[32] | mac[32]     (owner's proof)
 *   PROOF     fetcher -> owner   mac[32]                 (fetcher's proof)
 *   WELCOME   owner -> fetcher   (empty)                 authenticated
 *   DENIED    owner -> fetcher   (empty)                 proof refused
 *   OPEN      fetcher -> owner   name_len u16 | name | wait_ms i64
 *                                lease a batch; when it is not sealed yet,
 *                                wait up to wait_ms for its seal (0: answer
 *                                now; -1: no limit but the connection's)
 *   OPEN_OK   owner -> fetcher   handle u64 | dtype u32 | offsets_dtype u32 |
 *                                ndim u32 | inner i64[ndim] | batch_size i64 |
 *                                total_rows i64 | max_length i64 |
 *                                values_bytes u64 | offsets_bytes u64 |
 *                                values_addr u64 | offsets_addr u64 |
 *                                rkey_len u32 | rkey
 *   OPEN_ERR  owner -> fetcher   code i32 | msg_len u16 | msg
 *   CLOSE     fetcher -> owner   handle u64              end the lease
 *   WATCH     fetcher -> owner   flags u8 | prefix_len u16 | prefix
 *                                watch the sealed batches under prefix
 *                                (flags: SCREE__PW_WATCH_REPLAY); a WATCH of
 *                                a prefix watched already restarts it
 *   EVENT     owner -> fetcher   seq u64 | kind u8 | stamp u64 |
 *                                name_len u16 | name
 *                                one change under a watched prefix
 *   WATCH_ERR owner -> fetcher   code i32 | msg_len u16 | msg
 *
 * req pairs OPEN with its answer, and WATCH with its EVENTs and WATCH_ERR
 * (an EVENT carries the req of the WATCH that started its watch); it is 0
 * elsewhere. EVENT kinds: sealed and deleted (a name, 1 to 255 bytes; a
 * sealed event's stamp is the batch's creation time on the owner, which
 * tells one batch of a name from a later one, or 0 when it is gone
 * already), overflow (the owner's queue for this watch overflowed: nothing
 * more comes until the next WATCH) and synced (the replay has ended: every
 * batch sealed under the prefix when the watch started has been named);
 * the last two have no name and stamp 0. seq is the store's sequence of
 * the watch (1, 2, ...), 0 for synced. Nothing but HELLO and PROOF is
 * accepted from a fetcher before WELCOME. */
#ifndef SCREE_DAEMON_PEERS_WIRE_H
#define SCREE_DAEMON_PEERS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "scree/array.h"

#define SCREE__PW_MAGIC 0x31504353u /* "SCP1" read as little-endian */
#define SCREE__PW_VERSION 1
#define SCREE__PW_HEADER 20
#define SCREE__PW_NONCE 32
#define SCREE__PW_MAC 32
#define SCREE__PW_NODE_MAX 64
#define SCREE__PW_NAME_MAX 255
#define SCREE__PW_MSG_MAX 512
/* A packed rkey is a few hundred bytes with every transport UCX knows;
 * anything much larger is not one. */
#define SCREE__PW_RKEY_MAX 4096
/* No message is larger than an OPEN_OK with the largest rkey. */
#define SCREE__PW_MAX 8192

typedef enum scree__pw_type {
  SCREE__PW_HELLO = 1,
  SCREE__PW_CHALLENGE = 2,
  SCREE__PW_PROOF = 3,
  SCREE__PW_WELCOME = 4,
  SCREE__PW_DENIED = 5,
  SCREE__PW_OPEN = 6,
  SCREE__PW_OPEN_OK = 7,
  SCREE__PW_OPEN_ERR = 8,
  SCREE__PW_CLOSE = 9,
  /* 10 and 11: kept for the data path's messages. */
  SCREE__PW_WATCH = 12,
  SCREE__PW_EVENT = 13,
  SCREE__PW_WATCH_ERR = 14,
} scree__pw_type;

/* WATCH flags. */
#define SCREE__PW_WATCH_REPLAY 0x01u

/* EVENT kinds (the first three are the store's, scree__event). */
enum {
  SCREE__PW_EV_SEALED = 1,
  SCREE__PW_EV_DELETED = 2,
  SCREE__PW_EV_OVERFLOW = 3,
  SCREE__PW_EV_SYNCED = 4,
};

/* One decoded message. Pointers (node, name, msg, rkey) point into the
 * buffer that was decoded; strings are not NUL-terminated (their lengths
 * are given). */
typedef struct scree__pw_msg {
  scree__pw_type type;
  uint64_t req;
  /* HELLO */
  uint8_t version;
  unsigned char nonce[SCREE__PW_NONCE]; /* HELLO, CHALLENGE */
  unsigned char mac[SCREE__PW_MAC];     /* CHALLENGE, PROOF */
  const char *node;
  size_t node_len;
  /* OPEN (the batch), WATCH (the prefix, possibly empty), EVENT */
  const char *name;
  size_t name_len;
  int64_t wait_ms; /* OPEN: 0, -1 or > 0 */
  uint8_t flags;   /* WATCH */
  /* EVENT */
  uint64_t seq;
  uint8_t kind;
  uint64_t stamp;
  /* OPEN_OK, CLOSE */
  uint64_t handle;
  /* OPEN_OK: the descriptor (pointers NULL) and where the bytes are. */
  scree_array desc;
  uint64_t values_bytes;
  uint64_t offsets_bytes;
  uint64_t values_addr;
  uint64_t offsets_addr;
  const void *rkey;
  size_t rkey_len;
  /* OPEN_ERR, WATCH_ERR */
  int32_t code;
  const char *msg;
  size_t msg_len;
} scree__pw_msg;

/* Decodes one message of len bytes. Returns 0, or SCREE_EPROTO with what is
 * wrong in msg. Every length is checked against len before it is used;
 * trailing bytes, an unknown type, a bad magic or an out-of-range field
 * are errors. */
int scree__pw_decode(const void *buf, size_t len, scree__pw_msg *out, char *msg,
                     size_t msg_len);

/* Encodes m into buf (cap bytes; SCREE__PW_MAX always suffices). Returns
 * the length, or 0 when m does not fit or a length is out of range. */
size_t scree__pw_encode(const scree__pw_msg *m, void *buf, size_t cap);

/* The message type's name for logs ("hello", ...; "unknown"). */
const char *scree__pw_type_name(int type);

#endif /* SCREE_DAEMON_PEERS_WIRE_H */
