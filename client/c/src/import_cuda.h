/* libscreeclient's CUDA path: importing GPU arenas, and copies into them.
 *
 * The client imports each arena once and caches the mapping; attaching a
 * batch afterwards is pointer arithmetic on the cached base. Two import kinds
 * match the daemon's two IPC modes:
 *   VMM (IPC_MODE_VMM_FD): the fd that came over SCM_RIGHTS goes through
 *     cuMemImportFromShareableHandle, then cuMemAddressReserve + cuMemMap +
 *     cuMemSetAccess; the fd is closed right after the import.
 *   legacy (IPC_MODE_LEGACY): the 64 handle bytes go through
 *     cuIpcOpenMemHandle with lazy peer access; cuIpcCloseMemHandle at unmap.
 *
 * Every function keeps the calling thread's current CUDA context as it found
 * it. Work happens in the primary context of the device chosen for access (the
 * one the CUDA runtime, PyTorch and friends use), which each mapping retains
 * for its lifetime so the memory stays valid whatever the caller does.
 *
 * Built only when SCREE_HAVE_CUDA (import.c leaves the CUDA importer out
 * otherwise). Functions return 0 or a negative SCREE_E* code with a message
 * in msg (may be NULL), and never print. */
#ifndef SCREE_CLIENT_IMPORT_CUDA_H
#define SCREE_CLIENT_IMPORT_CUDA_H

#include <stddef.h>
#include <stdint.h>

/* Values of scree.v1.IpcMode, kept here so this header needs no generated
 * protobuf-c header. */
enum {
  SCREE__CUDA_IPC_VMM_FD = 2,
  SCREE__CUDA_IPC_LEGACY = 3,
};

typedef struct scree__cuda_map {
  uint64_t ptr;       /* base device address of the arena in this process */
  size_t size;        /* bytes mapped */
  int ipc_mode;       /* SCREE__CUDA_IPC_* */
  int owner_ordinal;  /* local ordinal of the GPU holding the memory */
  int access_ordinal; /* local ordinal of the GPU the mapping was made for */
  unsigned long long vmm_handle; /* CUmemGenericAllocationHandle (VMM) */
  void *ctx;          /* retained primary context of access_ordinal */
} scree__cuda_map;

/* Finds this process's ordinal of the GPU whose 16-byte UUID is given (the
 * daemon's HelloReply.device_uuid). CUDA_VISIBLE_DEVICES renumbers GPUs, so
 * the daemon's ordinal means nothing here. Returns SCREE_ENODEV with "daemon's
 * GPU GPU-... is not visible in this process" when none matches, and
 * SCREE_ENODEV when there is no driver or device at all. */
int scree__cuda_find_device(const unsigned char uuid[16], int *ordinal, char *msg,
                            size_t msg_len);

/* Chooses the device a new mapping is made for: the device of the calling
 * thread's current context when there is one (the consumer's own GPU), else
 * owner_ordinal. When that device is not the owner, it must have peer access
 * to the owner: otherwise SCREE_ENOTSUP with a message naming both. */
int scree__cuda_access_device(int owner_ordinal, int *access_ordinal, char *msg,
                              size_t msg_len);

/* Imports a VMM arena of size bytes from fd, for access from access_ordinal
 * (and owner_ordinal). Does not take fd: the caller closes it once this
 * returns (the import holds its own reference to the allocation). */
int scree__cuda_import_fd(int fd, size_t size, int owner_ordinal, int access_ordinal,
                          scree__cuda_map *out, char *msg, size_t msg_len);

/* Opens a legacy arena from its IPC handle bytes (handle_len must be 64) in
 * access_ordinal's primary context. */
int scree__cuda_import_legacy(const void *handle, size_t handle_len, size_t size,
                              int owner_ordinal, int access_ordinal,
                              scree__cuda_map *out, char *msg, size_t msg_len);

/* Undoes an import. Never fails; safe on a zeroed map. */
void scree__cuda_unmap(scree__cuda_map *m);

/* How many imports this process has made (both kinds); tests use it to show
 * that attaching to a cached arena makes no driver call. */
uint64_t scree__cuda_import_count(void);

/* Copies n bytes from src (device memory of any context, or host memory) to
 * the device address dst, on stream (a cudaStream_t / CUstream; NULL for the
 * default stream), then waits for the stream. Runs in device's primary
 * context. */
int scree__cuda_copy_sync(int device, uint64_t dst, const void *src, size_t n,
                          void *stream, char *msg, size_t msg_len);

/* Queues the same copy on stream and returns without waiting. The copy runs
 * in the stream's own context when stream is not NULL. */
int scree__cuda_copy_async(int device, uint64_t dst, const void *src, size_t n,
                           void *stream, char *msg, size_t msg_len);

/* Waits until all work queued on stream (NULL: the default stream of
 * device's primary context) is done. */
int scree__cuda_stream_sync(int device, void *stream, char *msg, size_t msg_len);

/* Tells whether p is device memory (1) or host memory (0): pageable host
 * pointers unknown to CUDA count as host. Never fails; without a driver
 * everything is host memory. */
int scree__cuda_is_device_ptr(const void *p);

#endif /* SCREE_CLIENT_IMPORT_CUDA_H */
