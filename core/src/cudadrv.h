/* The CUDA driver API, loaded at run time.
 *
 * screed and libscreeclient call the driver through this table rather than
 * linking libcuda.so.1. A binary built with CUDA must still start, serve host
 * memory and pass its tests on a machine with no NVIDIA driver (CI has nvcc
 * but no GPU, and the stub libcuda.so from the toolkit is not loadable).
 * Linking libcuda would make every executable and the Python extension fail
 * at load time there. So the library is opened with dlopen on first use, and
 * each entry point is resolved with cuGetProcAddress for the CUDA version the
 * code was compiled against, which also picks the right _v2/_v3 variant.
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
#include <cudaTypedefs.h>

/* XX(name, version): every driver entry point scree uses, with the CUDA
 * version whose ABI of it scree calls. The version matters: asking
 * cuGetProcAddress for a name at the toolkit's own version returns the
 * newest variant, whose signature may differ from the one the header's
 * plain name declares (cuCtxGetDevice, cuCtxSynchronize and cuStreamGetCtx
 * gained a context argument in CUDA 13.0 / 12.5, and calling those with the
 * old arguments crashed). So each entry is requested at the version of the
 * ABI the header's name stands for, and typed with cudaTypedefs.h's
 * PFN_<name>_v<version>; the header's macros (cuMemAlloc -> cuMemAlloc_v2)
 * pick the newer variant, the plain names the oldest. */
#define SCREE__CU_FUNCS(XX)                                                    \
  XX(cuInit, 2000)                                                             \
  XX(cuDriverGetVersion, 2020)                                                 \
  XX(cuGetErrorName, 6000)                                                     \
  XX(cuGetErrorString, 6000)                                                   \
  XX(cuDeviceGetCount, 2000)                                                   \
  XX(cuDeviceGet, 2000)                                                        \
  XX(cuDeviceGetName, 2000)                                                    \
  XX(cuDeviceGetUuid, 11040)                                                   \
  XX(cuDeviceGetAttribute, 2000)                                               \
  XX(cuDeviceTotalMem, 3020)                                                   \
  XX(cuDeviceCanAccessPeer, 4000)                                              \
  XX(cuDevicePrimaryCtxRetain, 7000)                                           \
  XX(cuDevicePrimaryCtxRelease, 11000)                                         \
  XX(cuCtxGetCurrent, 4000)                                                    \
  XX(cuCtxSetCurrent, 4000)                                                    \
  XX(cuCtxGetDevice, 2000)                                                     \
  XX(cuCtxSynchronize, 2000)                                                   \
  XX(cuMemGetInfo, 3020)                                                       \
  XX(cuMemGetAllocationGranularity, 10020)                                     \
  XX(cuMemCreate, 10020)                                                       \
  XX(cuMemRelease, 10020)                                                      \
  XX(cuMemAddressReserve, 10020)                                               \
  XX(cuMemAddressFree, 10020)                                                  \
  XX(cuMemMap, 10020)                                                          \
  XX(cuMemUnmap, 10020)                                                        \
  XX(cuMemSetAccess, 10020)                                                    \
  XX(cuMemExportToShareableHandle, 10020)                                      \
  XX(cuMemImportFromShareableHandle, 10020)                                    \
  XX(cuMemAlloc, 3020)                                                         \
  XX(cuMemFree, 3020)                                                          \
  XX(cuIpcGetMemHandle, 4010)                                                  \
  XX(cuIpcOpenMemHandle, 11000)                                                \
  XX(cuIpcCloseMemHandle, 4010)                                                \
  XX(cuMemcpy, 4000)                                                           \
  XX(cuMemcpyAsync, 4000)                                                      \
  XX(cuMemcpyDtoH, 3020)                                                       \
  XX(cuMemcpyHtoD, 3020)                                                       \
  XX(cuMemsetD8, 3020)                                                         \
  XX(cuPointerGetAttribute, 4000)                                              \
  XX(cuStreamCreate, 2000)                                                     \
  XX(cuStreamDestroy, 4000)                                                    \
  XX(cuMemcpyHtoDAsync, 3020)                                                  \
  XX(cuMemcpyDtoDAsync, 3020)                                                  \
  XX(cuEventCreate, 2000)                                                      \
  XX(cuEventDestroy, 4000)                                                     \
  XX(cuEventRecord, 2000)                                                      \
  XX(cuEventSynchronize, 2000)                                                 \
  XX(cuEventElapsedTime, 12080)                                                \
  XX(cuStreamGetCtx, 9020)                                                     \
  XX(cuStreamSynchronize, 2000)

/* Members carry the API's names, so a call reads cu->cuMemCreate(...). The
 * header's version macros (cuMemAlloc -> cuMemAlloc_v2) rename the member and
 * every use alike; the type comes from the version given above. */
typedef struct scree__cu {
#define SCREE__CU_MEMBER(name, version) PFN_##name##_v##version name;
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

/* Writes msg like snprintf (when msg is not NULL) and returns code. */
int scree__cu_msg(int code, char *msg, size_t msg_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

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

/* Formats a 16-byte CUDA UUID as NVIDIA's "GPU-xxxxxxxx-xxxx-..." text. buf
 * needs 41 bytes. Returns buf. */
char *scree__cu_uuid_str(const unsigned char uuid[16], char *buf, size_t len);

#endif /* SCREE_CUDADRV_H */
