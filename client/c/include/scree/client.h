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

/* The system path, where scree_client_connect looks first when given no
 * path and $SCREE_SOCKET is unset or empty (scree_default_socket_paths
 * gives the whole order). */
#define SCREE_CLIENT_DEFAULT_SOCKET SCREE_DEFAULT_SOCKET

/* Bytes of one socket path with its NUL (sun_path of a Unix socket). */
#define SCREE_SOCKET_PATH_MAX 108

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
  /* Added with the pipelined seal (a struct_size of the size before is
   * still accepted). Where the time of this connection's calls goes, for
   * benchmarks: the last round trip, from sending the request to having
   * its reply (a Get's arena fd included), and the last arena import (the
   * mmap, or the CUDA driver's import, reserve, map and set access with
   * the context handling around them), in nanoseconds; 0 until there was
   * one. A first get costs about the two together. */
  uint64_t last_call_ns;
  uint64_t last_import_ns;
  uint64_t inline_puts;    /* puts whose offsets went inline with Seal */
  uint32_t inline_offsets; /* 1: the daemon takes offsets inline with Seal
                            * (HelloReply.inline_offsets; see put) */
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
  /* Added with waiting and watching (0 from a daemon that has neither). */
  uint32_t waiters;         /* Gets waiting for a seal */
  uint32_t watchers;        /* connections watching */
  uint64_t watch_overflows; /* overflow events since the daemon started */
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
   * on it. NULL: the default stream. A host-memory daemon takes no stream,
   * whatever the array's device (SCREE_ENOTSUP). */
  void *stream;
  /* Added with the pipelined seal (a struct_size of the size before is
   * still accepted). Non-zero: put returns once its Seal is sent, without
   * waiting for the daemon's reply; the reply is taken by the next call on
   * the handle, or by scree_client_flush (see "A pipelined seal" at
   * scree_client_flush). 0, the default: put returns once the batch is
   * sealed. */
  int async_seal;
} scree_put_options;

#define SCREE_PUT_OPTIONS_INIT {.struct_size = sizeof(scree_put_options)}

/* Options of scree_client_create. Start from SCREE_CREATE_OPTIONS_INIT. */
typedef struct scree_create_options {
  size_t struct_size; /* sizeof(scree_create_options) */
  unsigned flags;     /* 0 or SCREE_CREATE_SHARED */
  /* Added with batch ids (a struct_size of the size before is still
   * accepted). Where not NULL, receives the created batch's id, as
   * scree_lease_batch_id gives it for a lease (0 from a daemon that does
   * not say). */
  uint64_t *batch_id;
} scree_create_options;

#define SCREE_CREATE_OPTIONS_INIT {.struct_size = sizeof(scree_create_options)}

/* Options of scree_client_seal. Start from SCREE_SEAL_OPTIONS_INIT. */
typedef struct scree_seal_options {
  size_t struct_size; /* sizeof(scree_seal_options) */
  /* A cudaStream_t (as void *) of the calling thread's current CUDA context
   * that wrote the batch, waited for before the daemon reads the offsets.
   * NULL: the legacy default stream, on a GPU daemon only. */
  void *stream;
  /* Added with the pipelined seal (a struct_size of the size before is
   * still accepted). Non-zero: return once Seal is sent, as put's
   * async_seal (see scree_client_flush); a failure leaves the batch
   * created, as for a seal that waits. */
  int async;
} scree_seal_options;

#define SCREE_SEAL_OPTIONS_INIT {.struct_size = sizeof(scree_seal_options)}

/* The sockets where scree_client_connect looks for screed when given no
 * path, in order, the same order screed follows to choose where it serves:
 * $SCREE_SOCKET alone when it is set and not empty; else the system path
 * SCREE_CLIENT_DEFAULT_SOCKET (/run/scree/screed.sock), then the per-user
 * path $XDG_RUNTIME_DIR/scree-UID/screed.sock (/tmp/scree-UID/screed.sock
 * when XDG_RUNTIME_DIR is unset), UID being the effective uid. Copies up to
 * max of them into paths. Returns how many there are (1 or 2, possibly more
 * than max); SCREE_EINVAL for NULL paths or max < 1; SCREE_ENAMETOOLONG
 * when $SCREE_SOCKET is too long for a socket path. */
