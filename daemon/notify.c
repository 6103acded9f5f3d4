#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "scree/error.h"

#ifdef SCREE_HAVE_LIBSYSTEMD
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

void scree__notify(const char *state) {
  /* sd_notify returns 0 when NOTIFY_SOCKET is unset, and a negative errno
   * when the socket is set but unusable; only the latter is worth a line. */
  int rc = sd_notify(0, state);
  if (rc < 0)
    scree__log(SCREE__LOG_WARN, "notify_failed", "state=%s errno=%d", scree__q(state), -rc);
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  scree__notify("WATCHDOG=1");
}

int scree__watchdog_start(uv_loop_t *loop, scree__watchdog *w) {
  w->started = 0;
  w->interval_us = 0;
  uint64_t usec = 0;
  /* sd_watchdog_enabled checks WATCHDOG_PID against our pid, so a variable
   * inherited from a parent service does not make screed ping for it. */
  int rc = sd_watchdog_enabled(0, &usec);
  if (rc < 0) {
    scree__log(SCREE__LOG_WARN, "watchdog_env_invalid", "errno=%d", -rc);
    return 0;
  }
  if (rc == 0 || usec == 0)
    return 0;
  /* Half the interval, as sd_watchdog_enabled(3) recommends, and never
   * below a millisecond (a uv timer's resolution). */
  uint64_t period_ms = usec / 2000;
  if (period_ms == 0)
    period_ms = 1;
  uv_timer_init(loop, &w->timer);
  uv_timer_start(&w->timer, on_watchdog, 0, period_ms);
  w->interval_us = usec;
  w->started = 1;
  scree__log(SCREE__LOG_INFO, "watchdog_on", "interval_us=%llu ping_ms=%llu",
             (unsigned long long)usec, (unsigned long long)period_ms);
  return 1;
}

int scree__notify_listen_fd(const char *path, int *fd_out, char *msg, size_t msg_len) {
  *fd_out = -1;
  int n = sd_listen_fds(1);
  if (n < 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "socket activation: invalid LISTEN_FDS/LISTEN_PID (errno %d)", -n);
  if (n == 0)
    return 0;
  if (n > 1) {
    for (int i = 0; i < n; i++)
      close(SD_LISTEN_FDS_START + i);
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "socket activation: systemd passed %d sockets; screed takes exactly one"
                       " (one ListenSequentialPacket= in the .socket unit)",
                       n);
  }
  int fd = SD_LISTEN_FDS_START;
  const char *what = NULL;
  if (sd_is_socket_unix(fd, SOCK_SEQPACKET, -1, NULL, 0) <= 0)
    what = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, -1) > 0 ? "a SOCK_STREAM socket"
           : sd_is_socket(fd, AF_UNSPEC, SOCK_DGRAM, -1) > 0 ? "a SOCK_DGRAM socket"
           : sd_is_socket_unix(fd, 0, -1, NULL, 0) > 0 ? "a Unix socket of another type"
                                                         : "not a SOCK_SEQPACKET Unix socket";
  else if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0)
    what = "a SOCK_SEQPACKET socket that is not listening";
  else if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, path, 0) <= 0)
    what = "a listening SOCK_SEQPACKET socket on another path than --socket";
  if (what != NULL) {
    close(fd);
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "socket activation: the socket systemd passed is %s; screed needs a"
                       " listening SOCK_SEQPACKET Unix socket at %s"
                       " (ListenSequentialPacket=%s)",
                       what, path, path);
  }
  /* systemd hands sockets over blocking; the accept loop relies on EAGAIN. */
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    int e = errno;
    close(fd);
    return scree__fail(SCREE__ERR(e), msg, msg_len, "socket activation: fcntl: %s",
                       strerror(e));
  }
  *fd_out = fd;
  return 0;
}
#else
void scree__notify(const char *state) { (void)state; }

int scree__watchdog_start(uv_loop_t *loop, scree__watchdog *w) {
  (void)loop;
  w->started = 0;
  w->interval_us = 0;
  return 0;
}

int scree__notify_listen_fd(const char *path, int *fd_out, char *msg, size_t msg_len) {
  (void)path;
  (void)msg;
  (void)msg_len;
  *fd_out = -1;
  return 0;
}
#endif

void scree__notifyf(const char *fmt, ...) {
  char state[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(state, sizeof(state), fmt, ap);
  va_end(ap);
  scree__notify(state);
}

void scree__watchdog_close(scree__watchdog *w) {
  if (!w->started)
    return;
  w->started = 0;
  uv_close((uv_handle_t *)&w->timer, NULL);
}
