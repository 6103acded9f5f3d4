/* screed on a GPU, end to end: a real screed --device 0 per case, in both
 * ipc modes, with producers and consumers in separate processes (this binary
 * again, in a --role). Bytes are compared after a copy on the GPU through
 * the consumer's mapping. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cudadrv.h"
#include "gpu_cu.h"
#include "gpu_util.h"
#include "scree/client.h"

#define MiB ((int64_t)1 << 20)

/* ---- arrays: uint8 values (rows x inner), int64 offsets ---- */

static void desc_init(scree_array *a, int64_t batch, int64_t rows, int64_t inner) {
  memset(a, 0, sizeof(*a));
  a->dtype = SCREE_UINT8;
  a->ndim_inner = 1;
  a->inner[0] = inner;
  a->batch_size = batch;
  a->total_rows = rows;
  a->offsets_dtype = SCREE_INT64;
}

static int64_t *offsets_make(int64_t batch, int64_t rows, int64_t *max_len) {
  int64_t *o = malloc((size_t)(batch + 1) * sizeof(*o));

  T_CHECK(o != NULL);
  *max_len = 0;
  for (int64_t i = 0; i <= batch; i++) {
    o[i] = i * rows / batch;
    if (i > 0 && o[i] - o[i - 1] > *max_len)
      *max_len = o[i] - o[i - 1];
  }
  return o;
}

/* Checks a batch obtained by get: descriptor, then bytes read on the GPU
 * (a device-to-device copy through the mapping into a scratch buffer of
 * the current context, then to the host). */