SCREE_API int scree_default_socket_paths(char paths[][SCREE_SOCKET_PATH_MAX], int max);

/* Connects to screed at path (NULL or "": the first of
 * scree_default_socket_paths where a daemon answers), says Hello and checks
 * that the daemon speaks SCREE_CLIENT_PROTOCOL_VERSION. When none answers,
 * the message names every path tried and how to start a daemon.
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

/* The socket path c connected to (the one chosen from the resolution order
 * when connect was given no path), or, after a failed connect, the first
 * path tried; "" for NULL. Owned by c. */
SCREE_API const char *scree_client_socket(const scree_client *c);

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
 * A host array's offsets are checked here first; all are checked again by
 * the daemon at seal. Where the daemon takes them (HelloReply.inline_offsets:
 * host-memory daemons) and they fit its packet limit with 1 KiB to spare, a
 * host array's offsets travel inline with Seal and the daemon checks them
 * there and writes them into the batch itself: only the values are copied
 * in. Otherwise both are copied in and the daemon reads the offsets at
 * seal. If a step after Create fails, the half-made batch is deleted.
 * With opts->async_seal, put returns once Seal is sent (the copies are
 * done by then: the source may be freed); scree_client_flush says how the
 * seal's result arrives.
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

/* A pipelined seal: put with async_seal (or seal with async) sends Seal
 * and returns without waiting for the daemon's reply, saving the caller a
 * round trip per batch; the daemon serves a connection's requests in
 * order, so the batch is sealed before anything sent after it is served.
 * At most one such seal is pending on a handle. Its reply is taken:
 * - by scree_client_flush, which returns the seal's result;
 * - else by the next call on c that talks to the daemon (put, create, seal,
 *   get, release, delete, list, stat, stats, attention, fetch, the waits'
 *   _start), before it sends its own request. When the seal failed, that
 *   call returns the seal's code without doing its own work (call it
 *   again), with a message naming the batch: "the seal of 'NAME', sent
 *   without waiting for its reply, failed: ...". scree_client_release is
 *   the exception: it releases its lease all the same, and returns the
 *   seal's failure if there was one.
 * A failed put's batch is deleted first, as a put that waits would have
 * done; a failed seal's batch stays created. A put whose offsets go inline
 * checked them before sending them, so its seal fails only for reasons
 * outside the batch (the daemon gone, say); a GPU array's offsets too many
 * to go inline are first checked by the daemon at seal.
 * scree_client_close does not wait for a pending seal: the daemon still
 * serves the Seal sent before the connection closed (the batch is sealed,
 * or reclaimed with the connection's other unsealed batches if the seal
 * fails), but nobody hears the result. Flush first to know it.
 * Returns 0 when no seal is pending or the pending one succeeded; else the
 * seal's code (SCREE_EINVAL for bad offsets checked at seal,
 * SCREE_EDISCONNECTED when the daemon went away before answering, ...). */
SCREE_API int scree_client_flush(scree_client *c);

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

/* The daemon's id of the batch a lease holds: unique among the batches of
 * that daemon's life and never reused, so it tells the batch from one
 * created later under the same name, which may have the same shape, owner
 * and even memory (a handle passed to another process can check it after
 * its own get). 0 for a NULL lease, or from a daemon that does not say. */
SCREE_API uint64_t scree_lease_batch_id(const scree_lease *lease);

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

/* Why fetches from a peer failed: the index into scree_peer_stats.failures.
 * scree_fetch_failure_name gives the name the daemon's metrics use. */
