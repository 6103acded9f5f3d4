/* screed's memory backends: where arenas come from and how they are shared.
 *
 * An arena is one large allocation with one shareable handle. The store
 * sub-allocates batches inside arenas (arena.c); this interface knows nothing
 * of batches. Two backends implement it: host memory (mem_host.c: a memfd,
 * mapped by clients with mmap) and CUDA (mem_cuda.c: cuMemCreate with a POSIX
 * fd handle, or cudaMalloc + cudaIpcGetMemHandle in legacy mode).
 *
 * Every function returns 0 or a negative SCREE_E* code and, on failure,
 * writes a message into msg (which may be NULL). None of them may abort or
 * exit: a failure is reported to the client that caused it. */
#ifndef SCREE_DAEMON_MEM_H
#define SCREE_DAEMON_MEM_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>

#include "scree/error.h"
#include "sys.h"

typedef struct scree__mem scree__mem;
typedef struct scree__stage scree__stage; /* a backend's staging buffer */

/* Values of scree.v1.IpcMode and scree.v1.Backend, kept here so that this
 * header does not need the generated protobuf-c header. */
enum {
  SCREE__IPC_MEMFD = 1,
  SCREE__IPC_VMM_FD = 2,
  SCREE__IPC_LEGACY = 3,
};
enum {
  SCREE__BACKEND_HOST = 1,
  SCREE__BACKEND_CUDA = 2,
};

#define SCREE__IPC_HANDLE_MAX 64

typedef struct scree__arena_mem {
  size_t size;       /* usable bytes, a multiple of the backend's granularity */
  void *host_ptr;    /* host backend: the daemon's own mapping; else NULL */
  uint64_t dev_ptr;  /* CUDA backend: the daemon's device address; else 0 */
  unsigned char ipc_handle[SCREE__IPC_HANDLE_MAX]; /* legacy mode only */
  size_t ipc_handle_len;
  void *impl;        /* backend-private state (fds, CUDA handles) */
} scree__arena_mem;

typedef struct scree__mem_info {
  int backend;           /* SCREE__BACKEND_* */
  int ipc_mode;          /* SCREE__IPC_* */
  int device_index;      /* CUDA ordinal; -1 on host memory */
  char device_name[256];
  unsigned char device_uuid[16];
  int has_uuid;
  size_t granularity;    /* arena sizes are rounded up to this */
} scree__mem_info;

struct scree__mem_ops {
  /* Allocates an arena of at least size bytes. SCREE_ENOSPC when the device
   * is out of memory; SCREE_ECUDA with the CUDA error name for other CUDA
   * failures. */
  int (*arena_alloc)(scree__mem *m, size_t size, scree__arena_mem *out, char *msg,
                     size_t msg_len);
  /* Releases everything arena_alloc made. Never fails. */
  void (*arena_free)(scree__mem *m, scree__arena_mem *a);
  /* Returns a new fd that a client can import the arena with, to be sent
   * with SCM_RIGHTS and closed by the caller after sending. Legacy mode has
   * no fd: it returns SCREE_ENOTSUP and the handle bytes travel instead. */
  int (*share_fd)(scree__mem *m, const scree__arena_mem *a, int *fd_out, char *msg,
                  size_t msg_len);
  /* Copies bytes between the arena and host memory (the daemon reads
   * offsets at seal this way, and writes inline offsets at seal). A
   * write may return before its bytes are visible to other processes (a
   * CUDA copy from pageable memory returns once the bytes are staged);
   * fence waits for that. */
  int (*read)(scree__mem *m, const scree__arena_mem *a, uint64_t offset, void *dst,
              size_t size, char *msg, size_t msg_len);
  int (*write)(scree__mem *m, const scree__arena_mem *a, uint64_t offset, const void *src,
               size_t size, char *msg, size_t msg_len);
  void (*destroy)(scree__mem *m);
  /* Optional (NULL where it means nothing, as on host memory): the device's
   * used and total memory as the driver reports them, for the
   * scree_gpu_memory_bytes metric. Returns 0 or a negative code. */
  int (*memory_info)(scree__mem *m, uint64_t *used, uint64_t *total);
  /* Optional: like share_fd, but the new fd allows reading only, so that a
   * client importing it cannot write the arena (readers get this one; a
   * creator gets share_fd's). NULL where the backend cannot make read-only
   * handles, as for CUDA (a VMM shareable handle carries no access
   * rights: the importer picks its own with cuMemSetAccess): readers then
   * get share_fd's handle, and the store counts it as writable. */
  int (*share_fd_ro)(scree__mem *m, const scree__arena_mem *a, int *fd_out, char *msg,
                     size_t msg_len);
  /* Optional: gives the pages wholly inside [offset, offset + size), a
   * block just freed, back to the system; they read as zeros until written
   * again, and the arena keeps its size and mappings. NULL where the
   * backend keeps its memory (CUDA). Best effort: a failure costs memory,
   * never data, so there is nothing to return. */
  void (*discard)(scree__mem *m, const scree__arena_mem *a, uint64_t offset, uint64_t size);
  /* Optional: waits until every write issued before it has landed in the
   * arenas, where other processes read. NULL where write is complete when
   * it returns (host memory). Returns 0 or a code with a message. */
  int (*fence)(scree__mem *m, char *msg, size_t msg_len);

