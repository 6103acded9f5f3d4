#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handler.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "scree/error.h"
#include "sockpath.h"

/* Packets handled per wakeup of one connection, so that one busy client
 * cannot starve the others (epoll is level-triggered: the rest waits for the
 * next turn). */
#define PACKETS_PER_WAKEUP 32
/* Watch events sent per wakeup of one connection, for the same reason. */
#define EVENTS_PER_WAKEUP 64
/* How long accepting pauses when the process is out of fds: the first
 * pause, doubled on each failure in a row up to the last. */
#define ACCEPT_PAUSE_MS 100
#define ACCEPT_PAUSE_MAX_MS 2000
/* Refused connections (over --max-connections, or from a peer the allow
 * lists refuse) that wait for their first request, to be answered with
 * why; past this many the oldest is closed unanswered, so that refused
 * peers can neither hold more than this many fds nor keep newer refusals
 * from being answered. */
#define REFUSALS_MAX SCREE__SERVER_REFUSALS_MAX

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
  /* A deferred reply is pending (the handler's out.deferred): nothing
   * more is read until it is sent, so that replies keep the order of
   * requests. The one exception is a waiting Get (cancellable): its
   * connection's next packet is peeked at, read if it is a Cancel, else
   * left in the socket (blocked) until the Get is answered. */
  int waiting;
  int cancellable;
  int blocked;
  uint64_t deferred_ns; /* time spent handling the deferred request */
} scree__conn;

struct scree__server {
  uv_loop_t *loop;
  scree__handler *handler;
  int lfd;
  scree__sockpath sock; /* the socket file, when the server bound it */
  uv_poll_t lpoll;
  uv_timer_t pause_timer;
  uv_timer_t wait_timer; /* the earliest deadline of a waiting Get */
  char *path;
  uint64_t max_packet;
  uint8_t *rbuf;
  size_t rcap;
  scree__conn *conns;
  int shutting_down;
  const scree__authz *authz; /* NULL: every peer is allowed */
  /* Operations (limits, metrics, socket activation); see the end of the
   * file. */
  scree__metrics *metrics;
  uint32_t max_conns; /* 0: no limit */
  uint32_t nconns;
  int at_limit;
  unsigned pause_ms;
  int adopted;         /* the listener came from systemd: never unlink it */
  int listener_closed;
  struct refusal *refusals; /* newest first */
  struct refusal *refusals_tail;
  uint32_t nrefusals;
  /* An fd kept open on /dev/null, given up for a moment to accept (and
   * answer) a connection when the process is out of fds; -1 while none. */
  int spare_fd;
};

enum refusal_kind { REFUSE_LIMIT, REFUSE_NOT_ALLOWED };
static void refuse_conn(scree__server *srv, int fd, enum refusal_kind kind, uint32_t uid);
static void refusals_close_all(scree__server *srv);

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

/* Starts closing c. The handler closes the session at once (what it holds
 * is released now); the memory of c itself goes in on_conn_closed, after libuv
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
  scree__handler_close(srv->handler, c->sess);
  c->sess = NULL;
  srv->nconns--;
  SCREE__LIST_REMOVE(srv->conns, c);
  c->prev = c->next = NULL;
  uv_close((uv_handle_t *)&c->poll, on_conn_closed);
}

/* Sends one packet without blocking. Returns 0, SCREE_EAGAIN when the socket
 * buffer is full, or another negative code. */
static int send_packet(int fd, const uint8_t *buf, size_t len, int pass_fd) {
  ssize_t n = scree__send_fd(fd, buf, len, pass_fd, MSG_DONTWAIT);
  if (n >= 0)
    return 0;
  if (n == -EAGAIN || n == -EWOULDBLOCK)
    return SCREE_EAGAIN;
  return SCREE__ERR((int)-n);
}

static void on_conn_io(uv_poll_t *h, int status, int events);