typedef enum scree_fetch_failure {
  SCREE_FETCH_FAIL_AUTH = 0,    /* the shared secret was not proven either way */
  SCREE_FETCH_FAIL_UNREACHABLE, /* no connection to the peer */
  SCREE_FETCH_FAIL_LOST,        /* the connection failed during the fetch */
  SCREE_FETCH_FAIL_REMOTE,      /* the peer refused (no such batch, ...) */
  SCREE_FETCH_FAIL_LOCAL,       /* the local store refused (memory, a name taken; a
                                 * mirror's name taken by a batch it did not make) */
  SCREE_FETCH_FAIL_TIMEOUT,     /* the fetch's time ran out */
  SCREE_FETCH_FAIL_INVALID,     /* the peer's bytes or descriptor did not check */
  SCREE_FETCH_FAIL_OTHER,       /* anything else, and causes this library does not know */
  SCREE_FETCH_FAIL_COUNT_
} scree_fetch_failure;

/* Room in scree_peer_stats.failures: more than the causes there are, so
 * that a cause added later does not change the struct's layout. */
#define SCREE_PEER_FAILURES_MAX 16
/* Longest peer name (--peer NAME=HOST:PORT). */
#define SCREE_PEER_NAME_MAX 63

/* The counters of one peer of the daemon (one --peer NAME=HOST:PORT), and
 * of the mirrors that follow it (--mirror NAME:PREFIX). Start from
 * SCREE_PEER_STATS_INIT. */
typedef struct scree_peer_stats {
  size_t struct_size; /* set by the caller: sizeof(scree_peer_stats) */
  char name[SCREE_PEER_NAME_MAX + 1];
  int connected;            /* an authenticated connection is up now */
  uint64_t batches_fetched; /* fetches completed, mirrored batches included */
  uint64_t bytes_fetched;
  uint64_t failures[SCREE_PEER_FAILURES_MAX]; /* failed fetches by scree_fetch_failure */
  uint32_t mirrors;          /* --mirror options following this peer */
  uint64_t batches_mirrored; /* batches they fetched */
  uint64_t mirror_deletes;   /* local copies they deleted because the peer deleted its
                              * batch (or no longer has it) */
  uint64_t mirror_resyncs;   /* times they watched again with replay (after an overflow,
                              * a full queue, a lost connection) */
} scree_peer_stats;

#define SCREE_PEER_STATS_INIT {.struct_size = sizeof(scree_peer_stats)}

/* Fills out[0] .. out[max - 1] with the counters of the daemon's peers, in
 * the order of its --peer options, and sets *count to how many peers it has
 * (possibly more than max: only max are filled; 0 for a daemon without
 * peers). The caller sets out[0].struct_size (SCREE_PEER_STATS_INIT): every
 * element is taken to be that large, as in an array of the struct as the
 * caller's header declares it, and only that many bytes of each are
 * written. With max 0, out may be NULL and only *count is set. One Stats
 * request; its other counters are scree_client_stats's.
 * Returns 0; SCREE_EINVAL for a NULL count, a NULL out with max > 0, or a
 * struct_size too small; or an error. */
SCREE_API int scree_client_peer_stats(scree_client *c, scree_peer_stats *out, size_t max,
                                      size_t *count);

/* "auth", "unreachable", "lost", "remote", "local", "timeout", "invalid",
 * "other" (also for an unknown value). Never NULL. */
SCREE_API const char *scree_fetch_failure_name(int cause);

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

/* ---- waiting for a batch, watching a prefix ---------------------------- */

