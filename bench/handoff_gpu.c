/* handoff_gpu: how fast a GPU batch goes from one process to another
 * through screed, beside the floors it is built on.
 *
 *   handoff_gpu SCREED [quick]
 *
 * For each ipc mode (vmm, legacy) it starts its own screed --device 0 and
 * measures, with batches of 1 MiB, 1 GiB and 8 GiB put from GPU memory:
 *   - first attach: a fresh connection's first get, which imports the arena;
 *   - cached attach: later gets on one connection (no driver call);
 *   - put bandwidth from device memory, beside cuMemcpyDtoD of the same size;
 * and once: a raw cuIpcOpenMemHandle of each size (what
 * cudaIpcOpenMemHandle runs) and a raw 64-byte SOCK_SEQPACKET round trip.
 * Consumers are separate processes (this binary again, in a --role).
 * Results go to stdout as a Markdown table plus "ratio" lines. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cudadrv.h"
#include "scree/client.h"

extern char **environ;

#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)

static void die(const char *what, const char *why) {
  fprintf(stderr, "handoff_gpu: %s: %s\n", what, why);
  exit(1);
}

static double now_us(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Sorts v and returns the q-quantile (nearest rank). */
static double quantile(double *v, int n, double q) {
  int i;

  qsort(v, (size_t)n, sizeof(*v), cmp_double);
  i = (int)(q * (n - 1) + 0.5);
  return v[i];
}

static const scree__cu *cu;

static void cu_check(CUresult r, const char *what) {
  char msg[256];

  if (r != CUDA_SUCCESS) {
    scree__cu_fail(cu, r, what, msg, sizeof(msg));
    die(what, msg);
  }
}

static void ctx_use(int ordinal) {
  CUcontext ctx;
  CUdevice dev;

  cu_check(cu->cuDeviceGet(&dev, ordinal), "cuDeviceGet");
  cu_check(cu->cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
  cu_check(cu->cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
}

static scree_client *connect_or_die(const char *sock) {
  scree_client *c = NULL;

  if (scree_client_connect(sock, &c) != 0)
    die("connect", scree_client_last_error(c));
  return c;
}

/* One batch of `bytes` uint8 values: rows of 1 KiB, 64 sequences. */
static void desc_init(scree_array *a, uint64_t bytes) {
  memset(a, 0, sizeof(*a));
  a->dtype = SCREE_UINT8;
  a->ndim_inner = 1;
  a->inner[0] = 1024;
  a->total_rows = (int64_t)(bytes / 1024);
  a->batch_size = 64;
  a->offsets_dtype = SCREE_INT64;
}

static pid_t spawn_role(char **argv) {
  pid_t pid;

  fflush(stdout);
  if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) != 0)
    die("posix_spawn", "role");
  return pid;
}

static void wait_ok(pid_t pid) {
  int status;

  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("role", "a helper process failed");
}

/* ---- roles (child processes) ---- */

/* attach SOCK NAME FIRST_N CACHED_N: prints "first p50 p99 cached p50 p99". */
static int role_attach(char **argv) {
  int first_n = atoi(argv[5]), cached_n = atoi(argv[6]);
  double *first = calloc((size_t)first_n, sizeof(double));
  double *cached = calloc((size_t)cached_n, sizeof(double));
  scree_client *c;
  scree_lease *lease;
  scree_array a;
  double t0;

  cu = NULL;
  /* A CUDA user has a context before it attaches; keep its creation out of
   * the numbers. */
  {
    char msg[256];
    if (scree__cu_load(&cu, msg, sizeof(msg)) != 0)
      die("cuda", msg);
  }
  ctx_use(0);
  for (int i = 0; i < first_n; i++) {
    c = connect_or_die(argv[3]);
    t0 = now_us();
    if (scree_client_get(c, argv[4], &a, &lease) != 0)
      die("get", scree_client_last_error(c));
    first[i] = now_us() - t0;
    scree_client_release(c, lease);
    scree_client_close(c);
  }
  c = connect_or_die(argv[3]);
  if (scree_client_get(c, argv[4], &a, &lease) != 0)
    die("get", scree_client_last_error(c));
  scree_client_release(c, lease);
  for (int i = 0; i < cached_n; i++) {
    t0 = now_us();
    if (scree_client_get(c, argv[4], &a, &lease) != 0)
      die("get", scree_client_last_error(c));
    cached[i] = now_us() - t0;
    scree_client_release(c, lease);
  }
  {
    scree_client_info info = SCREE_CLIENT_INFO_INIT;
    scree_client_info_get(c, &info);
    if (info.arena_imports != 1)
      die("cache", "cached gets imported the arena again");
  }
  scree_client_close(c);
  printf("%.1f %.1f %.1f %.1f\n", quantile(first, first_n, 0.5), quantile(first, first_n, 0.99),
         quantile(cached, cached_n, 0.5), quantile(cached, cached_n, 0.99));
  return 0;
}

