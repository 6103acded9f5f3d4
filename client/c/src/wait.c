/* libscreeclient: waiting for a batch to be sealed, and watches.
 *
 * A waiting Get is one request whose reply the daemon defers until a seal,
 * the deadline or a Cancel (proto: Get.wait_ms, Cancel). This side only
 * ever waits in poll(), never in a blocking read, so that a signal can
 * interrupt it: the handle's interrupt callback then decides whether to go
 * on or to abandon the wait, which sends Cancel and takes both answers so
 * that the connection (and its leases) stays usable.
 *
 * A watch is a connection of its own, made from the client's socket path:
 * after Watch it only carries events, and the client's own connection goes
 * on serving requests. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_impl.h"

/* Waits until fd is readable (or hung up: the read says which), up to
 * timeout_ms (-1: no limit). A signal that interrupts poll() goes to the
 * interrupt callback: non-zero abandons the wait. Returns 0,
 * SCREE_ETIMEDOUT, SCREE_EINTR or SCREE_EIO (with a message). */
static int await_fd(int fd, int64_t timeout_ms, scree_interrupt_fn fn, void *arg, char *msg,
                    size_t msg_len) {
  uint64_t deadline = timeout_ms >= 0 ? scree__now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
  for (;;) {
    int t = -1;
    if (timeout_ms >= 0) {
      uint64_t now = scree__now_ns();
      uint64_t left = deadline > now ? (deadline - now + 999999u) / 1000000u : 0;
      t = left > INT_MAX ? INT_MAX : (int)left;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, t);
    if (n > 0)
      return 0;
    if (n == 0) {
      if (timeout_ms >= 0 && scree__now_ns() >= deadline)
        return scree__fail(SCREE_ETIMEDOUT, msg, msg_len, "no event within %" PRId64 " ms",
                           timeout_ms);
      continue;
    }
    if (errno != EINTR)
      return scree__fail(SCREE_EIO, msg, msg_len, "poll: %s", strerror(errno));
    if (fn != NULL && fn(arg) != 0)
      return SCREE_EINTR;
  }
}

static int check_wait_args(scree_client *c, const char *name, int64_t timeout_ms) {
  if (name == NULL || name[0] == '\0')
    return scree__client_fail(c, SCREE_EINVAL, "batch name is %s",
                              name == NULL ? "NULL" : "empty");
  if (timeout_ms < -1)
    return scree__client_fail(c, SCREE_EINVAL,
                              "timeout_ms is %" PRId64 "; -1 waits without limit, 0 not at all",
                              timeout_ms);
  return scree__client_busy(c);
}

static int send_get(scree_client *c, const char *name, int64_t timeout_ms, uint64_t *id) {
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  g.name = scree__bytes(name);
  g.wait_present_case = SCREE__V1__GET__WAIT_PRESENT_WAIT_MS;
  g.wait_ms = timeout_ms;
  return scree__call_send(c, SCREE__V1__REQUEST__BODY_GET, &g, id);
}

/* Abandons the Get get_id: Cancel, then the Get's answer, then the
 * Cancel's. A batch that came anyway is imported (so that the arena cache
 * matches what the daemon thinks this connection holds) and released.
 * Returns 0 or the error that left the connection unusable. */
static int abandon(scree_client *c, uint64_t get_id) {
  Scree__V1__Cancel cancel = SCREE__V1__CANCEL__INIT;
  uint64_t cancel_id;
  int rc = scree__call_send(c, SCREE__V1__REQUEST__BODY_CANCEL, &cancel, &cancel_id);
  if (rc != 0)
    return rc;
  Scree__V1__Response *resp = NULL;
  uint64_t lease_id = 0;
  if (scree__call_recv(c, SCREE__V1__REQUEST__BODY_GET, get_id, &resp) == 0) {
    scree__mapping *ar;
    lease_id = resp->get->lease_id;
    (void)scree__arena_resolve(c, resp->get->location, 0, &ar);
    scree__v1__response__free_unpacked(resp, NULL);
  }
  if (c->dead)
    return SCREE_EDISCONNECTED;
  rc = scree__call_recv(c, SCREE__V1__REQUEST__BODY_CANCEL, cancel_id, NULL);
  if (rc == 0 && lease_id != 0)
    rc = scree__release_locked(c, lease_id);
  return rc;
}

