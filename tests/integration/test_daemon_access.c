/* screed's access control as a process, with peers of different uids.
 *
 * The test runs as root. For each peer it forks a child that drops to an
 * unprivileged uid and gid (numeric ids, no passwd entry needed), connects
 * to the daemon and hands the connected socket back over a socketpair: the
 * kernel records a connection's credentials (SO_PEERCRED, SO_PEERGROUPS) at
 * connect, so the parent can then speak as that uid with ordinary
 * assertions. Without root the whole program exits 77 (skipped, visibly). */
#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raw_client.h"
#include "sys.h"

/* A C string as a request's bytes field (names travel as bytes; see
 * proto/scree/v1/scree.proto). NULL is empty. */
static inline ProtobufCBinaryData test_bytes(const char *s) {
  ProtobufCBinaryData b = {s != NULL ? strlen(s) : 0, (uint8_t *)s};
  return b;
}

#define ALICE 65534u /* nobody */
#define BOB 65533u
#define CAROL 65532u
#define STAFF 4242u /* a group carol is a supplementary member of */

static rc_daemon d;

/* Starts screed on a fresh socket with extra options (at most 12) after
 * --log-level warn, capturing its stderr, and makes the socket connectable
 * by anyone: the access check under test is screed's, not the file mode's. */
static void start(const char *tag, const char *const *extra) {
  memset(&d, 0, sizeof(d));
  d.err_fd = -1;
  rc_socket_path(d.sock, sizeof(d.sock), tag);
  const char *args[16] = {"--log-level", "warn"};
  int n = 2;
  for (int i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
    args[n++] = extra[i];
  args[n] = NULL;
  cr_assert_eq(rc_daemon_spawn(&d, args, 1), 0);
  struct timespec ts = {0, 5000000};
  for (int i = 0; i < 4000; i++) {
    int fd = rc_connect(d.sock);
    if (fd >= 0) {
      close(fd);
      break;
    }
    cr_assert_eq(rc_daemon_wait(&d, 0), -1, "screed exited at start");
    nanosleep(&ts, NULL);
  }
  struct stat st;
  cr_assert_eq(stat(d.sock, &st), 0, "screed did not start on %s", d.sock);
  cr_assert_eq(chmod(d.sock, 0666), 0);
}

static void fini(void) {
  if (d.pid > 0)
    rc_daemon_stop(&d);
  char copy[108];
  snprintf(copy, sizeof(copy), "%s", d.sock);
  unlink(d.sock);
  rmdir(dirname(copy));
}

TestSuite(access, .fini = fini);

static void finish(void) {
  int st = rc_daemon_stop(&d);
  cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "screed did not exit cleanly: wait status 0x%x", st);
}

/* A socket connected to screed by a process with uid, gid and the given
 * supplementary groups; -1 when the child could not connect. */
static int connect_as(uint32_t uid, uint32_t gid, const gid_t *groups, size_t ngroups) {
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    close(sv[0]);
    if (setgroups(ngroups, groups) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
      _exit(2);
    int fd = rc_connect(d.sock);
    if (fd < 0)
      _exit(3);
    _exit(rc_send(sv[1], "c", 1, fd) == 0 ? 0 : 4);
  }
  close(sv[1]);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child as uid %u failed: status 0x%x",
            uid, st);
  char b;
  int fd = -1, nfds = 0;
  cr_assert_eq(scree__recv_fds(sv[0], &b, 1, 0, &fd, 1, &nfds, NULL, NULL), 1);
  cr_assert_eq(nfds, 1, "the child's socket did not arrive");
  close(sv[0]);
  return fd;
}

/* connect_as and Hello, which must succeed. */
static int open_as(uint32_t uid, uint32_t gid) {
  int fd = connect_as(uid, gid, NULL, 0);
  cr_assert_eq(rc_hello(fd), 0, "uid %u was refused", uid);
  return fd;
}

static void expect(Scree__V1__Response *resp, int status) {
  cr_assert_not_null(resp, "no response from screed");
  cr_assert_eq(resp->status, status, "status %d (%s), expected %d", resp->status,
               resp->message, status);
}

