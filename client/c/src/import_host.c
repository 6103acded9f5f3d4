/* Host-memory arenas: the daemon sends a memfd, the client mmaps it. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "import.h"
#include "scree/client.h"
#include "scree/error.h"
#include "sys.h"

static int host_import(const scree__import_src *src, int writable, void **base,
                       scree_device *device, void **state, char *msg, size_t msg_len) {
  if (src->fd < 0)
    return scree__fail(SCREE_EPROTO, msg, msg_len,
                       "arena %llu: the daemon sent no fd for a memfd arena",
                       (unsigned long long)src->arena_id);
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void *p = mmap(NULL, src->size, prot, MAP_SHARED, src->fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    return scree__fail(e == ENOMEM ? SCREE_ENOMEM : (e == EACCES ? SCREE_EACCES : SCREE_EIO),
                       msg, msg_len, "mmap of arena %llu (%zu bytes): %s",
                       (unsigned long long)src->arena_id, src->size, strerror(e));
  }
  *base = p;
  device->type = SCREE_DEVICE_CPU;
  device->index = 0;
  *state = NULL;
  return 0;
}

static int host_make_writable(void *base, size_t size, void *state, char *msg,
                              size_t msg_len) {
  /* Used only when no writable fd followed the read-only import: for a
   * daemon older than Location.writable, whose fds are all open for
   * writing. A read-only fd (what current daemons send with Get) gets
   * EACCES here; they send the writable fd with the Create instead. */
  if (mprotect(base, size, PROT_READ | PROT_WRITE) != 0) {
    int e = errno;
    return scree__fail(e == EACCES ? SCREE_EACCES : SCREE_EIO, msg, msg_len,
                       "cannot make arena mapping writable: %s", strerror(e));
  }
  return 0;
}

static int host_copy_in(void *dst, const void *src, size_t size, void *state, char *msg,
                        size_t msg_len) {
  if (size > 0)
    memcpy(dst, src, size);
  return 0;
}

static void host_unmap(void *base, size_t size, void *state) {
  munmap(base, size);
}

/* A second mapping of the same shared pages, read-only: mremap with an old
 * size of 0 duplicates a MAP_SHARED mapping without the fd (closed after
 * the import), and the copy is then made PROT_READ, so a write through a
 * view of it faults. The writable mapping stays as it is, for the
 * connection's own created batches. */
static int host_map_read_only(void *base, size_t size, void *state, void **ro_base,
                              void **ro_state, char *msg, size_t msg_len) {
  void *p = mremap(base, 0, size, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) {
    int e = errno;
    return scree__fail(e == ENOMEM ? SCREE_ENOMEM : SCREE_EIO, msg, msg_len,
                       "mapping an arena again read-only: %s", strerror(e));
  }
  if (mprotect(p, size, PROT_READ) != 0) {
    int e = errno;
    munmap(p, size);
    return scree__fail(SCREE_EIO, msg, msg_len, "making an arena mapping read-only: %s",
                       strerror(e));
  }
  *ro_base = p;
  *ro_state = NULL;
  return 0;
}

const scree__importer scree__import_host = {
    .name = "host mmap",
    .import = host_import,
    .make_writable = host_make_writable,
    .copy_in = host_copy_in,
    .unmap = host_unmap,
    .map_read_only = host_map_read_only,
};
