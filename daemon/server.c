#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "scree/error.h"

/* Most fds a client may attach to one packet before the rest are dropped by
 * the kernel (MSG_CTRUNC); none are expected, all are closed. */
#define PASSED_FDS_MAX 16
/* Packets handled per wakeup of one connection, so that one busy client
 * cannot starve the others (epoll is level-triggered: the rest waits for the
 * next turn). */
#define PACKETS_PER_WAKEUP 32
/* How long accepting pauses when the process is out of fds. */
#define ACCEPT_PAUSE_MS 100

typedef struct outpkt {
  struct outpkt *next;
  uint8_t *buf;
  size_t len;
  int fd; /* -1 or an fd to attach, owned by the packet */
} outpkt;

typedef struct scree__conn {
  uv_poll_t poll;
  int fd;
  scree__server *srv;
  scree__session *sess;
  uint64_t id;
  uint32_t uid;
  int32_t pid;
  /* Responses the socket would not take yet, in order. While any wait, the
   * connection is not read: a client that does not read its responses
   * stops being served instead of growing this queue. */
  outpkt *qhead;
  outpkt *qtail;
  int events;
  int closing;
  struct scree__conn *prev;
  struct scree__conn *next;
} scree__conn;

struct scree__server {
  uv_loop_t *loop;
  scree__store *store;
  int lfd;
  uv_poll_t lpoll;
  uv_timer_t pause_timer;
  char *path;
  dev_t dev;
  ino_t ino;
  uint64_t max_packet;
  uint8_t *rbuf;
  size_t rcap;
  scree__conn *conns;
  int shutting_down;
  scree__reply reply;
};

/* ---- the socket file --------------------------------------------------- */

/* Creates the directories above path, each 0755. */
static int make_parents(const char *path, char *msg, size_t msg_len) {
  char *dir = strdup(path);
  if (dir == NULL)
    return scree__errf(SCREE_ENOMEM, msg, msg_len, "out of memory");
  int rc = 0;
  for (char *p = dir + 1; *p != '\0'; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
      rc = scree__errf(SCREE__ERR(errno), msg, msg_len, "cannot create %s: %s", dir,
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
    return scree__errf(SCREE__ERR(errno), msg, msg_len, "cannot stat %s: %s", path,
                       strerror(errno));
  if (!S_ISSOCK(st.st_mode))
    return scree__errf(SCREE_EEXIST, msg, msg_len,
                       "%s exists and is not a socket; not replacing it", path);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return scree__errf(SCREE__ERR(errno), msg, msg_len, "socket: %s", strerror(errno));
  int rc;
  if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0) {
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 && cred.pid > 0)
      rc = scree__errf(SCREE_EBUSY, msg, msg_len, "another screed is serving %s (pid %d)",
                       path, (int)cred.pid);
    else
      rc = scree__errf(SCREE_EBUSY, msg, msg_len, "another screed is serving %s", path);
  } else if (errno == ECONNREFUSED) {
    rc = SCREE_ECONNREFUSED;
  } else if (errno == EAGAIN) {
    /* The listener's backlog is full: someone is very much serving. */
    rc = scree__errf(SCREE_EBUSY, msg, msg_len, "another screed is serving %s", path);
  } else if (errno == EPROTOTYPE) {
    rc = scree__errf(SCREE_EBUSY, msg, msg_len,
                     "%s is in use by a program that is not screed (not a seqpacket socket)",
                     path);
  } else {
    rc = scree__errf(SCREE__ERR(errno), msg, msg_len, "cannot connect to %s: %s", path,
                     strerror(errno));
  }
  close(fd);
  return rc;
}

