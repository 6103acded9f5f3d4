/* handoff_gpu: how fast a GPU batch goes from one process to another
 * through screed, beside the floors it is built on (issue 14's table).
 *
 *   handoff_gpu SCREED [quick]
 *
 * For each ipc mode (vmm, legacy) it starts its own screed --device 0 with
 * the default arena size and memory limit, and with batches of 1 MiB, 1 GiB
 * and 8 GiB put from GPU memory measures:
 *   - first attach: a fresh connection's first get, which imports the arena,
 *     in a process whose CUDA context already exists;
 *   - cached attach: later gets on one connection (no driver call);
 *   - the steady state: put then delete, repeated on one connection (the
 *     put timed alone, and the whole put+delete step), beside
 *     cuMemcpyDtoD of the same bytes; the first put on a daemon (which makes
 *     the arena) and the first put on each new connection (which imports it),
 *     waiting for its seal and with a pipelined one;
 *   - at 1 MiB, the same steady state with a pipelined seal (put's
 *     async_seal): the put alone, the put and scree_client_flush, and the
 *     put+delete step, in round trips;
 *   - where a first attach goes: the Get's round trip and the arena's
 *     import as libscreeclient timed them (scree_client_info.last_call_ns,
 *     last_import_ns), and the first get of the fresh process itself;
 * and once: a raw 64-byte SOCK_SEQPACKET round trip, a raw cuIpcOpenMemHandle
 * of each size (what cudaIpcOpenMemHandle runs) and a raw VMM import of each
 * size timed step by step (fd receive, import, reserve, map, set access, and
 * the fd's close and the context calls libscreeclient makes around an
 * import, timed apart), the floor of a first attach in vmm mode; again at the
 * size of the arena a first attach really maps (a 1 MiB batch lies in an
 * arena of the default --arena-size, 256 MiB). Consumers are separate
 * processes (this binary again, in a --role). Results go to stdout as
 * Markdown tables, then "row" lines with issue 14's figures and "key value"
 * lines for scripts (bench/gpu_issue14.sh). */
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
#include "sys.h"

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