/* Creates a float32 batch of rows rows of 256 values (1 KiB each), one row
 * per entry; the response's arena fd goes to *fd_out. */
static Scree__V1__Response *create(int fd, const char *name, int64_t rows, int shared,
                                   int *fd_out) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Create c = SCREE__V1__CREATE__INIT;
  Scree__V1__ArrayDesc desc = SCREE__V1__ARRAY_DESC__INIT;
  int64_t inner[1] = {256};
  desc.dtype = 9; /* float32 */
  desc.n_inner = 1;
  desc.inner = inner;
  desc.batch_size = rows;
  desc.total_rows = rows;
  desc.offsets_dtype = 5; /* int64 */
  c.name = test_bytes((char *)name);
  c.desc = &desc;
  c.shared = shared != 0;
  req.id = 21;
  req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
  req.create = &c;
  return rc_call(fd, &req, fd_out);
}

/* Creates, writes the offsets through the arena (mapping the fd when one
 * comes; maps holds this connection's earlier mappings by arena id) and
 * seals. Returns the arena id. */
typedef struct arenas {
  uint64_t id[8];
  char *base[8];
  size_t size[8];
  int n;
} arenas;

static uint64_t put(int fd, arenas *m, const char *name, int64_t rows, int shared) {
  int afd = -1;
  Scree__V1__Response *resp = create(fd, name, rows, shared, &afd);
  expect(resp, 0);
  const Scree__V1__Location *loc = resp->create->location;
  char *base = NULL;
  for (int i = 0; i < m->n; i++)
    if (m->id[i] == loc->arena_id)
      base = m->base[i];
  if (base == NULL) {
    cr_assert(loc->handle_attached && afd >= 0, "no fd for a new arena");
    base = mmap(NULL, loc->arena_size, PROT_READ | PROT_WRITE, MAP_SHARED, afd, 0);
    cr_assert_neq(base, MAP_FAILED);
    cr_assert_lt(m->n, 8);
    m->id[m->n] = loc->arena_id;
    m->base[m->n] = base;
    m->size[m->n] = loc->arena_size;
    m->n++;
  }
  if (afd >= 0)
    close(afd);
  int64_t *offs = (int64_t *)(base + loc->offsets_offset);
  for (int64_t i = 0; i <= rows; i++)
    offs[i] = i;
  uint64_t id = loc->arena_id;
  rc_free(resp);
  resp = rc_seal(fd, name);
  expect(resp, 0);
  rc_free(resp);
  return id;
}

static void unmap(arenas *m) {
  for (int i = 0; i < m->n; i++)
    munmap(m->base[i], m->size[i]);
  m->n = 0;
}

static uint64_t stat_arena(int fd, const char *name, uint32_t *owner) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Stat st = SCREE__V1__STAT__INIT;
  st.name = test_bytes((char *)name);
  req.id = 17;
  req.body_case = SCREE__V1__REQUEST__BODY_STAT;
  req.stat = &st;
  Scree__V1__Response *resp = rc_call(fd, &req, NULL);
  expect(resp, 0);
  uint64_t id = resp->stat->info->arena_id;
  if (owner)
    *owner = resp->stat->info->owner_uid;
  rc_free(resp);
  return id;
}

/* ---- who may connect ------------------------------------------------------ */

