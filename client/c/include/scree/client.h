/* libscreeclient: the C client of screed.
 *
 * A client connects to screed over its Unix socket, publishes ragged batches
 * (put, or create + write in place + seal) and attaches to published ones
 * without copying them (get). Batch memory belongs to the daemon: a producer
 * may exit once its batch is sealed.
 *
 * Conventions of every function here:
 * - It returns 0 (or a count where said) on success, or a negative SCREE_E*
 *   code (scree/error.h). A status sent by the daemon passes through
 *   unchanged; losing the daemon (a socket error, the peer closing) gives
 *   SCREE_EDISCONNECTED, after which the handle only answers that code.
 * - On failure, scree_client_last_error(c) holds a message: the daemon's own
 *   when the daemon refused the request, the library's otherwise.
 * - It never prints, never aborts, never raises a signal (SIGPIPE included).
 *
 * Structs that grow: every struct passed to or filled by the library
 * (scree_client_info, scree_stats, the *_options structs,
 * scree_attention_params) starts with `size_t struct_size`, which the caller
 * sets to sizeof the struct as this header declares it; the *_INIT macros
 * do that and set every other member to its default. Members are only ever
 * added at the end, and the library reads or fills only the first
 * struct_size bytes, so a program keeps working with a later library whose
 * structs are larger. A struct_size below the struct's first published size
 * gives SCREE_EINVAL naming the struct. scree_batch_info is not versioned
 * this way: it stays as it is for the 0.x series.
 *
 * Thread safety: a handle may be shared by threads. Every call on one handle
 * takes the handle's mutex for its whole round trip, so calls on one handle
 * are serialised (use one handle per thread for parallel requests). The
 * message returned by scree_client_last_error belongs to the handle, not to
 * the thread: when several threads share a handle, read it only while you
 * know no other thread is calling, or use a handle per thread.
 * A handle must not be used in a child after fork().
 *
 * No protobuf-c or CUDA type appears in this header. */
#ifndef SCREE_CLIENT_H
#define SCREE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "scree/array.h"
#include "scree/dtype.h"
#include "scree/error.h"
#include "scree/export.h"
#include "scree/version.h"

SCREE_EXTERN_C_BEGIN

/* The protocol version this library speaks (scree.v1). */
#define SCREE_CLIENT_PROTOCOL_VERSION 1

/* Where scree_client_connect looks when given no path and $SCREE_SOCKET is
 * unset or empty. */
#define SCREE_CLIENT_DEFAULT_SOCKET SCREE_DEFAULT_SOCKET

/* Longest batch name the info structs below hold; longer names reported by
 * a daemon are truncated there (requests send names as given). */
#define SCREE_CLIENT_NAME_MAX 255

/* How many distinct error codes scree_stats keeps. */
#define SCREE_STATS_MAX_ERRORS 32

typedef struct scree_client scree_client;
typedef struct scree_lease scree_lease;

typedef enum scree_backend {
  SCREE_BACKEND_UNSPECIFIED = 0,
  SCREE_BACKEND_HOST = 1, /* arenas are memfds in host memory */
  SCREE_BACKEND_CUDA = 2, /* arenas are GPU memory */
} scree_backend;

/* How the daemon shares its memory; scree_ipc_mode_name gives the name that
 * screed --ipc takes and every tool shows ("memfd", "vmm", "legacy"). */
typedef enum scree_ipc_mode {
  SCREE_IPC_UNSPECIFIED = 0,
  SCREE_IPC_MEMFD = 1,  /* host memory, mapped with mmap */
  SCREE_IPC_VMM = 2,    /* CUDA VMM allocation, imported from a POSIX fd */
  SCREE_IPC_LEGACY = 3, /* cudaIpcMemHandle_t bytes */
} scree_ipc_mode;

typedef enum scree_batch_state {
  SCREE_BATCH_UNSPECIFIED = 0,
  SCREE_BATCH_CREATED = 1, /* reserved, being written by its creator */
  SCREE_BATCH_SEALED = 2,  /* validated, immutable, visible to get */
} scree_batch_state;

/* What the daemon said about itself in its Hello reply, plus counters of
 * this connection's arena imports. Start from SCREE_CLIENT_INFO_INIT. */