static void conn_update_events(scree__conn *c) {
  /* While a reply is pending only a hang-up is watched for, so that a
   * client that goes away mid-job is closed (and its leases released) at
   * once rather than when the job ends; a waiting Get also watches for a
   * Cancel. A watch with events to send waits for room in the socket. */
  int want;
  if (c->qhead != NULL)
    want = UV_WRITABLE;
  else if (c->waiting)
    want = c->cancellable && !c->blocked ? UV_READABLE : UV_DISCONNECT;
  else if (scree__handler_watch_pending(c->srv->handler, c->sess))
    want = UV_READABLE | UV_WRITABLE;
  else
    want = UV_READABLE;
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
  SCREE__LIST_APPEND(c->qhead, c->qtail, p);
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

/* Sends an encoded response (taking what it holds). */
static void conn_respond(scree__conn *c, scree__out *out) {
  conn_send(c, out->buf, out->len, out->fd);
  out->buf = NULL;
  out->fd = -1;
}

/* Reads one packet into the server's buffer, which holds the largest
 * request allowed: MSG_TRUNC makes the kernel report a longer record's real
 * length (the rest of that record is discarded), so no MSG_PEEK is needed.
 * Every fd that came with it is closed: the protocol has no request that
 * carries one, and keeping them would leak. *with_fds tells an empty packet
 * that carried fds from the end of the stream. Returns the length, or
 * -errno (-ENOMEM when the buffer cannot be made). */
static ssize_t read_packet(scree__server *srv, int fd, int *with_fds, int peek) {
  if (srv->rbuf == NULL) {
    srv->rbuf = malloc(srv->max_packet ? srv->max_packet : 1);
    if (srv->rbuf == NULL)
      return -ENOMEM;
    srv->rcap = srv->max_packet;
  }
  unsigned closed = 0;
  int nfds = 0, ctrunc = 0;
  ssize_t got = scree__recv_fds(fd, srv->rbuf, srv->rcap,
                                MSG_DONTWAIT | MSG_TRUNC | (peek ? MSG_PEEK : 0), NULL, 0, &nfds,
                                &closed, &ctrunc);
  *with_fds = closed > 0 || ctrunc;
  return got;
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
  int with_fds;
  ssize_t got = read_packet(srv, c->fd, &with_fds, 0);
  if (got == -ENOMEM) {
    conn_close(c, "out_of_memory", ENOMEM);
    return 0;
  }
  if (got < 0) {
    if (got == -EAGAIN || got == -EWOULDBLOCK)
      return 0;
    conn_close(c, "recv", (int)-got);
    return 0;
  }
  if (got == 0 && !with_fds && peer_gone(c->fd)) {
    conn_close(c, "eof", 0);
    return 0;
  }
  size_t len = (size_t)got;
  int oversize = (uint64_t)len > srv->max_packet;

  uint64_t t0 = srv->metrics != NULL ? scree__now_ns() : 0;
  scree__out out;
  int rc;
  if (oversize)
    rc = scree__handler_refuse(srv->handler, c->sess, NULL, 0, SCREE_EMSGSIZE, &out,
                               "request of %zu bytes exceeds the limit of %" PRIu64 " bytes",
                               len, srv->max_packet);
  else
    rc = scree__handler_serve(srv->handler, c->sess, srv->rbuf, len, &out);
  if (rc != 0) {
    conn_close(c, "out_of_memory", ENOMEM);
    return 0;
  }
  if (out.deferred) {
    c->waiting = 1;
    c->cancellable = out.cancellable;
    c->blocked = 0;
    c->deferred_ns = t0 != 0 ? scree__now_ns() - t0 : 0;
    return 0;
  }
  if (srv->metrics != NULL)
    scree__metrics_request(srv->metrics, out.op, out.status, scree__now_ns() - t0);
  conn_respond(c, &out);
  return !c->closing;
}

/* While a Get waits: the next packet is read only if it is a Cancel
 * (peeked at first, so that anything else stays in the socket, in order,
 * until the Get is answered). */
static void conn_read_waiting(scree__conn *c) {
  if (!c->cancellable || c->blocked)
    return;
  scree__server *srv = c->srv;
  int with_fds;
  ssize_t got = read_packet(srv, c->fd, &with_fds, 1);
  if (got == -EAGAIN || got == -EWOULDBLOCK)
    return;
  if (got == -ENOMEM) {
    conn_close(c, "out_of_memory", ENOMEM);
    return;
  }
  if (got < 0) {
    conn_close(c, "recv", (int)-got);
    return;
  }
  if (got == 0 && !with_fds && peer_gone(c->fd)) {
    conn_close(c, "eof", 0);
    return;
  }
  if ((uint64_t)got <= srv->max_packet && scree__handler_is_cancel(srv->rbuf, (size_t)got))
    conn_read_one(c);
  else
    c->blocked = 1;
}

/* Sends the events of a watch while the socket takes them: one that would
 * block waits in the connection's queue, and the next ones stay in the
 * store's bounded queue until the socket has room again. */
static void conn_pump(scree__conn *c) {
  scree__server *srv = c->srv;
  for (int i = 0; i < EVENTS_PER_WAKEUP && !c->closing && c->qhead == NULL; i++) {
    scree__out out;
    int rc = scree__handler_next_event(srv->handler, c->sess, &out);
    if (rc == 0)
      return;
    if (rc < 0) {
      conn_close(c, "out_of_memory", ENOMEM);
      return;
    }
    conn_respond(c, &out);
  }
}

static void on_conn_io(uv_poll_t *h, int status, int events) {
  scree__conn *c = h->data;
  if (status < 0) {
    conn_close(c, "poll", -status);
    return;
  }
  if (events & UV_WRITABLE)
    conn_flush(c);
  if (!c->closing && c->waiting && (events & UV_DISCONNECT) && peer_gone(c->fd)) {
    conn_close(c, "eof", 0);
    return;
  }
  if (!c->closing && (events & UV_READABLE)) {
    if (c->waiting) {
      conn_read_waiting(c);
    } else {
      for (int i = 0; i < PACKETS_PER_WAKEUP && c->qhead == NULL && !c->waiting; i++)
        if (!conn_read_one(c))
          break;
    }
  }
  if (!c->closing && !c->waiting && c->qhead == NULL)
    conn_pump(c);
  if (!c->closing)
    conn_update_events(c);
}

/* Serves an accepted peer that passed the access check: a session, the
 * connection count, the poll. */
static void conn_open(scree__server *srv, int fd, const struct ucred *cred_in) {
  struct ucred cred = *cred_in;
  scree__conn *c = calloc(1, sizeof(*c));
  if (c == NULL)
    goto err_fd;
  c->sess = scree__handler_open(srv->handler, (uint32_t)cred.uid, (int32_t)cred.pid);
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
  scree__session_set_data(c->sess, c);
  c->events = UV_READABLE;
  uv_poll_start(&c->poll, UV_READABLE, on_conn_io);
  SCREE__LIST_PUSH(srv->conns, c);
  srv->nconns++;
  if (srv->metrics != NULL)
    srv->metrics->conns_accepted++;
  scree__log(SCREE__LOG_INFO, "conn_open", "conn=%" PRIu64 " uid=%" PRIu32 " pid=%" PRId32,
             c->id, c->uid, c->pid);
  return;

err_session:
  scree__handler_close(srv->handler, c->sess);
err_conn:
  free(c);
err_fd:
  scree__log(SCREE__LOG_ERROR, "conn_refused", "pid=%d reason=out_of_memory", (int)cred.pid);
  close(fd);
}

/* ---- listening --------------------------------------------------------- */

static void on_listen(uv_poll_t *h, int status, int events);

/* The access check at accept, where SO_PEERCRED is known: a peer the allow
 * lists refuse never gets a session and never counts toward
 * --max-connections, so idle refused sockets cannot lock allowed users out
 * (they wait, a bounded number of them, to be answered EACCES). */
static void accept_peer(scree__server *srv, int fd) {
  struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
  socklen_t clen = sizeof(cred);
  int have_cred = 1;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
    have_cred = 0;
    scree__log(SCREE__LOG_WARN, "peercred_failed", "error=%s", scree__q(strerror(errno)));
  }
  char why[64];
  if (srv->authz != NULL &&
      scree__authz_check_peer(srv->authz, fd, have_cred, (uint32_t)cred.uid,
                              (uint32_t)cred.gid, why, sizeof(why)) != 0) {
    scree__log(SCREE__LOG_WARN, "refused",
               "uid=%" PRIu32 " gid=%" PRIu32 " pid=%d reason=%s", (uint32_t)cred.uid,
               (uint32_t)cred.gid, (int)cred.pid, why);
    refuse_conn(srv, fd, REFUSE_NOT_ALLOWED, (uint32_t)cred.uid);
    return;
  }
  if (srv->max_conns != 0 && srv->nconns >= srv->max_conns) {
    refuse_conn(srv, fd, REFUSE_LIMIT, (uint32_t)cred.uid);
    return;
  }
  conn_open(srv, fd, &cred);
}

