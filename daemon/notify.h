/* systemd readiness notification. */
#ifndef SCREE_DAEMON_NOTIFY_H
#define SCREE_DAEMON_NOTIFY_H

/* Sends state ("READY=1", "STOPPING=1", "STATUS=...") to the service
 * manager. Without NOTIFY_SOCKET in the environment (screed not started by
 * systemd with Type=notify), or in a build without libsystemd, it does
 * nothing: that is the normal case outside systemd, not an error. */
void scree__notify(const char *state);

#endif /* SCREE_DAEMON_NOTIFY_H */
