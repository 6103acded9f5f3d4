/* The CUDA memory backend: arenas in GPU memory.
 *
 * VMM mode (the default): each arena is one cuMemCreate allocation that can be
 * exported as a POSIX file descriptor. The daemon maps it into its own address
 * space (reserve + map + set access) to read offsets at seal and to write in
 * tests, and exports the fd once at allocation. share_fd hands out a dup of
 * that fd: a dup is one system call that never touches the driver, where a
 * fresh export per client would be a driver call on the request path; and
 * every dup names the same allocation, so the result is the same.
 *
 * Legacy mode: each arena is a cuMemAlloc allocation with a 64-byte IPC
 * handle from cuIpcGetMemHandle, for peers that can only take handle bytes
 * (the same bytes cudaIpcGetMemHandle gives for cudaMalloc memory, which is
 * what cudaMalloc and cudaIpcGetMemHandle call). There is no fd to share.
 *
 * The driver is loaded at run time (core/src/cudadrv.h says why). Every
 * operation makes the device's primary context current on the calling thread
 * first: that is one thread-local store in the driver, and it keeps the
 * backend correct when the loop thread's current context was changed by
 * anything else that runs on it. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cudadrv.h"
#include "mem.h"
#include "scree/error.h"

typedef struct scree__mem_cuda {
  scree__mem base; /* first: the daemon holds a scree__mem pointer */
  const scree__cu *cu;
  CUdevice dev;
  CUcontext ctx; /* the retained primary context */
  CUmemAllocationProp prop;
  CUstream stage_stream; /* the stages' copies; made with the first stage */
} scree__mem_cuda;

/* A stage (mem.h): pinned host memory, so that the copies are true DMA
 * that overlap with everything else, and an event recorded after the
 * stage's copy on the backend's stream. */
struct scree__stage {
  void *host;
  size_t size;
  CUevent done;
  int pending; /* a copy was started and not yet seen done */
};

/* The arena's size is scree__arena_mem.size, which arena_free is given. */
typedef struct scree__cuda_arena {
  CUdeviceptr ptr;
  CUmemGenericAllocationHandle handle; /* VMM mode */
  int fd;                              /* VMM mode: the exported handle; else -1 */
} scree__cuda_arena;

static int scree__cuda_current(scree__mem_cuda *mc, char *msg, size_t msg_len) {
  const scree__cu *cu = mc->cu;

  SCREE_CUDA_CHECK(cu->cuCtxSetCurrent(mc->ctx));
  return 0;
}

