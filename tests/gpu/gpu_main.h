/* The main() of scree's GPU tests: skip visibly without a device, else run
 * Criterion.
 *
 * CUDA does not survive fork(): a process that initialised the driver must
 * not use it in a forked child. Criterion forks every test from its runner,
 * so the runner must never touch the driver. The probe therefore runs in a
 * forked child of its own, which prints the skip line itself. Include this
 * in exactly one file of a test executable. */
#ifndef SCREE_TESTS_GPU_MAIN_H
#define SCREE_TESTS_GPU_MAIN_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cudadrv.h"

#define SCREE_TEST_SKIP 77

/* Returns 0 when a CUDA device is usable, SCREE_TEST_SKIP otherwise (after
 * printing "SKIP: no CUDA device (reason)"), 1 when the probe itself broke. */
static int scree_test_gpu_probe(void) {
  pid_t pid;
  int status;

  fflush(stdout);
  pid = fork();
  if (pid < 0)
    return 1;
  if (pid == 0) {
    const scree__cu *cu;
    char msg[256];

    if (scree__cu_load(&cu, msg, sizeof(msg)) != 0) {
      printf("SKIP: no CUDA device (%s)\n", msg);
      fflush(stdout);
      _exit(SCREE_TEST_SKIP);
    }
    _exit(0);
  }
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
    return 1;
  return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
  struct criterion_test_set *tests;
  int rc = scree_test_gpu_probe();

  if (rc != 0)
    return rc;
  tests = criterion_initialize();
  rc = 0;
  if (criterion_handle_args(argc, argv, true))
    rc = !criterion_run_all_tests(tests);
  criterion_finalize(tests);
  return rc;
}

#endif /* SCREE_TESTS_GPU_MAIN_H */