typedef struct scree_client_info {
  size_t struct_size;       /* set by the caller: sizeof(scree_client_info) */
  uint32_t protocol_version;
  scree_backend backend;
  scree_ipc_mode ipc_mode;
  int32_t device_index;     /* daemon's CUDA ordinal; -1 on host memory */
  char device_name[256];
  unsigned char device_uuid[16];
  int has_device_uuid;      /* 0 on host memory */
  uint64_t granularity;     /* arena allocation granularity, bytes */
  uint64_t memory_limit;    /* bytes the store may hold */
  uint64_t max_packet;      /* largest request packet the daemon accepts */
  uint64_t arena_size;      /* default arena size, bytes */
  uint32_t max_name_len;    /* longest batch name the daemon accepts */
  char daemon_version[64];  /* screed's version string */
  /* This connection's imports. An arena is imported (mapped) once and kept
   * until the daemon says it freed the arena (Response.freed_arenas) or
   * until scree_client_close; these let tests and tools check that. */
  uint32_t arenas_mapped;   /* arenas mapped now */
  uint64_t arena_imports;   /* imports done since connecting (an arena read
                             * first, then written, counts twice: its
                             * read-only and its writable fd) */
  uint64_t stray_fds_closed; /* fds the daemon sent that were not needed */
  uint64_t arena_unmaps;    /* arenas unmapped because the daemon freed them */
} scree_client_info;

#define SCREE_CLIENT_INFO_INIT {.struct_size = sizeof(scree_client_info)}

/* One batch as the daemon describes it. desc has values and offsets NULL and
 * desc.device set to the CPU: it is a descriptor only. */
typedef struct scree_batch_info {
  char name[SCREE_CLIENT_NAME_MAX + 1];
  scree_array desc;
  scree_batch_state state;
  uint64_t values_bytes;
  uint64_t offsets_bytes;
  uint32_t leases;
  uint32_t owner_uid;
  int32_t owner_pid;
  uint64_t age_ns;
  uint64_t arena_id;
  int delete_pending; /* deleted while leased: goes with the last lease */
} scree_batch_info;

typedef struct scree_error_count {
  int32_t code; /* a SCREE_E* code */
  uint64_t count;
} scree_error_count;

/* The daemon's counters (scree.v1.StatsReply). Start from SCREE_STATS_INIT. */
typedef struct scree_stats {
  size_t struct_size;    /* set by the caller: sizeof(scree_stats) */
  uint64_t bytes_used;   /* bytes held by batches, alignment included */
  uint64_t bytes_limit;
  uint64_t bytes_arenas; /* bytes of arenas allocated from the backend */
  uint32_t batches;
  uint32_t connections;
  uint32_t leases;
  uint32_t arenas;
  uint32_t pending_deletes;
  uint64_t requests;     /* requests served since the daemon started */
  uint64_t uptime_ns;
  uint32_t n_errors;     /* entries used in errors[]; extra codes are dropped */
  scree_error_count errors[SCREE_STATS_MAX_ERRORS];
} scree_stats;

#define SCREE_STATS_INIT {.struct_size = sizeof(scree_stats)}

/* Parameters of scree_client_attention. Start from
 * SCREE_ATTENTION_PARAMS_INIT. */
typedef struct scree_attention_params {
  size_t struct_size;  /* sizeof(scree_attention_params) */
  int causal;
  int has_scale;       /* 0: the daemon uses 1/sqrt(head_dim) */
  float scale;
  int32_t window_left; /* -1: unbounded */
  int32_t window_right;
} scree_attention_params;

#define SCREE_ATTENTION_PARAMS_INIT                                                         \
  {.struct_size = sizeof(scree_attention_params), .window_left = -1, .window_right = -1}

/* Flags of scree_put_options and scree_create_options. */
/* The batch goes into the daemon's shared pool of arenas rather than its
 * owner's own arenas: the pool's arenas hold shared batches of every owner,
 * and whoever reads one of them can read them all (docs/security.md). */
#define SCREE_CREATE_SHARED (1u << 0)

/* Options of scree_client_put. Start from SCREE_PUT_OPTIONS_INIT. */
typedef struct scree_put_options {
  size_t struct_size; /* sizeof(scree_put_options) */
  unsigned flags;     /* 0 or SCREE_CREATE_SHARED */
  /* A cudaStream_t (as void *) for the copies from GPU memory, waited for
   * before Seal, so that the source may be the output of work still queued
   * on it. NULL: the default stream. */
  void *stream;
} scree_put_options;