static int scree__cuda_arena_alloc(scree__mem *m, size_t size, scree__arena_mem *out,
                                   char *msg, size_t msg_len) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;
  size_t gran = m->info.granularity;
  scree__cuda_arena *ca;
  CUmemAccessDesc access;
  size_t rounded;
  int rc;

  if (size == 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "arena size is 0");
  if (size > SIZE_MAX - (gran - 1))
    return scree__fail(SCREE_EOVERFLOW, msg, msg_len, "arena size %zu overflows", size);
  rounded = (size + gran - 1) / gran * gran;

  rc = scree__cuda_current(mc, msg, msg_len);
  if (rc != 0)
    return rc;
  ca = calloc(1, sizeof(*ca));
  if (ca == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  ca->fd = -1;

  if (m->info.ipc_mode == SCREE__IPC_LEGACY) {
    CUipcMemHandle ipc;

    SCREE_CUDA_GOTO(cu->cuMemAlloc(&ca->ptr, rounded), rc, err_free_state);
    SCREE_CUDA_GOTO(cu->cuIpcGetMemHandle(&ipc, ca->ptr), rc, err_free_legacy);
    _Static_assert(sizeof(ipc) == SCREE__IPC_HANDLE_MAX, "CUipcMemHandle is 64 bytes");
    memcpy(out->ipc_handle, &ipc, sizeof(ipc));
    out->ipc_handle_len = sizeof(ipc);
  } else {
    SCREE_CUDA_GOTO(cu->cuMemCreate(&ca->handle, rounded, &mc->prop, 0), rc,
                    err_free_state);
    SCREE_CUDA_GOTO(cu->cuMemAddressReserve(&ca->ptr, rounded, gran, 0, 0), rc,
                    err_release);
    SCREE_CUDA_GOTO(cu->cuMemMap(ca->ptr, rounded, 0, ca->handle, 0), rc, err_free_va);
    memset(&access, 0, sizeof(access));
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = (int)mc->dev;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    SCREE_CUDA_GOTO(cu->cuMemSetAccess(ca->ptr, rounded, &access, 1), rc, err_unmap);
    SCREE_CUDA_GOTO(cu->cuMemExportToShareableHandle(&ca->fd, ca->handle,
                                                     CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                                                     0),
                    rc, err_unmap);
    /* The daemon execs nothing, but a library it loads might: keep the
     * arena's fd out of any child. */
    (void)fcntl(ca->fd, F_SETFD, FD_CLOEXEC);
    out->ipc_handle_len = 0;
  }

  out->size = rounded;
  out->host_ptr = NULL;
  out->dev_ptr = (uint64_t)ca->ptr;
  out->impl = ca;
  return 0;

err_unmap:
  cu->cuMemUnmap(ca->ptr, rounded);
err_free_va:
  cu->cuMemAddressFree(ca->ptr, rounded);
err_release:
  cu->cuMemRelease(ca->handle);
  goto err_free_state;
err_free_legacy:
  cu->cuMemFree(ca->ptr);
err_free_state:
  if (rc == SCREE_ENOSPC && msg != NULL && msg_len > 0) {
    size_t free_b = 0, total_b = 0, n = strlen(msg);

    /* Keep the driver's words and add what the operator needs to act. */
    cu->cuMemGetInfo(&free_b, &total_b);
    if (n < msg_len)
      scree__fail(rc, msg + n, msg_len - n,
                    "; device %d: asked for %zu bytes, %zu of %zu free",
                    m->info.device_index, rounded, free_b, total_b);
  }
  free(ca);
  return rc;
}

static void scree__cuda_arena_free(scree__mem *m, scree__arena_mem *a) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;
  scree__cuda_arena *ca = a->impl;

  if (ca == NULL)
    return;
  /* Nothing here can fail in a way the caller could act on: a failure would
   * mean the context is already lost, and then the memory went with it. */
  (void)cu->cuCtxSetCurrent(mc->ctx);
  if (m->info.ipc_mode == SCREE__IPC_LEGACY) {
    cu->cuMemFree(ca->ptr);
  } else {
    if (ca->fd >= 0)
      close(ca->fd);
    cu->cuMemUnmap(ca->ptr, a->size);
    cu->cuMemAddressFree(ca->ptr, a->size);
    /* Clients that imported the fd hold their own reference to the
     * allocation; the physical memory goes when the last one releases. */
    cu->cuMemRelease(ca->handle);
  }
  free(ca);
  a->impl = NULL;
  a->dev_ptr = 0;
}

static int scree__cuda_share_fd(scree__mem *m, const scree__arena_mem *a, int *fd_out,
                                char *msg, size_t msg_len) {
  const scree__cuda_arena *ca = a->impl;
  int fd;

  if (m->info.ipc_mode == SCREE__IPC_LEGACY)
    return scree__fail(SCREE_ENOTSUP, msg, msg_len,
                         "legacy IPC mode shares handle bytes, not fds");
  fd = fcntl(ca->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "dup of the arena fd: %s",
                         strerror(errno));
  *fd_out = fd;
  return 0;
}

/* The start of every copy into or out of arena a (read, write, a stage's
 * copy): the range checked, then the device's primary context current. */