/* rawipc HEX_HANDLE N: opens and closes a legacy handle N times; prints
 * "first median". */
static int role_rawipc(char **argv) {
  int n = atoi(argv[4]);
  double *t = calloc((size_t)n, sizeof(double));
  CUipcMemHandle h;
  CUdeviceptr p;
  char msg[256];
  double first = 0, t0;

  for (int i = 0; i < 64; i++)
    sscanf(argv[3] + 2 * i, "%2hhx", (unsigned char *)&h + i);
  if (scree__cu_load(&cu, msg, sizeof(msg)) != 0)
    die("cuda", msg);
  ctx_use(0);
  for (int i = 0; i < n; i++) {
    t0 = now_us();
    cu_check(cu->cuIpcOpenMemHandle(&p, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS),
             "cuIpcOpenMemHandle");
    t[i] = now_us() - t0;
    if (i == 0)
      first = t[i];
    cu_check(cu->cuIpcCloseMemHandle(p), "cuIpcCloseMemHandle");
  }
  printf("%.1f %.1f\n", first, quantile(t + 1, n - 1, 0.5));
  return 0;
}

/* echo FD: answers every packet with itself until EOF. */
static int role_echo(char **argv) {
  int fd = atoi(argv[3]);
  char buf[64];
  ssize_t n;

  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
    send(fd, buf, (size_t)n, MSG_NOSIGNAL);
  return 0;
}

/* ---- the parent ---- */

typedef struct daemon_proc {
  pid_t pid;
  char sock[108];
} daemon_proc;

static void daemon_start(daemon_proc *d, const char *screed, const char *ipc,
                         const char *arena) {
  char *argv[] = {(char *)screed, "--device", "0", "--ipc", (char *)ipc, "--socket", d->sock,
                  "--memory-limit", "60G", "--arena-size", (char *)arena, "--log-level",
                  "warn", NULL};

  snprintf(d->sock, sizeof(d->sock), "/tmp/scree-bench-%d-%s-%s.sock", (int)getpid(), ipc,
           arena);
  unlink(d->sock);
  if (posix_spawn(&d->pid, screed, NULL, NULL, argv, environ) != 0)
    die("posix_spawn", screed);
  for (int i = 0; i < 600; i++) {
    scree_client *c = NULL;
    int ok = scree_client_connect(d->sock, &c) == 0;

    scree_client_close(c);
    if (ok)
      return;
    usleep(50000);
  }
  die("screed", "did not start");
}

static void daemon_stop(daemon_proc *d) {
  int status;

  kill(d->pid, SIGTERM);
  waitpid(d->pid, &status, 0);
  unlink(d->sock);
}

/* Puts `bytes` from device memory: returns the median put time (us) over
 * iters, deleting the batch after each so the arena is reused. */
static double put_median(scree_client *c, CUdeviceptr src, CUdeviceptr offs, uint64_t bytes,
                         int iters) {
  double *t = calloc((size_t)iters, sizeof(double)), t0, r;
  scree_array a;

  desc_init(&a, bytes);
  a.values = (void *)(uintptr_t)src;
  a.offsets = (void *)(uintptr_t)offs;
  a.device.type = SCREE_DEVICE_CUDA;
  for (int i = 0; i < iters + 1; i++) {
    t0 = now_us();
    if (scree_client_put(c, "bw", &a, NULL) != 0)
      die("put", scree_client_last_error(c));
    /* The first put imports the arena: warm-up, not counted. */
    if (i > 0)
      t[i - 1] = now_us() - t0;
    if (scree_client_delete(c, "bw", NULL) != 0)
      die("delete", scree_client_last_error(c));
  }
  r = quantile(t, iters, 0.5);
  free(t);
  return r;
}