#define SCREE_PUT_OPTIONS_INIT {.struct_size = sizeof(scree_put_options)}

/* Options of scree_client_create. Start from SCREE_CREATE_OPTIONS_INIT. */
typedef struct scree_create_options {
  size_t struct_size; /* sizeof(scree_create_options) */
  unsigned flags;     /* 0 or SCREE_CREATE_SHARED */
} scree_create_options;

#define SCREE_CREATE_OPTIONS_INIT {.struct_size = sizeof(scree_create_options)}

/* Options of scree_client_seal. Start from SCREE_SEAL_OPTIONS_INIT. */
typedef struct scree_seal_options {
  size_t struct_size; /* sizeof(scree_seal_options) */
  /* A cudaStream_t (as void *) of the calling thread's current CUDA context
   * that wrote the batch, waited for before the daemon reads the offsets.
   * NULL: the legacy default stream, on a GPU daemon only. */
  void *stream;
} scree_seal_options;

#define SCREE_SEAL_OPTIONS_INIT {.struct_size = sizeof(scree_seal_options)}

/* Connects to screed at path (NULL or "": $SCREE_SOCKET when set and not
 * empty, else SCREE_CLIENT_DEFAULT_SOCKET), says Hello and checks that the
 * daemon speaks SCREE_CLIENT_PROTOCOL_VERSION.
 *
 * Whether it succeeds or not, *out receives a handle that the caller owns
 * and must pass to scree_client_close; it is NULL only when the handle itself
 * could not be allocated (SCREE_ENOMEM). On failure the handle holds the
 * reason in scree_client_last_error (such as "no daemon at PATH") and every
 * other call on it returns SCREE_EDISCONNECTED.
 * Returns 0; SCREE_ECONNREFUSED when nothing listens at path; SCREE_EACCES;
 * SCREE_ENAMETOOLONG for a path too long for a Unix socket; SCREE_EPROTO for
 * a protocol version mismatch; SCREE_EDISCONNECTED when the daemon hangs up. */
SCREE_API int scree_client_connect(const char *path, scree_client **out);

/* Closes the connection, unmaps every imported arena and frees the handle
 * and every lease object still outstanding. The daemon drops this
 * connection's leases (and its unsealed creates) when the socket closes.
 * Arrays obtained from get or create must not be used afterwards. NULL is
 * allowed. */
SCREE_API void scree_client_close(scree_client *c);

/* The message of the last failed call on c, or "" when none failed yet.
 * Owned by c; valid until the next call on c. Never NULL (for c == NULL it
 * returns a static message). */
SCREE_API const char *scree_client_last_error(const scree_client *c);

/* Copies the daemon's Hello facts and this connection's counters into *out,
 * whose struct_size the caller sets (SCREE_CLIENT_INFO_INIT): only that many
 * bytes are written. Returns 0, or SCREE_EINVAL for NULL arguments or a
 * struct_size too small. Works on a disconnected handle too (the facts are
 * those of the last Hello, zero if none). */
SCREE_API int scree_client_info_get(scree_client *c, scree_client_info *out);

/* Publishes a copy of the array a as batch `name`: Create, copy values
 * and offsets into daemon memory, Seal. a->device says where a->values and
 * a->offsets are: SCREE_DEVICE_CPU for host memory, SCREE_DEVICE_CUDA for
 * GPU memory (accepted by a CUDA daemon only, else SCREE_ENOTSUP); a CUDA
 * daemon also takes host arrays. GPU copies run on opts->stream (NULL: the
 * default stream) and are waited for before Seal; a->max_length is ignored
 * (the daemon computes it). opts may be NULL for SCREE_PUT_OPTIONS_INIT.
 * The caller keeps ownership of a and may free it on return; the batch
 * belongs to the daemon, so the producer may exit afterwards.
 * Offsets are checked here first, and again by the daemon at seal. If a step
 * after Create fails, the half-made batch is deleted.
 * Returns 0; SCREE_EINVAL (bad descriptor or offsets, message names the
 * first bad index; unknown flag bits, named before anything is sent);
 * SCREE_EEXIST; SCREE_ENOSPC (message gives requested and free bytes);
 * SCREE_ENAMETOOLONG; SCREE_ENOTSUP for a GPU array or a stream where this
 * daemon or this build cannot copy from the GPU; other codes from the
 * daemon. */
