/* What screed and the clients do when told no socket, and screed's arena
 * size under a small memory limit:
 * - screed as a user that may not serve the system path serves the
 *   per-user path ($XDG_RUNTIME_DIR/scree-UID/screed.sock, made 0700), and
 *   screectl as that user finds it with no --socket;
 * - $SCREE_SOCKET comes first for both;
 * - with no daemon, the client's error names every path tried and how to
 *   start one;
 * - --memory-limit below the default arena size brings the arena down (and
 *   says so); below an --arena-size given, screed refuses to start.
 * As root (CI), the non-root cases run in children that become nobody. */
#include <criterion/criterion.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

#define NOBODY 65534u

static char tmp[32];

static void setup(void) {
  snprintf(tmp, sizeof(tmp), "/tmp/scree-dflt-XXXXXX");
  cr_assert_not_null(mkdtemp(tmp));
  chmod(tmp, 0755);
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(defaults, .init = setup, .fini = teardown, .timeout = 60);

/* The uid the non-root cases run as: nobody when we are root, else we. */
static unsigned user_uid(void) { return geteuid() == 0 ? NOBODY : (unsigned)geteuid(); }

/* In a child: drops to user_uid(), sets the environment (a NULL-terminated
 * list of NAME=VALUE; SCREE_SOCKET and XDG_RUNTIME_DIR are cleared first)
 * and runs argv with stdout and stderr in out. */
static pid_t spawn(const char *const *argv, const char *const *envs, const char *out) {
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
  }
  unsetenv("SCREE_SOCKET");
  unsetenv("XDG_RUNTIME_DIR");
  for (int i = 0; envs != NULL && envs[i] != NULL; i++)
    putenv((char *)envs[i]);
  if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0))
    _exit(126);
  execv(argv[0], (char *const *)argv);
  _exit(127);
}

static int wait_exit(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void slurp(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, len - 1, f) : 0;
  buf[n] = '\0';
  if (f)
    fclose(f);
}