static int scree__cuda_copy_begin(scree__mem_cuda *mc, const scree__arena_mem *a,
                                  uint64_t offset, size_t size, char *msg, size_t msg_len) {
  int rc = scree__mem_check_range(a, offset, size, msg, msg_len);
  return rc != 0 ? rc : scree__cuda_current(mc, msg, msg_len);
}

/* Copies size bytes at offset in arena a out to dst (read) or, with dst
 * NULL, in from src (write). Both copies are synchronous with respect to
 * the legacy default stream, so the bytes a client's own stream wrote
 * before it sent Seal (the client synchronizes that stream first) are
 * visible to a read here. */
static int scree__cuda_copy(scree__mem *m, const scree__arena_mem *a, uint64_t offset,
                            void *dst, const void *src, size_t size, char *msg,
                            size_t msg_len) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;
  const scree__cuda_arena *ca = a->impl;
  int rc = scree__cuda_copy_begin(mc, a, offset, size, msg, msg_len);
  if (rc != 0 || size == 0)
    return rc;
  if (dst != NULL)
    SCREE_CUDA_CHECK(cu->cuMemcpyDtoH(dst, ca->ptr + offset, size));
  else
    SCREE_CUDA_CHECK(cu->cuMemcpyHtoD(ca->ptr + offset, src, size));
  return 0;
}

static int scree__cuda_read(scree__mem *m, const scree__arena_mem *a, uint64_t offset,
                            void *dst, size_t size, char *msg, size_t msg_len) {
  return scree__cuda_copy(m, a, offset, dst, NULL, size, msg, msg_len);
}

static int scree__cuda_write(scree__mem *m, const scree__arena_mem *a, uint64_t offset,
                             const void *src, size_t size, char *msg, size_t msg_len) {
  return scree__cuda_copy(m, a, offset, NULL, src, size, msg, msg_len);
}

/* Every copy of read and write runs on the primary context's legacy default
 * stream, so waiting for that stream waits for the writes still landing
 * (cuMemcpyHtoD from pageable memory returns once the bytes are staged,
 * before the DMA lands). It never waits for work of other processes. */
static int scree__cuda_fence(scree__mem *m, char *msg, size_t msg_len) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;
  int rc;

  rc = scree__cuda_current(mc, msg, msg_len);
  if (rc != 0)
    return rc;
  SCREE_CUDA_CHECK(cu->cuStreamSynchronize(NULL));
  return 0;
}

static int scree__cuda_stage_new(scree__mem *m, size_t size, scree__stage **out, void **host,
                                 char *msg, size_t msg_len) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;
  scree__stage *st;
  int rc;

  rc = scree__cuda_current(mc, msg, msg_len);
  if (rc != 0)
    return rc;
  /* Non-blocking: the stages' copies neither wait for nor hold up work on
   * the legacy default stream (a client's seal already waited for the
   * writes it covers). */
  if (mc->stage_stream == NULL)
    SCREE_CUDA_CHECK(cu->cuStreamCreate(&mc->stage_stream, CU_STREAM_NON_BLOCKING));
  st = calloc(1, sizeof(*st));
  if (st == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  st->size = size;
  SCREE_CUDA_GOTO(cu->cuMemHostAlloc(&st->host, size ? size : 1, 0), rc, err_free_state);
  SCREE_CUDA_GOTO(cu->cuEventCreate(&st->done, CU_EVENT_DISABLE_TIMING), rc, err_free_host);
  *out = st;
  *host = st->host;
  return 0;

err_free_host:
  cu->cuMemFreeHost(st->host);
err_free_state:
  free(st);
  return rc;
}