SCREE_API int scree_client_put(scree_client *c, const char *name, const scree_array *a,
                               const scree_put_options *opts);

/* Reserves batch `name` with the descriptor desc (pointers ignored) and
 * fills *out with the same descriptor whose values and offsets point into
 * daemon memory mapped writable in this process, for the caller to fill in
 * place; then call scree_client_seal. out->device says where that memory is
 * (the CPU on host memory). The memory stays mapped until
 * scree_client_close; writing it after seal is a contract violation the
 * library cannot stop. An unsealed batch goes away if the connection closes.
 * opts may be NULL for SCREE_CREATE_OPTIONS_INIT.
 * Returns 0 or an error as for put. */
SCREE_API int scree_client_create(scree_client *c, const char *name,
                                  const scree_array *desc, scree_array *out,
                                  const scree_create_options *opts);

/* Validates the offsets written into a created batch and publishes it.
 * First it waits for the writes: for opts->stream when given (a
 * cudaStream_t of the calling thread's current CUDA context), else, on a
 * GPU daemon, for the calling thread's legacy default stream (which also
 * covers cuMemcpy/cudaMemcpy from pageable memory, whose DMA may still be in
 * flight when they return, and every blocking stream). opts may be NULL for
 * SCREE_SEAL_OPTIONS_INIT.
 * Returns 0; SCREE_EINVAL with a message naming the first bad offset (the
 * batch stays created: fix the offsets and seal again, or delete it);
 * SCREE_ENOENT; SCREE_ESTATE when it is already sealed; SCREE_EPERM when
 * another connection created it; SCREE_ECUDA with the CUDA error name when
 * the wait fails (the batch stays created); SCREE_ENOTSUP for a stream in a
 * build without CUDA. */
SCREE_API int scree_client_seal(scree_client *c, const char *name,
                                const scree_seal_options *opts);

/* Attaches to sealed batch `name` without copying: *out describes it
 * (batch_size, total_rows and max_length from the daemon's reply) and its
 * values and offsets point into the daemon's memory, mapped in this process.
 * Host arenas are mapped read-only, unless this connection also created a
 * batch in the same arena, in which case the mapping is writable: never
 * write through a get view. The view is valid until scree_client_release of
 * the lease (after that the memory may be reused for other batches) or
 * scree_client_close. Each arena is imported once per connection and
 * cached, so a get is one round trip and no mapping.
 * *lease receives a lease object owned by c, to be handed back with
 * scree_client_release; lease may be NULL, in which case the daemon keeps
 * the batch alive until the connection closes.
 * Returns 0; SCREE_ENOENT (message names the batch); SCREE_ESTATE for a
 * batch not yet sealed; SCREE_ENOTSUP when this build cannot import the
 * daemon's memory (a CUDA daemon without CUDA support here). */
SCREE_API int scree_client_get(scree_client *c, const char *name, scree_array *out,
                               scree_lease **lease);

/* Ends the lease: the batch may be freed now if it was deleted meanwhile.
 * The lease object is freed whatever the result. NULL lease returns 0.
 * Returns 0, SCREE_EDISCONNECTED, or the daemon's code. */
SCREE_API int scree_client_release(scree_client *c, scree_lease *lease);

/* Removes the name at once; the memory goes when the last lease is
 * released. *deferred (may be NULL) is set to 1 when leases keep it alive.
 * Returns 0 or SCREE_ENOENT and other daemon codes. */
SCREE_API int scree_client_delete(scree_client *c, const char *name, int *deferred);

/* Lists the batches whose names start with prefix (NULL or "": all), in name
 * order, asking the daemon page by page. *out receives an array of *count
 * entries allocated by the library (NULL when the count is 0); free it with
 * scree_client_free_list. Returns 0 or an error, in which case *out is NULL
 * and *count 0. */
SCREE_API int scree_client_list(scree_client *c, const char *prefix,
                                scree_batch_info **out, size_t *count);

/* Frees an array from scree_client_list. NULL is allowed. */
SCREE_API void scree_client_free_list(scree_batch_info *list);

/* Describes batch `name` in *out. Returns 0 or SCREE_ENOENT. */
SCREE_API int scree_client_stat(scree_client *c, const char *name, scree_batch_info *out);

/* Fills *out with the daemon's counters; the caller sets out->struct_size
 * (SCREE_STATS_INIT) and only that many bytes are written. Returns 0,
 * SCREE_EINVAL for a NULL out or a struct_size too small, or an error. */