/* The reply to the Get get_id, turned into a view and a lease. */
static int finish_get(scree_client *c, uint64_t get_id, scree_array *out, scree_lease *l,
                      scree_lease **lease) {
  Scree__V1__Response *resp = NULL;
  int rc = scree__call_recv(c, SCREE__V1__REQUEST__BODY_GET, get_id, &resp);
  if (rc != 0) {
    free(l);
    return rc;
  }
  rc = scree__get_finish(c, resp, out, l, lease);
  scree__v1__response__free_unpacked(resp, NULL);
  return rc;
}

int scree_client_set_interrupt(scree_client *c, scree_interrupt_fn fn, void *arg) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  c->intr = fn;
  c->intr_arg = arg;
  pthread_mutex_unlock(&c->mu);
  return 0;
}

int scree_client_fd(const scree_client *c) { return c == NULL ? -1 : c->fd; }

int scree_client_get_wait(scree_client *c, const char *name, int64_t timeout_ms,
                          scree_array *out, scree_lease **lease) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  scree_lease *l = NULL;
  uint64_t id;
  if (lease != NULL)
    *lease = NULL;
  int rc = check_wait_args(c, name, timeout_ms);
  if (rc == 0 && out == NULL)
    rc = scree__client_fail(c, SCREE_EINVAL, "NULL array argument");
  if (rc == 0 && lease != NULL && (l = calloc(1, sizeof(*l))) == NULL)
    rc = scree__client_fail(c, SCREE_ENOMEM, "out of memory for a lease");
  if (rc == 0)
    rc = send_get(c, name, timeout_ms, &id);
  if (rc != 0) {
    free(l);
    goto out;
  }
  /* The daemon keeps the time: this side waits for its answer, whatever
   * it is. */
  rc = await_fd(c->fd, -1, c->intr, c->intr_arg, c->err, sizeof(c->err));
  if (rc == SCREE_EINTR) {
    free(l);
    rc = abandon(c, id);
    if (rc == 0)
      rc = scree__client_fail(c, SCREE_EINTR, "the wait for batch '%s' was interrupted", name);
    goto out;
  }
  if (rc != 0) {
    /* The reply is still to come and would answer the next request. */
    free(l);
    rc = scree__client_kill(c, rc);
    goto out;
  }
  rc = finish_get(c, id, out, l, lease);
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_get_wait_start(scree_client *c, const char *name, int64_t timeout_ms) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  uint64_t id;
  int rc = check_wait_args(c, name, timeout_ms);
  if (rc == 0)
    rc = send_get(c, name, timeout_ms, &id);
  if (rc == 0) {
    c->wait_id = id;
    snprintf(c->wait_name, sizeof(c->wait_name), "%s", name);
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_get_wait_finish(scree_client *c, scree_array *out, scree_lease **lease) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  scree_lease *l = NULL;
  if (lease != NULL)
    *lease = NULL;
  int rc = 0;
  if (c->wait_id == 0)
    rc = scree__client_fail(c, SCREE_EINVAL, "no wait was started on this handle");
  else if (out == NULL)
    rc = scree__client_fail(c, SCREE_EINVAL, "NULL array argument");
  else if (lease != NULL && (l = calloc(1, sizeof(*l))) == NULL)
    rc = scree__client_fail(c, SCREE_ENOMEM, "out of memory for a lease");
  if (rc == 0)
    rc = await_fd(c->fd, -1, c->intr, c->intr_arg, c->err, sizeof(c->err));
  if (rc == SCREE_EINTR) {
    /* The wait stays started: finish again, or cancel it. */
    rc = scree__client_fail(c, SCREE_EINTR, "the wait for batch '%s' was interrupted",
                            c->wait_name);
  } else if (rc == SCREE_EIO) {
    c->wait_id = 0;
    rc = scree__client_kill(c, rc);
  } else if (rc == 0) {
    uint64_t id = c->wait_id;
    c->wait_id = 0;
    rc = finish_get(c, id, out, l, lease);
    l = NULL;
  }
  free(l);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_get_wait_cancel(scree_client *c) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc = 0;
  if (c->wait_id != 0) {
    uint64_t id = c->wait_id;
    c->wait_id = 0;
    rc = abandon(c, id);
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

/* ---- watches ---- */

struct scree_watch {
  scree_client *conn; /* the watch's own connection */
  char prefix[SCREE_CLIENT_NAME_MAX + 1];
  uint64_t id; /* the Watch in force: its events carry this request id */
  scree_interrupt_fn intr;
  void *intr_arg;
};

static const char scree__no_watch_msg[] = "no watch handle";

/* Sends Watch and reads until its reply, dropping the events of the watch
 * it replaces. */
static int watch_start(scree_watch *w, unsigned flags) {
  scree_client *c = w->conn;
  Scree__V1__Watch q = SCREE__V1__WATCH__INIT;
  q.prefix.data = (uint8_t *)w->prefix;
  q.prefix.len = strlen(w->prefix);
  q.no_replay = (flags & SCREE_WATCH_NO_REPLAY) != 0;
  uint64_t id;
  int rc = scree__call_send(c, SCREE__V1__REQUEST__BODY_WATCH, &q, &id);
  if (rc != 0)
    return rc;
  for (;;) {
    Scree__V1__Response *resp;
    rc = scree__recv_response(c, &resp);
    if (rc != 0)
      return rc;
    if (resp->id != id) {
      scree__v1__response__free_unpacked(resp, NULL);
      continue;
    }
    if (resp->status != 0) {
      rc = resp->status < 0 ? resp->status : SCREE_EPROTO;
      snprintf(c->err, sizeof(c->err), "%s",
               resp->message != NULL && resp->message[0] != '\0' ? resp->message
                                                                  : scree_strerror(rc));
    } else if (resp->body_case != SCREE__V1__RESPONSE__BODY_WATCH) {
      scree__client_fail(c, SCREE_EPROTO, "reply of kind %d to a Watch",
                         (int)resp->body_case);
      rc = scree__client_kill(c, SCREE_EPROTO);
    }
    scree__v1__response__free_unpacked(resp, NULL);
    if (rc == 0)
      w->id = id;
    return rc;
  }
}

int scree_client_watch(scree_client *c, const char *prefix, unsigned flags, scree_watch **out) {
  if (c == NULL || out == NULL)
    return SCREE_EINVAL;
  *out = NULL;
  if (prefix == NULL)
    prefix = "";
  pthread_mutex_lock(&c->mu);
  int rc = 0;
  scree_watch *w = NULL;
  if ((flags & ~SCREE_WATCH_NO_REPLAY) != 0) {
    rc = scree__client_fail(c, SCREE_EINVAL, "flags=0x%x has unknown bits 0x%x", flags,
                            flags & ~SCREE_WATCH_NO_REPLAY);
    goto out;
  }
  if (strlen(prefix) > SCREE_CLIENT_NAME_MAX) {
    rc = scree__client_fail(c, SCREE_ENAMETOOLONG,
                            "watch prefix is %zu bytes; names are at most %d", strlen(prefix),
                            SCREE_CLIENT_NAME_MAX);
    goto out;
  }
  if (c->dead || c->path[0] == '\0') {
    rc = scree__client_fail(c, SCREE_EDISCONNECTED, "%s", c->dead_reason);
    goto out;
  }
  w = calloc(1, sizeof(*w));
  if (w == NULL) {
    rc = scree__client_fail(c, SCREE_ENOMEM, "out of memory for a watch");
    goto out;
  }
  snprintf(w->prefix, sizeof(w->prefix), "%s", prefix);
  w->intr = c->intr;
  w->intr_arg = c->intr_arg;
  rc = scree_client_connect(c->path, &w->conn);
  if (rc == 0)
    rc = watch_start(w, flags);
  if (rc != 0) {
    snprintf(c->err, sizeof(c->err), "watch: %s", scree_client_last_error(w->conn));
    scree_client_close(w->conn);
    free(w);
    goto out;
  }
  *out = w;
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_watch_next(scree_watch *w, int64_t timeout_ms, scree_event *ev) {
  if (w == NULL || ev == NULL)
    return SCREE_EINVAL;
  scree_client *c = w->conn;
  if (ev->struct_size < sizeof(scree_event))
    return scree__client_fail(c, SCREE_EINVAL,
                              "scree_event.struct_size is %zu, less than the %zu bytes of its "
                              "first version: start from SCREE_EVENT_INIT",
                              ev->struct_size, sizeof(scree_event));
  if (timeout_ms < -1)
    return scree__client_fail(c, SCREE_EINVAL, "timeout_ms is %" PRId64 "; -1 or more",
                              timeout_ms);
  if (c->dead)
    return scree__client_fail(c, SCREE_EDISCONNECTED, "%s", c->dead_reason);
  uint64_t deadline = timeout_ms >= 0 ? scree__now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
  for (;;) {
    int64_t left = -1;
    if (timeout_ms >= 0) {
      uint64_t now = scree__now_ns();
      left = deadline > now ? (int64_t)((deadline - now) / 1000000u) : 0;
    }
    int rc = await_fd(c->fd, left, w->intr, w->intr_arg, c->err, sizeof(c->err));
    if (rc == SCREE_ETIMEDOUT)
      return scree__client_fail(c, rc, "no event within %" PRId64 " ms", timeout_ms);
    if (rc == SCREE_EINTR)
      return scree__client_fail(c, rc, "the wait for an event was interrupted");
    if (rc != 0)
      return scree__client_kill(c, rc);
    Scree__V1__Response *resp;
    rc = scree__recv_response(c, &resp);
    if (rc != 0)
      return rc;
    if (resp->id != w->id || resp->body_case != SCREE__V1__RESPONSE__BODY_EVENT ||
        resp->event == NULL) {
      /* An event of the watch a resync replaced. */
      scree__v1__response__free_unpacked(resp, NULL);
      continue;
    }
    scree_event e;
    memset(&e, 0, sizeof(e));
    e.struct_size = ev->struct_size;
    e.kind = (scree_event_kind)resp->event->kind;
    e.seq = resp->event->seq;
    size_t n = resp->event->name.len;
    if (n > SCREE_CLIENT_NAME_MAX)
      n = SCREE_CLIENT_NAME_MAX;
    if (n > 0)
      memcpy(e.name, resp->event->name.data, n);
    e.name_len = n;
    scree__v1__response__free_unpacked(resp, NULL);
    memcpy(ev, &e, ev->struct_size < sizeof(e) ? ev->struct_size : sizeof(e));
    return 0;
  }
}

int scree_watch_fd(const scree_watch *w) { return w == NULL ? -1 : w->conn->fd; }

int scree_watch_resync(scree_watch *w, unsigned flags) {
  if (w == NULL)
    return SCREE_EINVAL;
  if ((flags & ~SCREE_WATCH_NO_REPLAY) != 0)
    return scree__client_fail(w->conn, SCREE_EINVAL, "flags=0x%x has unknown bits 0x%x", flags,
                              flags & ~SCREE_WATCH_NO_REPLAY);
  return watch_start(w, flags);
}

int scree_watch_set_interrupt(scree_watch *w, scree_interrupt_fn fn, void *arg) {
  if (w == NULL)
    return SCREE_EINVAL;
  w->intr = fn;
  w->intr_arg = arg;
  return 0;
}

const char *scree_watch_last_error(const scree_watch *w) {
  return w == NULL ? scree__no_watch_msg : scree_client_last_error(w->conn);
}

void scree_watch_close(scree_watch *w) {
  if (w == NULL)
    return;
  scree_client_close(w->conn);
  free(w);
}