static double d2d_median(CUdeviceptr dst, CUdeviceptr src, uint64_t bytes, int iters) {
  double *t = calloc((size_t)iters, sizeof(double)), r;
  CUevent e0, e1;
  float ms;

  cu_check(cu->cuEventCreate(&e0, CU_EVENT_DEFAULT), "cuEventCreate");
  cu_check(cu->cuEventCreate(&e1, CU_EVENT_DEFAULT), "cuEventCreate");
  for (int i = 0; i < iters + 1; i++) {
    cu_check(cu->cuEventRecord(e0, NULL), "cuEventRecord");
    cu_check(cu->cuMemcpyDtoDAsync(dst, src, bytes, NULL), "cuMemcpyDtoDAsync");
    cu_check(cu->cuEventRecord(e1, NULL), "cuEventRecord");
    cu_check(cu->cuEventSynchronize(e1), "cuEventSynchronize");
    cu_check(cu->cuEventElapsedTime(&ms, e0, e1), "cuEventElapsedTime");
    if (i > 0)
      t[i - 1] = ms * 1000.0;
  }
  r = quantile(t, iters, 0.5);
  free(t);
  return r;
}

static double rtt_median(int n) {
  char fdarg[16], buf[64] = {0};
  char *argv[] = {"/proc/self/exe", "--role", "echo", fdarg, NULL};
  double *t = calloc((size_t)n, sizeof(double)), t0, r;
  int sv[2];
  pid_t pid;

  /* Our end must not leak into the echo process, or it never sees EOF. */
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0 ||
      fcntl(sv[1], F_SETFD, 0) != 0)
    die("socketpair", "seqpacket");
  snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
  pid = spawn_role(argv);
  close(sv[1]);
  for (int i = 0; i < n + 1000; i++) {
    t0 = now_us();
    send(sv[0], buf, sizeof(buf), 0);
    recv(sv[0], buf, sizeof(buf), 0);
    if (i >= 1000)
      t[i - 1000] = now_us() - t0;
  }
  close(sv[0]);
  wait_ok(pid);
  r = quantile(t, n, 0.5);
  free(t);
  return r;
}