SCREE_API int scree_client_stats(scree_client *c, scree_stats *out);

/* Runs varlen attention in the daemon on sealed batches q, k and v (layout
 * (tokens, heads, head_dim)) and stores the result as a sealed batch `out`
 * with q's shape, dtype and offsets. k and v share their offsets (same
 * batch size as q; their lengths may differ from q's). p may be NULL for
 * SCREE_ATTENTION_PARAMS_INIT. When not NULL, *info receives the output's
 * description and *elapsed_ns the kernel's run time. The call blocks until
 * the daemon has run the kernel.
 * Returns 0; SCREE_ENOENT or SCREE_ESTATE naming the input that is missing
 * or not sealed; SCREE_EEXIST when out exists; SCREE_EINVAL naming the
 * mismatch (dtypes, heads, head_dim, batch sizes, k/v offsets, window);
 * SCREE_ENOTSUP for a dtype the daemon's device does not run; SCREE_ENOSPC
 * when the output does not fit; other codes from the daemon. */
SCREE_API int scree_client_attention(scree_client *c, const char *q, const char *k,
                                     const char *v, const char *out,
                                     const scree_attention_params *p, scree_batch_info *info,
                                     uint64_t *elapsed_ns);

/* Options of scree_client_fetch_ex. Start from SCREE_FETCH_OPTIONS_INIT. */
#define SCREE_FETCH_NO_WAIT INT64_MIN
typedef struct scree_fetch_options {
  size_t struct_size; /* sizeof(scree_fetch_options) */
  /* Waiting for the batch to be sealed on the peer: SCREE_FETCH_NO_WAIT
   * (the default) fails at once when it is not there; -1 waits until the
   * timeout; >= 0 waits that many milliseconds. */
  int64_t wait_ms;
  /* The whole fetch, enforced by the daemon; 0: its default (60 s). */
  uint64_t timeout_ms;
} scree_fetch_options;

#define SCREE_FETCH_OPTIONS_INIT                                                            \
  {.struct_size = sizeof(scree_fetch_options), .wait_ms = SCREE_FETCH_NO_WAIT}

/* Asks this client's daemon to copy sealed batch remote_name from peer
 * (a NAME of the daemon's --peer NAME=HOST:PORT) into its own store as
 * local_name (NULL or "": remote_name). The daemon reserves the memory, the
 * peer keeps a lease on its batch while the bytes move (UCX one-sided
 * reads), and the local batch is sealed, owned by this connection's uid,
 * only once every byte is in and its offsets check; on any failure nothing
 * is left behind. Then scree_client_get attaches to it as to any batch.
 * timeout_ms bounds the whole fetch (0: the daemon's default, 60 s). The
 * call blocks until the fetch has ended.
 * Returns 0; SCREE_EINVAL for an unknown peer (the message lists the known
 * ones) or a bad name; SCREE_EEXIST when local_name exists; SCREE_ENOENT or
 * SCREE_ESTATE from the peer (the message names the peer); SCREE_ENOSPC when
 * the local store's limit or this uid's quota would be passed;
 * SCREE_ECONNREFUSED when the peer does not listen; SCREE_EACCES when either
 * side did not prove the shared secret; SCREE_EIO when the connection failed
 * during the transfer; SCREE_ETIMEDOUT; SCREE_ENOTSUP when the daemon has no
 * peers. */
SCREE_API int scree_client_fetch(scree_client *c, const char *peer, const char *remote_name,
                                 const char *local_name, uint64_t timeout_ms);

/* scree_client_fetch with options (opts NULL: SCREE_FETCH_OPTIONS_INIT).
 * When not NULL, *info receives the local batch's description and *bytes
 * the bytes read from the peer. */
SCREE_API int scree_client_fetch_ex(scree_client *c, const char *peer, const char *remote_name,
                                    const char *local_name, const scree_fetch_options *opts,
                                    scree_batch_info *info, uint64_t *bytes);

/* Lower-case names of enum values, for tools ("sealed", "host", "memfd",
 * "vmm"). Never NULL. */
SCREE_API const char *scree_batch_state_name(scree_batch_state s);
SCREE_API const char *scree_backend_name(scree_backend b);
SCREE_API const char *scree_ipc_mode_name(scree_ipc_mode m);

SCREE_EXTERN_C_END

#endif /* SCREE_CLIENT_H */
