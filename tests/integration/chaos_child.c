/* One client of the chaos test (test_chaos.c): it does a random sequence of
 * put, create (sealed or left unsealed), get, release, delete, stat and list
 * through libscreeclient until it is killed with SIGKILL. How it dies
 * depends on its mode:
 *   raw     sends Hello, waits for the reply, then sends Create and Get
 *           without reading their replies and kills itself: the daemon
 *           answers (with an arena fd) a peer that is gone;
 *   ops     kills itself between two calls after a random number of them;
 *   thread  a second thread kills the process after a random delay of up to
 *           3 ms, mostly in the middle of a round trip;
 *   parent  runs until the test kills it after a random delay.
 *
 * usage: chaos_child SOCKET SEED MODE
 * Exits 0 never; 3 when an attached batch fails validation (corruption),
 * 2 on a usage error, 4 when connecting fails. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "scree/client.h"
#include "scree/v1/scree.pb-c.h"

/* A C string as a request's bytes field (names travel as bytes; see
 * proto/scree/v1/scree.proto). NULL is empty. */
static inline ProtobufCBinaryData test_bytes(const char *s) {
  ProtobufCBinaryData b = {s != NULL ? strlen(s) : 0, (uint8_t *)s};
  return b;
}

#define SHARED_NAMES 64
#define MAX_HELD 8

static uint64_t rng;

static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

static void die(void) {
  raise(SIGKILL);
  _exit(9); /* not reached */
}

static int send_req(int fd, Scree__V1__Request *req) {
  uint8_t buf[512];
  size_t len = scree__v1__request__get_packed_size(req);
  if (len > sizeof(buf))
    return -1;
  scree__v1__request__pack(req, buf);
  return send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static void raw_mode(const char *path) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
    _exit(4);
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  req.id = 1;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  uint8_t reply[4096];
  if (send_req(fd, &req) != 0 || recv(fd, reply, sizeof(reply), 0) <= 0)
    _exit(4);

  char name[64];
  snprintf(name, sizeof(name), "raw-%ld", (long)getpid());
  Scree__V1__Create c = SCREE__V1__CREATE__INIT;
  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  d.dtype = 9; /* float32 */
  d.offsets_dtype = 5; /* int64 */
  d.batch_size = 2;
  d.total_rows = 100;
  c.name = test_bytes(name);
  c.desc = &d;
  req.id = 2;
  req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
  req.create = &c;
  send_req(fd, &req);
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  char shared[32];
  snprintf(shared, sizeof(shared), "c%u", rnd() % SHARED_NAMES);
  g.name = test_bytes(shared);
  req.id = 3;
  req.body_case = SCREE__V1__REQUEST__BODY_GET;
  req.get = &g;
  send_req(fd, &req);
  die();
}

static void *killer(void *arg) {
  long us = (long)(intptr_t)arg;
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, NULL);
  die();
  return NULL;
}

static void make_batch(scree_array *a, float *values, int64_t *offsets) {
  memset(a, 0, sizeof(*a));
  a->dtype = SCREE_FLOAT32;
  a->offsets_dtype = SCREE_INT64;
  a->ndim_inner = 1;
  a->inner[0] = 16;
  a->batch_size = 1 + rnd() % 4;
  offsets[0] = 0;
  for (int64_t i = 0; i < a->batch_size; i++)
    offsets[i + 1] = offsets[i] + rnd() % 17;
  a->total_rows = offsets[a->batch_size];
  for (int64_t i = 0; i < a->total_rows * 16; i++)
    values[i] = (float)i;
  a->values = values;
  a->offsets = offsets;
}

int main(int argc, char **argv) {
  if (argc != 4)
    return 2;
  const char *path = argv[1];
  rng = strtoull(argv[2], NULL, 10) * 0x9E3779B97F4A7C15ull + 1;
  const char *mode = argv[3];
  if (strcmp(mode, "raw") == 0)
    raw_mode(path);

  long ops_left = -1;
  if (strcmp(mode, "ops") == 0)
    ops_left = rnd() % 24;
  if (strcmp(mode, "thread") == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, killer, (void *)(intptr_t)(rnd() % 3000)) != 0)
      die();
  }

  scree_client *c;
  if (scree_client_connect(path, &c) != 0)
    _exit(4);
  scree_lease *held[MAX_HELD];
  int nheld = 0;
  float values[4 * 16 * 16];
  int64_t offsets[5];
  unsigned made = 0;
  for (;;) {
    if (ops_left == 0)
      die();
    if (ops_left > 0)
      ops_left--;
    char name[64];
    uint32_t op = rnd() % 100;
    scree_array a;
    if (op < 20) {
      snprintf(name, sizeof(name), "c%u", rnd() % SHARED_NAMES);
      make_batch(&a, values, offsets);
      scree_client_put(c, name, &a, NULL);
    } else if (op < 35) {
      snprintf(name, sizeof(name), "u%ld-%u", (long)getpid(), made++);
      scree_array desc, w;
      make_batch(&desc, values, offsets);
      if (scree_client_create(c, name, &desc, &w, NULL) == 0) {
        memcpy(w.offsets, offsets, sizeof(int64_t) * (size_t)(desc.batch_size + 1));
        if (rnd() % 10 < 7)
          scree_client_seal(c, name, NULL);
      }
    } else if (op < 65) {
      if (nheld == MAX_HELD) {
        scree_client_release(c, held[--nheld]);
        continue;
      }
      snprintf(name, sizeof(name), "c%u", rnd() % SHARED_NAMES);
      scree_array g;
      if (scree_client_get(c, name, &g, &held[nheld]) == 0) {
        int64_t maxlen;
        if (scree_offsets_validate(g.offsets, g.offsets_dtype, g.batch_size, g.total_rows,
                                   &maxlen, NULL, 0) != 0 ||
            maxlen != g.max_length)
          _exit(3);
        nheld++;
      }
    } else if (op < 85) {
      if (nheld > 0) {
        uint32_t i = rnd() % (uint32_t)nheld;
        scree_client_release(c, held[i]);
        held[i] = held[--nheld];
      }
    } else if (op < 95) {
      snprintf(name, sizeof(name), "c%u", rnd() % SHARED_NAMES);
      scree_client_delete(c, name, NULL);
    } else if (op < 98) {
      scree_batch_info bi;
      snprintf(name, sizeof(name), "c%u", rnd() % SHARED_NAMES);
      scree_client_stat(c, name, &bi);
    } else {
      scree_batch_info *list;
      size_t n;
      if (scree_client_list(c, "c", &list, &n) == 0)
        scree_client_free_list(list);
    }
  }
}