static int scree__cuda_stage_copy(scree__mem *m, scree__stage *st, const scree__arena_mem *a,
                                  uint64_t offset, size_t size, int to_host, char *msg,
                                  size_t msg_len) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;
  const scree__cuda_arena *ca = a->impl;
  int rc = scree__mem_check_stage(st->size, size, msg, msg_len);
  if (rc == 0)
    rc = scree__cuda_copy_begin(mc, a, offset, size, msg, msg_len);
  if (rc != 0)
    return rc;
  if (to_host)
    SCREE_CUDA_CHECK(cu->cuMemcpyDtoHAsync(st->host, ca->ptr + offset, size, mc->stage_stream));
  else
    SCREE_CUDA_CHECK(cu->cuMemcpyHtoDAsync(ca->ptr + offset, st->host, size, mc->stage_stream));
  SCREE_CUDA_CHECK(cu->cuEventRecord(st->done, mc->stage_stream));
  st->pending = 1;
  return 0;
}

static int scree__cuda_stage_poll(scree__mem *m, scree__stage *st, char *msg, size_t msg_len) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;
  CUresult r;

  if (!st->pending)
    return 1;
  r = cu->cuEventQuery(st->done);
  if (r == CUDA_ERROR_NOT_READY)
    return 0;
  st->pending = 0;
  if (r != CUDA_SUCCESS)
    return scree__cu_fail(cu, r, "a staging copy (cuEventQuery)", msg, msg_len);
  return 1;
}

static void scree__cuda_stage_free(scree__mem *m, scree__stage *st) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;

  if (st == NULL)
    return;
  (void)cu->cuCtxSetCurrent(mc->ctx);
  /* The DMA must not go on into freed pinned memory. */
  if (st->pending)
    (void)cu->cuEventSynchronize(st->done);
  cu->cuEventDestroy(st->done);
  cu->cuMemFreeHost(st->host);
  free(st);
}

static void scree__cuda_destroy(scree__mem *m) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;
  CUcontext cur = NULL;

  if (mc->stage_stream != NULL) {
    (void)cu->cuCtxSetCurrent(mc->ctx);
    (void)cu->cuStreamDestroy(mc->stage_stream);
  }

  /* Leave no dangling current context on this thread once the primary
   * context may be destroyed by the release. */
  if (cu->cuCtxGetCurrent(&cur) == CUDA_SUCCESS && cur == mc->ctx)
    (void)cu->cuCtxSetCurrent(NULL);
  (void)cu->cuDevicePrimaryCtxRelease(mc->dev);
  free(mc);
}

/* The device's memory as the driver sees it (every process's allocations,
 * not only screed's), for the scree_gpu_memory_bytes metric. */
static int scree__cuda_memory_info(scree__mem *m, uint64_t *used, uint64_t *total) {
  scree__mem_cuda *mc = (scree__mem_cuda *)m;
  const scree__cu *cu = mc->cu;
  size_t free_b = 0, total_b = 0;

  if (scree__cuda_current(mc, NULL, 0) != 0 ||
      cu->cuMemGetInfo(&free_b, &total_b) != CUDA_SUCCESS)
    return SCREE_ECUDA;
  *used = (uint64_t)(total_b - free_b);
  *total = (uint64_t)total_b;
  return 0;
}

static const struct scree__mem_ops scree__cuda_ops = {
    .arena_alloc = scree__cuda_arena_alloc,
    .arena_free = scree__cuda_arena_free,
    .share_fd = scree__cuda_share_fd,
    .read = scree__cuda_read,
    .write = scree__cuda_write,
    .destroy = scree__cuda_destroy,
    .memory_info = scree__cuda_memory_info,
    .fence = scree__cuda_fence,
    .stage_new = scree__cuda_stage_new,
    .stage_copy = scree__cuda_stage_copy,
    .stage_poll = scree__cuda_stage_poll,
    .stage_free = scree__cuda_stage_free,
};

