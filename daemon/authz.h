/* Access control for screed: who may use the socket, who is an admin, and
 * the checks on what crosses the socket that are not about batches.
 *
 * The socket file's mode and group are the first gate (the systemd unit
 * makes it 0660, group scree). The allow lists here are the second: a peer
 * is allowed when its uid is on the uid list, or its gid or one of its
 * supplementary groups (SO_PEERGROUPS, else getgrouplist of its user) is on
 * the gid list. Root and the daemon's own uid are always allowed and always
 * admins; the socket file's group is always allowed. --allow-uid,
 * --allow-gid and --admin-uid add to those defaults. docs/security.md
 * describes what this protects and what it does not. */
#ifndef SCREE_DAEMON_AUTHZ_H
#define SCREE_DAEMON_AUTHZ_H

#include <stddef.h>
#include <stdint.h>

typedef enum scree__authz_list {
  SCREE__AUTHZ_UID = 0,   /* --allow-uid */
  SCREE__AUTHZ_GID = 1,   /* --allow-gid */
  SCREE__AUTHZ_ADMIN = 2, /* --admin-uid */
} scree__authz_list;

typedef struct scree__authz_ids {
  uint32_t *ids;
  size_t n;
  size_t cap;
} scree__authz_ids;

typedef struct scree__authz {
  scree__authz_ids lists[3]; /* indexed by scree__authz_list */
} scree__authz;

/* Makes all three lists empty. An empty scree__authz allows nobody and has
 * no admin; scree__authz_add_defaults fills in the defaults. */
void scree__authz_init(scree__authz *a);

/* Frees the lists; a may be initialised again afterwards. */
void scree__authz_free(scree__authz *a);

/* Adds one id to a list (a duplicate is ignored). Returns 0 or
 * SCREE_ENOMEM. */
int scree__authz_add(scree__authz *a, scree__authz_list list, uint32_t id);

/* Parses an option value: comma-separated ids, each a decimal number or a
 * user name (SCREE__AUTHZ_UID, SCREE__AUTHZ_ADMIN; getpwnam_r) or a group
 * name (SCREE__AUTHZ_GID; getgrnam_r), and adds them to the list. Returns
 * 0, SCREE_EINVAL naming the bad entry (empty, unknown name, out of range),
 * or SCREE_ENOMEM. */
int scree__authz_parse(scree__authz *a, scree__authz_list list, const char *arg,
                       char *msg, size_t msg_len);

/* Adds the defaults: uid 0 and the daemon's effective uid to the allowed and
 * admin lists, and the group owning the socket file at socket_path (stat
 * after bind or socket activation; NULL skips it) to the allowed groups.
 * Returns 0, or a code with a message when the file cannot be stat'ed. */
int scree__authz_add_defaults(scree__authz *a, const char *socket_path, char *msg,
                              size_t msg_len);

/* Writes a list as comma-separated numbers (for the startup log); cut at
 * len. */
void scree__authz_format(const scree__authz *a, scree__authz_list list, char *buf,
                         size_t len);

/* Whether uid is on the admin list. A NULL a has no admin. */
int scree__authz_is_admin(const scree__authz *a, uint32_t uid);

/* The rule itself, with the peer's groups given: 1 when uid, gid or one of
 * groups is allowed, else 0. */
int scree__authz_allows(const scree__authz *a, uint32_t uid, uint32_t gid,
                        const uint32_t *groups, size_t ngroups);

/* Decides on a connected peer of socket fd whose SO_PEERCRED gave uid, gid
 * and pid (have_cred 0 when SO_PEERCRED failed: always refused). Looks up
 * the supplementary groups only when uid and gid are not enough. Returns 0
 * when allowed; SCREE_EACCES with a short machine-readable reason (for the
 * log's reason= field) when not. The fallback for kernels without
 * SO_PEERGROUPS asks the name service (getpwuid_r, getgrouplist), which can
 * block the loop where that service is remote (LDAP, sssd); the kernel
 * answer never blocks. */
int scree__authz_check_peer(const scree__authz *a, int fd, int have_cred, uint32_t uid,
                            uint32_t gid, char *reason, size_t reason_len);

/* Reads the id of a Request without decoding the rest of the packet (it is
 * field 1, a varint, first in a packed Request), so that a refused peer's
 * packet is answered with its own id but never goes through the full
 * decoder. Returns 0 when the packet does not start with the id. */
uint64_t scree__authz_request_id(const uint8_t *buf, size_t len);

/* Checks an arena fd before it is sent: on host memory (ipc_mode
 * SCREE__IPC_MEMFD) it must be a regular file (a memfd) of exactly size
 * bytes, sealed against shrinking and growing. Other modes carry fds the
 * daemon cannot check this way and pass. Returns 0 or SCREE_EIO with a
 * message. */
int scree__authz_check_arena_fd(int fd, int ipc_mode, uint64_t size, char *msg,
                                size_t msg_len);

/* Checks that an arena fd about to be sent as read-only (writable 0) or
 * writable (Location.writable) is what the reply will say. On host memory a
 * read-only fd must be open O_RDONLY and its memfd must have no write
 * permission bits, so that its holder cannot open /proc/self/fd/N again
 * for writing; a writable one must be open O_RDWR. Other modes pass.
 * Returns 0 or SCREE_EIO with a message. */
int scree__authz_check_arena_fd_access(int fd, int ipc_mode, int writable, char *msg,
                                       size_t msg_len);

#endif /* SCREE_DAEMON_AUTHZ_H */