/* Called by a wait of this library (scree_client_get_wait,
 * scree_client_get_wait_finish, scree_watch_next) when a signal
 * interrupts it (poll() fails with EINTR), on the thread that waits.
 * Return non-zero to abandon the wait: the call then returns SCREE_EINTR
 * and the handle stays usable (for a Get, the daemon is asked to drop the
 * waiting Get, and a batch that arrived meanwhile is released). Return 0
 * to go on waiting. It may be called any number of times during one wait;
 * it must not call this library on the same handle. Without a callback
 * (the default), waits go on through signals.
 *
 * This is how an interpreter keeps Ctrl-C working while it waits without
 * its lock and without polling: Python's binding releases the GIL around
 * the wait, and its callback takes the GIL, runs the pending signal
 * handlers (PyErr_CheckSignals) and returns non-zero when one raised.
 * The signal must reach the waiting thread: a process-directed signal does
 * when the other threads block it, or when the process has one thread. */
typedef int (*scree_interrupt_fn)(void *arg);

/* Sets (fn NULL: removes) c's interrupt callback; watches made from c
 * afterwards start with the same one. Returns 0 or SCREE_EINVAL. */
SCREE_API int scree_client_set_interrupt(scree_client *c, scree_interrupt_fn fn, void *arg);

/* As scree_client_get, waiting until a batch of that name is sealed when
 * there is none yet (the name unknown, or its batch still being written):
 * timeout_ms -1 waits without a limit, 0 answers at once, N > 0 waits up to
 * N milliseconds. The daemon keeps the wait (no polling: a seal wakes every
 * waiter of the name); deleting or re-creating the name meanwhile changes
 * nothing. The handle's mutex is held throughout, so other threads' calls
 * on c wait too: use another handle for them, or the start/finish pair
 * below.
 * Returns 0 with *out and *lease as scree_client_get; SCREE_ETIMEDOUT when
 * nothing was sealed in time (the message names the batch and the wait);
 * SCREE_EINTR when the interrupt callback abandoned the wait (c stays
 * usable); SCREE_EINVAL for timeout_ms below -1; the errors of
 * scree_client_get otherwise. */
SCREE_API int scree_client_get_wait(scree_client *c, const char *name, int64_t timeout_ms,
                                    scree_array *out, scree_lease **lease);

/* The same wait in two steps, for event loops (asyncio, libuv, epoll):
 * _start sends the Get and returns at once; the reply arrives on the
 * socket, scree_client_fd(c), which turns readable then; _finish reads it
 * and gives the result of scree_client_get_wait (blocking until it comes
 * if called before). Between the two, every other call on c fails with
 * SCREE_EBUSY (the reply is the next thing on the connection); a second
 * wait needs a second handle. _cancel abandons a started wait instead of
 * finishing it: it asks the daemon to drop the Get, takes its answer
 * (releasing a batch that arrived meanwhile) and returns 0, leaving c
 * usable; with no wait started it does nothing. Each takes the mutex only
 * for its own step.
 * An asyncio binding: start; loop.add_reader(fd, ...) resolving a future;
 * await it; remove the reader; finish. On the task's cancellation: remove
 * the reader; cancel.
 * Returns: _start 0, SCREE_EBUSY when a wait is started already, or the
 * errors of sending; _finish as scree_client_get_wait, SCREE_EINVAL when no
 * wait was started; _cancel 0 or a transport error. */
SCREE_API int scree_client_get_wait_start(scree_client *c, const char *name,
                                          int64_t timeout_ms);
SCREE_API int scree_client_get_wait_finish(scree_client *c, scree_array *out,
                                           scree_lease **lease);
SCREE_API int scree_client_get_wait_cancel(scree_client *c);

/* The connection's socket, for polling a started wait (readable: its reply
 * came). Owned by c: never read, write or close it. -1 for a handle that
 * never connected. */
SCREE_API int scree_client_fd(const scree_client *c);

/* A watch: the changes of the names under a prefix, as events. */
typedef struct scree_watch scree_watch;

/* Flags of scree_client_watch and scree_watch_resync. */
/* Skip the replay: deliver only changes from now on. */
#define SCREE_WATCH_NO_REPLAY (1u << 0)

