/* Peers on a GPU: two screeds --device 0 on one card, joined over UCX's
 * tcp transport on 127.0.0.1, fetch batches between their device arenas.
 * Each screed logs at start which path its batches take (peers_path:
 * ucx-cuda where UCX supports CUDA, staged through pinned host memory
 * where it does not, as with Debian's UCX); the case prints it. Every byte
 * is checked through a client: the fetched batch is attached (CUDA IPC)
 * and copied to the host.
 *
 * Cases (gpu_main.h runs each in a process of its own):
 *   fetch_sizes      1 byte, a batch of empty rows, 64 MiB, and about
 *                    40 MiB that is no multiple of the 16 MiB chunk
 *   mixed_host_gpu   a host-memory owner with a GPU fetcher, and the
 *                    reverse (one side staged, the other zero-copy)
 *   owner_killed     the owner killed (SIGKILL) mid-transfer of 1 GiB: the
 *                    fetch fails naming the peer, the reservation goes,
 *                    nothing half-written is named */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* 1 GiB is written, fetched and checked within one case. */
#define GPU_TEST_ALARM 300
#include "cudadrv.h"
#include "gpu_cu.h"
#include "gpu_util.h"
#include "peers_util.h"
#include "scree/client.h"

#define MiB ((int64_t)1 << 20)

/* ---- two screeds ---- */

typedef struct screed_proc {
  pid_t pid;
  char sock[108];
  char log[128];
} screed_proc;

typedef struct pair {
  screed_proc owner, fetcher;
  char secret[96];
  unsigned port;
} pair;

