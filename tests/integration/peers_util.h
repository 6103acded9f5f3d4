/* Two screeds joined as peers over UCX on 127.0.0.1, for the peer tests
 * and the peer benchmark: a free port, a secret file, the options. */
#ifndef SCREE_TESTS_PEERS_UTIL_H
#define SCREE_TESTS_PEERS_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scree/client.h"

/* A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick,
 * released at once: another program could take it before screed does,
 * which the tests would see as a failed start). 0 on failure. */
static inline unsigned peers_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  unsigned port = 0;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

/* Writes secret into a new mode-0600 file at path. Returns 0 or -1. */
static inline int peers_write_secret(const char *path, const char *secret) {
  unlink(path);
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return -1;
  fprintf(f, "%s\n", secret);
  fclose(f);
  return chmod(path, 0600);
}

/* Fills values and offsets of a with a deterministic pattern of seed:
 * batch rows of lengths 0, 1, 2, ... cycling below max_len. */
static inline int peers_make(scree_dtype dt, scree_dtype odt, int64_t batch, int64_t max_len,
                             int64_t inner, unsigned seed, scree_array *a) {
  memset(a, 0, sizeof(*a));
  a->dtype = dt;
  a->offsets_dtype = odt;
  a->ndim_inner = inner > 0 ? 1 : 0;
  a->inner[0] = inner;
  a->batch_size = batch;
  a->device.type = SCREE_DEVICE_CPU;
  int64_t total = 0;
  for (int64_t i = 0; i < batch; i++)
    total += (i * 7 + seed) % (max_len + 1);
  a->total_rows = total;
  uint64_t vb, ob;
  if (scree_array_check_desc(a, &vb, &ob, NULL, 0) != 0)
    return -1;
  a->values = malloc(vb ? vb : 1);
  a->offsets = malloc(ob);
  if (a->values == NULL || a->offsets == NULL)
    return -1;
  unsigned char *v = a->values;
  uint32_t x = seed * 2654435761u + 1;
  for (uint64_t i = 0; i < vb; i++) {
    x = x * 1664525u + 1013904223u;
    v[i] = (unsigned char)(x >> 24);
  }
  /* bool values must be 0 or 1 to mean anything; the bytes are only
   * compared, so any pattern does. */
  int64_t off = 0;
  for (int64_t i = 0; i <= batch; i++) {
    if (odt == SCREE_INT32)
      ((int32_t *)a->offsets)[i] = (int32_t)off;
    else
      ((int64_t *)a->offsets)[i] = off;
    if (i < batch)
      off += (i * 7 + seed) % (max_len + 1);
  }
  return 0;
}

#endif /* SCREE_TESTS_PEERS_UTIL_H */