/* The median of n samples, which are then freed. */
static double median_free(double *v, int n) {
  double m = quantile(v, n, 0.5);
  free(v);
  return m;
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

/* attach SOCK NAME FIRST_N CACHED_N: prints "first p50 p99 cached p50 p99
 * call p50 import p50 fresh fresh_call fresh_import": a first get on a new
 * connection (p50, p99), a cached get (p50, p99), the first gets' round trip
 * and arena import as libscreeclient timed them (p50), and the very first
 * get of this process with its round trip and import. */
static int role_attach(char **argv) {
  int first_n = atoi(argv[5]), cached_n = atoi(argv[6]);
  double *first = calloc((size_t)first_n, sizeof(double));
  double *cached = calloc((size_t)cached_n, sizeof(double));
  double *call = calloc((size_t)first_n, sizeof(double));
  double *import = calloc((size_t)first_n, sizeof(double));
  double fresh[3] = {0, 0, 0};
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
    scree_client_info info = SCREE_CLIENT_INFO_INIT;

    c = connect_or_die(argv[3]);
    t0 = now_us();
    if (scree_client_get(c, argv[4], &a, &lease) != 0)
      die("get", scree_client_last_error(c));
    first[i] = now_us() - t0;
    scree_client_info_get(c, &info);
    call[i] = (double)info.last_call_ns / 1e3;
    import[i] = (double)info.last_import_ns / 1e3;
    if (i == 0) {
      fresh[0] = first[i];
      fresh[1] = call[i];
      fresh[2] = import[i];
    }
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
  printf("%.1f %.1f %.1f %.1f %.1f %.1f %.1f %.1f %.1f\n", quantile(first, first_n, 0.5),
         quantile(first, first_n, 0.99), quantile(cached, cached_n, 0.5),
         quantile(cached, cached_n, 0.99), quantile(call, first_n, 0.5),
         quantile(import, first_n, 0.5), fresh[0], fresh[1], fresh[2]);
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

/* rawvmm SOCK_FD N SIZE: receives N fds of one VMM allocation of SIZE bytes
 * (a multiple of the granularity) and imports each as a first attach does,
 * timing each step; prints the medians "recv import reserve map access
 * total close ctx" (us): total is the four driver steps; close is the fd's
 * close after the import, and ctx the context calls libscreeclient makes
 * around an import when the caller's current context is the device's
 * primary one (checking that, retaining it for the mapping), both outside
 * total. */
static int role_rawvmm(char **argv) {
  int sock = atoi(argv[3]), n = atoi(argv[4]);
  size_t size = (size_t)strtoull(argv[5], NULL, 10);
  double *t[8];
  char msg[256], buf[8];

  for (int k = 0; k < 8; k++)
    t[k] = calloc((size_t)n, sizeof(double));
  if (scree__cu_load(&cu, msg, sizeof(msg)) != 0)
    die("cuda", msg);
  ctx_use(0);
  for (int i = 0; i < n; i++) {
    CUmemGenericAllocationHandle h;
    CUmemAccessDesc acc;
    CUdeviceptr p = 0;
    CUcontext cur = NULL, primary = NULL, mine = NULL;
    CUdevice dev;
    unsigned flags = 0;
    unsigned extra = 0;
    int fd = -1, nfds = 0, ctrunc = 0, active = 0;
    double t0, t1, t2, t3, t4, t5, t6, t7;

    /* scree__cuda_access_device, then scree__cuda_enter (import_cuda.c). */
    t6 = now_us();
    cu_check(cu->cuCtxGetCurrent(&cur), "cuCtxGetCurrent");
    cu_check(cu->cuDeviceGet(&dev, 0), "cuDeviceGet");
    cu_check(cu->cuDevicePrimaryCtxGetState(dev, &flags, &active),
             "cuDevicePrimaryCtxGetState");
    cu_check(cu->cuDevicePrimaryCtxRetain(&primary, dev), "cuDevicePrimaryCtxRetain");
    cu_check(cu->cuDevicePrimaryCtxRelease(dev), "cuDevicePrimaryCtxRelease");
    cu_check(cu->cuCtxGetCurrent(&cur), "cuCtxGetCurrent");
    cu_check(cu->cuDeviceGet(&dev, 0), "cuDeviceGet");
    cu_check(cu->cuDevicePrimaryCtxRetain(&mine, dev), "cuDevicePrimaryCtxRetain");
    cu_check(cu->cuCtxSetCurrent(mine), "cuCtxSetCurrent");
    cu_check(cu->cuCtxSetCurrent(cur), "cuCtxSetCurrent");
    t7 = now_us();
    t0 = now_us();
    if (scree__recv_fds(sock, buf, sizeof(buf), 0, &fd, 1, &nfds, &extra, &ctrunc) < 0 ||
        nfds != 1)
      die("rawvmm", "no fd received");
    t1 = now_us();
    cu_check(cu->cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
                                                CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
             "cuMemImportFromShareableHandle");
    t2 = now_us();
    cu_check(cu->cuMemAddressReserve(&p, size, 0, 0, 0), "cuMemAddressReserve");
    t3 = now_us();
    cu_check(cu->cuMemMap(p, size, 0, h, 0), "cuMemMap");
    t4 = now_us();
    memset(&acc, 0, sizeof(acc));
    acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    acc.location.id = 0;
    acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    cu_check(cu->cuMemSetAccess(p, size, &acc, 1), "cuMemSetAccess");
    t5 = now_us();
    t[0][i] = t1 - t0;
    t[1][i] = t2 - t1;
    t[2][i] = t3 - t2;
    t[3][i] = t4 - t3;
    t[4][i] = t5 - t4;
    t[5][i] = t5 - t1; /* the driver's part: receiving waits on the sender */
    t0 = now_us();
    close(fd);
    t[6][i] = now_us() - t0;
    t[7][i] = t7 - t6;
    cu->cuMemUnmap(p, size);
    cu->cuMemAddressFree(p, size);
    cu->cuMemRelease(h);
    cu->cuDevicePrimaryCtxRelease(dev);
  }
  printf("%.1f %.1f %.1f %.1f %.1f %.1f %.1f %.1f\n", quantile(t[0], n, 0.5),
         quantile(t[1], n, 0.5), quantile(t[2], n, 0.5), quantile(t[3], n, 0.5),
         quantile(t[4], n, 0.5), quantile(t[5], n, 0.5), quantile(t[6], n, 0.5),
         quantile(t[7], n, 0.5));
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

/* screed with its defaults (arena size, memory limit: the card's), as a
 * user would start it. */
static void daemon_start(daemon_proc *d, const char *screed, const char *ipc) {
  char *argv[] = {(char *)screed, "--device", "0", "--ipc", (char *)ipc, "--socket", d->sock,
                  "--log-level", "warn", NULL};

  snprintf(d->sock, sizeof(d->sock), "/tmp/scree-bench-%d-%s.sock", (int)getpid(), ipc);
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

static void array_on_gpu(scree_array *a, uint64_t bytes, CUdeviceptr src, CUdeviceptr offs) {
  desc_init(a, bytes);
  a->values = (void *)(uintptr_t)src;
  a->offsets = (void *)(uintptr_t)offs;
  a->device.type = SCREE_DEVICE_CUDA;
}

typedef struct put_figures {
  double cold;       /* the first put on a fresh daemon (makes the arena) */
  double steady;     /* p50 of a put in the put-then-delete loop */
  double step;       /* p50 of one put + delete step */
  double first_conn; /* p50 of the first put on a new connection */
  double first_conn_async; /* the same with a pipelined seal: the put alone */
  uint64_t imports;  /* arena imports of the steady loop's connection */
  uint64_t inline_puts; /* puts of the steady loop whose offsets went inline */
  /* The same loop with a pipelined seal (put's async_seal), 1 MiB only. */
  double async_put;   /* p50 of the put alone */
  double async_flush; /* p50 of the put and scree_client_flush */
  double async_step;  /* p50 of one put + delete step (the delete takes the
                       * seal's reply first) */
} put_figures;

/* The first put on each of conns new connections (connecting not timed),
 * with opts, then its delete (which takes a pipelined seal's reply). */
static void first_puts(const char *sock, const scree_array *a, const scree_put_options *opts,
                       int conns, double *out) {
  for (int i = 0; i < conns; i++) {
    scree_client *c = connect_or_die(sock);
    double t0 = now_us();

    if (scree_client_put(c, "bw", a, opts) != 0)
      die("put", scree_client_last_error(c));
    out[i] = now_us() - t0;
    if (scree_client_delete(c, "bw", NULL) != 0)
      die("delete", scree_client_last_error(c));
    scree_client_close(c);
  }
}

/* The steady state: put then delete on one connection, iters times after
 * a first put that may create the arena; then the first put on each of
 * conns new connections (connecting not timed), waiting for its seal, then
 * again with a pipelined seal (the put alone is timed; the delete after it
 * takes the seal's reply). */
static void put_loop(const char *sock, CUdeviceptr src, CUdeviceptr offs, uint64_t bytes,
                     int iters, int conns, put_figures *f) {
  double *t = calloc((size_t)iters, sizeof(double));
  double *st = calloc((size_t)iters, sizeof(double));
  double *fc = calloc((size_t)conns, sizeof(double));
  double *fca = calloc((size_t)conns, sizeof(double));
  scree_put_options async = SCREE_PUT_OPTIONS_INIT;
  scree_client_info info = SCREE_CLIENT_INFO_INIT;
  scree_client *c = connect_or_die(sock);
  scree_array a;

  array_on_gpu(&a, bytes, src, offs);
  for (int i = 0; i < iters + 1; i++) {
    double t0 = now_us(), t1, t2;

    if (scree_client_put(c, "bw", &a, NULL) != 0)
      die("put", scree_client_last_error(c));
    t1 = now_us();
    if (scree_client_delete(c, "bw", NULL) != 0)
      die("delete", scree_client_last_error(c));
    t2 = now_us();
    if (i == 0) {
      f->cold = t1 - t0;
    } else {
      t[i - 1] = t1 - t0;
      st[i - 1] = t2 - t0;
    }
  }
  scree_client_info_get(c, &info);
  f->imports = info.arena_imports;
  f->inline_puts = info.inline_puts;
  scree_client_close(c);
  first_puts(sock, &a, NULL, conns, fc);
  async.async_seal = 1;
  first_puts(sock, &a, &async, conns, fca);
  f->steady = median_free(t, iters);
  f->step = median_free(st, iters);
  f->first_conn = median_free(fc, conns);
  f->first_conn_async = median_free(fca, conns);
}

/* The steady state with a pipelined seal, on one connection whose arena
 * exists already (put_loop ran): put then delete, timing the put alone and
 * the whole step; then put and flush, timing both. */
static void put_loop_async(const char *sock, CUdeviceptr src, CUdeviceptr offs,
                           uint64_t bytes, int iters, put_figures *f) {
  double *t = calloc((size_t)iters, sizeof(double));
  double *st = calloc((size_t)iters, sizeof(double));
  double *fl = calloc((size_t)iters, sizeof(double));
  scree_put_options o = SCREE_PUT_OPTIONS_INIT;
  scree_client *c = connect_or_die(sock);
  scree_array a;

  o.async_seal = 1;
  array_on_gpu(&a, bytes, src, offs);
  for (int i = 0; i < iters + 1; i++) {
    double t0 = now_us(), t1, t2;

    if (scree_client_put(c, "bwa", &a, &o) != 0)
      die("put (async seal)", scree_client_last_error(c));
    t1 = now_us();
    if (scree_client_delete(c, "bwa", NULL) != 0)
      die("delete", scree_client_last_error(c));
    t2 = now_us();
    if (i > 0) {
      t[i - 1] = t1 - t0;
      st[i - 1] = t2 - t0;
    }
  }
  for (int i = 0; i < iters + 1; i++) {
    double t0 = now_us();

    if (scree_client_put(c, "bwa", &a, &o) != 0)
      die("put (async seal)", scree_client_last_error(c));
    if (scree_client_flush(c) != 0)
      die("flush", scree_client_last_error(c));
    if (i > 0)
      fl[i - 1] = now_us() - t0;
    if (scree_client_delete(c, "bwa", NULL) != 0)
      die("delete", scree_client_last_error(c));
  }
  scree_client_close(c);
  f->async_put = median_free(t, iters);
  f->async_step = median_free(st, iters);
  f->async_flush = median_free(fl, iters);
}

/* The arena a batch of `bytes` uint8 values (desc_init) lies in, on a
 * daemon whose standard arena is arena_size bytes and granularity gran:
 * the standard one when its block fits, else one of its own, rounded. */
static uint64_t arena_bytes(uint64_t bytes, uint64_t arena_size, uint64_t gran) {
  uint64_t block = (bytes + 255) / 256 * 256 + (65 * 8 + 255) / 256 * 256;

  if (block <= arena_size)
    return arena_size;
  return (block + gran - 1) / gran * gran;
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
  cu->cuEventDestroy(e0);
  cu->cuEventDestroy(e1);
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

/* Runs this binary in role argv, reading nvals doubles from its stdout. */
static void role_read(char **argv, double *vals, int nvals) {
  posix_spawn_file_actions_t fa;
  FILE *out;
  int pipefd[2];
  pid_t pid;

  if (pipe(pipefd) != 0)
    die("pipe", argv[2]);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  fflush(stdout);
  if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ) != 0)
    die("posix_spawn", argv[2]);
  close(pipefd[1]);
  out = fdopen(pipefd[0], "r");
  for (int i = 0; i < nvals; i++)
    if (fscanf(out, "%lf", &vals[i]) != 1)
      die(argv[2], "no result");
  fclose(out);
  wait_ok(pid);
  posix_spawn_file_actions_destroy(&fa);
}

/* A raw VMM import of `bytes` (rounded to the granularity) in another
 * process, step by step: fills v with the medians of role_rawvmm. */
static void raw_vmm(uint64_t bytes, int n, double v[8]) {
  CUmemAllocationProp prop;
  CUmemGenericAllocationHandle h;
  char sockarg[16], narg[16], sizearg[32];
  char *argv[] = {"/proc/self/exe", "--role", "rawvmm", sockarg, narg, sizearg, NULL};
  size_t gran = 0, size;
  int sv[2], fd = -1;
  posix_spawn_file_actions_t fa;
  FILE *out;
  int pipefd[2];
  pid_t pid;

  memset(&prop, 0, sizeof(prop));
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = 0;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  cu_check(cu->cuMemGetAllocationGranularity(&gran, &prop,
                                             CU_MEM_ALLOC_GRANULARITY_RECOMMENDED),
           "cuMemGetAllocationGranularity");
  size = (bytes + gran - 1) / gran * gran;
  cu_check(cu->cuMemCreate(&h, size, &prop, 0), "cuMemCreate");
  cu_check(cu->cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                                            0),
           "cuMemExportToShareableHandle");
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0 ||
      fcntl(sv[1], F_SETFD, 0) != 0)
    die("socketpair", "rawvmm");
  snprintf(sockarg, sizeof(sockarg), "%d", sv[1]);
  snprintf(narg, sizeof(narg), "%d", n);
  snprintf(sizearg, sizeof(sizearg), "%zu", size);
  if (pipe(pipefd) != 0)
    die("pipe", "rawvmm");
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  fflush(stdout);
  if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ) != 0)
    die("posix_spawn", "rawvmm");
  close(pipefd[1]);
  close(sv[1]);
  /* All fds up front: the child's receive then measures the system call,
   * not this process. */
  for (int i = 0; i < n; i++)
    if (scree__send_fd(sv[0], "f", 1, fd, 0) < 0)
      die("rawvmm", "sending the fd");
  out = fdopen(pipefd[0], "r");
  for (int i = 0; i < 8; i++)
    if (fscanf(out, "%lf", &v[i]) != 1)
      die("rawvmm", "no result");
  fclose(out);
  wait_ok(pid);
  posix_spawn_file_actions_destroy(&fa);
  close(sv[0]);
  close(fd);
  cu_check(cu->cuMemRelease(h), "cuMemRelease");
}