static int listen_on(scree__server *srv, const char *path, char *msg, size_t msg_len) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path[0] == '\0' || strlen(path) >= sizeof(addr.sun_path))
    return scree__errf(SCREE_ENAMETOOLONG, msg, msg_len,
                       "socket path '%s' is empty or longer than %zu bytes", path,
                       sizeof(addr.sun_path) - 1);
  memcpy(addr.sun_path, path, strlen(path));
  int rc = make_parents(path, msg, msg_len);
  if (rc != 0)
    return rc;

  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return scree__errf(SCREE__ERR(errno), msg, msg_len, "socket: %s", strerror(errno));
  if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    if (errno != EADDRINUSE) {
      rc = scree__errf(SCREE__ERR(errno), msg, msg_len, "cannot bind %s: %s", path,
                       strerror(errno));
      goto err_close;
    }
    rc = probe_socket(&addr, path, msg, msg_len);
    if (rc != SCREE_ECONNREFUSED)
      goto err_close;
    scree__log(SCREE__LOG_INFO, "stale_socket_replaced", "socket=%s", scree__q(path));
    if (unlink(path) != 0 && errno != ENOENT) {
      rc = scree__errf(SCREE__ERR(errno), msg, msg_len, "cannot remove stale %s: %s", path,
                       strerror(errno));
      goto err_close;
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
      rc = scree__errf(SCREE__ERR(errno), msg, msg_len, "cannot bind %s: %s", path,
                       strerror(errno));
      goto err_close;
    }
  }
  /* Remember which file is ours, so that shutdown never unlinks a socket
   * that another screed has put in its place since. */
  struct stat st;
  if (stat(path, &st) != 0) {
    rc = scree__errf(SCREE__ERR(errno), msg, msg_len, "cannot stat %s: %s", path,
                     strerror(errno));
    goto err_unlink;
  }
  srv->dev = st.st_dev;
  srv->ino = st.st_ino;
  if (listen(fd, SOMAXCONN) != 0) {
    rc = scree__errf(SCREE__ERR(errno), msg, msg_len, "cannot listen on %s: %s", path,
                     strerror(errno));
    goto err_unlink;
  }
  srv->lfd = fd;
  return 0;

err_unlink:
  unlink(path);
err_close:
  close(fd);
  return rc;
}

static void unlink_if_ours(scree__server *srv) {
  struct stat st;
  if (lstat(srv->path, &st) == 0 && st.st_dev == srv->dev && st.st_ino == srv->ino)
    unlink(srv->path);
}

/* ---- connections ------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h) {
  scree__conn *c = h->data;
  close(c->fd);
  while (c->qhead != NULL) {
    outpkt *p = c->qhead;
    c->qhead = p->next;
    if (p->fd >= 0)
      close(p->fd);
    free(p->buf);
    free(p);
  }
  free(c);
}

/* Starts closing c. The store forgets the session at once (its leases are
 * released now); the memory of c itself goes in on_conn_closed, after libuv
 * is done with the handle, since this may run inside c's own callback. */
static void conn_close(scree__conn *c, const char *reason, int err) {
  if (c->closing)
    return;
  c->closing = 1;
  scree__server *srv = c->srv;
  if (err != 0)
    scree__log(SCREE__LOG_INFO, "conn_close",
               "conn=%" PRIu64 " uid=%" PRIu32 " pid=%" PRId32 " reason=%s error=%s", c->id,
               c->uid, c->pid, reason, scree__q(strerror(err)));
  else
    scree__log(SCREE__LOG_INFO, "conn_close",
               "conn=%" PRIu64 " uid=%" PRIu32 " pid=%" PRId32 " reason=%s", c->id, c->uid,
               c->pid, reason);
  scree__session_close(srv->store, c->sess);
  c->sess = NULL;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  uv_close((uv_handle_t *)&c->poll, on_conn_closed);
}

/* Sends one packet without blocking. Returns 0, SCREE_EAGAIN when the socket
 * buffer is full, or another negative code. */
static int send_packet(int fd, const uint8_t *buf, size_t len, int pass_fd) {
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (pass_fd >= 0) {
    memset(&ctl, 0, sizeof(ctl));
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof(ctl.buf);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
  }
  for (;;) {
    ssize_t n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
      return 0;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return SCREE_EAGAIN;
    return SCREE__ERR(errno);
  }
}

static void on_conn_io(uv_poll_t *h, int status, int events);

static void conn_update_events(scree__conn *c) {
  int want = c->qhead != NULL ? UV_WRITABLE : UV_READABLE;
  if (want == c->events)
    return;
  c->events = want;
  uv_poll_start(&c->poll, want, on_conn_io);
}

/* Sends buf (taking ownership of it and of pass_fd), or queues it behind
 * responses still waiting. */
static void conn_send(scree__conn *c, uint8_t *buf, size_t len, int pass_fd) {
  if (c->qhead == NULL) {
    int rc = send_packet(c->fd, buf, len, pass_fd);
    if (rc != SCREE_EAGAIN) {
      free(buf);
      if (pass_fd >= 0)
        close(pass_fd);
      if (rc != 0)
        conn_close(c, "send", -rc);
      return;
    }
  }
  outpkt *p = malloc(sizeof(*p));
  if (p == NULL) {
    free(buf);
    if (pass_fd >= 0)
      close(pass_fd);
    conn_close(c, "out_of_memory", ENOMEM);
    return;
  }
  p->next = NULL;
  p->buf = buf;
  p->len = len;
  p->fd = pass_fd;
  if (c->qtail)
    c->qtail->next = p;
  else
    c->qhead = p;
  c->qtail = p;
}

