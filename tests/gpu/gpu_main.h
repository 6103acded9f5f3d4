/* A small harness for scree's GPU tests.
 *
 * Criterion is not used here. A GPU test must probe the device before any
 * case runs (to exit 77 without one), and CUDA does not survive fork(), so
 * the probe cannot run in Criterion's runner; a custom Criterion main with
 * the probe in a forked child failed on the GPU machine ("Re-entering
 * criterion from a test worker"), while Criterion's own main works there.
 * So each case runs in a fresh process, started with posix_spawn of this
 * same binary and "--case NAME"; the parent only probes the device and
 * collects exit statuses. Each case and helper gets GPU_TEST_ALARM seconds
 * before SIGALRM ends it, so that a hang shows as a failure with output. Without a device the binary prints "SKIP: no CUDA device (...)"
 * and exits 77, which CTest reports as skipped (SKIP_RETURN_CODE).
 *
 * Include this in exactly one file of a test executable, which ends with
 * GPU_TEST_MAIN(case, case, ...). */
#ifndef SCREE_TESTS_GPU_MAIN_H
#define SCREE_TESTS_GPU_MAIN_H

#include <execinfo.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cudadrv.h"

#define SCREE_TEST_SKIP 77
#ifndef GPU_TEST_ALARM
#define GPU_TEST_ALARM 120
#endif

extern char **environ;

typedef struct gpu_case {
  const char *name;
  void (*fn)(void);
} gpu_case;

/* Assertions: print where and why, then end the case's process. */
#define T_FAIL(...)                                                            \
  do {                                                                         \
    fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                       \
    fprintf(stderr, __VA_ARGS__);                                              \
    fprintf(stderr, "\n");                                                     \
    exit(1);                                                                   \
  } while (0)
#define T_CHECK(cond)                                                          \
  do {                                                                         \
    if (!(cond))                                                               \
      T_FAIL("%s", #cond);                                                     \
  } while (0)
#define T_CHECKM(cond, ...)                                                    \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)
#define T_EQ(a, b)                                                             \
  do {                                                                         \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b);                    \
    if (t_a_ != t_b_)                                                          \
      T_FAIL("%s == %s: %lld != %lld", #a, #b, t_a_, t_b_);                    \
  } while (0)
#define T_EQM(a, b, ...)                                                       \
  do {                                                                         \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b);                    \
    if (t_a_ != t_b_) {                                                        \
      fprintf(stderr, "FAIL %s:%d: %s == %s: %lld != %lld: ", __FILE__,        \
              __LINE__, #a, #b, t_a_, t_b_);                                   \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static double gpu_now(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Roles: a test binary may also act as a helper process of its own cases
 * ("--role NAME args..."), handled by the role function it passes. */
typedef int (*gpu_role_fn)(int argc, char **argv);

/* A crash in a case or helper prints its stack (addresses resolve with
 * addr2line; the test executables link with -rdynamic). */
static void gpu_on_crash(int sig) {
  void *frames[64];
  int n = backtrace(frames, 64);

  fprintf(stderr, "CRASH: signal %d\n", sig);
  backtrace_symbols_fd(frames, n, 2);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Seconds a case may run: GPU_TEST_ALARM, or $SCREE_GPU_TEST_ALARM. */
static unsigned gpu_alarm_s(void) {
  const char *e = getenv("SCREE_GPU_TEST_ALARM");

  return e != NULL && atoi(e) > 0 ? (unsigned)atoi(e) : GPU_TEST_ALARM;
}

static int gpu_test_main(int argc, char **argv, const gpu_case *cases, size_t n,
                         gpu_role_fn role) {
  const scree__cu *cu;
  char msg[256];
  int failed = 0;
  size_t i;

  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGSEGV, gpu_on_crash);
  signal(SIGABRT, gpu_on_crash);
  if (argc >= 3 && strcmp(argv[1], "--role") == 0 && role != NULL) {
    alarm(gpu_alarm_s());
    return role(argc, argv);
  }
  if (argc == 3 && strcmp(argv[1], "--case") == 0) {
    for (i = 0; i < n; i++) {
      if (strcmp(cases[i].name, argv[2]) == 0) {
        alarm(gpu_alarm_s());
        cases[i].fn();
        return 0;
      }
    }
    fprintf(stderr, "no case %s\n", argv[2]);
    return 2;
  }
  /* The parent may initialise CUDA: it only ever starts children with
   * posix_spawn, which executes a new program. */
  if (scree__cu_load(&cu, msg, sizeof(msg)) != 0) {
    printf("SKIP: no CUDA device (%s)\n", msg);
    return SCREE_TEST_SKIP;
  }
  for (i = 0; i < n; i++) {
    char *child_argv[4] = {argv[0], (char *)"--case", (char *)cases[i].name, NULL};
    double t0 = gpu_now();
    int status = 0;
    pid_t pid;

    if (argc == 2 && strcmp(argv[1], cases[i].name) != 0)
      continue;
    fflush(stdout);
    /* Each case leads its own process group, so that whatever it started (a
     * screed, helper processes) goes with it even when it fails or crashes:
     * a leftover holding our stdout would keep CTest waiting. */
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    if (posix_spawn(&pid, "/proc/self/exe", NULL, &attr, child_argv, environ) != 0 ||
        waitpid(pid, &status, 0) != pid) {
      posix_spawnattr_destroy(&attr);
      printf("FAIL %s: cannot run the case\n", cases[i].name);
      failed++;
      continue;
    }
    posix_spawnattr_destroy(&attr);
    kill(-pid, SIGKILL);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      printf("PASS %s (%.2f s)\n", cases[i].name, gpu_now() - t0);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == SCREE_TEST_SKIP) {
      /* A case that needs more than this machine has (two GPUs) skips
       * itself; it is reported, never counted as a pass. */
      printf("SKIP %s\n", cases[i].name);
    } else {
      printf("FAIL %s (%s %d, %.2f s)\n", cases[i].name,
             WIFEXITED(status) ? "exit" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), gpu_now() - t0);
      failed++;
    }
  }
  printf("%s: %d of %zu cases failed\n", argv[0], failed, n);
  return failed ? 1 : 0;
}

#define GPU_CASE(fn) {#fn, fn}
#define GPU_TEST_MAIN(...)                                                     \
  int main(int argc, char **argv) {                                            \
    static const gpu_case cases_[] = {__VA_ARGS__};                            \
    return gpu_test_main(argc, argv, cases_, sizeof(cases_) / sizeof(cases_[0]), NULL); \
  }
#define GPU_TEST_MAIN_ROLES(role, ...)                                         \
  int main(int argc, char **argv) {                                            \
    static const gpu_case cases_[] = {__VA_ARGS__};                            \
    return gpu_test_main(argc, argv, cases_, sizeof(cases_) / sizeof(cases_[0]), role); \
  }

#endif /* SCREE_TESTS_GPU_MAIN_H */