int main(int argc, char **argv) {
  static const uint64_t sizes[] = {MiB, GiB, 8 * GiB};
  static const char *const size_names[] = {"1 MiB", "1 GiB", "8 GiB"};
  static const char *const size_keys[] = {"1MiB", "1GiB", "8GiB"};
  static const char *const modes[] = {"vmm", "legacy"};
  double rtt, raw_ipc[3][2], raw[3][8], rawa[3][8], d2d[3];
  double first50[2][3], first99[2][3], cached50[2][3], cached99[2][3];
  double call50[2][3], import50[2][3], fresh[2][3][3];
  uint64_t arena[3] = {0, 0, 0};
  put_figures pf[2][3];
  char dev_name[256], msg[256];
  CUdeviceptr src, dst, offs;
  int quick;

  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 3 && strcmp(argv[1], "--role") == 0) {
    alarm(300);
    if (strcmp(argv[2], "attach") == 0)
      return role_attach(argv);
    if (strcmp(argv[2], "rawipc") == 0)
      return role_rawipc(argv);
    if (strcmp(argv[2], "rawvmm") == 0)
      return role_rawvmm(argv);
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

  /* The floors: a raw legacy IPC open and a raw VMM import of each size. */
  for (int s = 0; s < 3; s++) {
    char hex[129], narg[16];
    char *rargv[] = {"/proc/self/exe", "--role", "rawipc", hex, narg, NULL};
    CUipcMemHandle h;
    CUdeviceptr p;

    cu_check(cu->cuMemAlloc(&p, sizes[s]), "cuMemAlloc");
    cu_check(cu->cuIpcGetMemHandle(&h, p), "cuIpcGetMemHandle");
    for (int i = 0; i < 64; i++)
      sprintf(hex + 2 * i, "%02x", ((unsigned char *)&h)[i]);
    snprintf(narg, sizeof(narg), "%d", quick ? 5 : 30);
    role_read(rargv, raw_ipc[s], 2);
    cu_check(cu->cuMemFree(p), "cuMemFree");
    raw_vmm(sizes[s], quick ? 5 : 30, raw[s]);
  }

  cu_check(cu->cuMemAlloc(&src, 8 * GiB), "cuMemAlloc");
  cu_check(cu->cuMemAlloc(&dst, 8 * GiB), "cuMemAlloc");
  cu_check(cu->cuMemAlloc(&offs, 65 * 8), "cuMemAlloc");
  cu_check(cu->cuMemsetD8(src, 0x5a, 8 * GiB), "cuMemsetD8");
  for (int s = 0; s < 3; s++)
    d2d[s] = d2d_median(dst, src, sizes[s], quick ? 3 : 20);

  memset(pf, 0, sizeof(pf));
  for (int m = 0; m < 2; m++) {
    daemon_proc d;

    daemon_start(&d, argv[1], modes[m]);
    if (m == 0) {
      scree_client_info info = SCREE_CLIENT_INFO_INIT;
      scree_client *c = connect_or_die(d.sock);

      scree_client_info_get(c, &info);
      scree_client_close(c);
      for (int s = 0; s < 3; s++)
        arena[s] = arena_bytes(sizes[s], info.arena_size, info.granularity);
    }
    for (int s = 0; s < 3; s++) {
      char name[32], fn[16], cn[16];
      char *rargv[] = {"/proc/self/exe", "--role", "attach", d.sock, name, fn, cn, NULL};
      double v[9];
      int64_t hoffs[65];
      scree_client *c;
      scree_array a;

      desc_init(&a, sizes[s]);
      for (int i = 0; i <= 64; i++)
        hoffs[i] = i * a.total_rows / 64;
      cu_check(cu->cuMemcpyHtoD(offs, hoffs, sizeof(hoffs)), "cuMemcpyHtoD");

      /* The steady state first, on a daemon that has no arena of this
       * size yet: its first put is the cold one. */
      put_loop(d.sock, src, offs, sizes[s], quick ? 5 : (s == 2 ? 10 : 30),
               quick ? 3 : (s == 2 ? 5 : 10), &pf[m][s]);
      if (s == 0)
        put_loop_async(d.sock, src, offs, sizes[s], quick ? 5 : 30, &pf[m][s]);

      /* The batch to attach to, from a producer that then goes away. */
      snprintf(name, sizeof(name), "b%d", s);
      c = connect_or_die(d.sock);
      array_on_gpu(&a, sizes[s], src, offs);
      if (scree_client_put(c, name, &a, NULL) != 0)
        die("put", scree_client_last_error(c));
      scree_client_close(c);
      snprintf(fn, sizeof(fn), "%d", quick ? 5 : (s == 2 ? 20 : 50));
      snprintf(cn, sizeof(cn), "%d", quick ? 200 : 5000);
      role_read(rargv, v, 9);
      first50[m][s] = v[0];
      first99[m][s] = v[1];
      cached50[m][s] = v[2];
      cached99[m][s] = v[3];
      call50[m][s] = v[4];
      import50[m][s] = v[5];
      fresh[m][s][0] = v[6];
      fresh[m][s][1] = v[7];
      fresh[m][s][2] = v[8];
      /* Its memory stays for the next size's attach: sizes differ, so
       * nothing here is reused by the next put loop. */
      c = connect_or_die(d.sock);
      if (scree_client_delete(c, name, NULL) != 0)
        die("delete", scree_client_last_error(c));
      scree_client_close(c);
    }
    daemon_stop(&d);
  }
  cu->cuMemFree(src);
  cu->cuMemFree(dst);
  cu->cuMemFree(offs);
  /* The floor of a first attach at the size it really maps: the arena. */
  for (int s = 0; s < 3; s++)
    raw_vmm(arena[s], quick ? 5 : 30, rawa[s]);

  printf("\nGPU handoff on %s (device 0); screed with its default arena size and memory "
         "limit\n\n", dev_name);
  printf("raw 64-byte SOCK_SEQPACKET round trip, median: %.1f us\n\n", rtt);
  printf("| ipc | batch | first attach p50 / p99 (us) | cached attach p50 / p99 (us) | "
         "raw import (us) | first attach / raw import |\n");
  printf("| --- | --- | --- | --- | --- | --- |\n");
  /* What a first attach is compared with, by mode and size: in vmm mode a
   * raw VMM import (the driver's part) of the batch's size and of the
   * arena it maps; in legacy mode a raw IPC open of the batch. */
  double raw_batch[2][3], raw_arena[2][3];
  for (int s = 0; s < 3; s++) {
    raw_batch[0][s] = raw[s][5];
    raw_arena[0][s] = rawa[s][5];
    raw_batch[1][s] = raw_arena[1][s] = raw_ipc[s][1];
  }
  for (int m = 0; m < 2; m++)
    for (int s = 0; s < 3; s++)
      printf("| %s | %s | %.1f / %.1f | %.1f / %.1f | %.1f | %.2f |\n", modes[m],
             size_names[s], first50[m][s], first99[m][s], cached50[m][s], cached99[m][s],
             raw_batch[m][s], first50[m][s] / raw_batch[m][s]);
  printf("\nraw VMM import, medians (us): fd receive, cuMemImportFromShareableHandle, "
         "cuMemAddressReserve, cuMemMap, cuMemSetAccess; driver total (those four); then, "
         "outside the total, the fd's close and the context calls libscreeclient makes "
         "around an import (check the current context, retain the primary one); of the "
         "batch's size, then of the arena a first attach maps\n\n");
  printf("| size | receive | import | reserve | map | set access | driver total | close | "
         "context calls |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int k = 0; k < 6; k++) {
    const double *r = k < 3 ? raw[k] : rawa[k - 3];
    char label[64];

    if (k < 3)
      snprintf(label, sizeof(label), "%s batch", size_names[k]);
    else
      snprintf(label, sizeof(label), "its arena, %.0f MiB", (double)arena[k - 3] / MiB);
    printf("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", label, r[0],
           r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
  }
  printf("\nwhere a first attach goes, p50 (us): the Get's round trip (request sent to reply "
         "and fd received) and the arena's import as libscreeclient timed them "
         "(scree_client_info.last_call_ns, last_import_ns), the rest (the view, the fd's "
         "close, bookkeeping); beside the raw driver total of the arena; then the first get "
         "of the fresh consumer process (total / round trip / import)\n\n");
  printf("| ipc | batch | first attach | Get round trip | import | rest | raw driver, "
         "arena | import - raw | fresh process: first get / round trip / import |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int m = 0; m < 2; m++)
    for (int s = 0; s < 3; s++) {
      double r = raw_arena[m][s];
      printf("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f / %.1f / %.1f |\n",
             modes[m], size_names[s], first50[m][s], call50[m][s], import50[m][s],
             first50[m][s] - call50[m][s] - import50[m][s], r, import50[m][s] - r,
             fresh[m][s][0], fresh[m][s][1], fresh[m][s][2]);
    }
  printf("\nputs from GPU memory (us); steady = put then delete repeated on one "
         "connection\n\n");
  printf("| ipc | batch | cold put (new arena) | steady put p50 | put+delete step p50 | "
         "first put on a connection p50 | the same, pipelined seal (put alone) | D2D p50 | "
         "put speed / D2D speed | steady imports |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int m = 0; m < 2; m++)
    for (int s = 0; s < 3; s++) {
      const put_figures *f = &pf[m][s];
      printf("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.3f | %" PRIu64 " |\n",
             modes[m], size_names[s], f->cold, f->steady, f->step, f->first_conn,
             f->first_conn_async, d2d[s], d2d[s] / f->steady, f->imports);
    }

  printf("\n1 MiB puts from GPU memory with a pipelined seal (async_seal), p50 (us; round "
         "trips in brackets); the waiting put beside them\n\n");
  printf("| ipc | put | put + flush | put+delete step | waiting put | its put+delete step | "
         "puts with inline offsets |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  for (int m = 0; m < 2; m++) {
    const put_figures *f = &pf[m][0];
    printf("| %s | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) | "
           "%" PRIu64 " |\n",
           modes[m], f->async_put, f->async_put / rtt, f->async_flush, f->async_flush / rtt,
           f->async_step, f->async_step / rtt, f->steady, f->steady / rtt, f->step,
           f->step / rtt, f->inline_puts);
  }

  printf("\nissue 14 rows (vmm unless said; targets in brackets)\n");
  printf("row cached attach / raw RTT: 1 MiB %.1f/%.1f = %.2f, 1 GiB %.1f/%.1f = %.2f "
         "[<= 1.5]\n",
         cached50[0][0], rtt, cached50[0][0] / rtt, cached50[0][1], rtt,
         cached50[0][1] / rtt);
  printf("row 1 GiB steady put / D2D: %.1f us vs %.1f us = %.3f (legacy %.3f) [>= 0.9]\n",
         pf[0][1].steady, d2d[1], d2d[1] / pf[0][1].steady, d2d[1] / pf[1][1].steady);
  printf("row 8 GiB steady put / D2D: %.1f us vs %.1f us = %.3f (legacy %.3f) [>= 0.9]\n",
         pf[0][2].steady, d2d[2], d2d[2] / pf[0][2].steady, d2d[2] / pf[1][2].steady);
  printf("row first 1 GiB put on a connection / D2D: %.1f us = %.3f (legacy %.3f; cold put "
         "on a new daemon %.1f us; with a pipelined seal, the put alone: %.1f us = %.3f) "
         "[>= 0.8]\n",
         pf[0][1].first_conn, d2d[1] / pf[0][1].first_conn, d2d[1] / pf[1][1].first_conn,
         pf[0][1].cold, pf[0][1].first_conn_async, d2d[1] / pf[0][1].first_conn_async);
  printf("row 1 MiB steady put: %.1f us = %.1f round trips (legacy %.1f us; D2D %.1f us; "
         "put+delete step %.1f us) [<= 3 round trips]\n",
         pf[0][0].steady, pf[0][0].steady / rtt, pf[1][0].steady, d2d[0], pf[0][0].step);
  printf("row 1 MiB steady put, pipelined seal: put %.1f us = %.1f round trips; put + flush "
         "%.1f us = %.1f (legacy put %.1f us; put+delete step %.1f us) [<= 3 round trips]\n",
         pf[0][0].async_put, pf[0][0].async_put / rtt, pf[0][0].async_flush,
         pf[0][0].async_flush / rtt, pf[1][0].async_put, pf[0][0].async_step);
  printf("row first attach / raw VMM import: 1 MiB %.1f/%.1f = %.2f, 1 GiB %.1f/%.1f = %.2f, "
         "8 GiB %.1f/%.1f = %.2f [<= 1.2]\n",
         first50[0][0], raw[0][5], first50[0][0] / raw[0][5], first50[0][1], raw[1][5],
         first50[0][1] / raw[1][5], first50[0][2], raw[2][5], first50[0][2] / raw[2][5]);
  printf("row first attach / raw VMM import of the arena it maps: 1 MiB %.1f/%.1f = %.2f "
         "(arena %.0f MiB), 1 GiB %.1f/%.1f = %.2f, 8 GiB %.1f/%.1f = %.2f [<= 1.2]\n",
         first50[0][0], rawa[0][5], first50[0][0] / rawa[0][5], (double)arena[0] / MiB,
         first50[0][1], rawa[1][5], first50[0][1] / rawa[1][5], first50[0][2], rawa[2][5],
         first50[0][2] / rawa[2][5]);
  printf("row first attach breakdown (p50 us): 1 MiB Get round trip %.1f + import %.1f "
         "(raw driver %.1f) + rest %.1f; 1 GiB %.1f + %.1f (%.1f) + %.1f; floor = one round "
         "trip + the raw import of the arena: 1 MiB %.1f, 1 GiB %.1f\n",
         call50[0][0], import50[0][0], rawa[0][5],
         first50[0][0] - call50[0][0] - import50[0][0], call50[0][1], import50[0][1],
         rawa[1][5], first50[0][1] - call50[0][1] - import50[0][1], rtt + rawa[0][5],
         rtt + rawa[1][5]);
  printf("row steady-state imports per connection (1 = the arena was reused): 1 MiB %" PRIu64
         ", 1 GiB %" PRIu64 ", 8 GiB %" PRIu64 "\n",
         pf[0][0].imports, pf[0][1].imports, pf[0][2].imports);
  printf("\nrtt_us %.1f\n", rtt);
  for (int s = 0; s < 3; s++)
    printf("cached_attach_us_%s %.1f\n", size_keys[s], cached50[0][s]);
  /* The key bench/gpu_all.sh reads. */
  printf("cached_attach_us %.1f\n", cached50[0][0]);
  return 0;
}