/* Out of fds with connections waiting: the spare fd is given up to accept
 * one, whose request (a client sends Hello right after connect, so it is
 * normally there already) is answered EAGAIN at once, and the spare is
 * taken back. Without this the client would wait in the backlog with no
 * answer for as long as the fds stay short. */
static void refuse_with_spare(scree__server *srv) {
  close(srv->spare_fd);
  srv->spare_fd = -1;
  int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    if (srv->metrics != NULL)
      srv->metrics->conns_refused++;
    scree__log(SCREE__LOG_WARN, "conn_refused", "reason=out_of_fds connections=%" PRIu32,
               srv->nconns);
    int with_fds;
    ssize_t got = read_packet(srv, fd, &with_fds, 0);
    scree__out out;
    int over = got > 0 && (uint64_t)got > srv->max_packet;
    if (scree__handler_refuse_bare(got > 0 && !over ? srv->rbuf : NULL,
                                   got > 0 && !over ? (size_t)got : 0, SCREE_EAGAIN,
                                   "screed is out of file descriptors; try again later",
                                   &out) == 0) {
      (void)send_packet(fd, out.buf, out.len, -1);
      scree__out_clear(&out);
    }
    close(fd);
  }
  srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

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
      srv->pause_ms = 0;
      accept_peer(srv, fd);
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    if ((errno == EMFILE || errno == ENFILE) && srv->spare_fd >= 0) {
      if (srv->metrics != NULL)
        srv->metrics->accept_failures++;
      refuse_with_spare(srv);
      continue;
    }
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      /* The pending connection stays in the backlog and would wake the loop
       * at once again: stop listening for a moment instead of spinning. */
      srv->pause_ms = srv->pause_ms == 0 ? ACCEPT_PAUSE_MS : srv->pause_ms * 2;
      if (srv->pause_ms > ACCEPT_PAUSE_MAX_MS)
        srv->pause_ms = ACCEPT_PAUSE_MAX_MS;
      if (srv->metrics != NULL) {
        srv->metrics->accept_failures++;
        srv->metrics->accept_pauses++;
      }
      scree__log(SCREE__LOG_WARN, "accept_paused", "error=%s ms=%u connections=%" PRIu32,
                 scree__q(strerror(errno)), srv->pause_ms, srv->nconns);
      uv_poll_stop(&srv->lpoll);
      uv_timer_start(&srv->pause_timer, on_pause_over, srv->pause_ms, 0);
      return;
    }
    scree__log(SCREE__LOG_ERROR, "accept_failed", "error=%s", scree__q(strerror(errno)));
    return;
  }
}

