#include "fuzz_common.h"

#include <dirent.h>
#include <string.h>

#include "authz.h"
#include "log.h"

scree__mem *fuzz_mem(void) {
  static scree__mem *mem;
  if (mem == NULL) {
    /* Only internal errors (an arena refusing a free) would log. */
    scree__log_threshold = SCREE__LOG_ERROR;
    char msg[256];
    int rc = scree__mem_host_create(&mem, msg, sizeof(msg));
    FUZZ_CHECK(rc == 0, "host backend: %s", msg);
  }
  return mem;
}

scree__store *fuzz_store_new(void) {
  /* uid 0 (the harnesses' auditor session) is the admin who may delete
   * every batch; the fuzzed sessions are ordinary uids, so the ownership
   * rules and the per-uid quota are exercised too. */
  static scree__authz authz;
  static int authz_ready;
  if (!authz_ready) {
    scree__authz_init(&authz);
    FUZZ_CHECK(scree__authz_add(&authz, SCREE__AUTHZ_ADMIN, 0) == 0, "authz");
    authz_ready = 1;
  }
  scree__store_config cfg = {.memory_limit = FUZZ_MEMORY_LIMIT,
                             .authz = &authz,
                             .quota_per_uid = FUZZ_MEMORY_LIMIT / 2,
                             .arena_size = FUZZ_ARENA_SIZE};
  scree__store *s = NULL;
  char msg[256];
  int rc = scree__store_new(fuzz_mem(), &cfg, &s, msg, sizeof(msg));
  FUZZ_CHECK(rc == 0, "store: %s", msg);
  return s;
}

scree__handler *fuzz_handler_new(scree__store *s) {
  scree__handler_config cfg = {.max_packet = 1u << 20, .version = "fuzz"};
  scree__handler *h = NULL;
  char msg[256];
  int rc = scree__handler_new(s, &cfg, &h, msg, sizeof(msg));
  FUZZ_CHECK(rc == 0, "handler: %s", msg);
  return h;
}

void fuzz_check_reply(const scree__reply *r) {
  size_t len = scree__v1__response__get_packed_size(&r->resp);
  uint8_t *buf = malloc(len ? len : 1);
  FUZZ_CHECK(buf != NULL, "out of memory");
  size_t packed = scree__v1__response__pack(&r->resp, buf);
  FUZZ_CHECK(packed == len, "packed %zu bytes, expected %zu", packed, len);
  Scree__V1__Response *back = scree__v1__response__unpack(NULL, len, buf);
  FUZZ_CHECK(back != NULL, "a %zu-byte reply (status %d, '%s') does not decode", len,
             r->resp.status, r->resp.message ? r->resp.message : "");
  FUZZ_CHECK(back->id == r->resp.id && back->status == r->resp.status,
             "decoded id/status %llu/%d differ from %llu/%d", (unsigned long long)back->id,
             back->status, (unsigned long long)r->resp.id, r->resp.status);
  FUZZ_CHECK(r->resp.status <= 0, "positive status %d", r->resp.status);
  FUZZ_CHECK(r->resp.status == 0 || (back->message != NULL && back->message[0] != '\0'),
             "error %d without a message", r->resp.status);
  FUZZ_CHECK(r->resp.status == 0 || r->fd < 0, "error reply carries fd %d", r->fd);
  scree__v1__response__free_unpacked(back, NULL);
  free(buf);
}

int fuzz_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return -1;
  int n = 0;
  while (readdir(d) != NULL)
    n++;
  closedir(d);
  return n;
}

int fuzz_trace(void) {
  static int on = -1;
  if (on < 0)
    on = getenv("SCREE_FUZZ_TRACE") != NULL;
  return on;
}

static struct {
  uint64_t ns;
  const char *what;
  size_t bytes;
  int registered;
} slowest;

static void print_slowest(void) {
  fprintf(stderr, "fuzz: slowest request: %.1f us (%s, %zu bytes)\n", (double)slowest.ns / 1e3,
          slowest.what ? slowest.what : "none", slowest.bytes);
}

void fuzz_note_time(uint64_t ns, const char *what, size_t bytes) {
  if (!slowest.registered) {
    slowest.registered = 1;
    atexit(print_slowest);
  }
  if (ns > slowest.ns) {
    slowest.ns = ns;
    slowest.what = what;
    slowest.bytes = bytes;
  }
}
