/* The access-control building blocks of screed (authz.c): option parsing,
 * the allow rule, the peer check with real sockets, the refused packet's id
 * and the check of arena fds before they are sent. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "authz.h"
#include "log.h"
#include "mem.h"
#include "scree/error.h"
#include "scree/v1/scree.pb-c.h"

static scree__authz a;

static void init(void) {
  scree__log_threshold = SCREE__LOG_ERROR;
  scree__authz_init(&a);
}
static void fini(void) { scree__authz_free(&a); }

TestSuite(authz, .init = init, .fini = fini);

static int has(scree__authz_list list, uint32_t id) {
  for (size_t i = 0; i < a.lists[list].n; i++)
    if (a.lists[list].ids[i] == id)
      return 1;
  return 0;
}

Test(authz, parses_numbers_and_names) {
  char msg[256];
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_UID, "1000,1001", msg, sizeof(msg)), 0,
               "%s", msg);
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_UID, "root,1000", msg, sizeof(msg)), 0,
               "%s", msg);
  cr_assert_eq(a.lists[SCREE__AUTHZ_UID].n, 3, "a duplicate is kept once");
  cr_assert(has(SCREE__AUTHZ_UID, 0) && has(SCREE__AUTHZ_UID, 1000) &&
            has(SCREE__AUTHZ_UID, 1001));
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_GID, "root,65533", msg, sizeof(msg)), 0,
               "%s", msg);
  cr_assert(has(SCREE__AUTHZ_GID, 0) && has(SCREE__AUTHZ_GID, 65533));
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_ADMIN, "4294967294", msg, sizeof(msg)), 0);
  cr_assert(has(SCREE__AUTHZ_ADMIN, 4294967294u));
  cr_assert(scree__authz_is_admin(&a, 4294967294u));
  cr_assert_not(scree__authz_is_admin(&a, 0));
  cr_assert_not(scree__authz_is_admin(NULL, 0));
}

Test(authz, bad_entries_are_einval_with_the_entry_named) {
  char msg[256];
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_UID, "", msg, sizeof(msg)), SCREE_EINVAL);
  cr_assert_str_eq(msg, "empty entry in the list");
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_UID, "1000,", msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_UID, "4294967295", msg, sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_str_eq(msg, "id 4294967295 is out of range");
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_UID, "99999999999999999999", msg,
                                  sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_UID, "no-such-user-scree", msg,
                                  sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_str_eq(msg, "no user named 'no-such-user-scree'");
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_GID, "no-such-group-scree", msg,
                                  sizeof(msg)),
               SCREE_EINVAL);
  cr_assert_str_eq(msg, "no group named 'no-such-group-scree'");
  cr_assert_eq(scree__authz_parse(&a, SCREE__AUTHZ_UID, "-1", msg, sizeof(msg)),
               SCREE_EINVAL);
}

Test(authz, the_rule_uid_or_gid_or_any_group) {
  cr_assert_eq(scree__authz_add(&a, SCREE__AUTHZ_UID, 1000), 0);
  cr_assert_eq(scree__authz_add(&a, SCREE__AUTHZ_GID, 500), 0);
  cr_assert(scree__authz_allows(&a, 1000, 1, NULL, 0));
  cr_assert(scree__authz_allows(&a, 7, 500, NULL, 0));
  uint32_t groups[] = {3, 4, 500};
  cr_assert(scree__authz_allows(&a, 7, 8, groups, 3));
  cr_assert_not(scree__authz_allows(&a, 7, 8, groups, 2));
  cr_assert_not(scree__authz_allows(&a, 1001, 1000, NULL, 0), "a gid is not a uid");
  /* (uid_t)-1 is "no id" and never matches, even when listed by mistake. */
  cr_assert_eq(scree__authz_add(&a, SCREE__AUTHZ_UID, UINT32_MAX), 0);
  cr_assert_not(scree__authz_allows(&a, UINT32_MAX, UINT32_MAX, NULL, 0));
}