static void verify(const scree_array *a, int64_t batch, int64_t rows, int64_t inner,
                   uint32_t seed) {
  const scree__cu *cu = cu_get();
  size_t vbytes = (size_t)(rows * inner), obytes = (size_t)(batch + 1) * 8;
  int64_t max_len, *want_off = offsets_make(batch, rows, &max_len);
  unsigned char *host = malloc(vbytes > obytes ? vbytes : obytes);
  CUdeviceptr scratch;

  T_CHECK(host != NULL);
  T_EQ(a->device.type, SCREE_DEVICE_CUDA);
  T_EQ(a->batch_size, batch);
  T_EQ(a->total_rows, rows);
  T_EQ(a->max_length, max_len);
  T_EQ(cu->cuMemAlloc(&scratch, vbytes > obytes ? vbytes : obytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpy(scratch, (CUdeviceptr)(uintptr_t)a->values, vbytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpyDtoH(host, scratch, vbytes), CUDA_SUCCESS);
  for (size_t i = 0; i < vbytes; i++)
    if (host[i] != gpu_pattern(i, seed))
      T_FAIL("values byte %zu is %u, expected %u", i, host[i], gpu_pattern(i, seed));
  T_EQ(cu->cuMemcpy(scratch, (CUdeviceptr)(uintptr_t)a->offsets, obytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpyDtoH(host, scratch, obytes), CUDA_SUCCESS);
  T_CHECKM(memcmp(host, want_off, obytes) == 0, "offsets differ");
  T_EQ(cu->cuMemFree(scratch), CUDA_SUCCESS);
  free(want_off);
  free(host);
}

/* Publishes a batch with values pattern(seed), from GPU memory (on_gpu) or
 * host memory. */
static int put_batch(scree_client *c, const char *name, int64_t batch, int64_t rows,
                     int64_t inner, uint32_t seed, int on_gpu) {
  const scree__cu *cu = cu_get();
  size_t vbytes = (size_t)(rows * inner), obytes = (size_t)(batch + 1) * 8;
  unsigned char *vals = malloc(vbytes);
  int64_t max_len, *offs = offsets_make(batch, rows, &max_len);
  CUdeviceptr dv = 0, doff = 0;
  scree_array a;
  int rc;

  T_CHECK(vals != NULL);
  for (size_t i = 0; i < vbytes; i++)
    vals[i] = gpu_pattern(i, seed);
  desc_init(&a, batch, rows, inner);
  if (on_gpu) {
    T_EQ(cu->cuMemAlloc(&dv, vbytes), CUDA_SUCCESS);
    T_EQ(cu->cuMemAlloc(&doff, obytes), CUDA_SUCCESS);
    T_EQ(cu->cuMemcpyHtoD(dv, vals, vbytes), CUDA_SUCCESS);
    T_EQ(cu->cuMemcpyHtoD(doff, offs, obytes), CUDA_SUCCESS);
    a.values = (void *)(uintptr_t)dv;
    a.offsets = (void *)(uintptr_t)doff;
    a.device.type = SCREE_DEVICE_CUDA;
  } else {
    a.values = vals;
    a.offsets = offs;
  }
  rc = scree_client_put(c, name, &a, NULL);
  if (on_gpu) {
    cu->cuMemFree(dv);
    cu->cuMemFree(doff);
  }
  free(vals);
  free(offs);
  return rc;
}

/* ---- the daemon ---- */

typedef struct daemon_proc {
  pid_t pid;
  char sock[108];
} daemon_proc;

static scree_client *connect_ok(const char *sock) {
  scree_client *c = NULL;
  int rc = scree_client_connect(sock, &c);

  T_EQM(rc, 0, "connect %s: %s", sock, scree_client_last_error(c));
  return c;
}

static void daemon_start(daemon_proc *d, const char *ipc, const char *const *extra) {
  static int serial;
  char *argv[32];
  int n = 0, status;

  snprintf(d->sock, sizeof(d->sock), "/tmp/scree-gpu-%d-%d.sock", (int)getpid(), serial++);
  unlink(d->sock);
  argv[n++] = (char *)SCREE_SCREED;
  argv[n++] = (char *)"--device";
  argv[n++] = (char *)"0";
  argv[n++] = (char *)"--ipc";
  argv[n++] = (char *)ipc;
  argv[n++] = (char *)"--socket";
  argv[n++] = d->sock;
  argv[n++] = (char *)"--log-level";
  argv[n++] = (char *)"warn";
  for (; extra != NULL && *extra != NULL; extra++)
    argv[n++] = (char *)*extra;
  argv[n] = NULL;
  T_EQ(posix_spawn(&d->pid, SCREE_SCREED, NULL, NULL, argv, environ), 0);
  /* CUDA start-up takes a moment: wait for the socket to answer. */
  for (int i = 0; i < 600; i++) {
    scree_client *c = NULL;

    if (scree_client_connect(d->sock, &c) == 0) {
      scree_client_close(c);
      return;
    }
    scree_client_close(c);
    T_CHECKM(waitpid(d->pid, &status, WNOHANG) == 0, "screed exited at start (status %d)",
             status);
    usleep(50000);
  }
  T_FAIL("screed did not answer on %s", d->sock);
}

static void daemon_stop(daemon_proc *d) {
  int status;

  T_EQ(kill(d->pid, SIGTERM), 0);
  T_EQ(waitpid(d->pid, &status, 0), d->pid);
  T_CHECKM(WIFEXITED(status) && WEXITSTATUS(status) == 0, "screed ended with status %d",
           status);
  unlink(d->sock);
}

static scree_stats stats_of(scree_client *c) {
  scree_stats s = SCREE_STATS_INIT;

  T_EQM(scree_client_stats(c, &s), 0, "%s", scree_client_last_error(c));
  return s;
}

/* ---- helper processes ---- */

static pid_t role_spawn(char *const *env, ...) {
  char *argv[16];
  va_list ap;
  pid_t pid;
  int n = 0;

  argv[n++] = (char *)"/proc/self/exe";
  argv[n++] = (char *)"--role";
  va_start(ap, env);
  while ((argv[n] = va_arg(ap, char *)) != NULL)
    n++;
  va_end(ap);
  fflush(stdout);
  T_EQ(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env != NULL ? env : environ),
       0);
  return pid;
}

static void role_wait_ok(pid_t pid, const char *what) {
  int status;

  T_EQ(waitpid(pid, &status, 0), pid);
  T_CHECKM(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s ended with status %d", what,
           status);
}

#define ROLE(...) role_spawn(NULL, __VA_ARGS__, (char *)NULL)
static char *num(char *buf, long long v) {
  sprintf(buf, "%lld", v);
  return buf;
}

/* Roles; arguments after "--role NAME":
 *   put SOCK NAME BATCH ROWS INNER SEED gpu|host
 *   get SOCK NAME BATCH ROWS INNER SEED [PEER_ORDINAL]
 *   getmany SOCK PREFIX COUNT BATCH ROWS INNER SEED
 *   hold SOCK NAME BATCH ROWS INNER SEED READY_FD GO_FD
 *   getfail SOCK NAME SUBSTRING */
static int roles(int argc, char **argv) {
  const char *role = argv[2];
  scree_client *c;
  scree_client_info info = SCREE_CLIENT_INFO_INIT;
  scree_lease *lease;
  scree_array a;
  int rc;

  if (strcmp(role, "put") == 0 && argc == 10) {
    c = connect_ok(argv[3]);
    ctx_use(0);
    rc = put_batch(c, argv[4], atoll(argv[5]), atoll(argv[6]), atoll(argv[7]),
                   (uint32_t)atol(argv[8]), strcmp(argv[9], "gpu") == 0);
    T_EQM(rc, 0, "put %s: %s", argv[4], scree_client_last_error(c));
    scree_client_close(c);
    /* The producer exits here; its batch must outlive it. */
    return 0;
  }
  if ((strcmp(role, "get") == 0 && (argc == 9 || argc == 10)) ||
      (strcmp(role, "hold") == 0 && argc == 11)) {
    int peer = strcmp(role, "get") == 0 && argc == 10 ? atoi(argv[9]) : -1;

    c = connect_ok(argv[3]);
    /* A consumer on another GPU works there; else on the daemon's GPU. */
    ctx_use(peer >= 0 ? peer : 0);
    rc = scree_client_get(c, argv[4], &a, &lease);
    T_EQM(rc, 0, "get %s: %s", argv[4], scree_client_last_error(c));
    T_EQ(a.device.index, 0);
    verify(&a, atoll(argv[5]), atoll(argv[6]), atoll(argv[7]), (uint32_t)atol(argv[8]));
    if (strcmp(role, "hold") == 0) {
      char b = 1;

      T_EQ(write(atoi(argv[9]), &b, 1), 1);
      /* The test deletes the batch (or kills us) meanwhile. */
      T_EQ(read(atoi(argv[10]), &b, 1), 1);
      verify(&a, atoll(argv[5]), atoll(argv[6]), atoll(argv[7]), (uint32_t)atol(argv[8]));
    }
    T_EQM(scree_client_release(c, lease), 0, "%s", scree_client_last_error(c));
    scree_client_close(c);
    return 0;
  }
  if (strcmp(role, "getmany") == 0 && argc == 10) {
    long count = atol(argv[5]);
    char name[64];

    c = connect_ok(argv[3]);
    ctx_use(0);
    for (long i = 0; i < count; i++) {
      snprintf(name, sizeof(name), "%s%ld", argv[4], i);
      rc = scree_client_get(c, name, &a, &lease);
      T_EQM(rc, 0, "get %s: %s", name, scree_client_last_error(c));
      verify(&a, atoll(argv[6]), atoll(argv[7]), atoll(argv[8]),
             (uint32_t)(atol(argv[9]) + i));
      T_EQ(scree_client_release(c, lease), 0);
    }
    /* Every batch sat in one arena: one import, whatever the count. */
    T_EQ(scree_client_info_get(c, &info), 0);
    T_EQM(info.arena_imports, 1, "%ld gets", count);
    T_EQ(info.arenas_mapped, 1);
    scree_client_close(c);
    return 0;
  }
  if (strcmp(role, "getfail") == 0 && argc == 6) {
    c = connect_ok(argv[3]);
    rc = scree_client_get(c, argv[4], &a, &lease);
    T_CHECKM(rc != 0, "get succeeded");
    T_CHECKM(strstr(scree_client_last_error(c), argv[5]) != NULL, "message: %s (%s)",
             scree_client_last_error(c), scree_err_name(rc));
    scree_client_close(c);
    return 0;
  }
  fprintf(stderr, "bad role arguments\n");
  return 2;
}

/* ---- cases ---- */

static const char *const no_extra[] = {NULL};

/* Put from GPU memory and from host memory, in producers that exit before
 * the consumer attaches; in-place create + seal on a stream; bad offsets written
 * on the GPU refused at seal. */
static void put_get(const char *ipc) {
  const scree__cu *cu = cu_get();
  char b1[24], b2[24], b3[24], b4[24];
  daemon_proc d;
  scree_client *c;
  scree_array desc, out;
  int64_t max_len, *offs;
  unsigned char *vals;
  CUstream stream;
  scree_stats st = SCREE_STATS_INIT;
  int rc;

  daemon_start(&d, ipc, no_extra);
  role_wait_ok(ROLE("put", d.sock, "from_gpu", "100", num(b1, 100000), num(b2, 640),
                    num(b3, 11), "gpu"),
               "producer (gpu)");
  role_wait_ok(ROLE("put", d.sock, "from_host", "7", "1000", "33", num(b4, 12), "host"),
               "producer (host)");
  role_wait_ok(ROLE("get", d.sock, "from_gpu", "100", b1, b2, b3), "consumer (gpu)");
  role_wait_ok(ROLE("get", d.sock, "from_host", "7", "1000", "33", b4), "consumer (host)");

  /* In place: the batch's memory is written on a stream, then sealed. */
  c = connect_ok(d.sock);
  ctx_use(0);
  T_EQ(cu->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
  desc_init(&desc, 50, 5000, 100);
  rc = scree_client_create(c, "in_place", &desc, &out, NULL);
  T_EQM(rc, 0, "%s", scree_client_last_error(c));
  T_EQ(out.device.type, SCREE_DEVICE_CUDA);
  vals = gpu_pattern_buf(500000, 13);
  offs = offsets_make(50, 5000, &max_len);
  T_EQ(cu->cuMemcpyHtoDAsync((CUdeviceptr)(uintptr_t)out.values, vals, 500000, stream),
       CUDA_SUCCESS);
  T_EQ(cu->cuMemcpyHtoDAsync((CUdeviceptr)(uintptr_t)out.offsets, offs, 51 * 8, stream),
       CUDA_SUCCESS);
  {
    scree_seal_options so = SCREE_SEAL_OPTIONS_INIT;
    so.stream = stream;
    rc = scree_client_seal(c, "in_place", &so);
  }
  T_EQM(rc, 0, "%s", scree_client_last_error(c));
  role_wait_ok(ROLE("get", d.sock, "in_place", "50", "5000", "100", "13"), "consumer");

  /* put from GPU memory on that stream. */
  {
    CUdeviceptr dv, doff;
    scree_array a;

    T_EQ(cu->cuMemAlloc(&dv, 500000), CUDA_SUCCESS);
    T_EQ(cu->cuMemAlloc(&doff, 51 * 8), CUDA_SUCCESS);
    T_EQ(cu->cuMemcpyHtoDAsync(dv, vals, 500000, stream), CUDA_SUCCESS);
    T_EQ(cu->cuMemcpyHtoDAsync(doff, offs, 51 * 8, stream), CUDA_SUCCESS);
    desc_init(&a, 50, 5000, 100);
    a.values = (void *)(uintptr_t)dv;
    a.offsets = (void *)(uintptr_t)doff;
    a.device.type = SCREE_DEVICE_CUDA;
    scree_put_options po = SCREE_PUT_OPTIONS_INIT;
    po.stream = stream;
    rc = scree_client_put(c, "streamed", &a, &po);
    T_EQM(rc, 0, "%s", scree_client_last_error(c));
    role_wait_ok(ROLE("get", d.sock, "streamed", "50", "5000", "100", "13"), "consumer");
    cu->cuMemFree(dv);
    cu->cuMemFree(doff);
  }

  /* Offsets that go backwards, written on the GPU: refused at seal with the
   * first bad index named; the batch stays created and can be fixed. */
  offs[20] = offs[21] + 1;
  rc = scree_client_create(c, "bad_offsets", &desc, &out, NULL);
  T_EQM(rc, 0, "%s", scree_client_last_error(c));
  T_EQ(cu->cuMemcpyHtoD((CUdeviceptr)(uintptr_t)out.offsets, offs, 51 * 8), CUDA_SUCCESS);
  rc = scree_client_seal(c, "bad_offsets", NULL);
  T_EQM(rc, SCREE_EINVAL, "%s", scree_client_last_error(c));
  T_CHECKM(strstr(scree_client_last_error(c), "offsets[2") != NULL, "message: %s",
           scree_client_last_error(c));
  free(offs);
  offs = offsets_make(50, 5000, &max_len);
  T_EQ(cu->cuMemcpyHtoD((CUdeviceptr)(uintptr_t)out.offsets, offs, 51 * 8), CUDA_SUCCESS);
  T_EQM(scree_client_seal(c, "bad_offsets", NULL), 0, "%s",
        scree_client_last_error(c));

  st = stats_of(c);
  T_EQ(st.batches, 5);
  T_EQ(st.leases, 0);
  cu->cuStreamDestroy(stream);
  free(vals);
  free(offs);
  scree_client_close(c);
  daemon_stop(&d);
}

/* A consumer killed with -9 while holding a lease: its leases go with its
 * connection, and the daemon's counters return to the baseline. */
static void kill9_consumer(const char *ipc) {
  daemon_proc d;
  scree_client *c;
  scree_stats st = SCREE_STATS_INIT;
  int ready[2], go[2];
  char rfd[16], gfd[16];
  pid_t pid;
  char b;
  int status;

  daemon_start(&d, ipc, no_extra);
  c = connect_ok(d.sock);
  ctx_use(0);
  T_EQM(put_batch(c, "held", 10, 1000, 64, 5, 1), 0, "%s", scree_client_last_error(c));
  st = stats_of(c);
  T_EQ(st.leases, 0);
  T_EQ(pipe(ready), 0);
  T_EQ(pipe(go), 0);
  pid = ROLE("hold", d.sock, "held", "10", "1000", "64", "5", num(rfd, ready[1]),
             num(gfd, go[0]));
  T_EQ(read(ready[0], &b, 1), 1);
  st = stats_of(c);
  T_EQ(st.leases, 1);
  T_EQ(st.connections, 2);
  T_EQ(kill(pid, SIGKILL), 0);
  T_EQ(waitpid(pid, &status, 0), pid);
  for (int i = 0; i < 200; i++) {
    st = stats_of(c);
    if (st.leases == 0 && st.connections == 1)
      break;
    usleep(20000);
  }
  T_EQ(st.leases, 0);
  T_EQ(st.connections, 1);
  T_EQ(st.batches, 1);
  /* And the batch is still whole for the next consumer. */
  role_wait_ok(ROLE("get", d.sock, "held", "10", "1000", "64", "5"), "consumer");
  close(ready[0]);
  close(ready[1]);
  close(go[0]);
  close(go[1]);
  scree_client_close(c);
  daemon_stop(&d);
}

/* A 1 GiB batch from GPU memory. */
static void big_batch(const char *ipc) {
  daemon_proc d;
  scree_client *c;

  daemon_start(&d, ipc, no_extra);
  c = connect_ok(d.sock);
  ctx_use(0);
  T_EQM(put_batch(c, "big", 4096, 1 << 20, 1024, 21, 1), 0, "%s", scree_client_last_error(c));
  role_wait_ok(ROLE("get", d.sock, "big", "4096", "1048576", "1024", "21"), "consumer");
  scree_client_close(c);
  daemon_stop(&d);
}

/* Hundreds of batches in one arena: the consumer imports it once. */
static void many_batches(const char *ipc) {
  daemon_proc d;
  scree_client *c;
  scree_stats st = SCREE_STATS_INIT;
  char name[32];

  daemon_start(&d, ipc, no_extra);
  c = connect_ok(d.sock);
  ctx_use(0);
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof(name), "m%d", i);
    T_EQM(put_batch(c, name, 4, 64, 1024, (uint32_t)(100 + i), i % 2), 0, "%s",
          scree_client_last_error(c));
  }
  st = stats_of(c);
  T_EQ(st.batches, 300);
  T_EQ(st.arenas, 1);
  role_wait_ok(ROLE("getmany", d.sock, "m", "300", "4", "64", "1024", "100"), "consumer");
  scree_client_close(c);
  daemon_stop(&d);
}

/* Delete while a consumer holds a lease: the name goes at once, the memory
 * with the last lease, and the consumer's view stays valid until then. */
static void delete_leased(const char *ipc) {
  daemon_proc d;
  scree_client *c;
  scree_stats st = SCREE_STATS_INIT;
  scree_array a;
  int ready[2], go[2], deferred = 0;
  char rfd[16], gfd[16], b = 1;
  pid_t pid;

  daemon_start(&d, ipc, no_extra);
  c = connect_ok(d.sock);
  ctx_use(0);
  T_EQM(put_batch(c, "doomed", 16, 4096, 256, 9, 1), 0, "%s", scree_client_last_error(c));
  T_EQ(pipe(ready), 0);
  T_EQ(pipe(go), 0);
  pid = ROLE("hold", d.sock, "doomed", "16", "4096", "256", "9", num(rfd, ready[1]),
             num(gfd, go[0]));
  T_EQ(read(ready[0], &b, 1), 1);
  T_EQM(scree_client_delete(c, "doomed", &deferred), 0, "%s", scree_client_last_error(c));
  T_EQ(deferred, 1);
  T_EQ(scree_client_get(c, "doomed", &a, NULL), SCREE_ENOENT);
  st = stats_of(c);
  T_EQ(st.pending_deletes, 1);
  /* A new batch of the same name may be made meanwhile. */
  T_EQM(put_batch(c, "doomed", 2, 10, 10, 1, 0), 0, "%s", scree_client_last_error(c));
  T_EQ(write(go[1], &b, 1), 1);
  role_wait_ok(pid, "holder");
  T_EQM(scree_client_delete(c, "doomed", &deferred), 0, "%s", scree_client_last_error(c));
  T_EQ(deferred, 0);
  st = stats_of(c);
  T_EQ(st.pending_deletes, 0);
  T_EQ(st.batches, 0);
  T_EQ(st.leases, 0);
  T_EQ(st.bytes_used, 0);
  close(ready[0]);
  close(ready[1]);
  close(go[0]);
  close(go[1]);
  scree_client_close(c);
  daemon_stop(&d);
}

/* A connection that gets a batch and then creates one in the same arena:
 * the CUDA backend has no read-only handle, so the Get brought the only
 * handle (Location.writable) and the Create brings none; the client's
 * import serves both, once. The earlier view stays valid. */
static void get_then_create(const char *ipc) {
  const scree__cu *cu = cu_get();
  daemon_proc d;
  scree_client *c;
  scree_client_info info = SCREE_CLIENT_INFO_INIT;
  scree_batch_info b1, b2;
  scree_array g, desc, w;
  scree_lease *l;
  int64_t max_len, *offs;
  unsigned char *vals;
  int rc;

  daemon_start(&d, ipc, no_extra);
  role_wait_ok(ROLE("put", d.sock, "first", "4", "400", "32", "21", "host"), "producer");
  c = connect_ok(d.sock);
  ctx_use(0);
  rc = scree_client_get(c, "first", &g, &l);
  T_EQM(rc, 0, "%s", scree_client_last_error(c));
  verify(&g, 4, 400, 32, 21);
  desc_init(&desc, 5, 500, 16);
  rc = scree_client_create(c, "second", &desc, &w, NULL);
  T_EQM(rc, 0, "%s", scree_client_last_error(c));
  vals = gpu_pattern_buf(8000, 22);
  offs = offsets_make(5, 500, &max_len);
  T_EQ(cu->cuMemcpyHtoD((CUdeviceptr)(uintptr_t)w.values, vals, 8000), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpyHtoD((CUdeviceptr)(uintptr_t)w.offsets, offs, 6 * 8), CUDA_SUCCESS);
  T_EQM(scree_client_seal(c, "second", NULL), 0, "%s", scree_client_last_error(c));
  T_EQ(scree_client_stat(c, "first", &b1), 0);
  T_EQ(scree_client_stat(c, "second", &b2), 0);
  T_EQ(b1.arena_id, b2.arena_id);
  T_EQ(scree_client_info_get(c, &info), 0);
  T_EQ(info.arena_imports, 1);
  T_EQ(info.arenas_mapped, 1);
  T_EQ(info.stray_fds_closed, 0);
  verify(&g, 4, 400, 32, 21);
  T_EQ(scree_client_release(c, l), 0);
  role_wait_ok(ROLE("get", d.sock, "second", "5", "500", "16", "22"), "consumer");
  free(vals);
  free(offs);
  scree_client_close(c);
  daemon_stop(&d);
}

/* A memory limit larger than the GPU: creates fail with ENOSPC once the
 * device is full, and the daemon goes on serving. */
static void exhaustion(const char *ipc) {
  /* Emptied arenas are kept for reuse until --release-free-after: 0 here,
   * so that the two deleted below go back within the purge's second. */
  static const char *const extra[] = {"--memory-limit", "1T", "--arena-size", "4G",
                                      "--release-free-after", "0", NULL};
  daemon_proc d;
  scree_client *c;
  scree_array desc, out;
  scree_stats st = SCREE_STATS_INIT;
  char name[32];
  int rc = 0, made = 0, deferred;

  daemon_start(&d, ipc, extra);
  c = connect_ok(d.sock);
  desc_init(&desc, 1, (int64_t)4 << 30, 1);
  for (int i = 0; i < 64; i++) {
    snprintf(name, sizeof(name), "fill%d", i);
    rc = scree_client_create(c, name, &desc, &out, NULL);
    if (rc != 0)
      break;
    made++;
  }
  T_EQM(rc, SCREE_ENOSPC, "after %d creates: %s", made, scree_client_last_error(c));
  T_CHECKM(strstr(scree_client_last_error(c), "CUDA_ERROR_OUT_OF_MEMORY") != NULL,
           "message: %s", scree_client_last_error(c));
  T_CHECKM(made >= 2, "only %d 4 GiB batches fit", made);
  printf("exhaustion(%s): %d batches of 4 GiB, then: %s\n", ipc, made,
         scree_client_last_error(c));
  st = stats_of(c);
  T_EQ(st.batches, made);
  /* Free two so that a consumer has room for its own CUDA context. */
  T_EQ(scree_client_delete(c, "fill0", &deferred), 0);
  T_EQ(scree_client_delete(c, "fill1", &deferred), 0);
  for (int i = 0; i < 50 && (st = stats_of(c)).arenas > (uint32_t)made - 2; i++)
    usleep(100000);
  T_EQM(st.arenas, made - 2, "the emptied arenas did not go back to the driver");
  ctx_use(0);
  T_EQM(put_batch(c, "after", 8, 800, 8, 4, 1), 0, "%s", scree_client_last_error(c));
  role_wait_ok(ROLE("get", d.sock, "after", "8", "800", "8", "4"), "consumer");
  scree_client_close(c);
  daemon_stop(&d);
}

/* A consumer that cannot see the daemon's GPU is told so by name. */
static void gpu_not_visible(const char *ipc) {
  char *env[64];
  int n = 0;
  daemon_proc d;
  scree_client *c;
  pid_t pid;

  daemon_start(&d, ipc, no_extra);
  c = connect_ok(d.sock);
  ctx_use(0);
  T_EQM(put_batch(c, "hidden", 2, 10, 10, 1, 0), 0, "%s", scree_client_last_error(c));
  for (char **e = environ; *e != NULL && n < 62; e++)
    if (strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21) != 0)
      env[n++] = *e;
  env[n++] = (char *)"CUDA_VISIBLE_DEVICES=";
  env[n] = NULL;
  pid = role_spawn(env, "getfail", d.sock, "hidden", "is not visible in this process",
                   (char *)NULL);
  role_wait_ok(pid, "consumer without GPUs");
  scree_client_close(c);
  daemon_stop(&d);
}