/* A deferred reply: sent like any other, then reading resumes. A Get that
 * waited is counted now, with its final status and the time its handling
 * took (not the wait); attention is counted by the executor. */
static void on_deferred_reply(void *arg, scree__session *sess, scree__out *out) {
  scree__server *srv = arg;
  scree__conn *c = scree__session_data(sess);
  if (c == NULL || c->closing) {
    scree__out_clear(out);
    return;
  }
  if (srv->metrics != NULL && out->op == SCREE__REQ_GET)
    scree__metrics_request(srv->metrics, out->op, out->status, c->deferred_ns);
  c->waiting = 0;
  c->cancellable = 0;
  c->blocked = 0;
  conn_respond(c, out);
  if (!c->closing)
    conn_update_events(c);
}

/* A watch has events: the connection waits for room in its socket. This
 * may run inside another connection's callback (its seal), so it only
 * changes what is polled. */
static void on_watch_ready(void *arg, scree__session *sess) {
  (void)arg;
  scree__conn *c = scree__session_data(sess);
  if (c != NULL && !c->closing)
    conn_update_events(c);
}

static void on_wait_timer(uv_timer_t *t) {
  scree__server *srv = t->data;
  scree__handler_expire(srv->handler, scree__now_ns());
}

/* One timer for every waiting Get: the handler asks for the earliest
 * deadline (uv timers count milliseconds: rounded up, so that it never
 * fires early). */
static void on_arm_timer(void *arg, uint64_t deadline_ns) {
  scree__server *srv = arg;
  if (srv->shutting_down)
    return;
  if (deadline_ns == 0) {
    uv_timer_stop(&srv->wait_timer);
    return;
  }
  uint64_t now = scree__now_ns();
  uint64_t ms = deadline_ns > now ? (deadline_ns - now + 999999u) / 1000000u : 0;
  uv_timer_start(&srv->wait_timer, on_wait_timer, ms, 0);
}

/* Watches the listening socket srv->lfd: the part of starting a server
 * shared by a socket of our own and one from systemd. */
