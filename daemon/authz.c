#include "authz.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "grow.h"
#include "log.h"
#include "mem.h"
#include "scree/error.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux 4.13 */
#endif

/* (uint32_t)-1 is (uid_t)-1, "no id" to the kernel: never a real id. */
#define NO_ID UINT32_MAX

void scree__authz_init(scree__authz *a) { memset(a, 0, sizeof(*a)); }

void scree__authz_free(scree__authz *a) {
  for (size_t i = 0; i < sizeof(a->lists) / sizeof(a->lists[0]); i++)
    free(a->lists[i].ids);
  scree__authz_init(a);
}

static int ids_has(const scree__authz_ids *l, uint32_t id) {
  for (size_t i = 0; i < l->n; i++)
    if (l->ids[i] == id)
      return 1;
  return 0;
}

int scree__authz_add(scree__authz *a, scree__authz_list list, uint32_t id) {
  scree__authz_ids *l = &a->lists[list];
  if (ids_has(l, id))
    return 0;
  if (SCREE__GROW(&l->ids, &l->cap, l->n + 1, 8) != 0)
    return SCREE_ENOMEM;
  l->ids[l->n++] = id;
  return 0;
}

/* A scratch buffer for the *_r lookups, grown on ERANGE. */
static char *lookup_buf(size_t *len) {
  long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
  *len = hint > 0 ? (size_t)hint : 16384;
  if (*len < 16384)
    *len = 16384;
  return malloc(*len);
}