int scree__mem_cuda_create(int device, int ipc_mode, scree__mem **out, char *msg,
                           size_t msg_len) {
  const scree__cu *cu;
  scree__mem_cuda *mc;
  CUuuid uuid;
  int count = 0, vmm = 0, posix_fd = 0;
  size_t gran = 0;
  int rc;

  *out = NULL;
  if (ipc_mode != SCREE__IPC_VMM_FD && ipc_mode != SCREE__IPC_LEGACY)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "ipc mode %d is not a CUDA mode (vmm or legacy)", ipc_mode);
  rc = scree__cu_load(&cu, msg, msg_len);
  if (rc != 0)
    return rc;
  mc = calloc(1, sizeof(*mc));
  if (mc == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  mc->cu = cu;

  SCREE_CUDA_GOTO(cu->cuDeviceGetCount(&count), rc, err_free_state);
  if (device < 0 || device >= count) {
    rc = scree__fail(SCREE_ENODEV, msg, msg_len,
                       "CUDA device %d does not exist: this process sees %d "
                       "(CUDA_VISIBLE_DEVICES renumbers them)",
                       device, count);
    goto err_free_state;
  }
  SCREE_CUDA_GOTO(cu->cuDeviceGet(&mc->dev, device), rc, err_free_state);

  memset(&mc->prop, 0, sizeof(mc->prop));
  mc->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  mc->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  mc->prop.location.id = (int)mc->dev;
  mc->prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;

  SCREE_CUDA_GOTO(cu->cuDeviceGetAttribute(
                      &vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, mc->dev),
                  rc, err_free_state);
  SCREE_CUDA_GOTO(cu->cuDeviceGetAttribute(
                      &posix_fd,
                      CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED,
                      mc->dev),
                  rc, err_free_state);
  if (ipc_mode == SCREE__IPC_VMM_FD && (!vmm || !posix_fd)) {
    rc = scree__fail(SCREE_ENOTSUP, msg, msg_len,
                       "CUDA device %d does not support VMM allocations with POSIX fd "
                       "handles (vmm=%d, fd=%d); try --ipc legacy",
                       device, vmm, posix_fd);
    goto err_free_state;
  }
  /* The recommended granularity rather than the minimum: arenas are large
   * (hundreds of MiB and up), so rounding to it costs nothing, and it is the
   * page size the driver maps most efficiently. On H100 both are 2 MiB. Legacy
   * arenas use the same rounding so that both modes size arenas alike. */
  if (vmm)
    SCREE_CUDA_GOTO(cu->cuMemGetAllocationGranularity(
                        &gran, &mc->prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED),
                    rc, err_free_state);
  if (gran == 0)
    gran = (size_t)2 << 20;

  SCREE_CUDA_GOTO(cu->cuDevicePrimaryCtxRetain(&mc->ctx, mc->dev), rc, err_free_state);
  /* The loop thread keeps this context current for the daemon's life. */
  SCREE_CUDA_GOTO(cu->cuCtxSetCurrent(mc->ctx), rc, err_release_ctx);

  mc->base.ops = &scree__cuda_ops;
  mc->base.info.backend = SCREE__BACKEND_CUDA;
  mc->base.info.ipc_mode = ipc_mode;
  mc->base.info.device_index = device;
  mc->base.info.granularity = gran;
  SCREE_CUDA_GOTO(cu->cuDeviceGetName(mc->base.info.device_name,
                                      (int)sizeof(mc->base.info.device_name), mc->dev),
                  rc, err_release_ctx);
  SCREE_CUDA_GOTO(cu->cuDeviceGetUuid(&uuid, mc->dev), rc, err_release_ctx);
  _Static_assert(sizeof(uuid.bytes) == sizeof(mc->base.info.device_uuid), "16-byte UUID");
  memcpy(mc->base.info.device_uuid, uuid.bytes, sizeof(uuid.bytes));
  mc->base.info.has_uuid = 1;

  *out = &mc->base;
  return 0;

err_release_ctx:
  (void)cu->cuCtxSetCurrent(NULL);
  (void)cu->cuDevicePrimaryCtxRelease(mc->dev);
err_free_state:
  free(mc);
  return rc;
}