static int server_start(scree__server *srv, char *msg, size_t msg_len) {
  int uvrc = uv_poll_init(srv->loop, &srv->lpoll, srv->lfd);
  if (uvrc != 0)
    return scree__fail(SCREE_EIO, msg, msg_len, "uv_poll_init: %s", uv_strerror(uvrc));
  srv->lpoll.data = srv;
  uv_timer_init(srv->loop, &srv->pause_timer);
  srv->pause_timer.data = srv;
  uv_poll_start(&srv->lpoll, UV_READABLE, on_listen);
  uv_timer_init(srv->loop, &srv->wait_timer);
  srv->wait_timer.data = srv;
  scree__handler_set_deliver(srv->handler, on_deferred_reply, srv);
  scree__handler_waits w = {.watch_ready = on_watch_ready, .arm_timer = on_arm_timer, .arg = srv};
  scree__handler_set_waits(srv->handler, &w);
  return 0;
}

/* A server not yet listening. */
static scree__server *server_alloc(const scree__server_config *cfg) {
  scree__server *srv = malloc(sizeof(*srv));
  char *path = strdup(cfg->path);
  if (srv == NULL || path == NULL) {
    free(srv);
    free(path);
    return NULL;
  }
  *srv = (scree__server){
      .loop = cfg->loop,
      .handler = cfg->handler,
      .lfd = -1,
      .path = path,
      .max_packet = cfg->max_packet,
      .authz = cfg->authz,
      .metrics = cfg->metrics,
      .max_conns = cfg->max_connections,
      .spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC),
  };
  scree__sockpath_init(&srv->sock);
  return srv;
}

static void server_free_unstarted(scree__server *srv) {
  if (srv->spare_fd >= 0)
    close(srv->spare_fd);
  free(srv->path);
  free(srv);
}

