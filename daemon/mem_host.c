/* The host-memory backend: each arena is a memfd mapped shared into screed.
 *
 * Clients get a dup of the memfd over SCM_RIGHTS and mmap it. The memfd is
 * sealed against shrinking and growing before any client sees it: a client
 * that truncated it would make every later access by screed to the lost pages
 * a SIGBUS, so the seal is what keeps one client from killing the daemon.
 * F_SEAL_SEAL is added too, so a client cannot add F_SEAL_FUTURE_WRITE and
 * stop other clients from mapping the arena writable.
 *
 * Readers get a read-only fd instead (share_fd_ro): the same memfd opened
 * again O_RDONLY through /proc/self/fd, a new open file description of the
 * same inode (so the same pages and the same seals). mmap with PROT_WRITE
 * and MAP_SHARED, or mprotect to PROT_WRITE, of a mapping of it fails with
 * EACCES. A memfd's inode is created mode 0777, though, and anyone holding
 * an fd can open /proc/self/fd/N again with O_RDWR, which checks the inode's
 * mode and not the fd's: the reopened fd would be writable. So the memfd is
 * made mode 0400 first (owner: screed's user, who is trusted anyway). Modes
 * are checked at open only, so the read-write fds screed and creators hold
 * keep working. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "scree/error.h"

typedef struct host_arena {
  int fd;    /* O_RDWR, for screed's mapping and creators */
  int ro_fd; /* O_RDONLY, for readers */
} host_arena;

/* Out of fds (EMFILE for screed, ENFILE for the system): a passing
 * shortage, SCREE_EAGAIN for the client to retry, with a message that says
 * which limit. */
static int out_of_fds(int e, char *msg, size_t msg_len) {
  return scree__fail(SCREE_EAGAIN, msg, msg_len,
                     "screed is out of file descriptors for a new arena (%s); try again later",
                     e == EMFILE ? "its RLIMIT_NOFILE is reached" : "the system's limit is reached");
}

/* Opens the memfd again read-only (see the top of this file). */
static int reopen_ro(int fd, int *out, char *msg, size_t msg_len) {
  if (fchmod(fd, 0400) != 0)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "fchmod of an arena memfd: %s",
                       strerror(errno));
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  int ro = open(path, O_RDONLY | O_CLOEXEC);
  if (ro < 0) {
    int e = errno;
    if (e == EMFILE || e == ENFILE)
      return out_of_fds(e, msg, msg_len);
    /* Only a missing file points at /proc itself. */
    return scree__fail(SCREE__ERR(e), msg, msg_len,
                       "reopening an arena memfd read-only through %s: %s%s", path,
                       strerror(e), e == ENOENT ? " (is /proc mounted?)" : "");
  }
  *out = ro;
  return 0;
}

static int host_arena_alloc(scree__mem *m, size_t size, scree__arena_mem *out, char *msg,
                            size_t msg_len) {
  size_t gran = m->info.granularity;
  if (size == 0 || size > SIZE_MAX - gran)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "bad arena size %zu", size);
  size = (size + gran - 1) / gran * gran;
  if (size > (size_t)INT64_MAX)
    return scree__fail(SCREE_ENOSPC, msg, msg_len, "arena of %zu bytes is too large", size);

  host_arena *h = malloc(sizeof(*h));
  if (h == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  int rc;
  h->fd = memfd_create("scree-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (h->fd < 0) {
    rc = errno == EMFILE || errno == ENFILE
             ? out_of_fds(errno, msg, msg_len)
             : scree__fail(SCREE__ERR(errno), msg, msg_len, "memfd_create: %s", strerror(errno));
    goto err_free;
  }
  if (ftruncate(h->fd, (off_t)size) != 0) {
    rc = scree__fail(errno == EFBIG || errno == ENOSPC ? SCREE_ENOSPC : SCREE__ERR(errno),
                     msg, msg_len, "ftruncate of a %zu-byte arena: %s", size,
                     strerror(errno));
    goto err_close;
  }
  if (fcntl(h->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    rc = scree__fail(SCREE__ERR(errno), msg, msg_len, "sealing an arena memfd: %s",
                     strerror(errno));
    goto err_close;
  }
  rc = reopen_ro(h->fd, &h->ro_fd, msg, msg_len);
  if (rc != 0)
    goto err_close;
  /* MAP_NORESERVE: the memfd's pages are committed lazily as batches are
   * written, so a large arena costs nothing until it is used. */
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, h->fd, 0);
  if (p == MAP_FAILED) {
    rc = scree__fail(errno == ENOMEM ? SCREE_ENOSPC : SCREE__ERR(errno), msg, msg_len,
                     "mmap of a %zu-byte arena: %s", size, strerror(errno));
    goto err_close_ro;
  }
  memset(out, 0, sizeof(*out));
  out->size = size;
  out->host_ptr = p;
  out->impl = h;
  return 0;

err_close_ro:
  close(h->ro_fd);
err_close:
  close(h->fd);
err_free:
  free(h);
  return rc;
}

static void host_arena_free(scree__mem *m, scree__arena_mem *a) {
  host_arena *h = a->impl;
  if (a->host_ptr != NULL)
    munmap(a->host_ptr, a->size);
  if (h != NULL) {
    /* Clients that were sent this arena may keep its fd (or a mapping) open
     * after screed lets go: closing ours alone would leave them the bytes of
     * every batch that lived here, and pin the pages outside --memory-limit.
     * Punching the whole file out frees the pages now and makes every fd and
     * mapping of it read zeros. Best effort, as in host_discard. */
    (void)fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)a->size);
    close(h->ro_fd);
    close(h->fd);
    free(h);
  }
  a->host_ptr = NULL;
  a->impl = NULL;
}