/* A consumer working on a second GPU reads the first GPU's batch over the
 * peer link. Skips (visibly) on a machine with one GPU. */
static void second_gpu(const char *ipc) {
  const scree__cu *cu = cu_get();
  daemon_proc d;
  scree_client *c;
  int count = 0, can = 0;

  T_EQ(cu->cuDeviceGetCount(&count), CUDA_SUCCESS);
  if (count < 2) {
    printf("SKIP: second_gpu needs two GPUs, this machine has %d\n", count);
    exit(SCREE_TEST_SKIP);
  }
  T_EQ(cu->cuDeviceCanAccessPeer(&can, 1, 0), CUDA_SUCCESS);
  if (!can) {
    /* The import would then fail with a clear error, but nothing here
     * could tell that error from a broken path: say so instead of passing. */
    printf("SKIP: second_gpu needs peer access from GPU 1 to GPU 0, which this machine lacks\n");
    exit(SCREE_TEST_SKIP);
  }
  daemon_start(&d, ipc, no_extra);
  c = connect_ok(d.sock);
  ctx_use(0);
  T_EQM(put_batch(c, "far", 8, 8000, 128, 17, 1), 0, "%s", scree_client_last_error(c));
  role_wait_ok(ROLE("get", d.sock, "far", "8", "8000", "128", "17", "1"), "consumer on GPU 1");
  scree_client_close(c);
  daemon_stop(&d);
}

