#include "sockpath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sockpaths.h"
#include "scree/error.h"

/* Creates the directories above path, each 0755. */
static int make_parents(const char *path, char *msg, size_t msg_len) {
  char *dir = strdup(path);
  if (dir == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
  int rc = 0;
  for (char *p = dir + 1; *p != '\0'; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
      rc = scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot create %s: %s", dir,
                       strerror(errno));
      break;
    }
    *p = '/';
  }
  free(dir);
  return rc;
}

/* Finds out who holds path: returns SCREE_EBUSY when a listener answers,
 * SCREE_ECONNREFUSED when nobody does (a stale file), another code else. */
static int probe_socket(const struct sockaddr_un *addr, const char *path, char *msg,
                        size_t msg_len) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot stat %s: %s", path,
                       strerror(errno));
  if (!S_ISSOCK(st.st_mode))
    return scree__fail(SCREE_EEXIST, msg, msg_len,
                       "%s exists and is not a socket; not replacing it", path);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "socket: %s", strerror(errno));
  int rc;
  if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0) {
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 && cred.pid > 0)
      rc = scree__fail(SCREE_EBUSY, msg, msg_len, "another screed is serving %s (pid %d)",
                       path, (int)cred.pid);
    else
      rc = scree__fail(SCREE_EBUSY, msg, msg_len, "another screed is serving %s", path);
  } else if (errno == ECONNREFUSED) {
    rc = SCREE_ECONNREFUSED;
  } else if (errno == EAGAIN) {
    /* The listener's backlog is full: someone is very much serving. */
    rc = scree__fail(SCREE_EBUSY, msg, msg_len, "another screed is serving %s", path);
  } else if (errno == EPROTOTYPE) {
    rc = scree__fail(SCREE_EBUSY, msg, msg_len,
                     "%s is in use by a program that is not screed (not a seqpacket socket)",
                     path);
  } else {
    rc = scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot connect to %s: %s", path,
                     strerror(errno));
  }
  close(fd);
  return rc;
}

/* The address of the socket file path; SCREE_ENAMETOOLONG (with a message)
 * when the path is empty or does not fit sun_path. Checked before anything
 * is created on the file system. */
static int socket_addr(const char *path, struct sockaddr_un *addr, char *msg, size_t msg_len) {
  memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (path[0] == '\0' || strlen(path) >= sizeof(addr->sun_path))
    return scree__fail(SCREE_ENAMETOOLONG, msg, msg_len,
                       "socket path '%s' is empty or longer than %zu bytes", path,
                       sizeof(addr->sun_path) - 1);
  memcpy(addr->sun_path, path, strlen(path));
  return 0;
}

/* Takes PATH.lock (flock, exclusive) for as long as this screed owns the
 * path. Probing a socket file and replacing a stale one are not atomic: two
 * screeds starting together on one stale file could each find the other's
 * new socket not yet listening, take it for stale and unlink it, leaving one
 * of them serving a name nobody can reach. The lock makes the second wait
 * for nothing and fail instead. The file is never removed: removing it
 * would let a third screed lock a new file beside a held one. */
static int lock_path(scree__sockpath *sp, const char *path, const struct sockaddr_un *addr,
                     char *msg, size_t msg_len) {
  char lock[PATH_MAX];
  if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", path) >= sizeof(lock))
    return scree__fail(SCREE_ENAMETOOLONG, msg, msg_len, "lock file path for %s is too long",
                       path);
  int rc = make_parents(path, msg, msg_len);
  if (rc != 0)
    return rc;
  int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot open %s: %s", lock,
                       strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    if (err != EWOULDBLOCK)
      return scree__fail(SCREE__ERR(err), msg, msg_len, "cannot lock %s: %s", lock,
                         strerror(err));
    /* Held: by a screed serving the path (whose pid the probe can name) or
     * by one still starting. */
    if (probe_socket(addr, path, msg, msg_len) == SCREE_EBUSY)
      return SCREE_EBUSY;
    return scree__fail(SCREE_EBUSY, msg, msg_len,
                       "another screed is starting on or serving %s (it holds %s)", path, lock);
  }
  sp->lockfd = fd;
  return 0;
}

void scree__sockpath_unlock(scree__sockpath *sp) {
  if (sp->lockfd >= 0)
    close(sp->lockfd); /* the lock goes with the last descriptor */
  sp->lockfd = -1;
}

/* Binds and listens on path (its directory made by lock_path), replacing a
 * stale socket file. */