static void conn_flush(scree__conn *c) {
  while (c->qhead != NULL) {
    outpkt *p = c->qhead;
    int rc = send_packet(c->fd, p->buf, p->len, p->fd);
    if (rc == SCREE_EAGAIN)
      return;
    c->qhead = p->next;
    if (c->qhead == NULL)
      c->qtail = NULL;
    if (p->fd >= 0)
      close(p->fd);
    free(p->buf);
    free(p);
    if (rc != 0) {
      conn_close(c, "send", -rc);
      return;
    }
  }
}

static void conn_respond(scree__conn *c, scree__reply *r) {
  size_t len = scree__v1__response__get_packed_size(&r->resp);
  uint8_t *buf = malloc(len ? len : 1);
  if (buf == NULL) {
    conn_close(c, "out_of_memory", ENOMEM);
    return;
  }
  scree__v1__response__pack(&r->resp, buf);
  int fd = r->fd;
  r->fd = -1;
  conn_send(c, buf, len, fd);
}

/* Closes every fd that arrived with a packet: the protocol has no request
 * that carries one, and keeping them would leak. */
static void close_passed_fds(struct msghdr *mh) {
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
      continue;
    size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      close(fd);
    }
  }
}

/* An empty read means the peer is gone, or it sent an empty packet; the two
 * differ in whether the peer has shut the socket down. */
static int peer_gone(int fd) {
  struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
  return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* Reads and answers one packet. Returns 1 when another may follow, 0 when
 * the socket is drained or the connection is closing. */
static int conn_read_one(scree__conn *c) {
  scree__server *srv = c->srv;
  ssize_t n = recv(c->fd, NULL, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return 0;
    conn_close(c, "recv", errno);
    return 0;
  }
  if (n == 0 && peer_gone(c->fd)) {
    conn_close(c, "eof", 0);
    return 0;
  }
  size_t len = (size_t)n;
  int oversize = (uint64_t)len > srv->max_packet;
  uint8_t small[1];
  struct iovec iov;
  if (oversize) {
    /* A short read of a SOCK_SEQPACKET record discards the rest of it, so
     * an oversized request costs no allocation. */
    iov.iov_base = small;
    iov.iov_len = sizeof(small);
  } else {
    if (len > srv->rcap) {
      uint8_t *b = realloc(srv->rbuf, len);
      if (b == NULL) {
        conn_close(c, "out_of_memory", ENOMEM);
        return 0;
      }
      srv->rbuf = b;
      srv->rcap = len;
    }
    iov.iov_base = srv->rbuf ? (void *)srv->rbuf : (void *)small;
    iov.iov_len = len;
  }
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * PASSED_FDS_MAX)];
  } ctl;
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.buf;
  mh.msg_controllen = sizeof(ctl.buf);
  ssize_t got;
  do
    got = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (got < 0 && errno == EINTR);
  if (got < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    conn_close(c, "recv", errno);
    return 0;
  }
  close_passed_fds(&mh);

  scree__reply *r = &srv->reply;
  if (oversize)
    scree__store_reply_error(srv->store, c->sess, r, 0, SCREE_EMSGSIZE,
                             "request of %zu bytes exceeds the limit of %" PRIu64 " bytes",
                             len, srv->max_packet);
  else
    scree__store_handle_packet(srv->store, c->sess, iov.iov_base, (size_t)got, r);
  conn_respond(c, r);
  scree__reply_clear(r);
  return !c->closing;
}

static void on_conn_io(uv_poll_t *h, int status, int events) {
  scree__conn *c = h->data;
  if (status < 0) {
    conn_close(c, "poll", -status);
    return;
  }
  if (events & UV_WRITABLE)
    conn_flush(c);
  if (!c->closing && (events & UV_READABLE)) {
    for (int i = 0; i < PACKETS_PER_WAKEUP && c->qhead == NULL; i++)
      if (!conn_read_one(c))
        break;
  }
  if (!c->closing)
    conn_update_events(c);
}

