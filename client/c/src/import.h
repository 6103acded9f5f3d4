/* How the client maps a daemon arena into this process.
 *
 * The daemon shares each arena once per connection: an fd over SCM_RIGHTS
 * (host memfd, CUDA VMM) or handle bytes (CUDA legacy IPC). An importer turns
 * that into a base pointer the client adds batch offsets to, and undoes it
 * when the connection closes. Host memory (import_host.c) and CUDA
 * (import_cuda.c) are two implementations of this one table; client.c picks
 * one from the daemon's Hello reply and never looks inside. */
#ifndef SCREE_CLIENT_IMPORT_H
#define SCREE_CLIENT_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "scree/array.h"

/* What an importer receives: exactly one of fd (>= 0) or handle bytes. */
typedef struct scree__import_src {
  int fd;                    /* -1 when the handle travels as bytes */
  const void *handle;        /* legacy CUDA IPC handle bytes, else NULL */
  size_t handle_len;
  uint64_t arena_id;
  size_t size;               /* arena bytes, from the Location; never 0 */
  const unsigned char *device_uuid; /* the daemon's GPU (16 bytes); NULL on host */
} scree__import_src;

typedef struct scree__importer {
  const char *name; /* "host mmap", "cuda", ... for messages */
  /* Maps the arena. writable asks for a mapping the caller may write
   * (create); otherwise a read-only one is enough (get). Does not take
   * ownership of src->fd: the caller closes it. On success stores the base
   * address, the device it lives on and importer state for unmap, and
   * returns 0; otherwise a negative SCREE_E* code with a message. */
  int (*import)(const scree__import_src *src, int writable, void **base,
                scree_device *device, void **state, char *msg, size_t msg_len);
  /* Upgrades a read-only import to a writable one. NULL when imports are
   * always writable. */
  int (*make_writable)(void *base, size_t size, void *state, char *msg,
                       size_t msg_len);
  /* Copies host bytes into the arena (put). */
  int (*copy_in)(void *dst, const void *src, size_t size, void *state, char *msg,
                 size_t msg_len);
  /* Queues a copy of host or device bytes into the arena on stream (a
   * cudaStream_t; NULL: the default stream) without waiting for it (put
   * from GPU memory); the caller waits with sync before Seal.
   * NULL for importers that cannot read device memory. */
  int (*copy_in_async)(void *dst, const void *src, size_t size, void *stream, void *state,
                       char *msg, size_t msg_len);
  /* Waits for the copies copy_in_async queued into the arena of state on
   * stream (NULL: where copy_in_async put them without one). NULL with
   * copy_in_async. */
  int (*sync)(void *stream, void *state, char *msg, size_t msg_len);
  /* Undoes import. Never fails. */
  void (*unmap)(void *base, size_t size, void *state);
  /* Maps the memory of a writable import (base, size, state) a second time,
   * read-only, at *ro_base, with state for unmap in *ro_state: views from
   * Get must not write a batch even on a connection that created batches
   * in the same arena. NULL where the importer cannot (CUDA: readers are
   * sent writable handles anyway, docs/security.md); Get then uses the
   * writable mapping. */
  int (*map_read_only)(void *base, size_t size, void *state, void **ro_base, void **ro_state,
                       char *msg, size_t msg_len);
} scree__importer;

extern const scree__importer scree__import_host;

#ifdef SCREE_CLIENT_HAVE_CUDA
/* import_cuda.c: the importer for a CUDA daemon's ipc mode (VMM fd or legacy
 * handle bytes), after checking that the daemon's GPU (device_uuid, 16
 * bytes) is visible in this process; or SCREE_ENOTSUP / SCREE_ENODEV with a
 * message. */
int scree__import_cuda_select(int ipc_mode, const unsigned char *device_uuid,
                              const scree__importer **out, char *msg, size_t msg_len);

/* import_cuda.c: waits for stream (a cudaStream_t; NULL: the legacy default
 * stream, which also waits for the context's blocking streams). */
int scree__cuda_sync(void *stream, char *msg, size_t msg_len);
#endif

/* Picks the importer for a daemon's backend and ipc mode (scree_backend and
 * scree_ipc_mode values); device_uuid is the daemon's GPU (16 bytes, NULL on
 * host memory). Returns 0, or SCREE_ENOTSUP with a message when this build
 * has none (a CUDA daemon and a build without CUDA), or SCREE_ENODEV when
 * the daemon's GPU is not visible here. */
int scree__import_select(int backend, int ipc_mode, const unsigned char *device_uuid,
                         const scree__importer **out, char *msg, size_t msg_len);

#endif /* SCREE_CLIENT_IMPORT_H */
