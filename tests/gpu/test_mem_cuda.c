/* The CUDA memory backend alone (daemon/mem_cuda.c), with a second process
 * importing its arenas through libscreeclient's import code. */
#include <string.h>

#include "cudadrv.h"
#include "gpu_main.h"
#include "gpu_util.h"
#include "import_cuda.h"
#include "mem.h"
#include "scree/error.h"

#define MiB ((uint64_t)1 << 20)

static scree__mem *backend(int ipc_mode) {
  scree__mem *m = NULL;
  char msg[512] = "";
  int rc = scree__mem_cuda_create(0, ipc_mode, &m, msg, sizeof(msg));

  T_EQM(rc, 0, "scree__mem_cuda_create: %s: %s", scree_err_name(rc), msg);
  return m;
}

static void write_pattern(scree__mem *m, scree__arena_mem *a, uint64_t off, uint64_t len,
                          uint32_t seed) {
  unsigned char *p = gpu_pattern_buf(len, seed);
  char msg[512] = "";
  int rc = m->ops->write(m, a, off, p, len, msg, sizeof(msg));

  T_EQM(rc, 0, "write: %s", msg);
  free(p);
}

static void expect_pattern(scree__mem *m, scree__arena_mem *a, uint64_t off, uint64_t len,
                           uint32_t seed) {
  unsigned char *want = gpu_pattern_buf(len, seed);
  unsigned char *got = malloc(len);
  char msg[512] = "";

  T_CHECK((got) != NULL);
  T_EQM(m->ops->read(m, a, off, got, len, msg, sizeof(msg)), 0, "read: %s", msg);
  T_CHECKM(memcmp(want, got, len) == 0, "bytes at %llu differ", (unsigned long long)off);
  free(want);
  free(got);
}

static gpu_job job_for(scree__mem *m, scree__arena_mem *a, int kind) {
  gpu_job job;

  memset(&job, 0, sizeof(job));
  job.kind = kind;
  job.ipc_mode = m->info.ipc_mode;
  job.arena_size = a->size;
  memcpy(job.uuid, m->info.device_uuid, 16);
  memcpy(job.handle, a->ipc_handle, a->ipc_handle_len);
  return job;
}

/* Import in a second process; check what the daemon wrote; write back from
 * there; check that here; and check that the import happened once. */
static void roundtrip(int ipc_mode) {
  scree__mem *m = backend(ipc_mode);
  scree__arena_mem a;
  gpu_child ch;
  gpu_reply r;
  gpu_job job;
  char msg[512] = "";
  int fd = -1, rc;

  memset(&a, 0, sizeof(a));
  /* One byte over a granule: the arena must come back rounded up. */
  rc = m->ops->arena_alloc(m, 64 * MiB + 1, &a, msg, sizeof(msg));
  T_EQM(rc, 0, "arena_alloc: %s", msg);
  T_CHECK((a.size) >= (64 * MiB + 1));
  T_EQ(a.size % m->info.granularity, 0);
  T_CHECK((a.dev_ptr) != (0));
  T_CHECK((a.host_ptr) == NULL);
  write_pattern(m, &a, MiB + 256, 3 * MiB, 7);

  if (ipc_mode == SCREE__IPC_VMM_FD) {
    rc = m->ops->share_fd(m, &a, &fd, msg, sizeof(msg));
    T_EQM(rc, 0, "share_fd: %s", msg);
    T_EQ(a.ipc_handle_len, 0);
  } else {
    T_EQ(a.ipc_handle_len, 64);
    T_EQ(m->ops->share_fd(m, &a, &fd, msg, sizeof(msg)), SCREE_ENOTSUP);
    fd = -1;
  }

  gpu_child_start(&ch);
  job = job_for(m, &a, GPU_JOB_IMPORT);
  r = gpu_child_do(&ch, &job, fd);
  T_EQM(r.rc, 0, "import: %s: %s", scree_err_name(r.rc), r.msg);
  if (fd >= 0)
    close(fd);

  job.kind = GPU_JOB_CHECK;
  job.off = MiB + 256;
  job.len = 3 * MiB;
  job.seed = 7;
  r = gpu_child_do(&ch, &job, -1);
  T_EQM(r.rc, 0, "check: %s", r.msg);

  job.kind = GPU_JOB_WRITE;
  job.off = 10 * MiB;
  job.len = MiB + 3;
  job.seed = 99;
  r = gpu_child_do(&ch, &job, -1);
  T_EQM(r.rc, 0, "write: %s", r.msg);
  expect_pattern(m, &a, 10 * MiB, MiB + 3, 99);

  /* A check of a range the child has not looked at, still one import. */
  job.kind = GPU_JOB_CHECK;
  job.off = MiB + 256 + 4096;
  job.len = 8192;
  job.seed = 7;
  r = gpu_child_do(&ch, &job, -1);
  T_CHECKM((r.rc) != (0), "a check with the wrong offset must fail");
  job.off = 10 * MiB;
  job.len = MiB + 3;
  job.seed = 99;
  r = gpu_child_do(&ch, &job, -1);
  T_EQM(r.rc, 0, "check: %s", r.msg);
  T_EQM(r.imports, 1, "the child imported %llu times", (unsigned long long)r.imports);

  gpu_child_finish(&ch);
  m->ops->arena_free(m, &a);
  T_CHECK((a.impl) == NULL);
  m->ops->destroy(m);
}