static int listen_on(scree__sockpath *sp, const char *path, const struct sockaddr_un *addr,
                     int *lfd, char *msg, size_t msg_len) {
  int rc;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "socket: %s", strerror(errno));
  if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0) {
    if (errno != EADDRINUSE) {
      rc = scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot bind %s: %s", path,
                       strerror(errno));
      goto err_close;
    }
    rc = probe_socket(addr, path, msg, msg_len);
    if (rc != SCREE_ECONNREFUSED)
      goto err_close;
    scree__log(SCREE__LOG_INFO, "stale_socket_replaced", "socket=%s", scree__q(path));
    if (unlink(path) != 0 && errno != ENOENT) {
      rc = scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot remove stale %s: %s", path,
                       strerror(errno));
      goto err_close;
    }
    if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0) {
      rc = scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot bind %s: %s", path,
                       strerror(errno));
      goto err_close;
    }
  }
  /* Remember which file is ours, so that shutdown never unlinks a socket
   * that another screed has put in its place since. */
  struct stat st;
  if (stat(path, &st) != 0) {
    rc = scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot stat %s: %s", path,
                     strerror(errno));
    goto err_unlink;
  }
  sp->dev = st.st_dev;
  sp->ino = st.st_ino;
  if (listen(fd, SOMAXCONN) != 0) {
    rc = scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot listen on %s: %s", path,
                     strerror(errno));
    goto err_unlink;
  }
  *lfd = fd;
  return 0;

err_unlink:
  unlink(path);
err_close:
  close(fd);
  return rc;
}

void scree__sockpath_unlink_if_ours(scree__sockpath *sp) {
  if (!sp->bound)
    return;
  sp->bound = 0;
  struct stat st;
  if (lstat(sp->path, &st) == 0 && st.st_dev == sp->dev && st.st_ino == sp->ino)
    unlink(sp->path);
}

void scree__sockpath_init(scree__sockpath *sp) {
  memset(sp, 0, sizeof(*sp));
  sp->lockfd = -1;
}

int scree__sockpath_listen(scree__sockpath *sp, const char *path, int *lfd, char *msg,
                           size_t msg_len) {
  struct sockaddr_un addr;
  int rc = socket_addr(path, &addr, msg, msg_len);
  if (rc != 0)
    return rc;
  memcpy(sp->path, addr.sun_path, sizeof(sp->path));
  rc = lock_path(sp, path, &addr, msg, msg_len);
  if (rc != 0)
    return rc;
  rc = listen_on(sp, path, &addr, lfd, msg, msg_len);
  if (rc != 0) {
    scree__sockpath_unlock(sp);
    return rc;
  }
  sp->bound = 1;
  return 0;
}

/* Makes the per-user directory (the parent of path) 0700, or checks the one
 * that is there: /tmp/scree-UID could have been made by anyone. */
static int private_dir(const char *path, unsigned uid, char *msg, size_t msg_len) {
  char dir[SCREE__SOCKPATH_MAX];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL || slash == dir)
    return 0;
  *slash = '\0';
  if (mkdir(dir, 0700) == 0)
    return 0;
  if (errno != EEXIST)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot create %s: %s", dir,
                       strerror(errno));
  struct stat st;
  if (lstat(dir, &st) != 0)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot stat %s: %s", dir,
                       strerror(errno));
  if (!S_ISDIR(st.st_mode) || st.st_uid != (uid_t)uid || (st.st_mode & 022) != 0)
    return scree__fail(SCREE_EACCES, msg, msg_len,
                       "%s is not a private directory of uid %u (a directory, owned by it, "
                       "writable by nobody else); remove it or pass --socket",
                       dir, uid);
  return 0;
}

int scree__sockpath_default(char *out, size_t out_len, const char **why, char *msg,
                            size_t msg_len) {
  scree__sockenv env;
  scree__sockenv_get(&env);
  char path[SCREE__SOCKPATH_MAX];
  int rc = scree__sockpath_for_daemon(&env, scree__sockpath_system_usable(&env), path, why,
                                      msg, msg_len);
  if (rc != 0)
    return rc;
  if ((size_t)snprintf(out, out_len, "%s", path) >= out_len)
    return scree__fail(SCREE_ENAMETOOLONG, msg, msg_len, "socket path %s is too long", path);
  if (strcmp(*why, "per-user") == 0)
    return private_dir(path, env.uid, msg, msg_len);
  return 0;
}
