/* screed under a (played) service manager: the notify socket sequence,
 * the watchdog, and socket activation. The test is the service manager: it
 * binds the datagram socket that NOTIFY_SOCKET names and reads what screed
 * sends, or hands screed a listening socket as fd 3 with LISTEN_FDS and
 * LISTEN_PID, exactly as systemd does (sd_notify(3), sd_listen_fds(3)). */
#include <criterion/criterion.h>
#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "raw_client.h"

static rc_daemon d;
static int nfd = -1;
static char nsock[108];

static void rm_dir_of(const char *path) {
  char copy[108];
  snprintf(copy, sizeof(copy), "%s", path);
  rmdir(dirname(copy));
}

static void fini(void) {
  if (d.pid > 0)
    rc_daemon_stop(&d);
  unlink(d.sock);
  rm_dir_of(d.sock);
  if (nfd >= 0)
    close(nfd);
  nfd = -1;
  if (nsock[0] != '\0') {
    unlink(nsock);
    rm_dir_of(nsock);
  }
}

TestSuite(systemd, .fini = fini);


/* Binds the notify socket and exports NOTIFY_SOCKET for children. */
static void play_service_manager(void) {
  rc_socket_path(nsock, sizeof(nsock), "notify");
  char dir[108];
  snprintf(dir, sizeof(dir), "%s", nsock);
  cr_assert_eq(mkdir(dirname(dir), 0755), 0);
  nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", nsock);
  cr_assert_eq(bind(nfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
  setenv("NOTIFY_SOCKET", nsock, 1);
}

/* The next notification within timeout_ms, NUL-terminated in buf; 0 when
 * none came. */
static int next_note(char *buf, size_t len, int timeout_ms) {
  struct pollfd pf = {.fd = nfd, .events = POLLIN};
  if (poll(&pf, 1, timeout_ms) != 1)
    return 0;
  ssize_t n = recv(nfd, buf, len - 1, 0);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  return 1;
}

/* Reads notifications until one contains want; fails the test after 10 s. */
static void wait_note(const char *want, char *buf, size_t len) {
  uint64_t end = rc_now_ms() + 10000;
  while (rc_now_ms() < end) {
    if (next_note(buf, len, 1000) && strstr(buf, want) != NULL)
      return;
  }
  cr_assert_fail("no notification with %s", want);
}

static void spawn(const char *tag, const char *const *extra, void (*setup)(void *), void *arg) {
  memset(&d, 0, sizeof(d));
  d.err_fd = -1;
  rc_socket_path(d.sock, sizeof(d.sock), tag);
  cr_assert_eq(rc_daemon_spawn_ex(&d, extra, 0, setup, arg, NULL, NULL), 0);
}

static void stop_and_expect_exit_0(void) {
  kill(d.pid, SIGTERM);
  int st = rc_daemon_wait(&d, 20000);
  cr_assert_neq(st, -1, "screed did not exit");
  d.pid = 0;
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "wait status 0x%x", st);
}

Test(systemd, status_ready_stopping_in_order) {
  play_service_manager();
  spawn("notify", NULL, NULL, NULL);
  unsetenv("NOTIFY_SOCKET");
  char buf[512];
  cr_assert(next_note(buf, sizeof(buf), 10000), "no notification at all");
  cr_assert_str_eq(buf, "STATUS=opening host memory");
  cr_assert(next_note(buf, sizeof(buf), 10000));
  char want[256];
  snprintf(want, sizeof(want), "READY=1\nSTATUS=listening on %s", d.sock);
  cr_assert_str_eq(buf, want);
  /* READY means serving: no retry loop here. */
  int fd = rc_open(d.sock);
  cr_assert_geq(fd, 0, "READY=1 came before the socket accepted");

  kill(d.pid, SIGTERM);
  cr_assert(next_note(buf, sizeof(buf), 10000), "nothing at SIGTERM");
  cr_assert_str_eq(buf, "STOPPING=1\nSTATUS=draining 1 connections, 0 attention jobs running");
  cr_assert(next_note(buf, sizeof(buf), 10000));
  cr_assert_str_eq(buf, "STATUS=closing 1 connections");
  int st = rc_daemon_wait(&d, 20000);
  d.pid = 0;
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "wait status 0x%x", st);
  close(fd);
}