int scree__server_new(const scree__server_config *cfg, scree__server **out, char *msg,
                      size_t msg_len) {
  scree__server *srv = server_alloc(cfg);
  if (srv == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
  int rc;
  if (cfg->listen_fd > 0) {
    srv->lfd = cfg->listen_fd;
    srv->adopted = 1;
  } else {
    rc = scree__sockpath_listen(&srv->sock, srv->path, &srv->lfd, msg, msg_len);
    if (rc != 0)
      goto err_alloc;
  }
  rc = server_start(srv, msg, msg_len);
  if (rc != 0)
    goto err_socket;
  *out = srv;
  return 0;

err_socket:
  if (!srv->adopted) {
    scree__sockpath_unlink_if_ours(&srv->sock);
    close(srv->lfd);
    scree__sockpath_unlock(&srv->sock);
  }
err_alloc:
  server_free_unstarted(srv);
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
  scree__server_stop_listening(srv);
  refusals_close_all(srv);
  while (srv->conns != NULL)
    conn_close(srv->conns, "shutdown", 0);
  scree__handler_set_waits(srv->handler, NULL);
  uv_close((uv_handle_t *)&srv->wait_timer, NULL);
}

void scree__server_free(scree__server *srv) {
  if (srv == NULL)
    return;
  scree__sockpath_unlock(&srv->sock);
  if (srv->spare_fd >= 0)
    close(srv->spare_fd);
  free(srv->rbuf);
  free(srv->path);
  free(srv);
}

/* ---- operations: limits, metrics, socket activation, draining ----------- */

/* A refused connection: over --max-connections (answered SCREE_EAGAIN and
 * a message naming the limit), or from a peer the allow lists refuse
 * (SCREE_EACCES, "uid N is not allowed to use this screed"). It gets no
 * session and does not count as a connection: screed waits for its first
 * request (normally Hello), answers it, and closes it. Answering a request
 * rather than writing first means a client library reads the refusal as the
 * reply to its Hello, instead of finding the socket closed under its first
 * send. Only the request's id is read from the packet: nothing of a refused
 * peer's is decoded or handled. */
typedef struct refusal {
  uv_poll_t poll;
  int fd;
  enum refusal_kind kind;
  uint32_t uid;
  scree__server *srv;
  struct refusal *prev;
  struct refusal *next;
} refusal;

static void on_refusal_closed(uv_handle_t *h) {
  refusal *f = h->data;
  close(f->fd);
  free(f);
}

static void refusal_close(refusal *f) {
  scree__server *srv = f->srv;
  SCREE__LIST_REMOVE_TAIL(srv->refusals, srv->refusals_tail, f);
  srv->nrefusals--;
  uv_close((uv_handle_t *)&f->poll, on_refusal_closed);
}

static void refusals_close_all(scree__server *srv) {
  while (srv->refusals != NULL)
    refusal_close(srv->refusals);
}

static void on_refusal_io(uv_poll_t *h, int status, int events) {
  refusal *f = h->data;
  scree__server *srv = f->srv;
  (void)events;
  if (status < 0) {
    refusal_close(f);
    return;
  }
  /* The same single read as conn_read_one, into the same buffer. */
  int with_fds;
  ssize_t got = read_packet(srv, f->fd, &with_fds, 0);
  if (got == -EAGAIN || got == -EWOULDBLOCK)
    return;
  if (got < 0 || (got == 0 && !with_fds && peer_gone(f->fd))) {
    refusal_close(f);
    return;
  }
  /* Only the id is read: a refused connection costs no decoding. */
  char text[160];
  int code;
  if (f->kind == REFUSE_NOT_ALLOWED) {
    code = SCREE_EACCES;
    snprintf(text, sizeof(text), "uid %" PRIu32 " is not allowed to use this screed", f->uid);
  } else {
    code = SCREE_EAGAIN;
    snprintf(text, sizeof(text),
             "screed is at its connection limit (%" PRIu32 " connections); try again later",
             srv->max_conns);
  }
  scree__out out;
  int over = (uint64_t)got > srv->max_packet;
  if (scree__handler_refuse_bare(over ? NULL : srv->rbuf, over ? 0 : (size_t)got, code, text,
                                 &out) == 0) {
    /* Best effort: the socket is new and empty, so this does not block,
     * and a client that is gone has nothing to read anyway. */
    (void)send_packet(f->fd, out.buf, out.len, -1);
    scree__out_clear(&out);
  }
  refusal_close(f);
}

static void refuse_conn(scree__server *srv, int fd, enum refusal_kind kind, uint32_t uid) {
  if (kind == REFUSE_LIMIT) {
    if (srv->metrics != NULL)
      srv->metrics->conns_refused++;
    if (!srv->at_limit) {
      srv->at_limit = 1;
      scree__log(SCREE__LOG_WARN, "max_connections_reached",
                 "limit=%" PRIu32 " action=\"answer the first request EAGAIN, then close\"",
                 srv->max_conns);
    }
    scree__log(SCREE__LOG_INFO, "conn_refused",
               "uid=%" PRIu32 " reason=max_connections limit=%" PRIu32, uid, srv->max_conns);
  }
  /* The oldest waiting refusal makes room: pre-auth state stays bounded,
   * and a peer that opens sockets and never writes only pushes its own
   * older ones out. */
  if (srv->nrefusals >= REFUSALS_MAX && srv->refusals_tail != NULL)
    refusal_close(srv->refusals_tail);
  refusal *f = calloc(1, sizeof(*f));
  if (f == NULL || uv_poll_init(srv->loop, &f->poll, fd) != 0) {
    /* No memory: close unanswered. */
    free(f);
    close(fd);
    return;
  }
  f->fd = fd;
  f->kind = kind;
  f->uid = uid;
  f->srv = srv;
  f->poll.data = f;
  f->next = srv->refusals;
  if (srv->refusals)
    srv->refusals->prev = f;
  else
    srv->refusals_tail = f;
  srv->refusals = f;
  srv->nrefusals++;
  uv_poll_start(&f->poll, UV_READABLE | UV_DISCONNECT, on_refusal_io);
}

uint32_t scree__server_connections(const scree__server *srv) { return srv->nconns; }

int scree__server_activated(const scree__server *srv) { return srv->adopted; }

void scree__server_stop_listening(scree__server *srv) {
  if (srv->listener_closed)
    return;
  srv->listener_closed = 1;
  /* The name goes first, so that no new client finds a socket that will
   * not answer. A socket from systemd stays: systemd owns it, and clients
   * that connect meanwhile wait in its backlog for the next screed. */
  scree__sockpath_unlink_if_ours(&srv->sock);
  /* The path is no longer ours: a successor may start on it while this
   * screed drains. */
  scree__sockpath_unlock(&srv->sock);
  uv_close((uv_handle_t *)&srv->lpoll, on_listener_closed);
  uv_close((uv_handle_t *)&srv->pause_timer, NULL);
}