static void roundtrip_vmm(void) { roundtrip(SCREE__IPC_VMM_FD); }
static void roundtrip_legacy(void) { roundtrip(SCREE__IPC_LEGACY); }

/* A VMM import holds its own reference: the daemon may free the arena (or
 * exit) while a consumer still maps it, and the bytes stay. */
static void import_outlives_daemon_free(void) {
  scree__mem *m = backend(SCREE__IPC_VMM_FD);
  scree__arena_mem a;
  gpu_child ch;
  gpu_reply r;
  gpu_job job;
  char msg[512] = "";
  int fd;

  memset(&a, 0, sizeof(a));
  T_EQM(m->ops->arena_alloc(m, 8 * MiB, &a, msg, sizeof(msg)), 0, "%s", msg);
  write_pattern(m, &a, 0, 8 * MiB, 3);
  T_EQM(m->ops->share_fd(m, &a, &fd, msg, sizeof(msg)), 0, "%s", msg);
  gpu_child_start(&ch);
  job = job_for(m, &a, GPU_JOB_IMPORT);
  r = gpu_child_do(&ch, &job, fd);
  T_EQM(r.rc, 0, "import: %s", r.msg);
  close(fd);
  m->ops->arena_free(m, &a);
  m->ops->destroy(m);

  job.kind = GPU_JOB_CHECK;
  job.off = 0;
  job.len = 8 * MiB;
  job.seed = 3;
  r = gpu_child_do(&ch, &job, -1);
  T_EQM(r.rc, 0, "check after the owner freed: %s", r.msg);
  gpu_child_finish(&ch);
}

static void info(void) {
  int modes[2] = {SCREE__IPC_VMM_FD, SCREE__IPC_LEGACY};
  unsigned char zero[16] = {0};

  for (int i = 0; i < 2; i++) {
    scree__mem *m = backend(modes[i]);
    size_t g = m->info.granularity;

    T_EQ(m->info.backend, SCREE__BACKEND_CUDA);
    T_EQ(m->info.ipc_mode, modes[i]);
    T_EQ(m->info.device_index, 0);
    T_CHECK((strlen(m->info.device_name)) > (0));
    T_CHECK(m->info.has_uuid);
    T_CHECK(memcmp(m->info.device_uuid, zero, 16) != 0);
    T_CHECKM(g >= 4096 && (g & (g - 1)) == 0, "granularity %zu", g);
    m->ops->destroy(m);
  }
}

static void oom(int ipc_mode) {
  const scree__cu *cu;
  scree__mem *m = backend(ipc_mode);
  scree__arena_mem a;
  size_t total = 0;
  char msg[512] = "";
  int rc;

  T_EQ(scree__cu_load(&cu, msg, sizeof(msg)), 0);
  T_EQ(cu->cuDeviceTotalMem(&total, 0), CUDA_SUCCESS);
  memset(&a, 0, sizeof(a));
  rc = m->ops->arena_alloc(m, total + total / 2, &a, msg, sizeof(msg));
  T_EQM(rc, SCREE_ENOSPC, "got %s: %s", scree_err_name(rc), msg);
  T_CHECKM(strstr(msg, "CUDA_ERROR_OUT_OF_MEMORY") != NULL, "message: %s", msg);
  T_CHECKM(strstr(msg, "free") != NULL, "message: %s", msg);
  /* The backend keeps serving. */
  rc = m->ops->arena_alloc(m, 2 * MiB, &a, msg, sizeof(msg));
  T_EQM(rc, 0, "after ENOSPC: %s", msg);
  m->ops->arena_free(m, &a);
  m->ops->destroy(m);
}

static void oom_vmm(void) { oom(SCREE__IPC_VMM_FD); }
static void oom_legacy(void) { oom(SCREE__IPC_LEGACY); }