static void conn_open(scree__server *srv, int fd) {
  struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
  socklen_t clen = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0)
    scree__log(SCREE__LOG_WARN, "peercred_failed", "error=%s", scree__q(strerror(errno)));
  scree__conn *c = calloc(1, sizeof(*c));
  if (c == NULL)
    goto err_fd;
  c->sess = scree__session_open(srv->store, (uint32_t)cred.uid, (int32_t)cred.pid);
  if (c->sess == NULL)
    goto err_conn;
  if (uv_poll_init(srv->loop, &c->poll, fd) != 0)
    goto err_session;
  c->fd = fd;
  c->srv = srv;
  c->id = scree__session_id(c->sess);
  c->uid = (uint32_t)cred.uid;
  c->pid = (int32_t)cred.pid;
  c->poll.data = c;
  c->events = UV_READABLE;
  uv_poll_start(&c->poll, UV_READABLE, on_conn_io);
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  scree__log(SCREE__LOG_INFO, "conn_open", "conn=%" PRIu64 " uid=%" PRIu32 " pid=%" PRId32,
             c->id, c->uid, c->pid);
  return;

err_session:
  scree__session_close(srv->store, c->sess);
err_conn:
  free(c);
err_fd:
  scree__log(SCREE__LOG_ERROR, "conn_refused", "pid=%d reason=out_of_memory", (int)cred.pid);
  close(fd);
}

/* ---- listening --------------------------------------------------------- */

static void on_listen(uv_poll_t *h, int status, int events);

static void on_pause_over(uv_timer_t *t) {
  scree__server *srv = t->data;
  if (!srv->shutting_down)
    uv_poll_start(&srv->lpoll, UV_READABLE, on_listen);
}

static void on_listen(uv_poll_t *h, int status, int events) {
  scree__server *srv = h->data;
  if (status < 0) {
    scree__log(SCREE__LOG_ERROR, "listen_error", "error=%s", scree__q(uv_strerror(status)));
    return;
  }
  for (int i = 0; i < 64 && !srv->shutting_down; i++) {
    int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      conn_open(srv, fd);
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      /* The pending connection stays in the backlog and would wake the loop
       * at once again: stop listening for a moment instead of spinning. */
      scree__log(SCREE__LOG_WARN, "accept_paused", "error=%s ms=%d",
                 scree__q(strerror(errno)), ACCEPT_PAUSE_MS);
      uv_poll_stop(&srv->lpoll);
      uv_timer_start(&srv->pause_timer, on_pause_over, ACCEPT_PAUSE_MS, 0);
      return;
    }
    scree__log(SCREE__LOG_ERROR, "accept_failed", "error=%s", scree__q(strerror(errno)));
    return;
  }
}

int scree__server_new(uv_loop_t *loop, scree__store *store, const char *path,
                      uint64_t max_packet, scree__server **out, char *msg, size_t msg_len) {
  scree__server *srv = calloc(1, sizeof(*srv));
  if (srv == NULL)
    return scree__errf(SCREE_ENOMEM, msg, msg_len, "out of memory");
  int rc;
  srv->path = strdup(path);
  if (srv->path == NULL) {
    rc = scree__errf(SCREE_ENOMEM, msg, msg_len, "out of memory");
    goto err_free;
  }
  srv->loop = loop;
  srv->store = store;
  srv->max_packet = max_packet;
  srv->lfd = -1;
  scree__reply_init(&srv->reply);
  rc = listen_on(srv, path, msg, msg_len);
  if (rc != 0)
    goto err_path;
  int uvrc = uv_poll_init(loop, &srv->lpoll, srv->lfd);
  if (uvrc != 0) {
    rc = scree__errf(SCREE_EIO, msg, msg_len, "uv_poll_init: %s", uv_strerror(uvrc));
    goto err_socket;
  }
  srv->lpoll.data = srv;
  uv_timer_init(loop, &srv->pause_timer);
  srv->pause_timer.data = srv;
  uv_poll_start(&srv->lpoll, UV_READABLE, on_listen);
  *out = srv;
  return 0;

err_socket:
  unlink_if_ours(srv);
  close(srv->lfd);
err_path:
  free(srv->path);
err_free:
  free(srv);
  return rc;
}

static void on_listener_closed(uv_handle_t *h) {
  scree__server *srv = h->data;
  close(srv->lfd);
  srv->lfd = -1;
}

void scree__server_shutdown(scree__server *srv) {
  if (srv->shutting_down)
    return;
  srv->shutting_down = 1;
  /* The name goes first, so that no new client finds a socket that will
   * not answer. */
  unlink_if_ours(srv);
  uv_close((uv_handle_t *)&srv->lpoll, on_listener_closed);
  uv_close((uv_handle_t *)&srv->pause_timer, NULL);
  while (srv->conns != NULL)
    conn_close(srv->conns, "shutdown", 0);
}

void scree__server_free(scree__server *srv) {
  if (srv == NULL)
    return;
  scree__reply_clear(&srv->reply);
  free(srv->rbuf);
  free(srv->path);
  free(srv);
}
