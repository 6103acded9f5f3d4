/* The socket file screed listens on: making its directory, taking its lock,
 * binding it (replacing a stale file, refusing a live one) and unlinking it
 * at the end only when it is still ours. Kept apart from the server's
 * connection handling, as libuv keeps pipe.c apart from stream.c. */
#ifndef SCREE_DAEMON_SOCKPATH_H
#define SCREE_DAEMON_SOCKPATH_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>

typedef struct scree__sockpath {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  int lockfd; /* PATH.lock, held while the path is ours; -1 else */
  int bound;  /* the file is the one we bound (dev, ino), until unlinked */
  dev_t dev;
  ino_t ino;
} scree__sockpath;

/* Makes sp empty: no lock, nothing bound. */
void scree__sockpath_init(scree__sockpath *sp);

/* Binds and listens on path (a SOCK_SEQPACKET Unix socket) and stores the
 * listening fd (non-blocking, close-on-exec) in *lfd. First the parent
 * directories are made (0755) and PATH.lock is taken (flock), so that the
 * probe of an existing file and its replacement are one step among
 * screeds. Returns 0; SCREE_ENAMETOOLONG for a path that is empty or does
 * not fit; SCREE_EBUSY when another screed holds the lock or serves path
 * (naming its pid when the kernel tells it); SCREE_EEXIST when path exists
 * and is not a socket; another code otherwise, with a message. */
int scree__sockpath_listen(scree__sockpath *sp, const char *path, int *lfd, char *msg,
                           size_t msg_len);

/* The socket screed serves when given no --socket (core/src/sockpaths.h
 * gives the order): $SCREE_SOCKET, else the system path when screed may
 * serve it (root, or its directory writable), else the per-user path, whose
 * directory (scree-UID) is made here, 0700, or checked when it exists: a
 * directory of this uid that nobody else may write to, so that nobody can
 * put another socket in its place. Writes the path into out (sun_path
 * bytes) and a phrase saying why into *why. Returns 0, or a code with a
 * message. */
int scree__sockpath_default(char *out, size_t out_len, const char **why, char *msg,
                            size_t msg_len);

/* Unlinks the socket file when it is still the one bound here (another
 * screed may have put its own in place since). Harmless twice. */
void scree__sockpath_unlink_if_ours(scree__sockpath *sp);

/* Lets go of PATH.lock (the file stays: removing it would let a third
 * screed lock a new file beside a held one). Harmless twice. */
void scree__sockpath_unlock(scree__sockpath *sp);

#endif /* SCREE_DAEMON_SOCKPATH_H */
