/* The driver-API helpers the GPU tests that call CUDA themselves share. */
#ifndef SCREE_TESTS_GPU_CU_H
#define SCREE_TESTS_GPU_CU_H

#include "cudadrv.h"
#include "gpu_main.h"

/* The driver's entry points (loaded once), or the case fails. */
static inline const scree__cu *cu_get(void) {
  const scree__cu *cu;
  char msg[256];

  T_EQM(scree__cu_load(&cu, msg, sizeof(msg)), 0, "%s", msg);
  return cu;
}

/* Makes ordinal's primary context current, as any CUDA runtime user has. */
static inline void ctx_use(int ordinal) {
  const scree__cu *cu = cu_get();
  CUcontext ctx;
  CUdevice dev;

  T_EQ(cu->cuDeviceGet(&dev, ordinal), CUDA_SUCCESS);
  T_EQ(cu->cuDevicePrimaryCtxRetain(&ctx, dev), CUDA_SUCCESS);
  T_EQ(cu->cuCtxSetCurrent(ctx), CUDA_SUCCESS);
}

#endif
