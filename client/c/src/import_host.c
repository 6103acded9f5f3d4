/* Host-memory arenas: the daemon sends a memfd, the client mmaps it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "import.h"
#include "scree/client.h"
#include "scree/error.h"

static int host_import(const scree__import_src *src, int writable, void **base,
                       scree_device *device, void **state, char *msg, size_t msg_len) {
  if (src->fd < 0) {
    snprintf(msg, msg_len, "arena %llu: the daemon sent no fd for a memfd arena",
             (unsigned long long)src->arena_id);
    return SCREE_EPROTO;
  }
  if (src->size == 0) {
    snprintf(msg, msg_len, "arena %llu has size 0", (unsigned long long)src->arena_id);
    return SCREE_EPROTO;
  }
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void *p = mmap(NULL, src->size, prot, MAP_SHARED, src->fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    snprintf(msg, msg_len, "mmap of arena %llu (%zu bytes): %s",
             (unsigned long long)src->arena_id, src->size, strerror(e));
    return e == ENOMEM ? SCREE_ENOMEM : (e == EACCES ? SCREE_EACCES : SCREE_EIO);
  }
  *base = p;
  device->type = SCREE_DEVICE_CPU;
  device->index = 0;
  *state = NULL;
  return 0;
}

static int host_make_writable(void *base, size_t size, void *state, char *msg,
                              size_t msg_len) {
  /* mprotect works because the memfd was mapped MAP_SHARED from an fd open
   * for writing; a daemon that sent a read-only fd gets EACCES here. */
  if (mprotect(base, size, PROT_READ | PROT_WRITE) != 0) {
    int e = errno;
    snprintf(msg, msg_len, "cannot make arena mapping writable: %s", strerror(e));
    return e == EACCES ? SCREE_EACCES : SCREE_EIO;
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

const scree__importer scree__import_host = {
    .name = "host mmap",
    .import = host_import,
    .make_writable = host_make_writable,
    .copy_in = host_copy_in,
    .unmap = host_unmap,
};