static void bad_arguments(void) {
  scree__mem *m = NULL;
  scree__arena_mem a;
  unsigned char buf[16];
  unsigned char uuid[16];
  char msg[512] = "";
  int ord = -1;

  T_EQ(scree__mem_cuda_create(9999, SCREE__IPC_VMM_FD, &m, msg, sizeof(msg)), SCREE_ENODEV);
  T_CHECKM(strstr(msg, "9999") != NULL, "%s", msg);
  T_CHECK((m) == NULL);
  T_EQ(scree__mem_cuda_create(0, SCREE__IPC_MEMFD, &m, msg, sizeof(msg)), SCREE_EINVAL);

  m = backend(SCREE__IPC_VMM_FD);
  memset(&a, 0, sizeof(a));
  T_EQ(m->ops->arena_alloc(m, 0, &a, msg, sizeof(msg)), SCREE_EINVAL);
  T_EQM(m->ops->arena_alloc(m, 2 * MiB, &a, msg, sizeof(msg)), 0, "%s", msg);
  T_EQ(m->ops->read(m, &a, a.size - 8, buf, 16, msg, sizeof(msg)), SCREE_EINVAL);
  T_EQ(m->ops->write(m, &a, UINT64_MAX - 4, buf, 16, msg, sizeof(msg)), SCREE_EINVAL);
  T_EQM(m->ops->read(m, &a, a.size - 16, buf, 16, msg, sizeof(msg)), 0, "%s", msg);
  m->ops->arena_free(m, &a);
  m->ops->destroy(m);

  /* A GPU this process cannot see is named in the message. */
  memset(uuid, 0xab, sizeof(uuid));
  T_EQ(scree__cuda_find_device(uuid, &ord, msg, sizeof(msg)), SCREE_ENODEV);
  T_CHECKM(strstr(msg, "GPU-abababab-abab") != NULL, "%s", msg);
  T_CHECKM(strstr(msg, "is not visible in this process") != NULL, "%s", msg);
}

/* The import side meets garbage: an fd that is no CUDA allocation, and
 * handle bytes of the wrong length. Both fail with a CUDA error name, and
 * the importer keeps working for a good arena afterwards. */
static void import_rejects_bad_handles(void) {
  scree__mem *m = backend(SCREE__IPC_VMM_FD);
  scree__arena_mem a;
  gpu_child ch;
  gpu_reply r;
  gpu_job job;
  char msg[512] = "";
  int fd, pipefd[2];

  memset(&a, 0, sizeof(a));
  T_EQM(m->ops->arena_alloc(m, 2 * MiB, &a, msg, sizeof(msg)), 0, "%s", msg);
  write_pattern(m, &a, 0, 4096, 5);
  gpu_child_start(&ch);

  T_EQ(pipe(pipefd), 0);
  job = job_for(m, &a, GPU_JOB_IMPORT);
  r = gpu_child_do(&ch, &job, pipefd[0]);
  T_EQM(r.rc, SCREE_ECUDA, "got %s: %s", scree_err_name(r.rc), r.msg);
  T_CHECKM(strstr(r.msg, "cuMemImportFromShareableHandle: CUDA_ERROR_") != NULL, "%s", r.msg);
  close(pipefd[0]);
  close(pipefd[1]);

  T_EQM(m->ops->share_fd(m, &a, &fd, msg, sizeof(msg)), 0, "%s", msg);
  r = gpu_child_do(&ch, &job, fd);
  T_EQM(r.rc, 0, "import after a failed one: %s", r.msg);
  close(fd);
  job.kind = GPU_JOB_CHECK;
  job.len = 4096;
  job.seed = 5;
  r = gpu_child_do(&ch, &job, -1);
  T_EQM(r.rc, 0, "%s", r.msg);
  gpu_child_finish(&ch);

  m->ops->arena_free(m, &a);
  m->ops->destroy(m);
}

static void legacy_handle_length(void) {
  scree__cuda_map map;
  unsigned char h[32] = {0};
  char msg[256] = "";

  T_EQ(scree__cuda_import_legacy(h, sizeof(h), 2 * MiB, 0, 0, &map, msg, sizeof(msg)), SCREE_EPROTO);
  T_CHECKM(strstr(msg, "32 bytes") != NULL, "%s", msg);
}

GPU_TEST_MAIN(GPU_CASE(roundtrip_vmm), GPU_CASE(roundtrip_legacy), GPU_CASE(import_outlives_daemon_free), GPU_CASE(info), GPU_CASE(oom_vmm), GPU_CASE(oom_legacy), GPU_CASE(bad_arguments), GPU_CASE(import_rejects_bad_handles), GPU_CASE(legacy_handle_length))
