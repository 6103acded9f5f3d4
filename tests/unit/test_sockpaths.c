/* The socket resolution order shared by screed and the clients
 * (core/src/sockpaths.h), with every input given: $SCREE_SOCKET, the
 * runtime directory, the uid and whether the system path is usable, so
 * that the non-root branches are tested as root too. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scree/error.h"
#include "scree/version.h"
#include "sockpaths.h"

static scree__sockenv env(const char *sock, const char *rt, unsigned uid) {
  scree__sockenv e = {.scree_socket = sock,
                      .runtime_dir = rt,
                      .system_path = "/run/scree/screed.sock",
                      .uid = uid};
  return e;
}

Test(sockpaths, scree_socket_alone_when_set) {
  char p[SCREE__SOCKPATHS_MAX][SCREE__SOCKPATH_MAX];
  scree__sockenv e = env("/tmp/mine.sock", "/run/user/1000", 1000);
  cr_assert_eq(scree__sockpaths(&e, p, NULL, 0), 1);
  cr_assert_str_eq(p[0], "/tmp/mine.sock");

  char out[SCREE__SOCKPATH_MAX];
  const char *why = NULL;
  cr_assert_eq(scree__sockpath_for_daemon(&e, 1, out, &why, NULL, 0), 0);
  cr_assert_str_eq(out, "/tmp/mine.sock");
  cr_assert_str_eq(why, "SCREE_SOCKET");
}

Test(sockpaths, empty_scree_socket_counts_as_unset) {
  char p[SCREE__SOCKPATHS_MAX][SCREE__SOCKPATH_MAX];
  scree__sockenv e = env("", "/run/user/1000", 1000);
  cr_assert_eq(scree__sockpaths(&e, p, NULL, 0), 2);
  cr_assert_str_eq(p[0], "/run/scree/screed.sock");
  cr_assert_str_eq(p[1], "/run/user/1000/scree-1000/screed.sock");
}

Test(sockpaths, system_then_per_user) {
  char p[SCREE__SOCKPATHS_MAX][SCREE__SOCKPATH_MAX];
  scree__sockenv e = env(NULL, "/run/user/1000", 1000);
  cr_assert_eq(scree__sockpaths(&e, p, NULL, 0), 2);
  cr_assert_str_eq(p[0], "/run/scree/screed.sock");
  cr_assert_str_eq(p[1], "/run/user/1000/scree-1000/screed.sock");
}

Test(sockpaths, tmp_without_a_usable_runtime_dir) {
  char out[SCREE__SOCKPATH_MAX];
  scree__sockenv e = env(NULL, NULL, 1234);
  scree__sockpath_user(&e, out);
  cr_assert_str_eq(out, "/tmp/scree-1234/screed.sock");
  e.runtime_dir = "";
  scree__sockpath_user(&e, out);
  cr_assert_str_eq(out, "/tmp/scree-1234/screed.sock");
  e.runtime_dir = "relative/dir";
  scree__sockpath_user(&e, out);
  cr_assert_str_eq(out, "/tmp/scree-1234/screed.sock");
  char longdir[200];
  memset(longdir, 'x', sizeof(longdir) - 1);
  longdir[0] = '/';
  longdir[sizeof(longdir) - 1] = '\0';
  e.runtime_dir = longdir;
  scree__sockpath_user(&e, out);
  cr_assert_str_eq(out, "/tmp/scree-1234/screed.sock");
}

Test(sockpaths, daemon_takes_the_system_path_only_when_usable) {
  char out[SCREE__SOCKPATH_MAX];
  const char *why = NULL;
  scree__sockenv e = env(NULL, "/run/user/1000", 1000);
  cr_assert_eq(scree__sockpath_for_daemon(&e, 1, out, &why, NULL, 0), 0);
  cr_assert_str_eq(out, "/run/scree/screed.sock");
  cr_assert_str_eq(why, "system");
  cr_assert_eq(scree__sockpath_for_daemon(&e, 0, out, &why, NULL, 0), 0);
  cr_assert_str_eq(out, "/run/user/1000/scree-1000/screed.sock");
  cr_assert_str_eq(why, "per-user");
}

Test(sockpaths, system_usable_for_root_or_a_writable_directory) {
  scree__sockenv e = env(NULL, NULL, 0);
  e.system_path = "/nonexistent-scree-dir/screed.sock";
  cr_assert(scree__sockpath_system_usable(&e), "root may make the directory");
  e.uid = 1000;
  if (geteuid() != 0) {
    /* Only a real non-root process sees access() refuse. */
    cr_assert_not(scree__sockpath_system_usable(&e));
    e.system_path = "/proc/screed.sock";
    cr_assert_not(scree__sockpath_system_usable(&e));
  }
  char dir[] = "/tmp/scree-sockpaths-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char sp[SCREE__SOCKPATH_MAX];
  snprintf(sp, sizeof(sp), "%s/screed.sock", dir);
  e.system_path = sp;
  cr_assert(scree__sockpath_system_usable(&e), "a writable directory is usable");
  rmdir(dir);
}

Test(sockpaths, too_long_scree_socket_is_an_error_naming_it) {
  char p[SCREE__SOCKPATHS_MAX][SCREE__SOCKPATH_MAX];
  char longp[200], msg[256];
  memset(longp, 'a', sizeof(longp) - 1);
  longp[0] = '/';
  longp[sizeof(longp) - 1] = '\0';
  scree__sockenv e = env(longp, NULL, 0);
  cr_assert_eq(scree__sockpaths(&e, p, msg, sizeof(msg)), SCREE_ENAMETOOLONG);
  cr_assert(strstr(msg, "$SCREE_SOCKET") != NULL, "%s", msg);
  char out[SCREE__SOCKPATH_MAX];
  cr_assert_eq(scree__sockpath_for_daemon(&e, 1, out, NULL, msg, sizeof(msg)),
               SCREE_ENAMETOOLONG);
}

Test(sockpaths, env_get_reads_the_process) {
  setenv("SCREE_SOCKET", "/tmp/from-env.sock", 1);
  setenv("XDG_RUNTIME_DIR", "/tmp/rt", 1);
  scree__sockenv e;
  scree__sockenv_get(&e);
  cr_assert_str_eq(e.scree_socket, "/tmp/from-env.sock");
  cr_assert_str_eq(e.runtime_dir, "/tmp/rt");
  cr_assert_str_eq(e.system_path, SCREE_DEFAULT_SOCKET);
  cr_assert_eq(e.uid, (unsigned)geteuid());
}