/* Arenas kept across deletes (issue 14): a batch larger than the arena
 * size, deleted and put again, lands in the same arena; the producer and a
 * long-lived consumer keep their imports (no new import, no unmap, the same
 * address); a new batch is invisible to readers until sealed; and the
 * memory goes back to the driver once the arena has been empty for
 * --release-free-after, the clients unmapping it at their next request. */
static void reuse(const char *ipc) {
  static const char *const extra[] = {"--arena-size", "64M", "--release-free-after", "2",
                                      NULL};
  const scree__cu *cu = cu_get();
  const int64_t batch = 16, rows = 96 * 1024, inner = 1024; /* 96 MiB */
  scree_client_info pi = SCREE_CLIENT_INFO_INIT, ci = SCREE_CLIENT_INFO_INIT;
  scree_batch_info b1, b2;
  scree_stats st;
  scree_array a, desc, w;
  scree_lease *l;
  daemon_proc d;
  scree_client *prod, *cons;
  void *first_values;
  size_t free0 = 0, free1 = 0, total = 0;

  daemon_start(&d, ipc, extra);
  ctx_use(0);
  prod = connect_ok(d.sock);
  cons = connect_ok(d.sock);
  T_EQM(put_batch(prod, "big", batch, rows, inner, 1, 1), 0, "%s",
        scree_client_last_error(prod));
  T_EQ(scree_client_stat(prod, "big", &b1), 0);
  T_EQM(scree_client_get(cons, "big", &a, &l), 0, "%s", scree_client_last_error(cons));
  verify(&a, batch, rows, inner, 1);
  first_values = a.values;
  T_EQ(scree_client_release(cons, l), 0);
  T_EQ(scree_client_delete(prod, "big", NULL), 0);
  st = stats_of(prod);
  T_EQ(st.bytes_used, 0);
  T_EQM(st.arenas, 1, "the emptied arena is kept");

  /* The next put of the same size reuses it: same arena id, no import. */
  T_EQM(put_batch(prod, "big", batch, rows, inner, 2, 1), 0, "%s",
        scree_client_last_error(prod));
  T_EQ(scree_client_stat(prod, "big", &b2), 0);
  T_EQ(b2.arena_id, b1.arena_id);
  T_EQM(scree_client_get(cons, "big", &a, &l), 0, "%s", scree_client_last_error(cons));
  T_CHECKM(a.values == first_values, "the consumer's view moved: %p, was %p", a.values,
           first_values);
  verify(&a, batch, rows, inner, 2);
  T_EQ(scree_client_release(cons, l), 0);
  T_EQ(scree_client_info_get(prod, &pi), 0);
  T_EQ(scree_client_info_get(cons, &ci), 0);
  T_EQ(pi.arena_imports, 1);
  T_EQ(ci.arena_imports, 1);
  T_EQ(pi.arena_unmaps, 0);
  T_EQ(ci.arena_unmaps, 0);

  /* A new batch in the reused arena: only its creator reaches it before
   * seal (its bytes are unspecified until written). */
  T_EQ(scree_client_delete(prod, "big", NULL), 0);
  desc_init(&desc, batch, rows, inner);
  T_EQM(scree_client_create(prod, "fresh", &desc, &w, NULL), 0, "%s",
        scree_client_last_error(prod));
  T_EQ(scree_client_stat(prod, "fresh", &b2), 0);
  T_EQ(b2.arena_id, b1.arena_id);
  T_EQ(scree_client_get(cons, "fresh", &a, &l), SCREE_ESTATE);
  T_EQ(scree_client_delete(prod, "fresh", NULL), 0);

  /* Memory back to the driver after the delay. */
  T_EQ(cu->cuMemGetInfo(&free0, &total), CUDA_SUCCESS);
  for (int i = 0; i < 60 && (st = stats_of(prod)).arenas > 0; i++)
    usleep(100000);
  T_EQM(st.arenas, 0, "the empty arena is still held after the release delay");
  T_EQ(st.bytes_arenas, 0);
  (void)stats_of(cons); /* its reply carries the freed-arena notice */
  T_EQ(scree_client_info_get(prod, &pi), 0);
  T_EQ(scree_client_info_get(cons, &ci), 0);
  T_EQ(pi.arena_unmaps, 1);
  T_EQ(ci.arena_unmaps, 1);
  T_EQ(pi.arenas_mapped, 0);
  T_EQ(cu->cuMemGetInfo(&free1, &total), CUDA_SUCCESS);
  T_CHECKM(free1 >= free0 + (size_t)(rows * inner),
           "device free memory went from %zu to %zu bytes, not up by the arena", free0,
           free1);
  scree_client_close(cons);
  scree_client_close(prod);
  daemon_stop(&d);
}