/* Counts WATCHDOG=1 notifications within ms. */
static int count_pings(int ms) {
  int pings = 0;
  char buf[512];
  uint64_t end = rc_now_ms() + (uint64_t)ms;
  while (rc_now_ms() < end) {
    uint64_t left = end - rc_now_ms();
    if (next_note(buf, sizeof(buf), (int)left) && strcmp(buf, "WATCHDOG=1") == 0)
      pings++;
  }
  return pings;
}

Test(systemd, watchdog_pings_repeatedly_without_watchdog_pid) {
  play_service_manager();
  setenv("WATCHDOG_USEC", "200000", 1);
  unsetenv("WATCHDOG_PID");
  spawn("wd", NULL, NULL, NULL);
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  char buf[512];
  wait_note("READY=1", buf, sizeof(buf));
  /* Pings every 100 ms; ask for a few within a generous window. */
  uint64_t end = rc_now_ms() + 10000;
  int pings = 0;
  while (pings < 4 && rc_now_ms() < end)
    pings += count_pings(200);
  cr_assert_geq(pings, 4, "WATCHDOG=1 came %d times", pings);
  stop_and_expect_exit_0();
}

static void set_watchdog_pid_self(void *arg) {
  (void)arg;
  char pid[32];
  snprintf(pid, sizeof(pid), "%d", (int)getpid());
  setenv("WATCHDOG_PID", pid, 1);
}

Test(systemd, watchdog_pings_when_watchdog_pid_is_screed) {
  play_service_manager();
  setenv("WATCHDOG_USEC", "200000", 1);
  spawn("wdpid", NULL, set_watchdog_pid_self, NULL);
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  char buf[512];
  wait_note("READY=1", buf, sizeof(buf));
  uint64_t end = rc_now_ms() + 10000;
  int pings = 0;
  while (pings < 3 && rc_now_ms() < end)
    pings += count_pings(200);
  cr_assert_geq(pings, 3, "WATCHDOG=1 came %d times", pings);
  stop_and_expect_exit_0();
}

Test(systemd, no_watchdog_for_another_pid) {
  play_service_manager();
  setenv("WATCHDOG_USEC", "100000", 1);
  /* The variables of another process (a parent service): not for screed. */
  setenv("WATCHDOG_PID", "1", 1);
  spawn("wdother", NULL, NULL, NULL);
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  char buf[512];
  wait_note("READY=1", buf, sizeof(buf));
  /* Ten intervals of silence: a ping would have come every 50 ms. */
  cr_assert_eq(count_pings(500), 0, "screed pinged for a watchdog that is not its own");
  stop_and_expect_exit_0();
}

/* ---- socket activation ------------------------------------------------- */

