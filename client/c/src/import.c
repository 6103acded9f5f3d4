#include "import.h"
#include "scree/client.h"
#include "scree/error.h"
#include "sys.h"

int scree__import_select(int backend, int ipc_mode, const unsigned char *device_uuid,
                         const scree__importer **out, char *msg, size_t msg_len) {
  if (backend == SCREE_BACKEND_HOST && ipc_mode == SCREE_IPC_MEMFD) {
    *out = &scree__import_host;
    return 0;
  }
#ifdef SCREE_CLIENT_HAVE_CUDA
  if (backend == SCREE_BACKEND_CUDA)
    return scree__import_cuda_select(ipc_mode, device_uuid, out, msg, msg_len);
#endif
  return scree__fail(SCREE_ENOTSUP, msg, msg_len,
                     "this libscreeclient cannot import %s memory shared as %s (built "
                     "without CUDA support?)",
                     scree_backend_name((scree_backend)backend),
                     scree_ipc_mode_name((scree_ipc_mode)ipc_mode));
}
