/* The socket resolution order of sockpaths.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scree/error.h"
#include "scree/version.h"
#include "sockpaths.h"
#include "sys.h"

void scree__sockenv_get(scree__sockenv *env) {
  env->scree_socket = getenv("SCREE_SOCKET");
  env->runtime_dir = getenv("XDG_RUNTIME_DIR");
  env->system_path = SCREE_DEFAULT_SOCKET;
  env->uid = (unsigned)geteuid();
}

static int set(const char *path, const char *what, char out[SCREE__SOCKPATH_MAX], char *msg,
               size_t msg_len) {
  if ((size_t)snprintf(out, SCREE__SOCKPATH_MAX, "%s", path) >= SCREE__SOCKPATH_MAX)
    return scree__fail(SCREE_ENAMETOOLONG, msg, msg_len,
                       "%s '%s' is longer than a socket path may be (%d bytes)", what, path,
                       SCREE__SOCKPATH_MAX - 1);
  return 0;
}

void scree__sockpath_user(const scree__sockenv *env, char out[SCREE__SOCKPATH_MAX]) {
  const char *rt = env->runtime_dir;
  /* A relative runtime directory is not one (the XDG spec wants it
   * absolute); /tmp is used then, as when it is unset. */
  if (rt != NULL && rt[0] == '/' &&
      (size_t)snprintf(out, SCREE__SOCKPATH_MAX, "%s/scree-%u/screed.sock", rt, env->uid) <
          SCREE__SOCKPATH_MAX)
    return;
  snprintf(out, SCREE__SOCKPATH_MAX, "/tmp/scree-%u/screed.sock", env->uid);
}

int scree__sockpaths(const scree__sockenv *env, char paths[][SCREE__SOCKPATH_MAX], char *msg,
                     size_t msg_len) {
  if (env->scree_socket != NULL && env->scree_socket[0] != '\0') {
    int rc = set(env->scree_socket, "$SCREE_SOCKET", paths[0], msg, msg_len);
    return rc != 0 ? rc : 1;
  }
  int rc = set(env->system_path, "the system socket path", paths[0], msg, msg_len);
  if (rc != 0)
    return rc;
  scree__sockpath_user(env, paths[1]);
  return 2;
}

int scree__sockpath_system_usable(const scree__sockenv *env) {
  if (env->uid == 0)
    return 1;
  char dir[SCREE__SOCKPATH_MAX];
  snprintf(dir, sizeof(dir), "%s", env->system_path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL)
    return access(".", W_OK | X_OK) == 0;
  if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  return access(dir, W_OK | X_OK) == 0;
}

int scree__sockpath_for_daemon(const scree__sockenv *env, int system_usable,
                               char out[SCREE__SOCKPATH_MAX], const char **why, char *msg,
                               size_t msg_len) {
  const char *w;
  int rc = 0;
  if (env->scree_socket != NULL && env->scree_socket[0] != '\0') {
    w = "SCREE_SOCKET";
    rc = set(env->scree_socket, "$SCREE_SOCKET", out, msg, msg_len);
  } else if (system_usable) {
    w = "system";
    rc = set(env->system_path, "the system socket path", out, msg, msg_len);
  } else {
    w = "per-user";
    scree__sockpath_user(env, out);
  }
  if (why != NULL)
    *why = w;
  return rc;
}
