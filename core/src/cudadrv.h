/* The CUDA driver API, loaded at run time.
 *
 * screed and libscreeclient call the driver through this table rather than
 * linking libcuda.so.1. A binary built with CUDA must still start, serve host
 * memory and pass its tests on a machine with no NVIDIA driver (CI has nvcc
 * but no GPU, and the stub libcuda.so from the toolkit is not loadable).
 * Linking libcuda would make every executable and the Python extension fail
 * at load time there. So the library is opened with dlopen on first use, and
 * each entry point is looked up with dlsym (see SCREE__CU_FUNCS).
 *
 * The legacy IPC mode uses cuMemAlloc + cuIpcGetMemHandle / cuIpcOpenMemHandle
 * from the same table: those are what cudaMalloc + cudaIpcGetMemHandle call,
 * and the 64 handle bytes are the same, so a peer holding only the CUDA
 * runtime can open them with cudaIpcOpenMemHandle.
 *
 * Internal to scree (static library scree_cudadrv); never installed. */
#ifndef SCREE_CUDADRV_H
#define SCREE_CUDADRV_H

#include <stddef.h>

#include <cuda.h>

#include "sys.h"

/* XX(name): every driver entry point scree uses. Each is looked up with
 * dlsym under the name the header's macros give it (cuMemAlloc ->
 * cuMemAlloc_v2, cuCtxSynchronize stays cuCtxSynchronize), which is exactly
 * the symbol a program linked against libcuda would bind to, with the type
 * the header declares for it. cuGetProcAddress is not used: asked for a
 * plain name at the toolkit's version it hands out the newest variant, whose
 * signature may differ (cuCtxGetDevice and cuCtxSynchronize take a context
 * argument since CUDA 13.0). */
#define SCREE__CU_FUNCS(XX)                                                    \
    XX(cuInit)                                                                 \
    XX(cuDriverGetVersion)                                                     \
    XX(cuGetErrorName)                                                         \
    XX(cuGetErrorString)                                                       \
    XX(cuDeviceGetCount)                                                       \
    XX(cuDeviceGet)                                                            \
    XX(cuDeviceGetName)                                                        \
    XX(cuDeviceGetUuid)                                                        \
    XX(cuDeviceGetAttribute)                                                   \
    XX(cuDeviceTotalMem)                                                       \
    XX(cuDeviceCanAccessPeer)                                                  \
    XX(cuDevicePrimaryCtxGetState)                                             \
  XX(cuDevicePrimaryCtxRetain)                                               \
    XX(cuDevicePrimaryCtxRelease)                                              \
    XX(cuCtxGetCurrent)                                                        \
    XX(cuCtxSetCurrent)                                                        \
    XX(cuMemGetInfo)                                                           \
    XX(cuMemGetAllocationGranularity)                                          \
    XX(cuMemCreate)                                                            \
    XX(cuMemRelease)                                                           \
    XX(cuMemAddressReserve)                                                    \
    XX(cuMemAddressFree)                                                       \
    XX(cuMemMap)                                                               \
    XX(cuMemUnmap)                                                             \
    XX(cuMemSetAccess)                                                         \
    XX(cuMemExportToShareableHandle)                                           \
    XX(cuMemImportFromShareableHandle)                                         \
    XX(cuMemAlloc)                                                             \
    XX(cuMemFree)                                                              \
    XX(cuIpcGetMemHandle)                                                      \
    XX(cuIpcOpenMemHandle)                                                     \
    XX(cuIpcCloseMemHandle)                                                    \
    XX(cuMemcpy)                                                               \
    XX(cuMemcpyAsync)                                                          \
    XX(cuMemcpyDtoH)                                                           \
    XX(cuMemcpyHtoD)                                                           \
    XX(cuMemsetD8)                                                             \
    XX(cuPointerGetAttribute)                                                  \
    XX(cuStreamCreate)                                                         \
    XX(cuStreamDestroy)                                                        \
    XX(cuMemcpyHtoDAsync)                                                      \
    XX(cuMemcpyDtoDAsync)                                                      \
    XX(cuMemcpyDtoHAsync)                                                      \
    XX(cuEventCreate)                                                          \
    XX(cuEventDestroy)                                                         \
    XX(cuEventRecord)                                                          \
    XX(cuEventSynchronize)                                                     \
    XX(cuEventElapsedTime)                                                     \
    XX(cuEventQuery)                                                           \
    XX(cuMemHostAlloc)                                                         \
    XX(cuMemFreeHost)                                                          \
  XX(cuStreamSynchronize)

/* Members carry the API's names, so a call reads cu->cuMemCreate(...). The
 * header's version macros rename the member and every use alike. */
typedef struct scree__cu {
#define SCREE__CU_MEMBER(name) __typeof__(name) *name;
  SCREE__CU_FUNCS(SCREE__CU_MEMBER)
#undef SCREE__CU_MEMBER
  int driver_version;
} scree__cu;

/* Loads the driver once per process (thread-safe) and runs cuInit(0).
 * Returns 0 and the table, SCREE_ENODEV when no driver or no device exists
 * (libcuda.so.1 missing, CUDA_ERROR_NO_DEVICE), or SCREE_ECUDA with a
 * message. The same outcome is returned to every later caller. The table
 * lives until the process exits. */
int scree__cu_load(const scree__cu **out, char *msg, size_t msg_len);

/* Maps a failed driver call to a scree code and writes "what: NAME
 * (description)" into msg (may be NULL). CUDA_ERROR_OUT_OF_MEMORY becomes
 * SCREE_ENOSPC; every other error SCREE_ECUDA. */
int scree__cu_fail(const scree__cu *cu, CUresult r, const char *what, char *msg,
                   size_t msg_len);

/* Runs a driver call; on failure maps the error into rc and the caller's
 * msg/msg_len, and jumps to label, which is named for what it undoes (NCCL's
 * CUDACHECKGOTO habit). Needs `cu`, `msg` and `msg_len` in scope. The driver
 * API has no sticky last-error state to clear: an error is returned once by
 * the call that caused it. */
#define SCREE_CUDA_GOTO(call, rc, label)                                       \
  do {                                                                         \
    CUresult scree__r = (call);                                                \
    if (scree__r != CUDA_SUCCESS) {                                            \
      (rc) = scree__cu_fail(cu, scree__r, #call, msg, msg_len);                \
      goto label;                                                              \
    }                                                                          \
  } while (0)

/* The return form of SCREE_CUDA_GOTO (NCCL's CUDACHECK), for a call with
 * nothing to undo: on failure, returns the mapped code from the enclosing
 * function. Needs `cu`, `msg` and `msg_len` in scope. */
#define SCREE_CUDA_CHECK(call)                                                 \
  do {                                                                         \
    CUresult scree__r = (call);                                                \
    if (scree__r != CUDA_SUCCESS)                                              \
      return scree__cu_fail(cu, scree__r, #call, msg, msg_len);                \
  } while (0)

/* Formats a 16-byte CUDA UUID as NVIDIA's "GPU-xxxxxxxx-xxxx-..." text. buf
 * needs 41 bytes. Returns buf. */
char *scree__cu_uuid_str(const unsigned char uuid[16], char *buf, size_t len);

#endif /* SCREE_CUDADRV_H */