  /* Optional staging, for moving an arena's bytes through something that
   * cannot reach the backend's memory (peers, when UCX has no CUDA
   * support): a stage is a host buffer the device can copy to and from
   * asynchronously (pinned memory on CUDA), with what tells when a copy is
   * done. NULL where the backend's memory is host memory already. Every
   * copy runs on one stream of the backend's own, so the loop that started
   * it never waits: it asks stage_poll later.
   *
   * stage_new makes a stage of size bytes and its buffer's address in
   * *host. Returns 0, SCREE_ENOSPC or SCREE_ECUDA with a message. */
  int (*stage_new)(scree__mem *m, size_t size, scree__stage **out, void **host, char *msg,
                   size_t msg_len);
  /* Starts copying size bytes between the arena at offset and the start of
   * the stage's buffer: to_host 1 reads the arena, 0 writes it. One copy at
   * a time per stage (poll it to done first). Returns 0, SCREE_EINVAL for a
   * range outside the arena or the stage, or SCREE_ECUDA. */
  int (*stage_copy)(scree__mem *m, scree__stage *st, const scree__arena_mem *a,
                    uint64_t offset, size_t size, int to_host, char *msg, size_t msg_len);
  /* Whether the stage's last copy has finished: 1 (or no copy was
   * started), 0 not yet, or a negative code with a message when it failed.
   * Never blocks. */
  int (*stage_poll)(scree__mem *m, scree__stage *st, char *msg, size_t msg_len);
  /* Frees a stage, waiting for a copy still running in it first (the one
   * place that may block, only at shutdown or after a failure). */
  void (*stage_free)(scree__mem *m, scree__stage *st);
};

struct scree__mem {
  const struct scree__mem_ops *ops;
  scree__mem_info info;
};

/* The check both backends' read and write make first: [offset, offset +
 * size) must lie inside arena a. Returns 0, or SCREE_EINVAL with a
 * message. */
static inline int scree__mem_check_range(const scree__arena_mem *a, uint64_t offset,
                                         size_t size, char *msg, size_t msg_len) {
  if (offset > a->size || size > a->size - offset)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "range %" PRIu64 "+%zu is outside the %zu-byte arena", offset, size,
                       a->size);
  return 0;
}

/* The check both backends' stage_copy makes after the range: size bytes
 * must fit the stage's stage_size. Returns 0, or SCREE_EINVAL. */
static inline int scree__mem_check_stage(size_t stage_size, size_t size, char *msg,
                                         size_t msg_len) {
  if (size > stage_size)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "%zu bytes do not fit a %zu-byte stage",
                       size, stage_size);
  return 0;
}

/* Creates the host-memory backend. */
int scree__mem_host_create(scree__mem **out, char *msg, size_t msg_len);

/* Creates the CUDA backend on device ordinal `device` with the given ipc mode
 * (SCREE__IPC_VMM_FD or SCREE__IPC_LEGACY). Returns SCREE_ENOTSUP when screed
 * was built without CUDA, SCREE_ENODEV when the device does not exist. */
int scree__mem_cuda_create(int device, int ipc_mode, scree__mem **out, char *msg,
                           size_t msg_len);

#endif /* SCREE_DAEMON_MEM_H */