static int name_to_id(scree__authz_list list, const char *name, uint32_t *out, char *msg,
                      size_t msg_len) {
  size_t blen;
  char *buf = lookup_buf(&blen);
  if (buf == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
  int rc;
  int e;
  for (;;) {
    if (list == SCREE__AUTHZ_GID) {
      struct group gr, *res = NULL;
      e = getgrnam_r(name, &gr, buf, blen, &res);
      if (e == 0 && res != NULL)
        *out = (uint32_t)res->gr_gid;
      else if (e == 0)
        e = ENOENT;
    } else {
      struct passwd pw, *res = NULL;
      e = getpwnam_r(name, &pw, buf, blen, &res);
      if (e == 0 && res != NULL)
        *out = (uint32_t)res->pw_uid;
      else if (e == 0)
        e = ENOENT;
    }
    if (e != ERANGE || blen > (1u << 24))
      break;
    char *nb = realloc(buf, blen * 2);
    if (nb == NULL) {
      e = ENOMEM;
      break;
    }
    buf = nb;
    blen *= 2;
  }
  free(buf);
  if (e == 0)
    rc = 0;
  else if (e == ENOENT || e == ESRCH || e == EBADF || e == EPERM)
    rc = scree__fail(SCREE_EINVAL, msg, msg_len, "no %s named '%s'",
                     list == SCREE__AUTHZ_GID ? "group" : "user", name);
  else
    rc = scree__fail(SCREE_EINVAL, msg, msg_len, "cannot look up %s '%s': %s",
                     list == SCREE__AUTHZ_GID ? "group" : "user", name, strerror(e));
  return rc;
}

static int parse_one(scree__authz *a, scree__authz_list list, const char *item, char *msg,
                     size_t msg_len) {
  if (item[0] == '\0')
    return scree__fail(SCREE_EINVAL, msg, msg_len, "empty entry in the list");
  uint32_t id = 0;
  if (strspn(item, "0123456789") == strlen(item)) {
    errno = 0;
    unsigned long long v = strtoull(item, NULL, 10);
    if (errno != 0 || v >= NO_ID)
      return scree__fail(SCREE_EINVAL, msg, msg_len, "id %s is out of range", item);
    id = (uint32_t)v;
  } else {
    int rc = name_to_id(list, item, &id, msg, msg_len);
    if (rc != 0)
      return rc;
  }
  if (scree__authz_add(a, list, id) != 0)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
  return 0;
}

int scree__authz_parse(scree__authz *a, scree__authz_list list, const char *arg,
                       char *msg, size_t msg_len) {
  char *copy = strdup(arg);
  if (copy == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
  int rc = 0;
  char *p = copy;
  for (;;) {
    char *comma = strchr(p, ',');
    if (comma != NULL)
      *comma = '\0';
    rc = parse_one(a, list, p, msg, msg_len);
    if (rc != 0 || comma == NULL)
      break;
    p = comma + 1;
  }
  free(copy);
  return rc;
}

int scree__authz_add_defaults(scree__authz *a, const char *socket_path, char *msg,
                              size_t msg_len) {
  uint32_t self = (uint32_t)geteuid();
  if (scree__authz_add(a, SCREE__AUTHZ_UID, 0) != 0 ||
      scree__authz_add(a, SCREE__AUTHZ_UID, self) != 0 ||
      scree__authz_add(a, SCREE__AUTHZ_ADMIN, 0) != 0 ||
      scree__authz_add(a, SCREE__AUTHZ_ADMIN, self) != 0)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
  if (socket_path == NULL)
    return 0;
  /* The group of the file, not of the daemon: with socket activation the
   * socket unit sets it (SocketGroup=), and it is who can connect at all. */
  struct stat st;
  if (stat(socket_path, &st) != 0)
    return scree__fail(SCREE__ERR(errno), msg, msg_len, "cannot stat %s: %s", socket_path,
                       strerror(errno));
  if (scree__authz_add(a, SCREE__AUTHZ_GID, (uint32_t)st.st_gid) != 0)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
  return 0;
}

int scree__authz_is_admin(const scree__authz *a, uint32_t uid) {
  return a != NULL && uid != NO_ID && ids_has(&a->lists[SCREE__AUTHZ_ADMIN], uid);
}

int scree__authz_allows(const scree__authz *a, uint32_t uid, uint32_t gid,
                        const uint32_t *groups, size_t ngroups) {
  if (uid != NO_ID && ids_has(&a->lists[SCREE__AUTHZ_UID], uid))
    return 1;
  const scree__authz_ids *g = &a->lists[SCREE__AUTHZ_GID];
  if (gid != NO_ID && ids_has(g, gid))
    return 1;
  for (size_t i = 0; i < ngroups; i++)
    if (groups[i] != NO_ID && ids_has(g, groups[i]))
      return 1;
  return 0;
}

/* The peer's supplementary groups as the kernel saw them at connect
 * (SO_PEERGROUPS). Returns the count, or -1 when the kernel cannot say
 * (before Linux 4.13) or memory ran out. *out is malloc'ed. */
static long peer_groups_kernel(int fd, uint32_t **out) {
  socklen_t len = 64 * sizeof(gid_t);
  for (int tries = 0; tries < 4; tries++) {
    gid_t *g = malloc(len ? len : sizeof(gid_t));
    if (g == NULL)
      return -1;
    socklen_t got = len;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &got) == 0) {
      size_t n = got / sizeof(gid_t);
      *out = (uint32_t *)g; /* gid_t is 32 bits on Linux */
      return (long)n;
    }
    free(g);
    /* ERANGE: got holds the size needed. */
    if (errno != ERANGE || got <= len || got > (socklen_t)(65536 * sizeof(gid_t)))
      return -1;
    len = got;
  }
  return -1;
}

/* The groups of uid's user from the group database, for kernels without
 * SO_PEERGROUPS. They can differ from the peer's real groups (a process
 * may have dropped or gained groups since login); the kernel's answer is
 * preferred wherever there is one. */
static long peer_groups_db(uint32_t uid, uint32_t gid, uint32_t **out) {
  size_t blen;
  char *buf = lookup_buf(&blen);
  if (buf == NULL)
    return -1;
  struct passwd pw, *res = NULL;
  long n = -1;
  if (getpwuid_r((uid_t)uid, &pw, buf, blen, &res) == 0 && res != NULL) {
    int cnt = 64;
    for (int tries = 0; tries < 4; tries++) {
      gid_t *g = malloc((size_t)cnt * sizeof(gid_t));
      if (g == NULL)
        break;
      int want = cnt;
      if (getgrouplist(res->pw_name, (gid_t)gid, g, &want) >= 0) {
        *out = (uint32_t *)g;
        n = want;
        break;
      }
      free(g);
      if (want <= cnt || want > 65536)
        break;
      cnt = want;
    }
  }
  free(buf);
  return n;
}