static int dup_fd(int src, int *fd_out, char *msg, size_t msg_len) {
  int fd = fcntl(src, F_DUPFD_CLOEXEC, 0);
  if (fd < 0 && (errno == EMFILE || errno == ENFILE))
    return scree__fail(SCREE_EAGAIN, msg, msg_len,
                       "screed is out of file descriptors to send an arena's; try again later");
  if (fd < 0)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "dup of an arena fd: %s",
                       strerror(errno));
  *fd_out = fd;
  return 0;
}

static int host_share_fd(scree__mem *m, const scree__arena_mem *a, int *fd_out, char *msg,
                         size_t msg_len) {
  const host_arena *h = a->impl;
  return dup_fd(h->fd, fd_out, msg, msg_len);
}

static int host_share_fd_ro(scree__mem *m, const scree__arena_mem *a, int *fd_out,
                            char *msg, size_t msg_len) {
  const host_arena *h = a->impl;
  return dup_fd(h->ro_fd, fd_out, msg, msg_len);
}

static int host_read(scree__mem *m, const scree__arena_mem *a, uint64_t offset, void *dst,
                     size_t size, char *msg, size_t msg_len) {
  int rc = scree__mem_check_range(a, offset, size, msg, msg_len);
  if (rc == 0 && size > 0)
    memcpy(dst, (const char *)a->host_ptr + offset, size);
  return rc;
}

static int host_write(scree__mem *m, const scree__arena_mem *a, uint64_t offset,
                      const void *src, size_t size, char *msg, size_t msg_len) {
  int rc = scree__mem_check_range(a, offset, size, msg, msg_len);
  if (rc == 0 && size > 0)
    memcpy((char *)a->host_ptr + offset, src, size);
  return rc;
}

/* Punches the block's whole pages out of the memfd: shmem frees them, and
 * every mapping (screed's, the clients') reads zeros there until a new
 * batch writes. */
static void host_discard(scree__mem *m, const scree__arena_mem *a, uint64_t offset,
                         uint64_t size) {
  const uint64_t page = m->info.granularity;
  const uint64_t start = (offset + page - 1) / page * page;
  const uint64_t end = (offset + size) / page * page;
  host_arena *h = a->impl;
  if (end > start && h != NULL)
    (void)fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)start,
                    (off_t)(end - start));
}

static void host_destroy(scree__mem *m) { free(m); }

/* The host backend's operations, listed once: the test build's staging
 * variant below adds to them. */
#define HOST_OPS                                                               \
  .arena_alloc = host_arena_alloc, .arena_free = host_arena_free,              \
  .share_fd = host_share_fd, .read = host_read, .write = host_write,           \
  .destroy = host_destroy, .share_fd_ro = host_share_fd_ro, .discard = host_discard

static const struct scree__mem_ops host_ops = {HOST_OPS};

#ifdef SCREE_TEST_HOOKS
/* Staging on host memory, for tests only (SCREE_TEST_HOST_STAGING set in
 * screed's environment): host memory never needs it, but with these hooks
 * the peers' staged path (the one a GPU screed takes where UCX has no CUDA
 * support) runs on machines without a GPU. A copy is made at once and
 * reported done at the second poll, so that the callers see it pending
 * once, as they would a device copy. */
struct scree__stage {
  void *buf;
  size_t size;
  int polls_left;
};

static int host_stage_new(scree__mem *m, size_t size, scree__stage **out, void **host,
                          char *msg, size_t msg_len) {
  scree__stage *st = calloc(1, sizeof(*st));
  if (st != NULL)
    st->buf = malloc(size ? size : 1);
  if (st == NULL || st->buf == NULL) {
    free(st);
    return scree__fail(SCREE_ENOSPC, msg, msg_len, "no host memory for a %zu-byte stage", size);
  }
  st->size = size;
  *out = st;
  *host = st->buf;
  return 0;
}

static int host_stage_copy(scree__mem *m, scree__stage *st, const scree__arena_mem *a,
                           uint64_t offset, size_t size, int to_host, char *msg,
                           size_t msg_len) {
  int rc = scree__mem_check_stage(st->size, size, msg, msg_len);
  if (rc != 0)
    return rc;
  rc = to_host ? host_read(m, a, offset, st->buf, size, msg, msg_len)
               : host_write(m, a, offset, st->buf, size, msg, msg_len);
  if (rc == 0)
    st->polls_left = 1;
  return rc;
}

static int host_stage_poll(scree__mem *m, scree__stage *st, char *msg, size_t msg_len) {
  if (st->polls_left > 0) {
    st->polls_left--;
    return 0;
  }
  return 1;
}

static void host_stage_free(scree__mem *m, scree__stage *st) {
  free(st->buf);
  free(st);
}

static const struct scree__mem_ops host_staging_ops = {
    HOST_OPS,
    .stage_new = host_stage_new,
    .stage_copy = host_stage_copy,
    .stage_poll = host_stage_poll,
    .stage_free = host_stage_free,
};
#endif

int scree__mem_host_create(scree__mem **out, char *msg, size_t msg_len) {
  scree__mem *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  long page = sysconf(_SC_PAGESIZE);
  m->ops = &host_ops;
#ifdef SCREE_TEST_HOOKS
  if (getenv("SCREE_TEST_HOST_STAGING") != NULL)
    m->ops = &host_staging_ops;
#endif
  m->info.backend = SCREE__BACKEND_HOST;
  m->info.ipc_mode = SCREE__IPC_MEMFD;
  m->info.device_index = -1;
  strcpy(m->info.device_name, "host memory");
  m->info.granularity = page > 0 ? (size_t)page : 4096;
  *out = m;
  return 0;
}