Test(access, a_uid_not_allowed_gets_eacces_and_is_logged) {
  start("refused", NULL);
  int fd = connect_as(ALICE, ALICE, NULL, 0);
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  req.id = 41;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  Scree__V1__Response *resp = rc_call(fd, &req, NULL);
  expect(resp, -EACCES);
  cr_assert_eq(resp->id, 41, "the refusal answers the request's own id");
  cr_assert_str_eq(resp->message, "uid 65534 is not allowed to use this screed");
  rc_free(resp);
  /* Then the connection ends. */
  cr_assert_null(rc_recv(fd, NULL, 10000));
  close(fd);

  /* A refused peer's junk is not decoded either: same answer, id 0. */
  fd = connect_as(BOB, BOB, NULL, 0);
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x01};
  cr_assert_eq(rc_send(fd, junk, sizeof(junk), -1), 0);
  resp = rc_recv(fd, NULL, 10000);
  expect(resp, -EACCES);
  cr_assert_eq(resp->id, 0);
  cr_assert_str_eq(resp->message, "uid 65533 is not allowed to use this screed");
  rc_free(resp);
  close(fd);

  char log[8192] = "";
  size_t got = 0;
  for (int i = 0; i < 100 && strstr(log, "uid=65533") == NULL; i++) {
    log[got] = '\0';
    got += rc_daemon_read_stderr(&d, log + got, sizeof(log) - got, 100);
  }
  cr_assert(strstr(log, "event=refused") != NULL && strstr(log, "uid=65534") != NULL &&
                strstr(log, "reason=not_in_allow_list") != NULL,
            "log: %s", log);

  /* Root is always allowed and the daemon is unharmed. */
  fd = rc_open(d.sock);
  cr_assert_geq(fd, 0);
  resp = rc_stats(fd);
  expect(resp, 0);
  cr_assert_eq(resp->stats->connections, 1, "refused connections are gone");
  rc_free(resp);
  close(fd);
  finish();
}

Test(access, allowed_by_uid_primary_gid_or_supplementary_group) {
  const char *extra[] = {"--allow-uid", "65534", "--allow-gid", "4243",
                         "--allow-gid", "4242", NULL};
  start("allowed", extra);
  int a = open_as(ALICE, ALICE);
  int b = open_as(BOB, 4243);                 /* by primary gid */
  gid_t staff = STAFF;
  int c = connect_as(CAROL, CAROL, &staff, 1); /* by a supplementary group */
  cr_assert_eq(rc_hello(c), 0);
  gid_t other = 4244;
  int x = connect_as(CAROL, CAROL, &other, 1);
  cr_assert_eq(rc_hello(x), -EACCES);
  close(x);
  close(a);
  close(b);
  close(c);
  finish();
}

/* ---- ownership ------------------------------------------------------------ */

Test(access, another_allowed_uid_can_get_but_not_delete) {
  const char *extra[] = {"--allow-uid", "65534,65533", NULL};
  start("owner", extra);
  int a = open_as(ALICE, ALICE);
  int b = open_as(BOB, BOB);
  arenas ma = {0};
  put(a, &ma, "alice/x", 4, 0);

  int afd = -1;
  Scree__V1__Response *resp = rc_get(b, "alice/x", &afd);
  expect(resp, 0);
  cr_assert_eq(resp->get->info->owner_uid, ALICE);
  cr_assert_geq(afd, 0, "bob is sent alice's arena to read from");
  close(afd);
  rc_free(resp);

  resp = rc_delete(b, "alice/x");
  expect(resp, -EPERM);
  cr_assert_str_eq(resp->message, "batch 'alice/x' is owned by uid 65534");
  rc_free(resp);

  /* Root is an admin by default. */
  int root = rc_open(d.sock);
  cr_assert_geq(root, 0);
  put(a, &ma, "alice/y", 4, 0);
  resp = rc_delete(root, "alice/y");
  expect(resp, 0);
  rc_free(resp);
  resp = rc_delete(a, "alice/x");
  expect(resp, 0);
  cr_assert(resp->delete_->deferred, "bob's lease holds it");
  rc_free(resp);
  unmap(&ma);
  close(a);
  close(b);
  close(root);
  finish();
}

/* ---- waiting and watching -------------------------------------------------- */

static void send_watch(int fd, uint64_t id, const char *prefix) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Watch w = SCREE__V1__WATCH__INIT;
  w.prefix.data = (uint8_t *)prefix;
  w.prefix.len = strlen(prefix);
  req.id = id;
  req.body_case = SCREE__V1__REQUEST__BODY_WATCH;
  req.watch = &w;
  cr_assert_eq(rc_send_request(fd, &req), 0);
}