static void screed_start(screed_proc *d, const char *device, const char *a1, const char *a2,
                         const char *secret) {
  static int serial;
  posix_spawn_file_actions_t fa;
  int status;

  snprintf(d->sock, sizeof(d->sock), "/tmp/scree-gpu-peers-%d-%d.sock", (int)getpid(),
           serial);
  snprintf(d->log, sizeof(d->log), "/tmp/scree-gpu-peers-%d-%d.log", (int)getpid(), serial++);
  unlink(d->sock);
  char *argv[] = {(char *)SCREE_SCREED, (char *)"--device", (char *)device,
                  (char *)"--socket", d->sock, (char *)"--log-level", (char *)"info",
                  (char *)"--memory-limit", (char *)"8G", (char *)a1, (char *)a2,
                  (char *)"--peer-secret-file", (char *)secret, NULL};
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  T_EQ(posix_spawn(&d->pid, SCREE_SCREED, &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  for (int i = 0; i < 600; i++) {
    scree_client *c = NULL;

    if (scree_client_connect(d->sock, &c) == 0) {
      scree_client_close(c);
      return;
    }
    scree_client_close(c);
    T_CHECKM(waitpid(d->pid, &status, WNOHANG) == 0,
             "screed exited at start (status %d, log %s)", status, d->log);
    usleep(50000);
  }
  T_FAIL("screed did not answer on %s (log %s)", d->sock, d->log);
}

static void screed_stop(screed_proc *d) {
  int status;

  T_EQ(kill(d->pid, SIGTERM), 0);
  T_EQ(waitpid(d->pid, &status, 0), d->pid);
  T_CHECKM(WIFEXITED(status) && WEXITSTATUS(status) == 0, "screed ended with status %d (log %s)",
           status, d->log);
  unlink(d->sock);
  unlink(d->log);
}

/* Prints the path a screed's log says its peers take. */
static void print_path(const char *who, const screed_proc *d) {
  FILE *f = fopen(d->log, "r");
  char line[512];

  while (f != NULL && fgets(line, sizeof(line), f) != NULL)
    if (strstr(line, "peers_path") != NULL)
      printf("  %s: %s", who, line);
  if (f != NULL)
    fclose(f);
}

static void pair_start(pair *p, const char *owner_device, const char *fetcher_device) {
  char listen[64], peer[80];

  /* Between nodes; on one machine UCX would otherwise pick shared memory
   * or CUDA IPC, which do not cross nodes. */
  setenv("UCX_TLS", "tcp", 1);
  snprintf(p->secret, sizeof(p->secret), "/tmp/scree-gpu-peers-%d.secret", (int)getpid());
  T_EQ(peers_write_secret(p->secret, "the GPU peers test's shared secret"), 0);
  p->port = peers_free_port();
  T_CHECK(p->port != 0);
  snprintf(listen, sizeof(listen), "127.0.0.1:%u", p->port);
  snprintf(peer, sizeof(peer), "owner=127.0.0.1:%u", p->port);
  screed_start(&p->owner, owner_device, "--peer-listen", listen, p->secret);
  screed_start(&p->fetcher, fetcher_device, "--peer", peer, p->secret);
  print_path("owner", &p->owner);
  print_path("fetcher", &p->fetcher);
}

static void pair_stop(pair *p) {
  if (p->owner.pid > 0)
    screed_stop(&p->owner);
  screed_stop(&p->fetcher);
  unlink(p->secret);
}

static scree_client *connect_ok(const char *sock) {
  scree_client *c = NULL;
  int rc = scree_client_connect(sock, &c);

  T_EQM(rc, 0, "connect %s: %s", sock, scree_client_last_error(c));
  return c;
}

/* ---- batches: uint8 values (rows x inner), int64 offsets ---- */

static int64_t *offsets_make(int64_t batch, int64_t rows) {
  int64_t *o = malloc((size_t)(batch + 1) * sizeof(*o));

  T_CHECK(o != NULL);
  for (int64_t i = 0; i <= batch; i++)
    o[i] = i * rows / batch;
  return o;
}

static void desc_init(scree_array *a, int64_t batch, int64_t rows, int64_t inner) {
  memset(a, 0, sizeof(*a));
  a->dtype = SCREE_UINT8;
  a->ndim_inner = 1;
  a->inner[0] = inner;
  a->batch_size = batch;
  a->total_rows = rows;
  a->offsets_dtype = SCREE_INT64;
}

/* Creates name on c and writes pattern(seed) into it where the batch
 * lies (device or host), then seals it. */
static void put_pattern(scree_client *c, const char *name, int64_t batch, int64_t rows,
                        int64_t inner, uint32_t seed) {
  const scree__cu *cu = cu_get();
  size_t vbytes = (size_t)(rows * inner), obytes = (size_t)(batch + 1) * 8;
  unsigned char *vals = gpu_pattern_buf(vbytes ? vbytes : 1, seed);
  int64_t *offs = offsets_make(batch, rows);
  scree_array d, out;
  int rc;

  desc_init(&d, batch, rows, inner);
  rc = scree_client_create(c, name, &d, &out, NULL);
  T_EQM(rc, 0, "create %s: %s", name, scree_client_last_error(c));
  if (out.device.type == SCREE_DEVICE_CUDA) {
    if (vbytes > 0)
      T_EQ(cu->cuMemcpyHtoD((CUdeviceptr)(uintptr_t)out.values, vals, vbytes), CUDA_SUCCESS);
    T_EQ(cu->cuMemcpyHtoD((CUdeviceptr)(uintptr_t)out.offsets, offs, obytes), CUDA_SUCCESS);
  } else {
    if (vbytes > 0)
      memcpy(out.values, vals, vbytes);
    memcpy(out.offsets, offs, obytes);
  }
  rc = scree_client_seal(c, name, NULL);
  T_EQM(rc, 0, "seal %s: %s", name, scree_client_last_error(c));
  free(vals);
  free(offs);
}

/* Attaches name on c and checks every byte against pattern(seed). */
static void verify(scree_client *c, const char *name, int64_t batch, int64_t rows,
                   int64_t inner, uint32_t seed) {
  const scree__cu *cu = cu_get();
  size_t vbytes = (size_t)(rows * inner), obytes = (size_t)(batch + 1) * 8;
  size_t cap = vbytes > obytes ? vbytes : obytes;
  unsigned char *host = malloc(cap);
  int64_t *want_off = offsets_make(batch, rows);
  const unsigned char *vals, *offs;
  scree_lease *lease;
  scree_array a;
  int rc;

  T_CHECK(host != NULL);
  rc = scree_client_get(c, name, &a, &lease);
  T_EQM(rc, 0, "get %s: %s", name, scree_client_last_error(c));
  T_EQ(a.batch_size, batch);
  T_EQ(a.total_rows, rows);
  if (a.device.type == SCREE_DEVICE_CUDA) {
    if (vbytes > 0)
      T_EQ(cu->cuMemcpyDtoH(host, (CUdeviceptr)(uintptr_t)a.values, vbytes), CUDA_SUCCESS);
    vals = host;
  } else {
    vals = a.values;
  }
  for (size_t i = 0; i < vbytes; i++)
    if (vals[i] != gpu_pattern(i, seed))
      T_FAIL("%s: values byte %zu of %zu is %u, expected %u", name, i, vbytes, vals[i],
             gpu_pattern(i, seed));
  if (a.device.type == SCREE_DEVICE_CUDA) {
    T_EQ(cu->cuMemcpyDtoH(host, (CUdeviceptr)(uintptr_t)a.offsets, obytes), CUDA_SUCCESS);
    offs = host;
  } else {
    offs = a.offsets;
  }
  T_CHECKM(memcmp(offs, want_off, obytes) == 0, "%s: offsets differ", name);
  T_EQ(scree_client_release(c, lease), 0);
  free(want_off);
  free(host);
}

static void fetch_check(pair *p, scree_client *co, scree_client *cf, const char *name,
                        int64_t batch, int64_t rows, int64_t inner, uint32_t seed) {
  double t0;
  int rc;

  put_pattern(co, name, batch, rows, inner, seed);
  t0 = gpu_now();
  rc = scree_client_fetch(cf, "owner", name, NULL, 120000);
  T_EQM(rc, 0, "fetch %s: %s (%s)", name, scree_client_last_error(cf), scree_err_name(rc));
  printf("  %s: %lld bytes fetched in %.1f ms\n", name, (long long)(rows * inner),
         (gpu_now() - t0) * 1e3);
  verify(cf, name, batch, rows, inner, seed);
  (void)p;
}

/* ---- cases ---- */

static void fetch_sizes(void) {
  pair p;
  scree_client *co, *cf;

  ctx_use(0);
  pair_start(&p, "0", "0");
  co = connect_ok(p.owner.sock);
  cf = connect_ok(p.fetcher.sock);
  fetch_check(&p, co, cf, "one_byte", 1, 1, 1, 1);
  fetch_check(&p, co, cf, "empty_rows", 3, 0, 16, 2);
  fetch_check(&p, co, cf, "mib64", 64, 65536, 1024, 3);
  /* 42,039,407 bytes: two full chunks and a part. */
  fetch_check(&p, co, cf, "odd", 7, 10007, 4201, 4);
  /* Nothing is held on the owner once the fetches are done. */
  scree_stats st = SCREE_STATS_INIT;
  T_EQ(scree_client_stats(co, &st), 0);
  T_EQ(st.leases, 0);
  scree_client_close(co);
  scree_client_close(cf);
  pair_stop(&p);
}

static void mixed_host_gpu(void) {
  for (int k = 0; k < 2; k++) {
    pair p;
    scree_client *co, *cf;

    ctx_use(0);
    printf("  owner on %s, fetcher on %s\n", k ? "the GPU" : "host memory",
           k ? "host memory" : "the GPU");
    pair_start(&p, k ? "0" : "cpu", k ? "cpu" : "0");
    co = connect_ok(p.owner.sock);
    cf = connect_ok(p.fetcher.sock);
    fetch_check(&p, co, cf, "small", 5, 5, 3, 7);
    fetch_check(&p, co, cf, "odd", 7, 10007, 4201, 8);
    scree_client_close(co);
    scree_client_close(cf);
    pair_stop(&p);
  }
}

typedef struct fetch_job {
  const char *sock;
  int rc;
  char msg[512];
} fetch_job;

static void *fetch_thread(void *arg) {
  fetch_job *j = arg;
  scree_client *c = NULL;

  j->rc = scree_client_connect(j->sock, &c);
  if (j->rc == 0)
    j->rc = scree_client_fetch(c, "owner", "big", NULL, 300000);
  snprintf(j->msg, sizeof(j->msg), "%s", scree_client_last_error(c));
  scree_client_close(c);
  return NULL;
}

static void owner_killed(void) {
  pair p;
  scree_client *co, *cf;
  fetch_job job;
  pthread_t t;
  scree_stats st = SCREE_STATS_INIT;
  scree_batch_info info;
  int status;

  ctx_use(0);
  pair_start(&p, "0", "0");
  co = connect_ok(p.owner.sock);
  cf = connect_ok(p.fetcher.sock);
  /* 1 GiB, so that the transfer over tcp takes long enough to be cut. */
  put_pattern(co, "big", 1024, 262144, 4096, 9);
  memset(&job, 0, sizeof(job));
  job.sock = p.fetcher.sock;
  T_EQ(pthread_create(&t, NULL, fetch_thread, &job), 0);
  /* Once the fetcher has reserved the local block, the bytes are moving. */
  for (int i = 0; i < 5000; i++) {
    T_EQ(scree_client_stats(cf, &st), 0);
    if (st.bytes_used > 0)
      break;
    usleep(1000);
  }
  usleep(20000);
  T_EQ(kill(p.owner.pid, SIGKILL), 0);
  T_EQ(waitpid(p.owner.pid, &status, 0), p.owner.pid);
  p.owner.pid = -1;
  unlink(p.owner.sock);
  T_EQ(pthread_join(t, NULL), 0);
  if (job.rc == 0) {
    printf("  the fetch finished before the owner died; nothing half-done to check\n");
  } else {
    T_CHECKM(job.rc == SCREE_EIO || job.rc == SCREE_ECONNREFUSED, "%s (%s)", job.msg,
             scree_err_name(job.rc));
    T_CHECKM(strstr(job.msg, "peer 'owner'") != NULL, "%s", job.msg);
    printf("  the fetch failed as it should: %s\n", job.msg);
    /* The reservation goes once the staging copies in flight have ended. */
    for (int i = 0; i < 500; i++) {
      T_EQ(scree_client_stats(cf, &st), 0);
      if (st.bytes_used == 0)
        break;
      usleep(10000);
    }
    T_EQM(st.bytes_used, 0, "the reservation is released");
    T_EQM(scree_client_stat(cf, "big", &info), SCREE_ENOENT, "nothing half-written is named");
  }
  scree_client_close(co);
  scree_client_close(cf);
  unlink(p.owner.log);
  pair_stop(&p);
}

GPU_TEST_MAIN(GPU_CASE(fetch_sizes), GPU_CASE(mixed_host_gpu), GPU_CASE(owner_killed))