/* Reads the data of a version 1 .npy file written by screectl. */
static unsigned char *npy_data(const char *path, size_t want) {
  FILE *f = fopen(path, "rb");
  unsigned char hdr[10], *data = malloc(want + 1);
  size_t hlen;

  T_CHECKM(f != NULL, "%s: %s", path, strerror(errno));
  T_CHECK(data != NULL);
  T_EQ(fread(hdr, 1, 10, f), 10);
  T_CHECKM(memcmp(hdr, "\x93NUMPY\x01", 7) == 0, "%s is not a version 1 .npy file", path);
  hlen = (size_t)hdr[8] | (size_t)hdr[9] << 8;
  T_EQ(fseek(f, (long)(10 + hlen), SEEK_SET), 0);
  T_EQM(fread(data, 1, want + 1, f), want, "%s holds another amount of data", path);
  fclose(f);
  return data;
}

/* screectl get of a batch in GPU memory writes its bytes (issue 14). */
static void screectl_get(const char *ipc) {
  const int64_t batch = 6, rows = 3000, inner = 40;
  char vpath[64], opath[64];
  daemon_proc d;
  scree_client *c;
  unsigned char *v;
  int64_t max_len, *want_off = offsets_make(batch, rows, &max_len), *o;
  int status;
  pid_t pid;

  daemon_start(&d, ipc, no_extra);
  c = connect_ok(d.sock);
  ctx_use(0);
  T_EQM(put_batch(c, "npy", batch, rows, inner, 33, 1), 0, "%s", scree_client_last_error(c));
  snprintf(vpath, sizeof(vpath), "/tmp/scree-gpu-%d-v.npy", (int)getpid());
  snprintf(opath, sizeof(opath), "/tmp/scree-gpu-%d-o.npy", (int)getpid());
  {
    char *argv[] = {(char *)SCREE_SCREECTL, (char *)"--socket", d.sock, (char *)"get",
                    (char *)"npy", (char *)"--values", vpath, (char *)"--offsets", opath,
                    NULL};
    fflush(stdout);
    T_EQ(posix_spawn(&pid, SCREE_SCREECTL, NULL, NULL, argv, environ), 0);
    T_EQ(waitpid(pid, &status, 0), pid);
    T_CHECKM(WIFEXITED(status) && WEXITSTATUS(status) == 0, "screectl get: status %d",
             status);
  }
  v = npy_data(vpath, (size_t)(rows * inner));
  for (size_t i = 0; i < (size_t)(rows * inner); i++)
    if (v[i] != gpu_pattern(i, 33))
      T_FAIL("values byte %zu is %u, expected %u", i, v[i], gpu_pattern(i, 33));
  o = (int64_t *)npy_data(opath, (size_t)(batch + 1) * 8);
  T_CHECKM(memcmp(o, want_off, (size_t)(batch + 1) * 8) == 0, "offsets differ");
  unlink(vpath);
  unlink(opath);
  free(v);
  free(o);
  free(want_off);
  scree_client_close(c);
  daemon_stop(&d);
}