int scree__authz_check_peer(const scree__authz *a, int fd, int have_cred, uint32_t uid,
                            uint32_t gid, char *reason, size_t reason_len) {
  if (!have_cred)
    return scree__fail(SCREE_EACCES, reason, reason_len, "no_peer_credentials");
  if (scree__authz_allows(a, uid, gid, NULL, 0))
    return 0;
  uint32_t *groups = NULL;
  long n = peer_groups_kernel(fd, &groups);
  if (n < 0)
    n = peer_groups_db(uid, gid, &groups);
  int ok = n > 0 && scree__authz_allows(a, NO_ID, NO_ID, groups, (size_t)n);
  free(groups);
  if (ok)
    return 0;
  return scree__fail(SCREE_EACCES, reason, reason_len, "not_in_allow_list");
}

uint64_t scree__authz_request_id(const uint8_t *buf, size_t len) {
  if (len < 2 || buf[0] != 0x08) /* field 1, wire type 0 */
    return 0;
  uint64_t v = 0;
  for (size_t i = 1; i < len && i <= 10; i++) {
    v |= (uint64_t)(buf[i] & 0x7f) << (7 * (i - 1));
    if ((buf[i] & 0x80) == 0)
      return v;
  }
  return 0;
}

int scree__authz_check_arena_fd(int fd, int ipc_mode, uint64_t size, char *msg,
                                size_t msg_len) {
  if (ipc_mode != SCREE__IPC_MEMFD)
    return 0;
  struct stat st;
  if (fstat(fd, &st) != 0)
    return scree__fail(SCREE_EIO, msg, msg_len, "fstat of an arena fd: %s", strerror(errno));
  if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size != size)
    return scree__fail(SCREE_EIO, msg, msg_len,
                       "arena fd is not a %" PRIu64 "-byte memfd (mode 0%o, %lld bytes)",
                       size, (unsigned)st.st_mode, (long long)st.st_size);
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
    return scree__fail(SCREE_EIO, msg, msg_len,
                       "arena fd is not sealed against resizing (seals 0x%x)", seals);
  return 0;
}

int scree__authz_check_arena_fd_access(int fd, int ipc_mode, int writable, char *msg,
                                       size_t msg_len) {
  if (ipc_mode != SCREE__IPC_MEMFD)
    return 0;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return scree__fail(SCREE_EIO, msg, msg_len, "F_GETFL of an arena fd: %s",
                       strerror(errno));
  int want = writable ? O_RDWR : O_RDONLY;
  if ((fl & O_ACCMODE) != want)
    return scree__fail(SCREE_EIO, msg, msg_len, "arena fd is open %s, not %s",
                       (fl & O_ACCMODE) == O_RDWR     ? "O_RDWR"
                       : (fl & O_ACCMODE) == O_RDONLY ? "O_RDONLY"
                                                      : "O_WRONLY",
                       writable ? "O_RDWR" : "O_RDONLY");
  if (writable)
    return 0;
  struct stat st;
  if (fstat(fd, &st) != 0)
    return scree__fail(SCREE_EIO, msg, msg_len, "fstat of an arena fd: %s", strerror(errno));
  if ((st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) != 0)
    return scree__fail(SCREE_EIO, msg, msg_len,
                       "read-only arena fd has a writable inode (mode 0%o): it could be "
                       "reopened for writing",
                       (unsigned)(st.st_mode & 07777));
  return 0;
}

void scree__authz_format(const scree__authz *a, scree__authz_list list, char *buf,
                         size_t len) {
  const scree__authz_ids *l = &a->lists[list];
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < l->n && used < len; i++) {
    int n = snprintf(buf + used, len - used, "%s%" PRIu32, i ? "," : "", l->ids[i]);
    if (n < 0)
      break;
    used += (size_t)n;
  }
}
