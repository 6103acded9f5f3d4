/* libscreeclient: finding screed's socket and connecting to it. With no
 * path given, the order is core/src/sockpaths.h's, the one screed itself
 * follows: $SCREE_SOCKET, else the system path, else the per-user path;
 * the first where a daemon answers wins, and the error of a miss names
 * every path tried and how to start a daemon. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client_impl.h"
#include "sockpaths.h"

_Static_assert(SCREE_SOCKET_PATH_MAX == SCREE__SOCKPATH_MAX,
               "the public and internal socket path sizes differ");
_Static_assert(SCREE_SOCKET_PATH_MAX == sizeof(((struct sockaddr_un *)0)->sun_path),
               "a socket path is sun_path's size");

/* Connects a new socket to path. Returns the fd, or a negative SCREE_E*
 * code with errno's phrase in why. */
static int dial(const char *path, const char **why) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, strlen(path) + 1); /* checked to fit by the caller */
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = strerror(errno);
    return SCREE_EIO;
  }
  while (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    const int e = errno;
    if (e == EINTR)
      continue;
    close(fd);
    *why = strerror(e);
    if (e == ENOENT || e == ECONNREFUSED)
      return SCREE_ECONNREFUSED;
    if (e == EACCES || e == EPERM)
      return SCREE_EACCES;
    if (e == EAGAIN)
      return SCREE_EAGAIN;
    return SCREE_EIO;
  }
  return fd;
}

/* The message of a failed dial to the one path there was; from says where
 * it came from ("" when the caller passed it). */
static int fail_one(scree_client *c, int rc, const char *path, const char *from,
                    const char *why) {
  switch (rc) {
  case SCREE_ECONNREFUSED:
    return scree__client_fail(c, rc, "no daemon at %s%s: %s; " SCREE__START_DAEMON_HINT, path,
                              from, why);
  case SCREE_EAGAIN:
    return scree__client_fail(c, rc, "daemon at %s%s is not accepting: %s", path, from, why);
  default:
    return scree__client_fail(c, rc, "cannot connect to %s%s: %s", path, from, why);
  }
}

int scree__client_dial(scree_client *c, const char *path) {
  if (path != NULL && path[0] != '\0') {
    if (strlen(path) >= SCREE_SOCKET_PATH_MAX)
      return scree__client_fail(c, SCREE_ENAMETOOLONG,
                                "socket path is longer than %d bytes: %s",
                                SCREE_SOCKET_PATH_MAX - 1, path);
    snprintf(c->path, sizeof(c->path), "%s", path);
    const char *why = "";
    int fd = dial(path, &why);
    if (fd < 0)
      return fail_one(c, fd, path, "", why);
    c->fd = fd;
    return 0;
  }

  scree__sockenv env;
  scree__sockenv_get(&env);
  char paths[SCREE__SOCKPATHS_MAX][SCREE__SOCKPATH_MAX];
  int n = scree__sockpaths(&env, paths, c->err, sizeof(c->err));
  if (n < 0)
    return n;
  if (n == 1) {
    memcpy(c->path, paths[0], sizeof(c->path));
    const char *why = "";
    int fd = dial(paths[0], &why);
    if (fd < 0)
      return fail_one(c, fd, paths[0], " (from $SCREE_SOCKET)", why);
    c->fd = fd;
    return 0;
  }
  /* Every candidate, in order; the first that answers wins. The code of a
   * miss is the first that is not "nobody there" (a socket that refuses
   * this user says more than an absent one). */
  const char *whys[SCREE__SOCKPATHS_MAX] = {"", ""};
  int rc = SCREE_ECONNREFUSED;
  for (int i = 0; i < n; i++) {
    int fd = dial(paths[i], &whys[i]);
    if (fd >= 0) {
      memcpy(c->path, paths[i], sizeof(c->path));
      c->fd = fd;
      return 0;
    }
    if (rc == SCREE_ECONNREFUSED)
      rc = fd;
  }
  memcpy(c->path, paths[0], sizeof(c->path));
  return scree__client_fail(c, rc,
                            "%s at %s (%s) nor at %s (%s), the system and the per-user "
                            "paths tried in turn; " SCREE__START_DAEMON_HINT,
                            rc == SCREE_ECONNREFUSED ? "no daemon" : "cannot reach screed",
                            paths[0], whys[0], paths[1], whys[1]);
}

const char *scree_client_socket(const scree_client *c) {
  return c == NULL ? "" : c->path;
}

int scree_default_socket_paths(char paths[][SCREE_SOCKET_PATH_MAX], int max) {
  if (paths == NULL || max < 1)
    return SCREE_EINVAL;
  scree__sockenv env;
  scree__sockenv_get(&env);
  char p[SCREE__SOCKPATHS_MAX][SCREE__SOCKPATH_MAX];
  int n = scree__sockpaths(&env, p, NULL, 0);
  if (n < 0)
    return n;
  for (int i = 0; i < n && i < max; i++)
    memcpy(paths[i], p[i], SCREE_SOCKET_PATH_MAX);
  return n;
}
