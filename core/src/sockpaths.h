/* Where screed serves and where clients look for it when no path is given:
 * one resolution order shared by screed, libscreeclient (and through it
 * screectl and the Python package). Internal (scree__), part of scree_sys.
 *
 * The order: $SCREE_SOCKET when set and not empty; else the system path
 * (SCREE_DEFAULT_SOCKET, /run/scree/screed.sock, where the systemd units
 * serve); else the per-user path $XDG_RUNTIME_DIR/scree-UID/screed.sock,
 * or /tmp/scree-UID/screed.sock when XDG_RUNTIME_DIR is unset, empty or
 * too long for a socket path.
 *
 * Every input is a member of scree__sockenv, so that tests can give any
 * uid, runtime directory or system path without being that user. */
#ifndef SCREE_SOCKPATHS_H
#define SCREE_SOCKPATHS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* sizeof(sockaddr_un.sun_path) on Linux: the longest path plus its NUL. */
#define SCREE__SOCKPATH_MAX 108

/* At most this many candidates: the system path and the per-user path. */
#define SCREE__SOCKPATHS_MAX 2

typedef struct scree__sockenv {
  const char *scree_socket; /* $SCREE_SOCKET; NULL or "" when unset */
  const char *runtime_dir;  /* $XDG_RUNTIME_DIR; NULL or "" when unset */
  const char *system_path;  /* SCREE_DEFAULT_SOCKET unless a test says other */
  unsigned uid;             /* the effective uid */
} scree__sockenv;

/* Fills env from this process: getenv and geteuid, and the system path
 * SCREE_DEFAULT_SOCKET. The strings belong to the environment. */
void scree__sockenv_get(scree__sockenv *env);

/* The candidates in order into paths: one ($SCREE_SOCKET) or two (the
 * system path, then the per-user one). Returns their number, or
 * SCREE_ENAMETOOLONG with a message when $SCREE_SOCKET or the system path
 * does not fit a socket path. */
int scree__sockpaths(const scree__sockenv *env, char paths[][SCREE__SOCKPATH_MAX], char *msg,
                     size_t msg_len);

/* The per-user path alone (always fits: the /tmp form is used when the
 * runtime directory is too long). */
void scree__sockpath_user(const scree__sockenv *env, char out[SCREE__SOCKPATH_MAX]);

/* Whether screed can serve the system path: as root, or when the path's
 * directory exists and this process may create files in it. */
int scree__sockpath_system_usable(const scree__sockenv *env);

/* Where screed serves when told no --socket: $SCREE_SOCKET, else the
 * system path when system_usable (scree__sockpath_system_usable, an input
 * here so tests can say no as root), else the per-user path. *why (when
 * not NULL) receives a static phrase for the log ("SCREE_SOCKET",
 * "system", "per-user"). Returns 0 or SCREE_ENAMETOOLONG with a message. */
int scree__sockpath_for_daemon(const scree__sockenv *env, int system_usable,
                               char out[SCREE__SOCKPATH_MAX], const char **why, char *msg,
                               size_t msg_len);

/* The sentence every "no daemon" error ends with: how to start one. */
#define SCREE__START_DAEMON_HINT                                                          \
  "start one with `make run` in a scree checkout, `screed --device cpu` (or --device 0 " \
  "for GPU 0), or `systemctl start screed` (screed-cpu on a host without a GPU); set "   \
  "SCREE_SOCKET or pass the path when it serves elsewhere"

#ifdef __cplusplus
}
#endif

#endif /* SCREE_SOCKPATHS_H */
