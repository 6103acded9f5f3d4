/* The peer protocol: the messages two screeds exchange over UCX.
 *
 * A small fixed binary format rather than a second protobuf schema, for
 * three reasons: there are fourteen messages with fixed fields; the
 * handshake's HMAC covers exact bytes, which a fixed layout defines with no
 * question of canonical encoding; and the whole decoder is this file's one
 * bounds-checked function, which the fuzzer drives
 * (tests/fuzz/fuzz_peer_wire.c). The version byte of HELLO is how the
 * format evolves: version 2 moved the bytes from one-sided reads (OPEN_OK
 * carried addresses and a UCX rkey) to READ and DATA active messages, and
 * added OPEN's wait and the WATCH, EVENT and WATCH_ERR messages.
 *
 * Every message is one UCX active message: a 20-byte header, then the body.
 * DATA alone is sent as the active message's header, with the bytes it
 * answers for as the active message's data (eager or rendezvous, as UCX
 * picks); an OPEN_OK may be too, carrying its whole batch when the batch's
 * block (values, padding to 256 bytes, offsets) is at most
 * SCREE__PW_INLINE_MAX bytes, eager: the fetcher then asks no READ.
 * Integers are little-endian.
 *
 *   header: magic u32 ("SCP1") | type u16 | reserved u16 (0) | req u64 |
 *           body_len u32 (the bytes after the header, exactly)
 *
 *   HELLO     fetcher -> owner   version u8 | nonce[32] | node_len u8 | node
 *   CHALLENGE owner -> fetcher   nonce[32] | mac[32]     (owner's proof)
 *   PROOF     fetcher -> owner   mac[32]                 (fetcher's proof)
 *   WELCOME   owner -> fetcher   (empty)                 authenticated
 *   DENIED    owner -> fetcher   (empty)                 hello or proof refused
 *   OPEN      fetcher -> owner   name_len u16 | name | wait_ms i64
 *                                lease a batch; when it is not sealed yet,
 *                                wait up to wait_ms for its seal (0: answer
 *                                now; -1: no limit but the connection's)
 *   OPEN_OK   owner -> fetcher   handle u64 | dtype u32 | offsets_dtype u32 |
 *                                ndim u32 | inner i64[ndim] | batch_size i64 |
 *                                total_rows i64 | max_length i64 |
 *                                values_bytes u64 | offsets_bytes u64
 *   OPEN_ERR  owner -> fetcher   code i32 | msg_len u16 | msg
 *   CLOSE     fetcher -> owner   handle u64              end the lease
 *   READ      fetcher -> owner   handle u64 | region u8 | offset u64 |
 *                                length u64              ask for bytes
 *   DATA      owner -> fetcher   handle u64 | region u8 | offset u64 |
 *                                length u64 | code i32 | msg_len u16 | msg
 *   WATCH     fetcher -> owner   flags u8 | prefix_len u16 | prefix
 *                                watch the sealed batches under prefix
 *                                (flags: SCREE__PW_WATCH_REPLAY); a WATCH of
 *                                a prefix watched already restarts it
 *   EVENT     owner -> fetcher   seq u64 | kind u8 | stamp u64 |
 *                                name_len u16 | name
 *                                one change under a watched prefix
 *   WATCH_ERR owner -> fetcher   code i32 | msg_len u16 | msg
 *
 * req pairs OPEN with its answer, READ with its DATA (the fetcher's number
 * for the read), and WATCH with its EVENTs and WATCH_ERR (an EVENT carries
 * the req of the WATCH that started its watch); it is 0 elsewhere.
 *
 * A READ names a leased batch by its handle, one of its two regions (values
 * or offsets) and a range of 1 to SCREE__PW_READ_MAX bytes inside it. Its
 * DATA repeats those fields and carries exactly length bytes with code 0,
 * or none with a negative SCREE_E* code and a message saying why the owner
 * could not read them.
 *
 * EVENT kinds: sealed and deleted (a name, 1 to 255 bytes; a sealed event's
 * stamp is the batch's creation time on the owner, which tells one batch of
 * a name from a later one, or 0 when it is gone already), overflow (the
 * owner's queue for this watch overflowed: nothing more comes until the
 * next WATCH) and synced (the replay has ended: every batch sealed under
 * the prefix when the watch started has been named); the last two have no
 * name and stamp 0. seq is the store's sequence of the watch (1, 2, ...), 0
 * for synced. Nothing but HELLO and PROOF is accepted from a fetcher before
 * WELCOME. */
#ifndef SCREE_DAEMON_PEERS_WIRE_H
#define SCREE_DAEMON_PEERS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "scree/array.h"

#define SCREE__PW_MAGIC 0x31504353u /* "SCP1" read as little-endian */
#define SCREE__PW_VERSION 2
#define SCREE__PW_HEADER 20
#define SCREE__PW_NONCE 32
#define SCREE__PW_MAC 32
#define SCREE__PW_NODE_MAX 64
#define SCREE__PW_NAME_MAX 255
#define SCREE__PW_MSG_MAX 512
/* No message is larger: the largest, an OPEN_ERR or a DATA with the
 * longest message, is under 600 bytes. */
#define SCREE__PW_MAX 1024
/* The regions of a batch a READ names. */
#define SCREE__PW_REGION_VALUES 0
#define SCREE__PW_REGION_OFFSETS 1
/* The most bytes one READ may ask for. */
#define SCREE__PW_READ_MAX (16u << 20)
/* The largest block an OPEN_OK carries with it (see above). */
#define SCREE__PW_INLINE_MAX (32u << 10)
/* The most READs a fetcher may have asked on one connection and not yet
 * had answered; an owner refuses a connection that asks more. The fetcher
 * keeps to half of it, so that UCX completing a transfer at the two ends
 * at slightly different times never makes an honest fetcher cross it. */
#define SCREE__PW_READS_MAX 8

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
  SCREE__PW_READ = 10,
  SCREE__PW_DATA = 11,
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

/* One decoded message. Pointers (node, name, msg) point into the
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
  /* OPEN_OK, CLOSE, READ, DATA */
  uint64_t handle;
  /* OPEN_OK: the descriptor (pointers NULL) and the sizes of its regions. */
  scree_array desc;
  uint64_t values_bytes;
  uint64_t offsets_bytes;
  /* READ, DATA: which bytes (SCREE__PW_REGION_*, and a range in it). */
  uint8_t region;
  uint64_t offset;
  uint64_t length;
  /* OPEN_ERR, WATCH_ERR, DATA (0 in a DATA that carries the bytes) */
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