typedef enum scree_event_kind {
  SCREE_EVENT_UNSPECIFIED = 0,
  SCREE_EVENT_SEALED = 1,   /* a batch of this name was sealed (or replayed) */
  SCREE_EVENT_DELETED = 2,  /* a sealed batch of this name was deleted */
  /* The daemon's queue for this watch overflowed (the watcher read too
   * slowly): every later change is dropped until scree_watch_resync. */
  SCREE_EVENT_OVERFLOW = 3,
} scree_event_kind;

/* One event. Start from SCREE_EVENT_INIT. */
typedef struct scree_event {
  size_t struct_size; /* set by the caller: sizeof(scree_event) */
  scree_event_kind kind;
  /* 1 for the first event of a watch (and after each resync), then +1 per
   * event: a gap would be a lost event, which the daemon never does
   * silently (it sends OVERFLOW). */
  uint64_t seq;
  char name[SCREE_CLIENT_NAME_MAX + 1]; /* "" for OVERFLOW */
  size_t name_len;
} scree_event;

#define SCREE_EVENT_INIT {.struct_size = sizeof(scree_event)}

/* Watches the names under prefix (NULL or "": every name this peer may
 * read, the same visibility as scree_client_list and get). With replay
 * (flags without SCREE_WATCH_NO_REPLAY) the first events are a SEALED one
 * per batch sealed now under the prefix, then live changes, with no gap
 * and no duplicate between the two; a name changing while the replay runs
 * shows in the state the replay finds it in.
 * The watch has a connection of its own to the same socket (with this
 * process's credentials), so c goes on serving requests and may even be
 * closed first. *out is the caller's, to be freed with scree_watch_close;
 * NULL on failure, with the reason in scree_client_last_error(c).
 * Threading: a watch is used by one thread at a time; it has no lock.
 * Daemon side: events wait in a bounded queue (screed --watch-queue, 1024
 * by default) beside the socket's buffer; a watcher that falls further
 * behind gets one OVERFLOW event and nothing more until it resyncs.
 * Returns 0; SCREE_EINVAL (unknown flag bits); SCREE_ENAMETOOLONG (a prefix
 * longer than a name); the errors of scree_client_connect. */
SCREE_API int scree_client_watch(scree_client *c, const char *prefix, unsigned flags,
                                 scree_watch **out);

/* Waits for the next event, up to timeout_ms (-1: no limit, 0: only what
 * has come already), and fills *ev (struct_size set by the caller; only
 * that many bytes are written).
 * Returns 0; SCREE_ETIMEDOUT when no event came in time; SCREE_EINTR when
 * the interrupt callback abandoned the wait (the watch stays usable);
 * SCREE_EDISCONNECTED when the daemon went away; SCREE_EINVAL. */
SCREE_API int scree_watch_next(scree_watch *w, int64_t timeout_ms, scree_event *ev);

/* The watch's socket: readable when an event may be read. "May": after a
 * resync, events of the old watch still on the way are read and dropped,
 * so scree_watch_next(w, 0, ...) can then answer SCREE_ETIMEDOUT; call it
 * until it does to drain what came. Owned by w: never read or close it. */
SCREE_API int scree_watch_fd(const scree_watch *w);

/* Starts the watch again with its prefix (after an OVERFLOW, say): flags
 * as for scree_client_watch. Events of the old watch still on the way are
 * dropped; the next event has seq 1. Returns 0 or an error. */
SCREE_API int scree_watch_resync(scree_watch *w, unsigned flags);

/* Sets the watch's interrupt callback (it starts with its client's). */
SCREE_API int scree_watch_set_interrupt(scree_watch *w, scree_interrupt_fn fn, void *arg);

/* The message of the watch's last failed call, or "". Never NULL. */
SCREE_API const char *scree_watch_last_error(const scree_watch *w);

/* Closes the watch's connection and frees it. NULL is allowed. */
SCREE_API void scree_watch_close(scree_watch *w);

/* "sealed", "deleted", "overflow" ("unspecified" otherwise). Never NULL. */
SCREE_API const char *scree_event_kind_name(scree_event_kind k);

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
