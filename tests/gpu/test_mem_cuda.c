/* The CUDA memory backend alone (daemon/mem_cuda.c), with a second process
 * importing its arenas through libscreeclient's import code. */
#include <criterion/criterion.h>
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

  cr_assert_eq(rc, 0, "scree__mem_cuda_create: %s: %s", scree_err_name(rc), msg);
  return m;
}

static void write_pattern(scree__mem *m, scree__arena_mem *a, uint64_t off, uint64_t len,
                          uint32_t seed) {
  unsigned char *p = gpu_pattern_buf(len, seed);
  char msg[512] = "";
  int rc = m->ops->write(m, a, off, p, len, msg, sizeof(msg));

  cr_assert_eq(rc, 0, "write: %s", msg);
  free(p);
}

static void expect_pattern(scree__mem *m, scree__arena_mem *a, uint64_t off, uint64_t len,
                           uint32_t seed) {
  unsigned char *want = gpu_pattern_buf(len, seed);
  unsigned char *got = malloc(len);
  char msg[512] = "";

  cr_assert_not_null(got);
  cr_assert_eq(m->ops->read(m, a, off, got, len, msg, sizeof(msg)), 0, "read: %s", msg);
  cr_assert(memcmp(want, got, len) == 0, "bytes at %llu differ", (unsigned long long)off);
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
  cr_assert_eq(rc, 0, "arena_alloc: %s", msg);
  cr_assert_geq(a.size, 64 * MiB + 1);
  cr_assert_eq(a.size % m->info.granularity, 0);
  cr_assert_neq(a.dev_ptr, 0);
  cr_assert_null(a.host_ptr);
  write_pattern(m, &a, MiB + 256, 3 * MiB, 7);

  if (ipc_mode == SCREE__IPC_VMM_FD) {
    rc = m->ops->share_fd(m, &a, &fd, msg, sizeof(msg));
    cr_assert_eq(rc, 0, "share_fd: %s", msg);
    cr_assert_eq(a.ipc_handle_len, 0);
  } else {
    cr_assert_eq(a.ipc_handle_len, 64);
    cr_assert_eq(m->ops->share_fd(m, &a, &fd, msg, sizeof(msg)), SCREE_ENOTSUP);
    fd = -1;
  }

  gpu_child_start(&ch);
  job = job_for(m, &a, GPU_JOB_IMPORT);
  r = gpu_child_do(&ch, &job, fd);
  cr_assert_eq(r.rc, 0, "import: %s: %s", scree_err_name(r.rc), r.msg);
  if (fd >= 0)
    close(fd);

  job.kind = GPU_JOB_CHECK;
  job.off = MiB + 256;
  job.len = 3 * MiB;
  job.seed = 7;
  r = gpu_child_do(&ch, &job, -1);
  cr_assert_eq(r.rc, 0, "check: %s", r.msg);

  job.kind = GPU_JOB_WRITE;
  job.off = 10 * MiB;
  job.len = MiB + 3;
  job.seed = 99;
  r = gpu_child_do(&ch, &job, -1);
  cr_assert_eq(r.rc, 0, "write: %s", r.msg);
  expect_pattern(m, &a, 10 * MiB, MiB + 3, 99);

  /* A check of a range the child has not looked at, still one import. */
  job.kind = GPU_JOB_CHECK;
  job.off = MiB + 256 + 4096;
  job.len = 8192;
  job.seed = 7;
  r = gpu_child_do(&ch, &job, -1);
  cr_assert_neq(r.rc, 0, "a check with the wrong offset must fail");
  job.off = 10 * MiB;
  job.len = MiB + 3;
  job.seed = 99;
  r = gpu_child_do(&ch, &job, -1);
  cr_assert_eq(r.rc, 0, "check: %s", r.msg);
  cr_assert_eq(r.imports, 1, "the child imported %llu times", (unsigned long long)r.imports);

  gpu_child_finish(&ch);
  m->ops->arena_free(m, &a);
  cr_assert_null(a.impl);
  m->ops->destroy(m);
}

