/* systemd integration: readiness and status notifications, the watchdog,
 * and socket activation.
 *
 * Everything here is optional. Without NOTIFY_SOCKET, WATCHDOG_USEC or
 * LISTEN_FDS in the environment (screed not started by systemd), or in a
 * build without libsystemd, the functions do nothing and report "not
 * enabled": that is the normal case outside systemd, not an error. */
#ifndef SCREE_DAEMON_NOTIFY_H
#define SCREE_DAEMON_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Sends state ("READY=1", "STOPPING=1", "STATUS=...", several joined by
 * newlines) to the service manager. A socket that is set but unusable is
 * logged once per call at warn level; nothing is returned because screed
 * serves the same either way. */
void scree__notify(const char *state);

/* scree__notify with a printf format. */
void scree__notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog keep-alive: a loop timer that sends WATCHDOG=1 at half the
 * interval systemd asks for (WatchdogSec=, passed as WATCHDOG_USEC and, for
 * this process only, WATCHDOG_PID). Because the timer runs on the loop, a
 * loop that wedges stops the pings and systemd restarts screed. */
typedef struct scree__watchdog {
  uv_timer_t timer;
  uint64_t interval_us; /* what systemd asked for; 0 when off */
  int started;
} scree__watchdog;

/* Starts the keep-alive when systemd asked for one. Returns 1 when started
 * (the timer is then a loop handle to close with scree__watchdog_close),
 * 0 when the watchdog is off. The first ping goes out at once. */
int scree__watchdog_start(uv_loop_t *loop, scree__watchdog *w);

/* Closes the timer when started; harmless otherwise. */
void scree__watchdog_close(scree__watchdog *w);

/* Socket activation. When systemd passed listening sockets (LISTEN_FDS and
 * LISTEN_PID naming this process), checks that there is exactly one and
 * that it is a listening SOCK_SEQPACKET Unix socket bound to path, makes it
 * non-blocking and close-on-exec, and stores it in *fd_out. Returns 0 with
 * *fd_out = -1 when nothing was passed; 0 with the fd when one was; or
 * SCREE_EINVAL with a message naming what is wrong (more than one socket,
 * a stream or datagram socket, another path). The LISTEN_* variables are
 * removed from the environment either way. */
int scree__notify_listen_fd(const char *path, int *fd_out, char *msg, size_t msg_len);

#endif /* SCREE_DAEMON_NOTIFY_H */