Test(authz, defaults_are_root_self_and_the_socket_files_group) {
  char dir[] = "/tmp/scree-authz-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof(path), "%s/sock", dir);
  int fd = open(path, O_CREAT | O_WRONLY, 0600);
  cr_assert_geq(fd, 0);
  close(fd);
  uint32_t want_gid = (uint32_t)getegid();
  if (geteuid() == 0) {
    /* As root the file can carry another group, as with SocketGroup=. */
    cr_assert_eq(chown(path, (uid_t)-1, 4321), 0);
    want_gid = 4321;
  }
  char msg[256];
  cr_assert_eq(scree__authz_add_defaults(&a, path, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert(has(SCREE__AUTHZ_UID, 0));
  cr_assert(has(SCREE__AUTHZ_UID, (uint32_t)geteuid()));
  cr_assert(has(SCREE__AUTHZ_ADMIN, 0));
  cr_assert(has(SCREE__AUTHZ_ADMIN, (uint32_t)geteuid()));
  cr_assert(has(SCREE__AUTHZ_GID, want_gid));
  cr_assert_eq(a.lists[SCREE__AUTHZ_GID].n, 1);
  unlink(path);
  rmdir(dir);
  cr_assert_neq(scree__authz_add_defaults(&a, path, msg, sizeof(msg)), 0);
  cr_assert(strstr(msg, "cannot stat") != NULL, "%s", msg);
}

Test(authz, peer_check_on_a_socketpair) {
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  char why[64];
  cr_assert_eq(scree__authz_check_peer(&a, sv[0], 1, (uint32_t)geteuid(),
                                       (uint32_t)getegid(), why, sizeof(why)),
               SCREE_EACCES);
  cr_assert_str_eq(why, "not_in_allow_list");
  cr_assert_eq(scree__authz_check_peer(&a, sv[0], 0, 0, 0, why, sizeof(why)), SCREE_EACCES);
  cr_assert_str_eq(why, "no_peer_credentials");
  cr_assert_eq(scree__authz_add(&a, SCREE__AUTHZ_UID, (uint32_t)geteuid()), 0);
  cr_assert_eq(scree__authz_check_peer(&a, sv[0], 1, (uint32_t)geteuid(),
                                       (uint32_t)getegid(), why, sizeof(why)),
               0);
  close(sv[0]);
  close(sv[1]);
}

/* A child with only supplementary group 5555 (uid 7777, gid 6666, no passwd
 * entry) connects; it is allowed only through that group, which the daemon
 * learns from SO_PEERGROUPS. */
Test(authz, supplementary_groups_come_from_the_kernel) {
  if (geteuid() != 0)
    cr_skip_test("SKIP: needs root to run a child with other groups");
  char dir[] = "/tmp/scree-authz-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  cr_assert_eq(chmod(dir, 0755), 0);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/s", dir);
  int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  cr_assert_geq(l, 0);
  cr_assert_eq(bind(l, (struct sockaddr *)&addr, sizeof(addr)), 0);
  cr_assert_eq(chmod(addr.sun_path, 0666), 0);
  cr_assert_eq(listen(l, 4), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    gid_t g = 5555;
    if (setgroups(1, &g) != 0 || setgid(6666) != 0 || setuid(7777) != 0)
      _exit(2);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
      _exit(3);
    char b;
    (void)!read(fd, &b, 1); /* wait for the parent to close */
    _exit(0);
  }
  int c = accept(l, NULL, NULL);
  cr_assert_geq(c, 0);
  char why[64];
  cr_assert_eq(scree__authz_check_peer(&a, c, 1, 7777, 6666, why, sizeof(why)),
               SCREE_EACCES);
  cr_assert_eq(scree__authz_add(&a, SCREE__AUTHZ_GID, 5555), 0);
  cr_assert_eq(scree__authz_check_peer(&a, c, 1, 7777, 6666, why, sizeof(why)), 0, "%s",
               why);
  close(c);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
  close(l);
  unlink(addr.sun_path);
  rmdir(dir);
}

Test(authz, request_id_is_read_without_decoding) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  req.id = 300;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  uint8_t buf[64];
  size_t n = scree__v1__request__pack(&req, buf);
  cr_assert_eq(scree__authz_request_id(buf, n), 300);
  req.id = UINT64_MAX;
  n = scree__v1__request__pack(&req, buf);
  cr_assert_eq(scree__authz_request_id(buf, n), UINT64_MAX);
  req.id = 0; /* not packed at all */
  n = scree__v1__request__pack(&req, buf);
  cr_assert_eq(scree__authz_request_id(buf, n), 0);
  const uint8_t cut[] = {0x08, 0x80, 0x80};
  cr_assert_eq(scree__authz_request_id(cut, sizeof(cut)), 0);
  const uint8_t endless[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  cr_assert_eq(scree__authz_request_id(endless, sizeof(endless)), 0);
  cr_assert_eq(scree__authz_request_id(NULL, 0), 0);
  cr_assert_eq(scree__authz_request_id((const uint8_t *)"\x10\x01", 2), 0);
}

Test(authz, arena_fds_are_checked_before_sending) {
  char msg[256];
  int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  cr_assert_geq(fd, 0);
  cr_assert_eq(ftruncate(fd, 8192), 0);
  cr_assert_eq(scree__authz_check_arena_fd(fd, SCREE__IPC_MEMFD, 8192, msg, sizeof(msg)),
               SCREE_EIO, "an unsealed memfd is refused");
  cr_assert(strstr(msg, "not sealed") != NULL, "%s", msg);
  cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  cr_assert_eq(scree__authz_check_arena_fd(fd, SCREE__IPC_MEMFD, 8192, msg, sizeof(msg)), 0,
               "%s", msg);
  cr_assert_eq(scree__authz_check_arena_fd(fd, SCREE__IPC_MEMFD, 4096, msg, sizeof(msg)),
               SCREE_EIO, "the wrong size is refused");
  cr_assert(strstr(msg, "is not a 4096-byte memfd") != NULL, "%s", msg);
  close(fd);
  int p[2];
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(scree__authz_check_arena_fd(p[0], SCREE__IPC_MEMFD, 0, msg, sizeof(msg)),
               SCREE_EIO, "a pipe is not an arena");
  cr_assert_eq(scree__authz_check_arena_fd(p[0], SCREE__IPC_VMM_FD, 0, msg, sizeof(msg)), 0,
               "CUDA fds are not checked this way");
  close(p[0]);
  close(p[1]);
  cr_assert_eq(scree__authz_check_arena_fd(p[0], SCREE__IPC_MEMFD, 0, msg, sizeof(msg)),
               SCREE_EIO, "a closed fd");
}

/* A read-only arena fd must be open O_RDONLY on a memfd without write
 * permission bits (else its holder could open /proc/self/fd/N again for
 * writing); a writable one must be open O_RDWR. */
Test(authz, arena_fd_access_matches_what_the_reply_says) {
  char msg[256];
  int fd = memfd_create("t", MFD_CLOEXEC);
  cr_assert_geq(fd, 0);
  cr_assert_eq(scree__authz_check_arena_fd_access(fd, SCREE__IPC_MEMFD, 1, msg, sizeof(msg)),
               0, "%s", msg);
  cr_assert_eq(scree__authz_check_arena_fd_access(fd, SCREE__IPC_MEMFD, 0, msg, sizeof(msg)),
               SCREE_EIO, "an O_RDWR fd is not read-only");
  cr_assert(strstr(msg, "open O_RDWR, not O_RDONLY") != NULL, "%s", msg);
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  int ro = open(path, O_RDONLY | O_CLOEXEC);
  cr_assert_geq(ro, 0);
  cr_assert_eq(scree__authz_check_arena_fd_access(ro, SCREE__IPC_MEMFD, 0, msg, sizeof(msg)),
               SCREE_EIO, "a memfd of mode 0777 can be reopened for writing");
  cr_assert(strstr(msg, "writable inode") != NULL, "%s", msg);
  cr_assert_eq(scree__authz_check_arena_fd_access(ro, SCREE__IPC_MEMFD, 1, msg, sizeof(msg)),
               SCREE_EIO, "an O_RDONLY fd is not writable");
  cr_assert_eq(fchmod(fd, 0400), 0);
  cr_assert_eq(scree__authz_check_arena_fd_access(ro, SCREE__IPC_MEMFD, 0, msg, sizeof(msg)),
               0, "%s", msg);
  cr_assert_eq(scree__authz_check_arena_fd_access(ro, SCREE__IPC_VMM_FD, 1, msg, sizeof(msg)),
               0, "CUDA fds are not checked this way");
  close(ro);
  close(fd);
  cr_assert_eq(scree__authz_check_arena_fd_access(fd, SCREE__IPC_MEMFD, 1, msg, sizeof(msg)),
               SCREE_EIO, "a closed fd");
}