Test(mem_cuda, roundtrip_vmm) { roundtrip(SCREE__IPC_VMM_FD); }
Test(mem_cuda, roundtrip_legacy) { roundtrip(SCREE__IPC_LEGACY); }

/* A VMM import holds its own reference: the daemon may free the arena (or
 * exit) while a consumer still maps it, and the bytes stay. */
Test(mem_cuda, import_outlives_daemon_free) {
  scree__mem *m = backend(SCREE__IPC_VMM_FD);
  scree__arena_mem a;
  gpu_child ch;
  gpu_reply r;
  gpu_job job;
  char msg[512] = "";
  int fd;

  memset(&a, 0, sizeof(a));
  cr_assert_eq(m->ops->arena_alloc(m, 8 * MiB, &a, msg, sizeof(msg)), 0, "%s", msg);
  write_pattern(m, &a, 0, 8 * MiB, 3);
  cr_assert_eq(m->ops->share_fd(m, &a, &fd, msg, sizeof(msg)), 0, "%s", msg);
  gpu_child_start(&ch);
  job = job_for(m, &a, GPU_JOB_IMPORT);
  r = gpu_child_do(&ch, &job, fd);
  cr_assert_eq(r.rc, 0, "import: %s", r.msg);
  close(fd);
  m->ops->arena_free(m, &a);
  m->ops->destroy(m);

  job.kind = GPU_JOB_CHECK;
  job.off = 0;
  job.len = 8 * MiB;
  job.seed = 3;
  r = gpu_child_do(&ch, &job, -1);
  cr_assert_eq(r.rc, 0, "check after the owner freed: %s", r.msg);
  gpu_child_finish(&ch);
}