static int listening_socket(const char *path, int type) {
  char dir[108];
  snprintf(dir, sizeof(dir), "%s", path);
  mkdir(dirname(dir), 0755);
  int s = socket(AF_UNIX, type, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
  cr_assert_eq(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0, "%s", strerror(errno));
  if (type != SOCK_DGRAM)
    cr_assert_eq(listen(s, 16), 0);
  return s;
}

/* In the child: the socket becomes fd 3, LISTEN_PID names the child. */
static void pass_socket(void *arg) {
  int s = (int)(intptr_t)arg;
  if (s != 3) {
    dup2(s, 3);
    close(s);
  }
  char pid[32];
  snprintf(pid, sizeof(pid), "%d", (int)getpid());
  setenv("LISTEN_PID", pid, 1);
  setenv("LISTEN_FDS", "1", 1);
}

Test(systemd, socket_activation_serves_the_passed_socket_and_leaves_the_file) {
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), "activated");
  int s = listening_socket(d.sock, SOCK_SEQPACKET);
  /* A client that connects before screed runs waits in the backlog, as it
   * does while systemd starts the service. */
  int early = rc_connect(d.sock);
  cr_assert_geq(early, 0);
  cr_assert_eq(rc_daemon_spawn_ex(&d, NULL, 0, pass_socket, (void *)(intptr_t)s, NULL, NULL),
               0);
  close(s);
  cr_assert_eq(rc_hello(early), 0, "the early client is served");
  int fd = rc_open(d.sock);
  cr_assert_geq(fd, 0);
  close(fd);
  close(early);
  stop_and_expect_exit_0();
  struct stat sb;
  cr_assert_eq(lstat(d.sock, &sb), 0, "the socket file is systemd's: it must stay");
  cr_assert(S_ISSOCK(sb.st_mode));
}

Test(systemd, socket_activation_refuses_a_stream_socket) {
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), "wrongtype");
  int s = listening_socket(d.sock, SOCK_STREAM);
  cr_assert_eq(rc_daemon_spawn_ex(&d, NULL, 1, pass_socket, (void *)(intptr_t)s, NULL, NULL),
               0);
  close(s);
  int st = rc_daemon_wait(&d, 20000);
  char err[1024];
  rc_daemon_read_stderr(&d, err, sizeof(err), 1000);
  close(d.err_fd);
  d.pid = 0;
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "wait status 0x%x", st);
  cr_assert(strstr(err, "socket activation: the socket systemd passed is a SOCK_STREAM socket;"
                        " screed needs a listening SOCK_SEQPACKET Unix socket at") != NULL,
            "stderr was: %s", err);
}

Test(systemd, socket_activation_refuses_another_path) {
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), "otherpath");
  char other[108];
  rc_socket_path(other, sizeof(other), "elsewhere");
  int s = listening_socket(other, SOCK_SEQPACKET);
  cr_assert_eq(rc_daemon_spawn_ex(&d, NULL, 1, pass_socket, (void *)(intptr_t)s, NULL, NULL),
               0);
  close(s);
  int st = rc_daemon_wait(&d, 20000);
  char err[1024];
  rc_daemon_read_stderr(&d, err, sizeof(err), 1000);
  close(d.err_fd);
  d.pid = 0;
  unlink(other);
  rm_dir_of(other);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "wait status 0x%x", st);
  cr_assert(strstr(err, "on another path than --socket") != NULL, "stderr was: %s", err);
}

#ifdef SYSTEMD_SOCKET_ACTIVATE
/* The same through systemd's own tool: it listens, waits for the first
 * connection, then execs screed with the socket as fd 3. */
Test(systemd, under_systemd_socket_activate) {
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), "ssa");
  char dir[108];
  snprintf(dir, sizeof(dir), "%s", d.sock);
  cr_assert_eq(mkdir(dirname(dir), 0755), 0);
  const char *args[] = {"systemd-socket-activate", "--seqpacket", "-l", d.sock, SCREED_PATH,
                        "--socket", d.sock, "--log-level", "error", NULL};
  cr_assert_eq(rc_daemon_spawn_ex(&d, NULL, 1, NULL, NULL, SYSTEMD_SOCKET_ACTIVATE, args), 0);
  int fd = -1;
  for (int i = 0; i < 2000 && fd < 0; i++) {
    fd = rc_connect(d.sock);
    if (fd < 0)
      usleep(5000);
  }
  cr_assert_geq(fd, 0, "systemd-socket-activate did not listen on %s", d.sock);
  cr_assert_eq(rc_hello(fd), 0, "screed, execed on the first connection, serves it");
  close(fd);
  stop_and_expect_exit_0();
  struct stat sb;
  cr_assert_eq(lstat(d.sock, &sb), 0, "the socket file must stay");
}
#endif
