/* libscreeclient's CUDA import path; import_cuda.h describes it. */
#include "import_cuda.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "cudadrv.h"
#include "scree/error.h"
#include "sys.h"

static atomic_uint_least64_t scree__cuda_imports;

/* The last GPU found by UUID. The driver reads CUDA_VISIBLE_DEVICES once,
 * when it initialises, so a UUID keeps its ordinal for the life of the
 * process, and every import of a connection asks for the same one: the
 * answer is kept instead of asking the driver for every device's UUID on
 * every first attach. */
static pthread_mutex_t scree__cuda_found_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char scree__cuda_found_uuid[16];
static int scree__cuda_found_ordinal = -1;

uint64_t scree__cuda_import_count(void) {
  return atomic_load(&scree__cuda_imports);
}

/* Makes ordinal's primary context current on this thread, retaining it, and
 * remembers what was current so scree__cuda_leave can put it back. */
static int scree__cuda_enter(const scree__cu *cu, int ordinal, CUcontext *ctx,
                             CUcontext *prev, char *msg, size_t msg_len) {
  CUdevice dev;
  int rc = 0;

  *prev = NULL;
  SCREE_CUDA_CHECK(cu->cuCtxGetCurrent(prev));
  SCREE_CUDA_CHECK(cu->cuDeviceGet(&dev, ordinal));
  SCREE_CUDA_CHECK(cu->cuDevicePrimaryCtxRetain(ctx, dev));
  SCREE_CUDA_GOTO(cu->cuCtxSetCurrent(*ctx), rc, err_release_ctx);
  return 0;

err_release_ctx:
  (void)cu->cuDevicePrimaryCtxRelease(dev);
  return rc;
}

/* Restores the context that was current before scree__cuda_enter and, with
 * release set, drops the reference it took. */
static void scree__cuda_leave(const scree__cu *cu, int ordinal, CUcontext prev, int release) {
  CUdevice dev;

  (void)cu->cuCtxSetCurrent(prev);
  if (release && cu->cuDeviceGet(&dev, ordinal) == CUDA_SUCCESS)
    (void)cu->cuDevicePrimaryCtxRelease(dev);
}

int scree__cuda_find_device(const unsigned char uuid[16], int *ordinal, char *msg,
                            size_t msg_len) {
  const scree__cu *cu;
  char text[48];
  CUdevice dev;
  CUuuid u;
  int count = 0, i, rc;

  pthread_mutex_lock(&scree__cuda_found_mu);
  i = scree__cuda_found_ordinal;
  if (i >= 0 && memcmp(scree__cuda_found_uuid, uuid, 16) != 0)
    i = -1;
  pthread_mutex_unlock(&scree__cuda_found_mu);
  if (i >= 0) {
    *ordinal = i;
    return 0;
  }
  rc = scree__cu_load(&cu, msg, msg_len);
  if (rc != 0) {
    if (rc == SCREE_ENODEV)
      rc = scree__fail(rc, msg, msg_len, "daemon's GPU %s is not visible in this "
                       "process: no CUDA device here",
                       scree__cu_uuid_str(uuid, text, sizeof(text)));
    return rc;
  }
  SCREE_CUDA_CHECK(cu->cuDeviceGetCount(&count));
  for (i = 0; i < count; i++) {
    SCREE_CUDA_CHECK(cu->cuDeviceGet(&dev, i));
    SCREE_CUDA_CHECK(cu->cuDeviceGetUuid(&u, dev));
    if (memcmp(u.bytes, uuid, 16) == 0) {
      pthread_mutex_lock(&scree__cuda_found_mu);
      memcpy(scree__cuda_found_uuid, uuid, 16);
      scree__cuda_found_ordinal = i;
      pthread_mutex_unlock(&scree__cuda_found_mu);
      *ordinal = i;
      return 0;
    }
  }
  return scree__fail(SCREE_ENODEV, msg, msg_len,
                     "daemon's GPU %s is not visible in this process (%d visible; check "
                     "CUDA_VISIBLE_DEVICES)",
                     scree__cu_uuid_str(uuid, text, sizeof(text)), count);
}

/* Whether ctx is the primary context of device d (1), or not (0): only an
 * active primary context can be the current one. */
static int scree__cuda_is_primary(const scree__cu *cu, CUdevice d, CUcontext ctx, int *is,
                                  char *msg, size_t msg_len) {
  CUcontext primary;
  unsigned int flags;
  int active = 0;

  *is = 0;
  SCREE_CUDA_CHECK(cu->cuDevicePrimaryCtxGetState(d, &flags, &active));
  if (!active)
    return 0;
  SCREE_CUDA_CHECK(cu->cuDevicePrimaryCtxRetain(&primary, d));
  (void)cu->cuDevicePrimaryCtxRelease(d);
  *is = primary == ctx;
  return 0;
}

