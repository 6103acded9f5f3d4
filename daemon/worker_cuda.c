#include "worker_cuda.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import_cuda.h"
#include "scree/error.h"
#include "sys.h"

static cudaStream_t stream;
static int32_t *d_cu;    /* cu_seqlens_q then cu_seqlens_k on the device */
static size_t d_cu_cap;  /* entries */

/* Errors that leave the context unusable: every later call fails too. */
static int sticky(cudaError_t err) {
  switch (err) {
  case cudaErrorIllegalAddress:
  case cudaErrorLaunchFailure:
  case cudaErrorIllegalInstruction:
  case cudaErrorMisalignedAddress:
  case cudaErrorInvalidAddressSpace:
  case cudaErrorInvalidPc:
  case cudaErrorHardwareStackError:
  case cudaErrorAssert:
  case cudaErrorLaunchTimeout:
  case cudaErrorECCUncorrectable:
  case cudaErrorContextIsDestroyed:
    return 1;
  default:
    return 0;
  }
}

static int cuda_fail(cudaError_t err, const char *what, int *fatal, char *msg,
                     size_t msg_len) {
  if (fatal != NULL && sticky(err))
    *fatal = 1;
  cudaGetLastError();
  return scree__fail(SCREE_ECUDA, msg, msg_len, "%s: %s (%s)", what, cudaGetErrorName(err),
                     cudaGetErrorString(err));
}

int scree__wcuda_init(int device, char *msg, size_t msg_len) {
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess)
    return cuda_fail(err, "cudaSetDevice", NULL, msg, msg_len);
  err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (err != cudaSuccess)
    return cuda_fail(err, "cudaStreamCreateWithFlags", NULL, msg, msg_len);
  return 0;
}

void scree__wcuda_close(void) {
  if (d_cu != NULL)
    cudaFree(d_cu);
  d_cu = NULL;
  if (stream != NULL)
    cudaStreamDestroy(stream);
  stream = NULL;
}

int scree__wcuda_import(int device, int fd, const void *handle, size_t handle_len, size_t size,
                        void **state, uint64_t *dev, char *msg, size_t msg_len) {
  scree__cuda_map *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  int rc;
  if (handle != NULL)
    rc = scree__cuda_import_legacy(handle, handle_len, size, device, device, m, msg, msg_len);
  else if (fd >= 0)
    rc = scree__cuda_import_fd(fd, size, device, device, m, msg, msg_len);
  else
    rc = scree__fail(SCREE_EPROTO, msg, msg_len, "neither an fd nor handle bytes");
  if (rc != 0) {
    free(m);
    return rc;
  }
  *state = m;
  *dev = m->ptr;
  return 0;
}

void scree__wcuda_unmap(void *state) {
  scree__cuda_unmap(state);
  free(state);
}

int scree__wcuda_run(scree_attention_args *x, const int32_t *cu_q, const int32_t *cu_k,
                     int trap, int *fatal, char *msg, size_t msg_len) {
  size_t n = (size_t)x->batch + 1;
  cudaError_t err;
  *fatal = 0;
  if (d_cu_cap < 2 * n) {
    if (d_cu != NULL)
      cudaFree(d_cu);
    d_cu = NULL;
    d_cu_cap = 0;
    err = cudaMalloc((void **)&d_cu, 2 * n * sizeof(int32_t));
    if (err != cudaSuccess)
      return cuda_fail(err, "cudaMalloc", fatal, msg, msg_len);
    d_cu_cap = 2 * n;
  }
  err = cudaMemcpyAsync(d_cu, cu_q, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream);
  if (err == cudaSuccess)
    err = cudaMemcpyAsync(d_cu + n, cu_k, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream);
  if (err != cudaSuccess)
    return cuda_fail(err, "cudaMemcpyAsync", fatal, msg, msg_len);
#ifdef SCREE_TEST_HOOKS
  if (trap && scree__wcuda_launch_trap(stream) != 0) {
    err = cudaGetLastError();
    return cuda_fail(err, "the test trap kernel", fatal, msg, msg_len);
  }
#else
  (void)trap;
#endif
  x->device = SCREE_DEVICE_CUDA;
  x->cu_seqlens_q = d_cu;
  x->cu_seqlens_k = d_cu + n;
  x->stream = stream;
  int rc = scree_attention_fwd(x);
  if (rc != 0) {
    /* A launch refused for its arguments leaves the context fine; a fault
     * of the trap kernel may surface here already. */
    err = cudaGetLastError();
    if (err != cudaSuccess)
      return cuda_fail(err, "attention kernel", fatal, msg, msg_len);
    if (msg[0] == '\0')
      snprintf(msg, msg_len, "%s", scree_strerror(rc));
    return rc;
  }
  err = cudaStreamSynchronize(stream);
  if (err != cudaSuccess)
    return cuda_fail(err, "attention kernel", fatal, msg, msg_len);
  return 0;
}