static void send_get_wait(int fd, uint64_t id, const char *name, int64_t ms) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  g.name = test_bytes(name);
  g.wait_present_case = SCREE__V1__GET__WAIT_PRESENT_WAIT_MS;
  g.wait_ms = ms;
  req.id = id;
  req.body_case = SCREE__V1__REQUEST__BODY_GET;
  req.get = &g;
  cr_assert_eq(rc_send_request(fd, &req), 0);
}

/* Waits and watches see what Get and List see: every allowed uid is woken
 * by another uid's seal and sees its events; a uid that may not use this
 * screed sees nothing (its Watch and its waiting Get get EACCES and the
 * connection ends), and leaves no waiter or watcher behind. */
Test(access, waits_and_watches_follow_the_read_rules) {
  const char *extra[] = {"--allow-uid", "65534,65533", NULL};
  start("waits", extra);
  int a = open_as(ALICE, ALICE);
  int b = open_as(BOB, BOB);
  int bw = open_as(BOB, BOB);
  send_get_wait(b, 5, "alice/w", -1);
  send_watch(bw, 6, "alice/");
  Scree__V1__Response *resp = rc_recv(bw, NULL, 10000);
  expect(resp, 0);
  cr_assert_eq(resp->body_case, SCREE__V1__RESPONSE__BODY_WATCH);
  rc_free(resp);

  int x = connect_as(CAROL, CAROL, NULL, 0);
  send_watch(x, 7, "");
  resp = rc_recv(x, NULL, 10000);
  expect(resp, -EACCES);
  rc_free(resp);
  cr_assert_null(rc_recv(x, NULL, 10000), "a refused watcher's connection ends");
  close(x);
  x = connect_as(CAROL, CAROL, NULL, 0);
  send_get_wait(x, 8, "alice/w", -1);
  resp = rc_recv(x, NULL, 10000);
  expect(resp, -EACCES);
  rc_free(resp);
  cr_assert_null(rc_recv(x, NULL, 10000));
  close(x);

  arenas ma = {0};
  put(a, &ma, "alice/w", 4, 0);
  int afd = -1;
  resp = rc_recv(b, &afd, 10000);
  expect(resp, 0);
  cr_assert_eq(resp->id, 5);
  cr_assert_eq(resp->body_case, SCREE__V1__RESPONSE__BODY_GET);
  cr_assert_eq(resp->get->info->owner_uid, ALICE);
  if (afd >= 0)
    close(afd);
  rc_free(resp);
  resp = rc_recv(bw, NULL, 10000);
  expect(resp, 0);
  cr_assert_eq(resp->id, 6);
  cr_assert_eq(resp->body_case, SCREE__V1__RESPONSE__BODY_EVENT);
  cr_assert_eq(resp->event->kind, SCREE__V1__EVENT_KIND__EVENT_KIND_SEALED);
  cr_assert_eq(resp->event->seq, 1);
  cr_assert_eq(resp->event->name.len, strlen("alice/w"));
  rc_free(resp);

  int root = rc_open(d.sock);
  resp = rc_stats(root);
  expect(resp, 0);
  cr_assert_eq(resp->stats->waiters, 0);
  cr_assert_eq(resp->stats->watchers, 1);
  rc_free(resp);
  unmap(&ma);
  close(a);
  close(b);
  close(bw);
  close(root);
  finish();
}

/* ---- quotas --------------------------------------------------------------- */

Test(access, over_the_quota_is_enospc_naming_it) {
  const char *extra[] = {"--allow-uid", "65534,65533", "--quota-per-uid", "64K", NULL};
  start("quota", extra);
  int a = open_as(ALICE, ALICE);
  int b = open_as(BOB, BOB);
  arenas ma = {0}, mb = {0};
  put(a, &ma, "a1", 40, 0);
  Scree__V1__Response *resp = create(a, "a2", 40, 0, NULL);
  expect(resp, -ENOSPC);
  cr_assert_str_eq(resp->message,
                   "uid 65534 quota: needs 41472 bytes, 41472 used of 65536 (batch 'a2')");
  rc_free(resp);
  put(b, &mb, "b1", 40, 0); /* bob's quota is his own */
  resp = rc_delete(a, "a1");
  expect(resp, 0);
  rc_free(resp);
  put(a, &ma, "a2", 40, 0);
  unmap(&ma);
  unmap(&mb);
  close(a);
  close(b);
  finish();
}

