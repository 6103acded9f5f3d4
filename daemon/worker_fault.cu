// A kernel that faults on purpose, for the test builds' fault switch
// (SCREE_TEST_HOOKS; worker.c's test_fault). Never compiled into a release.
#include <cuda_runtime.h>

static __global__ void scree_trap_kernel(void) { __trap(); }

extern "C" int scree__wcuda_launch_trap(void *stream) {
  scree_trap_kernel<<<1, 1, 0, (cudaStream_t)stream>>>();
  return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
