/* The visible skip of the Criterion GPU tests: where no CUDA device is
 * usable the executable prints "SKIP: no CUDA device" and exits 77, which
 * CTest reports as skipped (SKIP_RETURN_CODE 77). Include once per test
 * executable.
 *
 * The check runs before Criterion starts, in a child process: CUDA
 * initialised in this process would not survive Criterion's fork of each
 * test. Criterion's test workers are this same executable started again
 * with BXFI_MAP set; they skip the check. A constructor rather than a main
 * of our own, because Criterion's workers enter through its own main. */
#ifndef SCREE_TESTS_GPU_SKIP_H
#define SCREE_TESTS_GPU_SKIP_H

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

__attribute__((constructor)) static void scree_test_skip_without_device(void) {
  if (getenv("BXFI_MAP") != NULL)
    return;
  pid_t pid = fork();
  if (pid == 0) {
    int n = 0;
    _exit(cudaGetDeviceCount(&n) == cudaSuccess && n > 0 ? 0 : 1);
  }
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
      WEXITSTATUS(status) == 0)
    return;
  printf("SKIP: no CUDA device\n");
  fflush(stdout);
  _exit(77);
}

#endif /* SCREE_TESTS_GPU_SKIP_H */