/* Without --memory-limit a GPU's limit is a share of its free memory at
 * start; --memory-limit overrides it. */
static void default_limit(const char *ipc) {
  static const char *const extra[] = {"--memory-limit", "3G", NULL};
  const scree__cu *cu = cu_get();
  scree_client_info info = SCREE_CLIENT_INFO_INIT;
  size_t free_b = 0, total = 0;
  daemon_proc d;
  scree_client *c;

  ctx_use(0);
  T_EQ(cu->cuMemGetInfo(&free_b, &total), CUDA_SUCCESS);
  daemon_start(&d, ipc, no_extra);
  c = connect_ok(d.sock);
  T_EQ(scree_client_info_get(c, &info), 0);
  printf("default_limit(%s): %llu bytes of %zu free, %zu total\n", ipc,
         (unsigned long long)info.memory_limit, free_b, total);
  T_CHECKM(info.memory_limit <= (uint64_t)free_b, "limit %llu > free %zu",
           (unsigned long long)info.memory_limit, free_b);
  T_CHECKM(info.memory_limit >= (uint64_t)free_b / 2, "limit %llu < half of free %zu",
           (unsigned long long)info.memory_limit, free_b);
  scree_client_close(c);
  daemon_stop(&d);
  daemon_start(&d, ipc, extra);
  c = connect_ok(d.sock);
  T_EQ(scree_client_info_get(c, &info), 0);
  T_EQ(info.memory_limit, (uint64_t)3 << 30);
  scree_client_close(c);
  daemon_stop(&d);
}

