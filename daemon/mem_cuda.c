/* The CUDA backend (cuMemCreate with POSIX fd handles, or cudaMalloc with
 * cudaIpcGetMemHandle in legacy mode).
 *
 * Placeholder until the CUDA backend lands: it is compiled in CUDA builds so
 * that both configurations build, and reports SCREE_ENOTSUP like the stub. */
#include "log.h"
#include "mem.h"
#include "scree/error.h"

int scree__mem_cuda_create(int device, int ipc_mode, scree__mem **out, char *msg,
                           size_t msg_len) {
  *out = NULL;
  return scree__errf(SCREE_ENOTSUP, msg, msg_len,
                     "the CUDA backend is not implemented yet; use --device cpu");
}