int scree__cuda_access_device(int owner_ordinal, int *access_ordinal, char *msg,
                              size_t msg_len) {
  const scree__cu *cu;
  CUcontext cur = NULL;
  CUdevice own, owner;
  int can = 0, count = 0, i, is = 0, rc;

  rc = scree__cu_load(&cu, msg, msg_len);
  if (rc != 0)
    return rc;
  SCREE_CUDA_CHECK(cu->cuDeviceGet(&owner, owner_ordinal));
  SCREE_CUDA_CHECK(cu->cuCtxGetCurrent(&cur));
  if (cur == NULL) {
    *access_ordinal = owner_ordinal;
    return 0;
  }
  /* Which GPU is the current context on? Only primary contexts (the CUDA
   * runtime's, PyTorch's) are recognised; the device whose active primary
   * context is current is the consumer's GPU. The daemon's own GPU is
   * asked first, since most consumers work there. (cuCtxGetDevice was used
   * here first; consumers with a current context then crashed on the GPU
   * machine, cause not established: see the CUDA branch's report.) */
  rc = scree__cuda_is_primary(cu, owner, cur, &is, msg, msg_len);
  if (rc != 0)
    return rc;
  if (is) {
    *access_ordinal = owner_ordinal;
    return 0;
  }
  own = owner;
  SCREE_CUDA_CHECK(cu->cuDeviceGetCount(&count));
  for (i = 0; i < count; i++) {
    CUdevice d;

    SCREE_CUDA_CHECK(cu->cuDeviceGet(&d, i));
    if (d == owner)
      continue;
    rc = scree__cuda_is_primary(cu, d, cur, &is, msg, msg_len);
    if (rc != 0)
      return rc;
    if (is) {
      own = d;
      break;
    }
  }
  if (own != owner) {
    SCREE_CUDA_CHECK(cu->cuDeviceCanAccessPeer(&can, own, owner));
    if (!can)
      return scree__fail(SCREE_ENOTSUP, msg, msg_len,
                         "this process works on GPU %d, which has no peer access to "
                         "GPU %d where the daemon's memory lives; make GPU %d current",
                         (int)own, owner_ordinal, owner_ordinal);
  }
  /* A CUdevice is the ordinal it was obtained from. */
  *access_ordinal = (int)own;
  return 0;
}

/* Records a finished import in *out, made in ctx (retained by
 * scree__cuda_enter and released by scree__cuda_unmap), and counts it. */
static void scree__cuda_mapped(scree__cuda_map *out, CUdeviceptr ptr, size_t size, int ipc_mode,
                               int owner_ordinal, int access_ordinal, CUcontext ctx) {
  out->ptr = (uint64_t)ptr;
  out->size = size;
  out->ipc_mode = ipc_mode;
  out->owner_ordinal = owner_ordinal;
  out->access_ordinal = access_ordinal;
  out->ctx = ctx;
  atomic_fetch_add(&scree__cuda_imports, 1);
}