Test(mem_cuda, info) {
  int modes[2] = {SCREE__IPC_VMM_FD, SCREE__IPC_LEGACY};
  unsigned char zero[16] = {0};

  for (int i = 0; i < 2; i++) {
    scree__mem *m = backend(modes[i]);
    size_t g = m->info.granularity;

    cr_assert_eq(m->info.backend, SCREE__BACKEND_CUDA);
    cr_assert_eq(m->info.ipc_mode, modes[i]);
    cr_assert_eq(m->info.device_index, 0);
    cr_assert_gt(strlen(m->info.device_name), 0);
    cr_assert(m->info.has_uuid);
    cr_assert(memcmp(m->info.device_uuid, zero, 16) != 0);
    cr_assert(g >= 4096 && (g & (g - 1)) == 0, "granularity %zu", g);
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

  cr_assert_eq(scree__cu_load(&cu, msg, sizeof(msg)), 0);
  cr_assert_eq(cu->cuDeviceTotalMem(&total, 0), CUDA_SUCCESS);
  memset(&a, 0, sizeof(a));
  rc = m->ops->arena_alloc(m, total + total / 2, &a, msg, sizeof(msg));
  cr_assert_eq(rc, SCREE_ENOSPC, "got %s: %s", scree_err_name(rc), msg);
  cr_assert(strstr(msg, "CUDA_ERROR_OUT_OF_MEMORY") != NULL, "message: %s", msg);
  cr_assert(strstr(msg, "free") != NULL, "message: %s", msg);
  /* The backend keeps serving. */
  rc = m->ops->arena_alloc(m, 2 * MiB, &a, msg, sizeof(msg));
  cr_assert_eq(rc, 0, "after ENOSPC: %s", msg);
  m->ops->arena_free(m, &a);
  m->ops->destroy(m);
}

Test(mem_cuda, oom_vmm) { oom(SCREE__IPC_VMM_FD); }
Test(mem_cuda, oom_legacy) { oom(SCREE__IPC_LEGACY); }

Test(mem_cuda, bad_arguments) {
  scree__mem *m = NULL;
  scree__arena_mem a;
  unsigned char buf[16];
  unsigned char uuid[16];
  char msg[512] = "";
  int ord = -1;

  cr_assert_eq(scree__mem_cuda_create(9999, SCREE__IPC_VMM_FD, &m, msg, sizeof(msg)),
               SCREE_ENODEV);
  cr_assert(strstr(msg, "9999") != NULL, "%s", msg);
  cr_assert_null(m);
  cr_assert_eq(scree__mem_cuda_create(0, SCREE__IPC_MEMFD, &m, msg, sizeof(msg)),
               SCREE_EINVAL);

  m = backend(SCREE__IPC_VMM_FD);
  memset(&a, 0, sizeof(a));
  cr_assert_eq(m->ops->arena_alloc(m, 0, &a, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert_eq(m->ops->arena_alloc(m, 2 * MiB, &a, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(m->ops->read(m, &a, a.size - 8, buf, 16, msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert_eq(m->ops->write(m, &a, UINT64_MAX - 4, buf, 16, msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_eq(m->ops->read(m, &a, a.size - 16, buf, 16, msg, sizeof(msg)), 0, "%s", msg);
  m->ops->arena_free(m, &a);
  m->ops->destroy(m);

  /* A GPU this process cannot see is named in the message. */
  memset(uuid, 0xab, sizeof(uuid));
  cr_assert_eq(scree__cuda_find_device(uuid, &ord, msg, sizeof(msg)), SCREE_ENODEV);
  cr_assert(strstr(msg, "GPU-abababab-abab") != NULL, "%s", msg);
  cr_assert(strstr(msg, "is not visible in this process") != NULL, "%s", msg);
}

/* The import side meets garbage: an fd that is no CUDA allocation, and
 * handle bytes of the wrong length. Both fail with a CUDA error name, and
 * the importer keeps working for a good arena afterwards. */
Test(mem_cuda, import_rejects_bad_handles) {
  scree__mem *m = backend(SCREE__IPC_VMM_FD);
  scree__arena_mem a;
  gpu_child ch;
  gpu_reply r;
  gpu_job job;
  char msg[512] = "";
  int fd, pipefd[2];

  memset(&a, 0, sizeof(a));
  cr_assert_eq(m->ops->arena_alloc(m, 2 * MiB, &a, msg, sizeof(msg)), 0, "%s", msg);
  write_pattern(m, &a, 0, 4096, 5);
  gpu_child_start(&ch);

  cr_assert_eq(pipe(pipefd), 0);
  job = job_for(m, &a, GPU_JOB_IMPORT);
  r = gpu_child_do(&ch, &job, pipefd[0]);
  cr_assert_eq(r.rc, SCREE_ECUDA, "got %s: %s", scree_err_name(r.rc), r.msg);
  cr_assert(strstr(r.msg, "cuMemImportFromShareableHandle: CUDA_ERROR_") != NULL, "%s",
            r.msg);
  close(pipefd[0]);
  close(pipefd[1]);

  cr_assert_eq(m->ops->share_fd(m, &a, &fd, msg, sizeof(msg)), 0, "%s", msg);
  r = gpu_child_do(&ch, &job, fd);
  cr_assert_eq(r.rc, 0, "import after a failed one: %s", r.msg);
  close(fd);
  job.kind = GPU_JOB_CHECK;
  job.len = 4096;
  job.seed = 5;
  r = gpu_child_do(&ch, &job, -1);
  cr_assert_eq(r.rc, 0, "%s", r.msg);
  gpu_child_finish(&ch);

  m->ops->arena_free(m, &a);
  m->ops->destroy(m);
}

Test(mem_cuda, legacy_handle_length) {
  scree__cuda_map map;
  unsigned char h[32] = {0};
  char msg[256] = "";

  cr_assert_eq(scree__cuda_import_legacy(h, sizeof(h), 2 * MiB, 0, 0, &map, msg, sizeof(msg)),
               SCREE_EPROTO);
  cr_assert(strstr(msg, "32 bytes") != NULL, "%s", msg);
}