/* ---- arenas --------------------------------------------------------------- */

Test(access, two_uids_never_share_an_arena_by_default) {
  const char *extra[] = {"--allow-uid", "65534,65533", NULL};
  start("arenas", extra);
  int a = open_as(ALICE, ALICE);
  int b = open_as(BOB, BOB);
  arenas ma = {0}, mb = {0};
  uint64_t a1 = put(a, &ma, "a1", 4, 0);
  uint64_t b1 = put(b, &mb, "b1", 4, 0);
  uint64_t a2 = put(a, &ma, "a2", 4, 0);
  cr_assert_neq(a1, b1);
  cr_assert_eq(a1, a2);
  cr_assert_eq(stat_arena(b, "a1", NULL), a1);
  cr_assert_eq(stat_arena(a, "b1", NULL), b1);
  /* Bob reading alice's batch gets alice's arena, not one of his. */
  Scree__V1__Response *resp = rc_get(b, "a2", NULL);
  expect(resp, 0);
  cr_assert_eq(resp->get->location->arena_id, a1);
  rc_free(resp);
  /* Batches created shared go to the shared pool, together. */
  uint64_t as = put(a, &ma, "as", 4, 1);
  uint64_t bs = put(b, &mb, "bs", 4, 1);
  cr_assert_eq(as, bs);
  cr_assert_neq(as, a1);
  cr_assert_neq(as, b1);
  uint32_t owner;
  stat_arena(a, "bs", &owner);
  cr_assert_eq(owner, BOB);
  unmap(&ma);
  unmap(&mb);
  close(a);
  close(b);
  finish();
}

Test(access, shared_arenas_lets_owners_share) {
  const char *extra[] = {"--allow-uid", "65534,65533", "--shared-arenas", NULL};
  start("shared", extra);
  int a = open_as(ALICE, ALICE);
  int b = open_as(BOB, BOB);
  arenas ma = {0}, mb = {0};
  uint64_t a1 = put(a, &ma, "a1", 4, 0);
  uint64_t b1 = put(b, &mb, "b1", 4, 0);
  cr_assert_eq(a1, b1);
  unmap(&ma);
  unmap(&mb);
  close(a);
  close(b);
  finish();
}

Test(access, bad_access_options_exit_2) {
  const char *cases[][3] = {
      {"--allow-uid", "no-such-user-scree", NULL},
      {"--allow-gid", "no-such-group-scree", NULL},
      {"--admin-uid", "1,,2", NULL},
      {"--quota-per-uid", "lots", NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    memset(&d, 0, sizeof(d));
    rc_socket_path(d.sock, sizeof(d.sock), "badopt");
    cr_assert_eq(rc_daemon_spawn(&d, cases[i], 1), 0);
    int st = rc_daemon_wait(&d, 20000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s %s: status 0x%x",
              cases[i][0], cases[i][1], st);
    char err[1024];
    rc_daemon_read_stderr(&d, err, sizeof(err), 1000);
    cr_assert(strstr(err, cases[i][0]) != NULL, "%s", err);
    close(d.err_fd);
    d.pid = 0;
  }
}

/* Runs before Criterion's main (and so before any worker is spawned): a
 * non-root run is a skip of the whole program, which CTest shows as such
 * (SKIP_RETURN_CODE 77), never a pass. */
__attribute__((constructor)) static void need_root(void) {
  if (geteuid() != 0) {
    printf("SKIP: test_daemon_access needs root to run peers as other uids\n");
    fflush(stdout);
    _exit(77);
  }
}