/* A put from GPU memory with options; bad_at > 0 makes offsets[bad_at]
 * go backwards on the GPU. */
static int put_gpu_with(scree_client *c, const char *name, int64_t batch, int64_t rows,
                        int64_t inner, uint32_t seed, const scree_put_options *o,
                        int64_t bad_at) {
  const scree__cu *cu = cu_get();
  size_t vbytes = (size_t)(rows * inner), obytes = (size_t)(batch + 1) * 8;
  unsigned char *vals = malloc(vbytes);
  int64_t max_len, *offs = offsets_make(batch, rows, &max_len);
  CUdeviceptr dv = 0, doff = 0;
  scree_array a;
  int rc;

  T_CHECK(vals != NULL);
  for (size_t i = 0; i < vbytes; i++)
    vals[i] = gpu_pattern(i, seed);
  if (bad_at > 0)
    offs[bad_at] = offs[bad_at - 1] - 1;
  desc_init(&a, batch, rows, inner);
  T_EQ(cu->cuMemAlloc(&dv, vbytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemAlloc(&doff, obytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpyHtoD(dv, vals, vbytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpyHtoD(doff, offs, obytes), CUDA_SUCCESS);
  a.values = (void *)(uintptr_t)dv;
  a.offsets = (void *)(uintptr_t)doff;
  a.device.type = SCREE_DEVICE_CUDA;
  rc = scree_client_put(c, name, &a, o);
  /* Whether or not the seal is still on its way, the copies are done. */
  cu->cuMemFree(dv);
  cu->cuMemFree(doff);
  free(vals);
  free(offs);
  return rc;
}

/* Small puts from GPU memory. A GPU daemon does not take offsets inline
 * (its own pageable write into the batch costs more than reading them
 * back: handler.c), so the client copies them and the daemon checks them at
 * seal; the pipelined seal returns before that check and reports its
 * failure at the next call, naming the batch; a failed put takes its batch
 * back. */
static void small_puts(const char *ipc) {
  scree_put_options async = SCREE_PUT_OPTIONS_INIT;
  scree_client_info info = SCREE_CLIENT_INFO_INIT;
  scree_batch_info bi;
  daemon_proc d;
  scree_client *c;

  async.async_seal = 1;
  daemon_start(&d, ipc, NULL);
  c = connect_ok(d.sock);
  ctx_use(0);
  T_EQ(scree_client_info_get(c, &info), 0);
  T_EQ(info.inline_offsets, 0);
  T_EQM(put_gpu_with(c, "sync", 50, 5000, 100, 41, NULL, 0), 0, "%s",
        scree_client_last_error(c));
  T_EQM(put_gpu_with(c, "async", 50, 5000, 100, 42, &async, 0), 0, "%s",
        scree_client_last_error(c));
  T_EQM(scree_client_flush(c), 0, "%s", scree_client_last_error(c));
  role_wait_ok(ROLE("get", d.sock, "sync", "50", "5000", "100", "41"), "consumer");
  role_wait_ok(ROLE("get", d.sock, "async", "50", "5000", "100", "42"), "consumer");
  /* Offsets that go backwards on the GPU: a waiting put fails at its seal,
   * naming the offset, and takes the batch back. */
  T_EQ(put_gpu_with(c, "bad", 50, 5000, 100, 43, NULL, 7), SCREE_EINVAL);
  T_CHECKM(strstr(scree_client_last_error(c), "offsets[6]") != NULL, "message: %s",
           scree_client_last_error(c));
  T_EQ(scree_client_stat(c, "bad", &bi), SCREE_ENOENT);
  /* The same pipelined: put returns once Seal is sent, the flush reports. */
  T_EQM(put_gpu_with(c, "bad_async", 50, 5000, 100, 45, &async, 7), 0,
        "sent without waiting: %s", scree_client_last_error(c));
  T_EQ(scree_client_flush(c), SCREE_EINVAL);
  T_CHECKM(strstr(scree_client_last_error(c), "the seal of 'bad_async'") != NULL,
           "message: %s", scree_client_last_error(c));
  T_EQ(scree_client_stat(c, "bad_async", &bi), SCREE_ENOENT);
  T_EQ(scree_client_info_get(c, &info), 0);
  T_EQ(info.inline_puts, 0);
  scree_client_close(c);
  daemon_stop(&d);
}

#define BOTH_MODES(fn)                                                         \
  static void fn##_vmm(void) { fn("vmm"); }                                    \
  static void fn##_legacy(void) { fn("legacy"); }
BOTH_MODES(put_get)
BOTH_MODES(kill9_consumer)
BOTH_MODES(big_batch)
BOTH_MODES(many_batches)
BOTH_MODES(delete_leased)
BOTH_MODES(get_then_create)
BOTH_MODES(exhaustion)
BOTH_MODES(gpu_not_visible)
BOTH_MODES(second_gpu)
BOTH_MODES(reuse)
BOTH_MODES(screectl_get)
BOTH_MODES(default_limit)
BOTH_MODES(small_puts)

GPU_TEST_MAIN_ROLES(roles, GPU_CASE(put_get_vmm), GPU_CASE(put_get_legacy),
                    GPU_CASE(kill9_consumer_vmm), GPU_CASE(kill9_consumer_legacy),
                    GPU_CASE(big_batch_vmm), GPU_CASE(big_batch_legacy),
                    GPU_CASE(many_batches_vmm), GPU_CASE(many_batches_legacy),
                    GPU_CASE(delete_leased_vmm), GPU_CASE(delete_leased_legacy),
                    GPU_CASE(get_then_create_vmm), GPU_CASE(get_then_create_legacy),
                    GPU_CASE(exhaustion_vmm), GPU_CASE(exhaustion_legacy),
                    GPU_CASE(gpu_not_visible_vmm), GPU_CASE(gpu_not_visible_legacy),
                    GPU_CASE(second_gpu_vmm), GPU_CASE(second_gpu_legacy),
                    GPU_CASE(reuse_vmm), GPU_CASE(reuse_legacy),
                    GPU_CASE(screectl_get_vmm), GPU_CASE(screectl_get_legacy),
                    GPU_CASE(default_limit_vmm), GPU_CASE(default_limit_legacy),
                    GPU_CASE(small_puts_vmm), GPU_CASE(small_puts_legacy))
