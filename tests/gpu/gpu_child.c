/* gpu_child SOCKFD: see gpu_child.h. */
#include "gpu_child.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cudadrv.h"
#include "import_cuda.h"
#include "scree/error.h"

static int recv_job(int sock, gpu_job *job, int *fd) {
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {job, sizeof(*job)};
  struct msghdr mh;
  struct cmsghdr *c;
  ssize_t n;

  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.buf;
  mh.msg_controllen = sizeof(ctl.buf);
  *fd = -1;
  n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  if (n != (ssize_t)sizeof(*job))
    return -1;
  for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      memcpy(fd, CMSG_DATA(c), sizeof(int));
  return 0;
}

/* Copies the range through the mapping into a scratch device buffer (a read
 * by the GPU's copy engine through the imported mapping), then to the host. */
static int check(const scree__cu *cu, const scree__cuda_map *m, const gpu_job *job,
                 char *msg, size_t msg_len) {
  unsigned char *host = NULL;
  CUdeviceptr scratch = 0;
  CUcontext ctx;
  CUdevice dev;
  int rc = 0;
  uint64_t i;

  if (job->off > m->size || job->len > m->size - job->off)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "range outside the mapping");
  host = malloc(job->len);
  if (host == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "malloc");
  SCREE_CUDA_GOTO(cu->cuDeviceGet(&dev, m->access_ordinal), rc, err_free_host);
  SCREE_CUDA_GOTO(cu->cuDevicePrimaryCtxRetain(&ctx, dev), rc, err_free_host);
  SCREE_CUDA_GOTO(cu->cuCtxSetCurrent(ctx), rc, err_release_ctx);
  SCREE_CUDA_GOTO(cu->cuMemAlloc(&scratch, job->len), rc, err_release_ctx);
  SCREE_CUDA_GOTO(cu->cuMemcpy(scratch, m->ptr + job->off, job->len), rc, err_free_scratch);
  SCREE_CUDA_GOTO(cu->cuMemcpyDtoH(host, scratch, job->len), rc, err_free_scratch);
  for (i = 0; i < job->len; i++) {
    if (host[i] != gpu_pattern(i, job->seed)) {
      rc = scree__fail(SCREE_EIO, msg, msg_len,
                         "byte %llu of [%llu, +%llu) is %u, expected %u",
                         (unsigned long long)i, (unsigned long long)job->off,
                         (unsigned long long)job->len, host[i], gpu_pattern(i, job->seed));
      break;
    }
  }
err_free_scratch:
  cu->cuMemFree(scratch);
err_release_ctx:
  cu->cuCtxSetCurrent(NULL);
  cu->cuDevicePrimaryCtxRelease(dev);
err_free_host:
  free(host);
  return rc;
}

static int write_pattern(const scree__cuda_map *m, const gpu_job *job, char *msg,
                         size_t msg_len) {
  unsigned char *host;
  uint64_t i;
  int rc;

  if (job->off > m->size || job->len > m->size - job->off)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "range outside the mapping");
  host = malloc(job->len);
  if (host == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "malloc");
  for (i = 0; i < job->len; i++)
    host[i] = gpu_pattern(i, job->seed);
  /* The client's put path: an H2D copy into the mapped arena. */
  rc = scree__cuda_copy_sync(m->access_ordinal, m->ptr + job->off, host, job->len, NULL, msg,
                             msg_len);
  free(host);
  return rc;
}

int main(int argc, char **argv) {
  const scree__cu *cu;
  scree__cuda_map map;
  gpu_reply reply;
  gpu_job job;
  int sock, fd, owner, access;

  if (argc != 2)
    return 2;
  sock = atoi(argv[1]);
  memset(&map, 0, sizeof(map));
  for (;;) {
    if (recv_job(sock, &job, &fd) != 0)
      return 3;
    memset(&reply, 0, sizeof(reply));
    switch (job.kind) {
    case GPU_JOB_IMPORT:
      reply.rc = scree__cuda_find_device(job.uuid, &owner, reply.msg, sizeof(reply.msg));
      if (reply.rc == 0)
        reply.rc = scree__cuda_access_device(owner, &access, reply.msg, sizeof(reply.msg));
      if (reply.rc == 0 && job.ipc_mode == SCREE__CUDA_IPC_VMM_FD)
        reply.rc = scree__cuda_import_fd(fd, job.arena_size, owner, access, &map, reply.msg,
                                         sizeof(reply.msg));
      else if (reply.rc == 0)
        reply.rc = scree__cuda_import_legacy(job.handle, sizeof(job.handle), job.arena_size,
                                             owner, access, &map, reply.msg,
                                             sizeof(reply.msg));
      break;
    case GPU_JOB_CHECK:
      reply.rc = scree__cu_load(&cu, reply.msg, sizeof(reply.msg));
      if (reply.rc == 0)
        reply.rc = check(cu, &map, &job, reply.msg, sizeof(reply.msg));
      break;
    case GPU_JOB_WRITE:
      reply.rc = write_pattern(&map, &job, reply.msg, sizeof(reply.msg));
      break;
    case GPU_JOB_EXIT:
      scree__cuda_unmap(&map);
      return 0;
    default:
      reply.rc = SCREE_EINVAL;
    }
    if (fd >= 0)
      close(fd);
    reply.imports = scree__cuda_import_count();
    if (send(sock, &reply, sizeof(reply), MSG_NOSIGNAL) != (ssize_t)sizeof(reply))
      return 4;
  }
}