int scree__cuda_import_fd(int fd, size_t size, int owner_ordinal, int access_ordinal,
                          scree__cuda_map *out, char *msg, size_t msg_len) {
  const scree__cu *cu;
  CUmemGenericAllocationHandle h;
  CUmemAccessDesc access[2];
  CUcontext ctx, prev;
  CUdeviceptr ptr = 0;
  int naccess = 1, rc;

  memset(out, 0, sizeof(*out));
  rc = scree__cu_load(&cu, msg, msg_len);
  if (rc != 0)
    return rc;
  rc = scree__cuda_enter(cu, access_ordinal, &ctx, &prev, msg, msg_len);
  if (rc != 0)
    return rc;

  SCREE_CUDA_GOTO(cu->cuMemImportFromShareableHandle(
                      &h, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
                  rc, err_leave);
  SCREE_CUDA_GOTO(cu->cuMemAddressReserve(&ptr, size, 0, 0, 0), rc, err_release);
  SCREE_CUDA_GOTO(cu->cuMemMap(ptr, size, 0, h, 0), rc, err_free_va);
  memset(access, 0, sizeof(access));
  access[0].location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access[0].location.id = owner_ordinal;
  access[0].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  if (access_ordinal != owner_ordinal) {
    /* The consumer's own GPU reads over the peer link; the owner keeps
     * access so that the returned device (the owner) is usable too. */
    access[1] = access[0];
    access[1].location.id = access_ordinal;
    naccess = 2;
  }
  SCREE_CUDA_GOTO(cu->cuMemSetAccess(ptr, size, access, (size_t)naccess), rc, err_unmap);
  scree__cuda_leave(cu, access_ordinal, prev, 0);

  scree__cuda_mapped(out, ptr, size, SCREE__CUDA_IPC_VMM_FD, owner_ordinal, access_ordinal, ctx);
  out->vmm_handle = (unsigned long long)h;
  return 0;

err_unmap:
  cu->cuMemUnmap(ptr, size);
err_free_va:
  cu->cuMemAddressFree(ptr, size);
err_release:
  cu->cuMemRelease(h);
err_leave:
  scree__cuda_leave(cu, access_ordinal, prev, 1);
  return rc;
}

int scree__cuda_import_legacy(const void *handle, size_t handle_len, size_t size,
                              int owner_ordinal, int access_ordinal,
                              scree__cuda_map *out, char *msg, size_t msg_len) {
  const scree__cu *cu;
  CUipcMemHandle ipc;
  CUcontext ctx, prev;
  CUdeviceptr ptr = 0;
  int rc;

  memset(out, 0, sizeof(*out));
  if (handle_len != sizeof(ipc))
    return scree__fail(SCREE_EPROTO, msg, msg_len,
                       "legacy IPC handle has %zu bytes, expected %zu", handle_len,
                       sizeof(ipc));
  rc = scree__cu_load(&cu, msg, msg_len);
  if (rc != 0)
    return rc;
  memcpy(&ipc, handle, sizeof(ipc));
  rc = scree__cuda_enter(cu, access_ordinal, &ctx, &prev, msg, msg_len);
  if (rc != 0)
    return rc;
  /* Lazy peer access lets a consumer whose context is on another GPU read
   * the owner's memory; on the owner's own GPU it changes nothing. */
  SCREE_CUDA_GOTO(cu->cuIpcOpenMemHandle(&ptr, ipc, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS), rc,
                  err_leave);
  scree__cuda_leave(cu, access_ordinal, prev, 0);

  scree__cuda_mapped(out, ptr, size, SCREE__CUDA_IPC_LEGACY, owner_ordinal, access_ordinal, ctx);
  return 0;

err_leave:
  scree__cuda_leave(cu, access_ordinal, prev, 1);
  return rc;
}

void scree__cuda_unmap(scree__cuda_map *m) {
  const scree__cu *cu;
  CUcontext prev = NULL;

  if (m->ctx == NULL || scree__cu_load(&cu, NULL, 0) != 0)
    return;
  (void)cu->cuCtxGetCurrent(&prev);
  (void)cu->cuCtxSetCurrent((CUcontext)m->ctx);
  if (m->ipc_mode == SCREE__CUDA_IPC_LEGACY) {
    cu->cuIpcCloseMemHandle((CUdeviceptr)m->ptr);
  } else {
    cu->cuMemUnmap((CUdeviceptr)m->ptr, m->size);
    cu->cuMemAddressFree((CUdeviceptr)m->ptr, m->size);
    cu->cuMemRelease((CUmemGenericAllocationHandle)m->vmm_handle);
  }
  /* prev may be the primary context released below; it stays valid while
   * anyone else (the CUDA runtime of this process) holds it. */
  scree__cuda_leave(cu, m->access_ordinal, prev, 1);
  memset(m, 0, sizeof(*m));
}

/* Loads the driver into *cu and enters device's primary context for work
 * on stream. A stream handed in by the caller belongs to the context it
 * works in, which for CUDA runtime users is that primary context.
 * *retained says whether to release it. */
static int scree__cuda_enter_stream(const scree__cu **cu, int device, void *stream,
                                    CUcontext *prev, int *retained, char *msg,
                                    size_t msg_len) {
  CUcontext ctx;
  int rc;

  (void)stream;
  *retained = 0;
  rc = scree__cu_load(cu, msg, msg_len);
  if (rc != 0)
    return rc;
  rc = scree__cuda_enter(*cu, device, &ctx, prev, msg, msg_len);
  *retained = rc == 0;
  return rc;
}

int scree__cuda_copy_async(int device, uint64_t dst, const void *src, size_t n, void *stream,
                           char *msg, size_t msg_len) {
  const scree__cu *cu;
  CUcontext prev;
  int retained, rc;

  if (n == 0)
    return 0;
  rc = scree__cuda_enter_stream(&cu, device, stream, &prev, &retained, msg, msg_len);
  if (rc != 0)
    return rc;
  /* Unified addressing lets one call serve device sources of any GPU and
   * host sources, pinned or pageable. */
  SCREE_CUDA_GOTO(cu->cuMemcpyAsync((CUdeviceptr)dst, (CUdeviceptr)(uintptr_t)src, n,
                                    (CUstream)stream),
                  rc, err_leave);
err_leave:
  scree__cuda_leave(cu, device, prev, retained);
  return rc;
}

int scree__cuda_stream_sync(int device, void *stream, char *msg, size_t msg_len) {
  const scree__cu *cu;
  CUcontext prev;
  int retained, rc;

  rc = scree__cuda_enter_stream(&cu, device, stream, &prev, &retained, msg, msg_len);
  if (rc != 0)
    return rc;
  SCREE_CUDA_GOTO(cu->cuStreamSynchronize((CUstream)stream), rc, err_leave);
err_leave:
  scree__cuda_leave(cu, device, prev, retained);
  return rc;
}

int scree__cuda_copy_sync(int device, uint64_t dst, const void *src, size_t n, void *stream,
                          char *msg, size_t msg_len) {
  int rc = scree__cuda_copy_async(device, dst, src, n, stream, msg, msg_len);

  if (rc == 0)
    rc = scree__cuda_stream_sync(device, stream, msg, msg_len);
  return rc;
}

int scree__cuda_is_device_ptr(const void *p) {
  const scree__cu *cu;
  unsigned int type = 0;

  if (p == NULL || scree__cu_load(&cu, NULL, 0) != 0)
    return 0;
  /* Pageable memory CUDA has never seen answers CUDA_ERROR_INVALID_VALUE:
   * that is host memory too. */
  if (cu->cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS)
    return 0;
  return type == CU_MEMORYTYPE_DEVICE;
}

/* ---- the importer table libscreeclient selects for a CUDA daemon ---- */
#ifdef SCREE_CLIENT_HAVE_CUDA
#include <stdlib.h>

#include "import.h"

static int cuda_import(const scree__import_src *src, int writable, void **base,
                       scree_device *device, void **state, char *msg, size_t msg_len) {
  scree__cuda_map *m;
  int owner, access, rc;

  (void)writable; /* device mappings are always read-write */
  if (src->device_uuid == NULL)
    return scree__fail(SCREE_EPROTO, msg, msg_len,
                       "arena %llu: the daemon named no GPU (no device UUID)",
                       (unsigned long long)src->arena_id);
  rc = scree__cuda_find_device(src->device_uuid, &owner, msg, msg_len);
  if (rc == 0)
    rc = scree__cuda_access_device(owner, &access, msg, msg_len);
  if (rc != 0)
    return rc;
  m = calloc(1, sizeof(*m));
  if (m == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
  if (src->handle != NULL) {
    rc = scree__cuda_import_legacy(src->handle, src->handle_len, src->size, owner, access, m,
                                   msg, msg_len);
  } else if (src->fd >= 0) {
    rc = scree__cuda_import_fd(src->fd, src->size, owner, access, m, msg, msg_len);
  } else {
    rc = scree__fail(SCREE_EPROTO, msg, msg_len,
                     "arena %llu: the daemon sent neither an fd nor handle bytes",
                     (unsigned long long)src->arena_id);
  }
  if (rc != 0) {
    free(m);
    return rc;
  }
  *base = (void *)(uintptr_t)m->ptr;
  /* The memory lives on the daemon's GPU, known here by its local ordinal. */
  device->type = SCREE_DEVICE_CUDA;
  device->index = owner;
  *state = m;
  return 0;
}

static int cuda_copy_in(void *dst, const void *src, size_t size, void *state, char *msg,
                        size_t msg_len) {
  const scree__cuda_map *m = state;

  return scree__cuda_copy_sync(m->access_ordinal, (uint64_t)(uintptr_t)dst, src, size, NULL,
                               msg, msg_len);
}

/* Makes the mapping's context (the retained primary context of the GPU it
 * was made for) current, remembering what was: a put's copies and its wait
 * run there without retaining and releasing a context for each call. */
static int cuda_map_enter(const scree__cu *cu, const scree__cuda_map *m, CUcontext *prev,
                          char *msg, size_t msg_len) {
  *prev = NULL;
  SCREE_CUDA_CHECK(cu->cuCtxGetCurrent(prev));
  if (*prev != (CUcontext)m->ctx)
    SCREE_CUDA_CHECK(cu->cuCtxSetCurrent((CUcontext)m->ctx));
  return 0;
}

static void cuda_map_leave(const scree__cu *cu, const scree__cuda_map *m, CUcontext prev) {
  if (prev != (CUcontext)m->ctx)
    (void)cu->cuCtxSetCurrent(prev);
}

static int cuda_copy_in_async(void *dst, const void *src, size_t size, void *stream,
                              void *state, char *msg, size_t msg_len) {
  const scree__cuda_map *m = state;
  const scree__cu *cu;
  CUcontext prev;
  int rc;

  if (size == 0)
    return 0;
  rc = scree__cu_load(&cu, msg, msg_len);
  if (rc == 0)
    rc = cuda_map_enter(cu, m, &prev, msg, msg_len);
  if (rc != 0)
    return rc;
  /* Unified addressing lets one call serve device sources of any GPU and
   * host sources, pinned or pageable. */
  SCREE_CUDA_GOTO(cu->cuMemcpyAsync((CUdeviceptr)(uintptr_t)dst, (CUdeviceptr)(uintptr_t)src,
                                    size, (CUstream)stream),
                  rc, out);
out:
  cuda_map_leave(cu, m, prev);
  return rc;
}

/* Waits for what cuda_copy_in_async queued: stream, or with NULL the
 * legacy default stream of the mapping's context, where the copies went
 * whatever context the calling thread has (or none: a producer that never
 * touched CUDA itself, whose pageable-memory copies may still be in DMA
 * when cuMemcpyAsync returns). One stream, never the whole device. */
static int cuda_sync(void *stream, void *state, char *msg, size_t msg_len) {
  const scree__cuda_map *m = state;
  const scree__cu *cu;
  CUcontext prev;
  int rc;

  rc = scree__cu_load(&cu, msg, msg_len);
  if (rc != 0)
    return rc;
  /* A stream of the caller's is waited for as it is, in whatever context
   * is current, as before this function existed. */
  if (stream != NULL) {
    SCREE_CUDA_CHECK(cu->cuStreamSynchronize((CUstream)stream));
    return 0;
  }
  rc = cuda_map_enter(cu, m, &prev, msg, msg_len);
  if (rc != 0)
    return rc;
  SCREE_CUDA_GOTO(cu->cuStreamSynchronize(NULL), rc, out);
out:
  cuda_map_leave(cu, m, prev);
  return rc;
}

static void cuda_unmap(void *base, size_t size, void *state) {
  (void)base;
  (void)size;
  scree__cuda_unmap(state);
  free(state);
}

/* One table serves both ipc modes: cuda_import tells them apart by what
 * the daemon sent (handle bytes or an fd), and everything after the import
 * is the same device memory. */
static const scree__importer scree__import_cuda = {
    .name = "cuda",
    .import = cuda_import,
    .copy_in = cuda_copy_in,
    .copy_in_async = cuda_copy_in_async,
    .sync = cuda_sync,
    .unmap = cuda_unmap,
};

int scree__import_cuda_select(int ipc_mode, const unsigned char *device_uuid,
                              const scree__importer **out, char *msg, size_t msg_len) {
  int ordinal, rc;

  if (device_uuid == NULL)
    return scree__fail(SCREE_EPROTO, msg, msg_len,
                       "the CUDA daemon named no GPU (no device UUID in its Hello reply)");
  /* Checked at connect so that the reason reaches the user before any get:
   * CUDA_VISIBLE_DEVICES may hide the daemon's GPU from this process. */
  rc = scree__cuda_find_device(device_uuid, &ordinal, msg, msg_len);
  if (rc != 0)
    return rc;
  if (ipc_mode == SCREE__CUDA_IPC_VMM_FD || ipc_mode == SCREE__CUDA_IPC_LEGACY) {
    *out = &scree__import_cuda;
    return 0;
  }
  return scree__fail(SCREE_ENOTSUP, msg, msg_len,
                     "the CUDA daemon shares memory in ipc mode %d, unknown here", ipc_mode);
}

int scree__cuda_sync(void *stream, char *msg, size_t msg_len) {
  const scree__cu *cu;
  CUcontext cur = NULL;
  int rc;

  rc = scree__cu_load(&cu, msg, msg_len);
  if (rc != 0)
    return rc;
  /* In the calling thread's current context (the one its stream belongs
   * to); a thread with no context has queued nothing. NULL is the legacy
   * default stream, which waits for every blocking stream of the context. */
  SCREE_CUDA_CHECK(cu->cuCtxGetCurrent(&cur));
  if (cur != NULL || stream != NULL)
    SCREE_CUDA_CHECK(cu->cuStreamSynchronize((CUstream)stream));
  return 0;
}
#endif /* SCREE_CLIENT_HAVE_CUDA */
