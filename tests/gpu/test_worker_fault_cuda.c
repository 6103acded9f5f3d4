/* A CUDA fault in the attention worker, on purpose: a real screed --device 0
 * (both ipc modes) built with SCREE_TEST_HOOKS runs with
 * SCREE_TEST_WORKER_FAULT=cuda-trap:trapped, so the job into "trapped"
 * launches a kernel that executes a trap instruction, which poisons the
 * worker's CUDA context. The request must get "attention worker died: ...",
 * "trapped" must not exist, every stored batch (inputs, a filler batch and
 * an earlier job's output) must read back byte for byte, and the next job
 * (a new worker) must give the earlier job's result again. Without a
 * device: a visible skip (77). Without SCREE_TEST_HOOKS: a skip too. */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cudadrv.h"
#include "gpu_cu.h"
#include "gpu_main.h"
#include "scree/client.h"

extern char **environ;

typedef struct daemon_proc {
  pid_t pid;
  char sock[108];
} daemon_proc;

static void daemon_start(daemon_proc *d, const char *ipc) {
  char *argv[] = {(char *)SCREE_SCREED, (char *)"--device", (char *)"0", (char *)"--ipc",
                  (char *)ipc, (char *)"--socket", d->sock, (char *)"--log-level",
                  (char *)"warn", NULL};
  int status;

  snprintf(d->sock, sizeof(d->sock), "/tmp/scree-gpu-fault-%d.sock", (int)getpid());
  unlink(d->sock);
  /* The worker inherits screed's environment. */
  setenv("SCREE_TEST_WORKER_FAULT", "cuda-trap:trapped", 1);
  T_EQ(posix_spawn(&d->pid, SCREE_SCREED, NULL, NULL, argv, environ), 0);
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

/* A batch as put: its bytes on the host, to compare with. */
typedef struct stored {
  const char *name;
  unsigned char *values;
  size_t vbytes;
  int64_t offsets[5];
  int64_t batch;
} stored;

/* Fills s with pseudo-random bytes: bfloat16 values in [-1, 1] for
 * attention inputs (inner = heads x 64), raw bytes otherwise. */
static void make(stored *s, const char *name, int64_t heads, uint32_t seed, int bf16) {
  static const int64_t lens[4] = {7, 129, 0, 64};
  s->name = name;
  s->batch = 4;
  s->offsets[0] = 0;
  for (int i = 0; i < 4; i++)
    s->offsets[i + 1] = s->offsets[i] + lens[i];
  s->vbytes = (size_t)(s->offsets[4] * heads * 64 * 2);
  s->values = malloc(s->vbytes);
  T_CHECK(s->values != NULL);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < s->vbytes / 2; i++) {
    x = x * 1664525u + 1013904223u;
    uint16_t v = (uint16_t)(x >> 16);
    if (bf16) /* sign, exponent 118..126: |v| in [2^-9, 1) */
      v = (uint16_t)((v & 0x807f) | ((118 + (x >> 8) % 9) << 7));
    memcpy(s->values + 2 * i, &v, 2);
  }
}

static void desc(scree_array *a, const stored *s, int64_t heads) {
  memset(a, 0, sizeof(*a));
  a->dtype = SCREE_BFLOAT16;
  a->ndim_inner = 2;
  a->inner[0] = heads;
  a->inner[1] = 64;
  a->batch_size = s->batch;
  a->total_rows = s->offsets[s->batch];
  a->offsets_dtype = SCREE_INT64;
  a->values = s->values;
  a->offsets = (void *)s->offsets;
}

static void put(scree_client *c, stored *s, int64_t heads) {
  scree_array a;
  desc(&a, s, heads);
  T_EQM(scree_client_put(c, s->name, &a, NULL), 0, "put %s: %s", s->name, scree_client_last_error(c));
}

/* Reads a stored batch's values back to the host (through a scratch buffer
 * of this process's context, as the other GPU tests do). */
