/* libscreeclient across screed's operational events: a daemon that dies and
 * comes back, and a daemon at its connection limit. */
#include <criterion/criterion.h>
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "raw_client.h"
#include "scree/client.h"
#include "scree/error.h"

static rc_daemon d;

static void fini(void) {
  if (d.pid > 0)
    rc_daemon_stop(&d);
  char copy[108];
  snprintf(copy, sizeof(copy), "%s", d.sock);
  unlink(d.sock);
  rmdir(dirname(copy));
}

TestSuite(client_ops, .fini = fini, .timeout = 60);

static void start(const char *const *extra) {
  d.err_fd = -1;
  cr_assert_eq(rc_daemon_start(&d, extra), 0, "screed did not start on %s", d.sock);
}

static void restart_after(int sig) {
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), sig == SIGKILL ? "restart-kill" : "restart-term");
  start(NULL);
  scree_client *c;
  cr_assert_eq(scree_client_connect(d.sock, &c), 0, "%s", scree_client_last_error(c));
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &st), 0);

  kill(d.pid, sig);
  int ws = rc_daemon_wait(&d, 20000);
  cr_assert_neq(ws, -1, "screed did not die");
  d.pid = 0;
  /* A new screed on the same path (after SIGKILL the file is stale and is
   * replaced). */
  start(NULL);

  int rc = scree_client_stats(c, &st);
  cr_assert_eq(rc, SCREE_EDISCONNECTED, "got %s: %s", scree_err_name(rc),
               scree_client_last_error(c));
  /* The handle stays dead; a new connection reaches the new daemon. */
  cr_assert_eq(scree_client_stats(c, &st), SCREE_EDISCONNECTED);
  scree_client_close(c);
  cr_assert_eq(scree_client_connect(d.sock, &c), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_stats(c, &st), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(st.batches, 0, "a restarted screed starts empty");
  scree_client_close(c);
  int exit_st = rc_daemon_stop(&d);
  cr_assert(WIFEXITED(exit_st) && WEXITSTATUS(exit_st) == 0, "wait status 0x%x", exit_st);
}

Test(client_ops, a_killed_and_restarted_screed_is_edisconnected_then_reconnects) {
  restart_after(SIGKILL);
}

Test(client_ops, a_stopped_and_restarted_screed_is_edisconnected_then_reconnects) {
  restart_after(SIGTERM);
}

Test(client_ops, connect_over_the_connection_limit_is_eagain_with_the_reason) {
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), "climit");
  const char *extra[] = {"--max-connections", "1", NULL};
  start(extra);
  scree_client *a = NULL;
  int rc = -1;
  /* rc_daemon_start's probe connection may still hold the one slot. */
  for (int i = 0; i < 200 && rc != 0; i++) {
    scree_client_close(a);
    a = NULL;
    usleep(10000);
    rc = scree_client_connect(d.sock, &a);
  }
  cr_assert_eq(rc, 0, "%s", scree_client_last_error(a));
  scree_client *b;
  rc = scree_client_connect(d.sock, &b);
  cr_assert_eq(rc, SCREE_EAGAIN, "got %s: %s", scree_err_name(rc), scree_client_last_error(b));
  cr_assert_str_eq(scree_client_last_error(b),
                   "screed is at its connection limit (1 connections); try again later");
  scree_client_close(b);
  scree_client_close(a);
  int exit_st = rc_daemon_stop(&d);
  cr_assert(WIFEXITED(exit_st) && WEXITSTATUS(exit_st) == 0, "wait status 0x%x", exit_st);
}