/* Waits up to 10 s for a daemon at path; 0 when it answers. */
static int wait_socket(const char *path, pid_t pid) {
  for (int i = 0; i < 1000; i++) {
    if (harness_can_connect(path))
      return 0;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid)
      return -1;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

static int stop(pid_t pid) {
  kill(pid, SIGTERM);
  return wait_exit(pid);
}

/* A runtime directory of the user's, as a login session has. */
static void make_runtime_dir(char *rt, size_t len) {
  snprintf(rt, len, "%s/rt", tmp);
  cr_assert_eq(mkdir(rt, 0700), 0);
  if (geteuid() == 0)
    cr_assert_eq(chown(rt, NOBODY, NOBODY), 0);
}

static int system_path_usable_by_user(void) {
  if (geteuid() == 0)
    return 0; /* nobody may not write /run/scree unless made so */
  return access("/run/scree", W_OK | X_OK) == 0;
}

Test(defaults, non_root_screed_serves_the_per_user_path_and_clients_find_it) {
  if (system_path_usable_by_user())
    cr_skip_test("SKIP: this user may serve /run/scree, so screed rightly takes it");
  char rt[64], sock[108], envrt[128], log[128], out[128], buf[8192];
  make_runtime_dir(rt, sizeof(rt));
  snprintf(sock, sizeof(sock), "%s/scree-%u/screed.sock", rt, user_uid());
  snprintf(envrt, sizeof(envrt), "XDG_RUNTIME_DIR=%s", rt);
  snprintf(log, sizeof(log), "%s/screed.log", tmp);
  snprintf(out, sizeof(out), "%s/out", tmp);
  const char *envs[] = {envrt, NULL};
  const char *dargv[] = {SCREED_PATH, "--device", "cpu", NULL};
  pid_t d = spawn(dargv, envs, log);
  slurp(log, buf, sizeof(buf));
  cr_assert_eq(wait_socket(sock, d), 0, "screed did not serve %s: %s", sock, buf);
  slurp(log, buf, sizeof(buf));
  cr_assert(strstr(buf, "event=socket_default") != NULL && strstr(buf, "chosen=per-user"),
            "%s", buf);
  struct stat st;
  cr_assert_eq(stat(sock, &st) == 0 ? 0 : -1, 0);
  char dir[160];
  snprintf(dir, sizeof(dir), "%s/scree-%u", rt, user_uid());
  cr_assert_eq(stat(dir, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0700, "%s is %o", dir, st.st_mode & 0777);
  cr_assert_eq(st.st_uid, user_uid());

  /* The client, told nothing, tries the system path and then this one. */
  const char *cargv[] = {SCREECTL_PATH, "info", NULL};
  cr_assert_eq(wait_exit(spawn(cargv, envs, out)), 0);
  slurp(out, buf, sizeof(buf));
  cr_assert(strstr(buf, "backend: host") != NULL, "%s", buf);
  char want[160];
  snprintf(want, sizeof(want), "socket: %s\n", sock);
  cr_assert(strstr(buf, want) != NULL, "info names the socket it found: %s", buf);

  cr_assert_eq(stop(d), 0);
}

Test(defaults, scree_socket_comes_first_for_daemon_and_client) {
  char sock[128], envs_sock[160], log[128], out[128], buf[8192];
  snprintf(sock, sizeof(sock), "%s/env.sock", tmp);
  snprintf(envs_sock, sizeof(envs_sock), "SCREE_SOCKET=%s", sock);
  snprintf(log, sizeof(log), "%s/screed.log", tmp);
  snprintf(out, sizeof(out), "%s/out", tmp);
  if (geteuid() == 0)
    cr_assert_eq(chown(tmp, NOBODY, NOBODY), 0);
  const char *envs[] = {envs_sock, "XDG_RUNTIME_DIR=/nonexistent", NULL};
  const char *dargv[] = {SCREED_PATH, "--device", "cpu", NULL};
  pid_t d = spawn(dargv, envs, log);
  slurp(log, buf, sizeof(buf));
  cr_assert_eq(wait_socket(sock, d), 0, "screed did not serve %s: %s", sock, buf);
  slurp(log, buf, sizeof(buf));
  cr_assert(strstr(buf, "chosen=SCREE_SOCKET") != NULL, "%s", buf);
  const char *cargv[] = {SCREECTL_PATH, "stats", NULL};
  cr_assert_eq(wait_exit(spawn(cargv, envs, out)), 0);
  cr_assert_eq(stop(d), 0);
}

Test(defaults, no_daemon_error_names_every_path_and_how_to_start_one) {
  if (harness_can_connect("/run/scree/screed.sock"))
    cr_skip_test("SKIP: a system screed is running");
  char rt[64], envrt[128], out[128], buf[8192], want[108];
  make_runtime_dir(rt, sizeof(rt));
  snprintf(envrt, sizeof(envrt), "XDG_RUNTIME_DIR=%s", rt);
  snprintf(out, sizeof(out), "%s/out", tmp);
  const char *envs[] = {envrt, NULL};
  const char *cargv[] = {SCREECTL_PATH, "list", NULL};
  cr_assert_eq(wait_exit(spawn(cargv, envs, out)), 1);
  slurp(out, buf, sizeof(buf));
  cr_assert(strstr(buf, "screectl: no daemon at /run/scree/screed.sock") == buf, "%s", buf);
  snprintf(want, sizeof(want), "%s/scree-%u/screed.sock", rt, user_uid());
  cr_assert(strstr(buf, want) != NULL, "%s", buf);
  cr_assert(strstr(buf, "make run") != NULL, "%s", buf);
  cr_assert(strstr(buf, "screed --device cpu") != NULL, "%s", buf);
  cr_assert(strstr(buf, "systemctl start screed") != NULL, "%s", buf);

  /* Without a runtime directory the per-user path is under /tmp. */
  snprintf(want, sizeof(want), "/tmp/scree-%u/screed.sock", user_uid());
  if (!harness_can_connect(want)) {
    cr_assert_eq(wait_exit(spawn(cargv, NULL, out)), 1);
    slurp(out, buf, sizeof(buf));
    cr_assert(strstr(buf, want) != NULL, "%s", buf);
  }
}

/* The arena_size line of screectl info for the daemon of h. */
static unsigned long long info_arena_size(const harness *h) {
  char cmd[512], out[128], buf[4096];
  snprintf(out, sizeof(out), "%s/info", tmp);
  snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' info --json >'%s' 2>&1", SCREECTL_PATH,
           h->socket, out);
  cr_assert_eq(system(cmd), 0);
  slurp(out, buf, sizeof(buf));
  const char *p = strstr(buf, "\"arena_size\":");
  cr_assert_not_null(p, "%s", buf);
  return strtoull(p + strlen("\"arena_size\":"), NULL, 10);
}

Test(defaults, memory_limit_below_the_default_arena_size_shrinks_the_arena) {
  harness h;
  const char *extra[] = {"--memory-limit", "64M", "--log-level", "info", NULL};
  cr_assert_eq(harness_start(&h, extra), 0, "screed did not start (log: %s)", h.log);
  char buf[8192];
  slurp(h.log, buf, sizeof(buf));
  cr_assert(strstr(buf, "event=arena_size_reduced arena_size=67108864") != NULL, "%s", buf);
  cr_assert_eq(info_arena_size(&h), 64ull << 20);
  cr_assert_eq(harness_stop(&h), 0);
}

Test(defaults, arena_size_above_the_memory_limit_is_refused) {
  char log[128], buf[4096];
  snprintf(log, sizeof(log), "%s/screed.log", tmp);
  char sock[128];
  snprintf(sock, sizeof(sock), "%s/a.sock", tmp);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    execl(SCREED_PATH, SCREED_PATH, "--socket", sock, "--memory-limit", "64M", "--arena-size",
          "128M", (char *)NULL);
    _exit(127);
  }
  cr_assert_eq(wait_exit(pid), 2);
  slurp(log, buf, sizeof(buf));
  cr_assert(strstr(buf, "--arena-size (134217728 bytes) is larger than --memory-limit "
                        "(67108864 bytes)") != NULL,
            "%s", buf);
  cr_assert_eq(access(sock, F_OK), -1, "nothing was served");
}