int main(int argc, char **argv) {
  static const uint64_t sizes[] = {MiB, GiB, 8 * GiB};
  static const char *const size_names[] = {"1 MiB", "1 GiB", "8 GiB"};
  static const char *const modes[] = {"vmm", "legacy"};
  double rtt, cached_1m = 0, best_bw_ratio = 0;
  double raw_ipc[3][2];
  char dev_name[256], msg[256];
  int quick;

  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 3 && strcmp(argv[1], "--role") == 0) {
    alarm(300);
    if (strcmp(argv[2], "attach") == 0)
      return role_attach(argv);
    if (strcmp(argv[2], "rawipc") == 0)
      return role_rawipc(argv);
    if (strcmp(argv[2], "echo") == 0)
      return role_echo(argv);
    return 2;
  }
  if (argc < 2)
    die("usage", "handoff_gpu SCREED [quick]");
  quick = argc > 2 && strcmp(argv[2], "quick") == 0;
  if (scree__cu_load(&cu, msg, sizeof(msg)) != 0)
    die("cuda", msg);
  cu_check(cu->cuDeviceGetName(dev_name, sizeof(dev_name), 0), "cuDeviceGetName");
  ctx_use(0);

  rtt = rtt_median(quick ? 2000 : 20000);
  fprintf(stderr, "handoff_gpu: seqpacket rtt %.1f us\n", rtt);

  /* Raw legacy IPC open of each size, for comparison. */
  for (int s = 0; s < 3; s++) {
    char hex[129], narg[16];
    char *rargv[] = {"/proc/self/exe", "--role", "rawipc", hex, narg, NULL};
    CUipcMemHandle h;
    CUdeviceptr p;
    FILE *out;
    int pipefd[2];
    posix_spawn_file_actions_t fa;
    pid_t pid;

    cu_check(cu->cuMemAlloc(&p, sizes[s]), "cuMemAlloc");
    cu_check(cu->cuIpcGetMemHandle(&h, p), "cuIpcGetMemHandle");
    for (int i = 0; i < 64; i++)
      sprintf(hex + 2 * i, "%02x", ((unsigned char *)&h)[i]);
    snprintf(narg, sizeof(narg), "%d", quick ? 5 : 30);
    if (pipe(pipefd) != 0)
      die("pipe", "rawipc");
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    fflush(stdout);
    if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, rargv, environ) != 0)
      die("posix_spawn", "rawipc");
    close(pipefd[1]);
    out = fdopen(pipefd[0], "r");
    if (fscanf(out, "%lf %lf", &raw_ipc[s][0], &raw_ipc[s][1]) != 2)
      die("rawipc", "no result");
    fclose(out);
    wait_ok(pid);
    posix_spawn_file_actions_destroy(&fa);
    cu_check(cu->cuMemFree(p), "cuMemFree");
  }

  printf("\nGPU handoff on %s (one GPU, device 0)\n\n", dev_name);
  printf("| ipc | batch | first attach p50 / p99 (us) | cached attach p50 / p99 (us) | "
         "put from GPU (GB/s) | cuMemcpyDtoD (GB/s) | put / D2D | raw IPC open first / "
         "median (us) |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int m = 0; m < 2; m++) {
    daemon_proc attach_d, put_d;
    scree_client *c;
    CUdeviceptr src, dst, offs;
    int64_t *hoffs;

    /* Attach: the default 256 MiB arenas (a 1 MiB batch shares one, larger
     * batches get their own). Put: one 9 GiB arena reused by every put. */
    daemon_start(&attach_d, argv[1], modes[m], "256M");
    daemon_start(&put_d, argv[1], modes[m], "9G");
    cu_check(cu->cuMemAlloc(&src, 8 * GiB), "cuMemAlloc");
    cu_check(cu->cuMemAlloc(&dst, 8 * GiB), "cuMemAlloc");
    cu_check(cu->cuMemAlloc(&offs, 65 * 8), "cuMemAlloc");
    cu_check(cu->cuMemsetD8(src, 0x5a, 8 * GiB), "cuMemsetD8");

    for (int s = 0; s < 3; s++) {
      char name[32], fn[16], cn[16];
      char *rargv[] = {"/proc/self/exe", "--role", "attach", attach_d.sock, name, fn, cn, NULL};
      double first50, first99, cached50, cached99, put_us, d2d_us, bw, d2d_bw;
      posix_spawn_file_actions_t fa;
      scree_array a;
      FILE *out;
      int pipefd[2];
      pid_t pid;

      desc_init(&a, sizes[s]);
      hoffs = malloc(65 * 8);
      for (int i = 0; i <= 64; i++)
        hoffs[i] = i * a.total_rows / 64;
      cu_check(cu->cuMemcpyHtoD(offs, hoffs, 65 * 8), "cuMemcpyHtoD");
      free(hoffs);

      /* The batch to attach to. */
      snprintf(name, sizeof(name), "b%d", s);
      c = connect_or_die(attach_d.sock);
      a.values = (void *)(uintptr_t)src;
      a.offsets = (void *)(uintptr_t)offs;
      a.device.type = SCREE_DEVICE_CUDA;
      if (scree_client_put(c, name, &a, NULL) != 0)
        die("put", scree_client_last_error(c));
      scree_client_close(c);

      snprintf(fn, sizeof(fn), "%d", quick ? 5 : (s == 2 ? 20 : 50));
      snprintf(cn, sizeof(cn), "%d", quick ? 200 : 5000);
      if (pipe(pipefd) != 0)
        die("pipe", "attach");
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
      fflush(stdout);
      if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, rargv, environ) != 0)
        die("posix_spawn", "attach");
      close(pipefd[1]);
      out = fdopen(pipefd[0], "r");
      if (fscanf(out, "%lf %lf %lf %lf", &first50, &first99, &cached50, &cached99) != 4)
        die("attach", "no result");
      fclose(out);
      wait_ok(pid);
      posix_spawn_file_actions_destroy(&fa);

      c = connect_or_die(put_d.sock);
      put_us = put_median(c, src, offs, sizes[s], quick ? 3 : (s == 2 ? 10 : 30));
      scree_client_close(c);
      d2d_us = d2d_median(dst, src, sizes[s], quick ? 3 : 20);
      bw = (double)sizes[s] / put_us / 1e3;
      d2d_bw = (double)sizes[s] / d2d_us / 1e3;
      if (s > 0 && bw / d2d_bw > best_bw_ratio)
        best_bw_ratio = bw / d2d_bw;
      if (s == 0 && m == 0)
        cached_1m = cached50;
      printf("| %s | %s | %.1f / %.1f | %.1f / %.1f | %.1f | %.1f | %.3f | %.1f / %.1f |\n",
             modes[m], size_names[s], first50, first99, cached50, cached99, bw, d2d_bw,
             bw / d2d_bw, raw_ipc[s][0], raw_ipc[s][1]);
    }
    cu->cuMemFree(src);
    cu->cuMemFree(dst);
    cu->cuMemFree(offs);
    daemon_stop(&attach_d);
    daemon_stop(&put_d);
  }
  printf("\nraw 64-byte SOCK_SEQPACKET round trip, median: %.1f us\n", rtt);
  printf("ratio cached attach p50 (vmm, 1 MiB) / raw RTT: %.2f (target <= 1.5)\n",
         cached_1m / rtt);
  printf("ratio best put / D2D over 1 and 8 GiB: %.3f (target >= 0.9)\n", best_bw_ratio);
  printf("cached_attach_us %.1f\n", cached_1m);
  return 0;
}
