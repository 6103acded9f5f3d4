/* The CUDA backend of a screed built without CUDA (SCREE_HAVE_CUDA off). */
#include "log.h"
#include "mem.h"
#include "scree/error.h"

int scree__mem_cuda_create(int device, int ipc_mode, scree__mem **out, char *msg,
                           size_t msg_len) {
  *out = NULL;
  return scree__fail(SCREE_ENOTSUP, msg, msg_len,
                     "screed was built without CUDA (SCREE_CUDA=OFF or no nvcc); "
                     "use --device cpu for host memory");
}