static unsigned char *read_back(scree_client *c, const char *name, size_t *vbytes,
                                int64_t *offsets) {
  const scree__cu *cu = cu_get();
  scree_array a;
  scree_lease *l;
  CUdeviceptr scratch;

  T_EQM(scree_client_get(c, name, &a, &l), 0, "get %s: %s", name, scree_client_last_error(c));
  T_EQ(a.device.type, SCREE_DEVICE_CUDA);
  *vbytes = (size_t)(a.total_rows * a.inner[0] * a.inner[1] * 2);
  unsigned char *host = malloc(*vbytes ? *vbytes : 1);
  T_CHECK(host != NULL);
  size_t obytes = (size_t)(a.batch_size + 1) * 8;
  T_CHECK(a.batch_size <= 4);
  T_EQ(cu->cuMemAlloc(&scratch, *vbytes + obytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpy(scratch, (CUdeviceptr)(uintptr_t)a.values, *vbytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpyDtoH(host, scratch, *vbytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpy(scratch, (CUdeviceptr)(uintptr_t)a.offsets, obytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemcpyDtoH(offsets, scratch, obytes), CUDA_SUCCESS);
  T_EQ(cu->cuMemFree(scratch), CUDA_SUCCESS);
  T_EQ(scree_client_release(c, l), 0);
  return host;
}

static void verify(scree_client *c, const stored *s) {
  size_t vb;
  int64_t offs[5];
  unsigned char *got = read_back(c, s->name, &vb, offs);
  T_EQ(vb, s->vbytes);
  T_CHECKM(memcmp(got, s->values, vb) == 0, "batch %s's values changed", s->name);
  T_CHECKM(memcmp(offs, s->offsets, sizeof(offs)) == 0, "batch %s's offsets changed",
           s->name);
  free(got);
}

static void trap(const char *ipc) {
  daemon_proc d;
  stored q, k, v, filler, first;

#ifndef SCREE_TEST_HOOKS
  printf("SKIP: screed was built without SCREE_TEST_HOOKS\n");
  exit(SCREE_TEST_SKIP);
#endif
  ctx_use(0);
  daemon_start(&d, ipc);
  scree_client *c = NULL;
  T_EQ(scree_client_connect(d.sock, &c), 0);
  make(&q, "q", 4, 1, 1);
  make(&k, "k", 2, 2, 1);
  make(&v, "v", 2, 3, 1);
  make(&filler, "filler", 8, 4, 0);
  put(c, &q, 4);
  put(c, &k, 2);
  put(c, &v, 2);
  put(c, &filler, 8);

  /* A job that works: the worker is up and holds the arenas. */
  T_EQM(scree_client_attention(c, "q", "k", "v", "first", NULL, NULL, NULL), 0, "first job: %s",
        scree_client_last_error(c));
  first.name = "first";
  first.batch = 4;
  first.values = read_back(c, "first", &first.vbytes, first.offsets);

  /* The fault. */
  double t0 = gpu_now();
  int rc = scree_client_attention(c, "q", "k", "v", "trapped", NULL, NULL, NULL);
  double secs = gpu_now() - t0;
  T_CHECKM(rc != 0, "the trapped job succeeded");
  T_CHECKM(strstr(scree_client_last_error(c), "attention worker died: ") != NULL,
           "no 'attention worker died' in: %s (%s)", scree_client_last_error(c),
           scree_err_name(rc));
  printf("trapped job answered in %.3f s: %s (%s)\n", secs, scree_client_last_error(c),
         scree_err_name(rc));
  scree_batch_info bi;
  T_EQ(scree_client_stat(c, "trapped", &bi), SCREE_ENOENT);

  /* Every stored batch is intact, read through screed's memory. */
  const stored *all[5] = {&q, &k, &v, &filler, &first};
  size_t bytes = 0;
  for (int i = 0; i < 5; i++) {
    verify(c, all[i]);
    bytes += all[i]->vbytes;
  }
  printf("after the fault: 5 stored batches (%zu value bytes) verified byte for byte\n", bytes);

  /* A new worker runs the next job, with the first job's result. */
  T_EQM(scree_client_attention(c, "q", "k", "v", "second", NULL, NULL, NULL), 0, "the next job: %s",
        scree_client_last_error(c));
  size_t vb;
  int64_t offs[5];
  unsigned char *second = read_back(c, "second", &vb, offs);
  T_EQ(vb, first.vbytes);
  T_CHECKM(memcmp(second, first.values, vb) == 0, "the next job's output differs from the "
           "first's on the same inputs");
  free(second);
  scree_client_close(c);
  daemon_stop(&d);
  for (int i = 0; i < 5; i++)
    free(all[i]->values);
}

static void trap_vmm(void) { trap("vmm"); }
static void trap_legacy(void) { trap("legacy"); }

GPU_TEST_MAIN(GPU_CASE(trap_vmm), GPU_CASE(trap_legacy))
