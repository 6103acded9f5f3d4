/* libscreeclient: one round trip on the daemon's socket.
 *
 * Every public call is one or a few blocking round trips on a SOCK_SEQPACKET
 * socket: pack a Request, send it as one packet, receive one packet, unpack
 * the Response, check that it answers this request. The handle's mutex is
 * held for the whole call so that a handle shared by threads never
 * interleaves two round trips or two updates of the arena cache. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "client_impl.h"

int scree__client_kill(scree_client *c, int code) {
  if (!c->dead) {
    c->dead = 1;
    snprintf(c->dead_reason, sizeof(c->dead_reason), "%s", c->err);
  }
  return code;
}

void scree__client_drop_fds(scree_client *c) {
  for (int i = 0; i < c->nfds; i++) {
    close(c->fds[i]);
    c->info.stray_fds_closed++;
  }
  c->nfds = 0;
}


/* Sends req as one packet, giving it the handle's next id. */
static int send_req(scree_client *c, Scree__V1__Request *req) {
  if (c->dead)
    return scree__client_fail(c, SCREE_EDISCONNECTED, "%s", c->dead_reason);
  scree__client_drop_fds(c);
  req->id = ++c->next_id;

  unsigned char stackbuf[512];
  size_t len = scree__v1__request__get_packed_size(req);
  unsigned char *sbuf = stackbuf;
  if (len > sizeof(stackbuf)) {
    sbuf = malloc(len);
    if (sbuf == NULL)
      return scree__client_fail(c, SCREE_ENOMEM, "out of memory for a %zu-byte request", len);
  }
  scree__v1__request__pack(req, sbuf);
  int rc = scree__wire_send(c->fd, sbuf, len, c->err, sizeof(c->err));
  if (sbuf != stackbuf)
    free(sbuf);
  if (rc == SCREE_EDISCONNECTED)
    return scree__client_kill(c, rc);
  return rc;
}

int scree__recv_response(scree_client *c, Scree__V1__Response **out) {
  *out = NULL;
  if (c->dead)
    return scree__client_fail(c, SCREE_EDISCONNECTED, "%s", c->dead_reason);
  scree__client_drop_fds(c);
  unsigned extra = 0;
  long n = scree__wire_recv(c->fd, &c->rbuf, &c->rcap, SCREE__MAX_REPLY, c->fds,
                            SCREE__WIRE_MAX_FDS, &c->nfds, &extra, c->err, sizeof(c->err));
  c->info.stray_fds_closed += extra;
  if (n < 0) {
    if (n == SCREE_EDISCONNECTED || n == SCREE_EPROTO || n == SCREE_EMSGSIZE)
      return scree__client_kill(c, (int)n);
    return (int)n;
  }
  Scree__V1__Response *resp = scree__v1__response__unpack(NULL, (size_t)n, c->rbuf);
  if (resp == NULL) {
    scree__client_drop_fds(c);
    scree__client_fail(c, SCREE_EPROTO, "cannot decode the daemon's %ld-byte reply", n);
    return scree__client_kill(c, SCREE_EPROTO);
  }
  /* Notices ride on any response, failures included. */
  if (resp->n_freed_arenas > 0)
    scree__arenas_forget(c, resp->freed_arenas, resp->n_freed_arenas);
  *out = resp;
  return 0;
}

/* Receives the reply to request id into *out (freed by the caller with
 * scree__v1__response__free_unpacked). A non-zero status is returned with
 * the daemon's message in c->err. A reply of another kind than expect, or
 * one that answers another request, means the stream is out of step: the
 * connection is closed for good. */
static int recv_reply(scree_client *c, uint64_t id, Scree__V1__Response__BodyCase expect,
                      Scree__V1__Response **out) {
  Scree__V1__Response *resp;
  int rc = scree__recv_response(c, &resp);
  if (rc != 0)
    return rc;
  if (resp->id != id) {
    uint64_t got = resp->id;
    scree__v1__response__free_unpacked(resp, NULL);
    scree__client_drop_fds(c);
    scree__client_fail(c, SCREE_EPROTO, "reply %" PRIu64 " answers another request than %" PRIu64, got,
         id);
    return scree__client_kill(c, SCREE_EPROTO);
  }
  if (resp->status != 0) {
    int status = resp->status;
    if (status > 0)
      status = SCREE_EPROTO; /* statuses are negative by contract */
    if (resp->message != NULL && resp->message[0] != '\0')
      snprintf(c->err, sizeof(c->err), "%s", resp->message);
    else
      snprintf(c->err, sizeof(c->err), "%s", scree_strerror(status));
    scree__v1__response__free_unpacked(resp, NULL);
    scree__client_drop_fds(c);
    return status;
  }
  if (resp->body_case != expect) {
    int got = (int)resp->body_case;
    scree__v1__response__free_unpacked(resp, NULL);
    scree__client_drop_fds(c);
    scree__client_fail(c, SCREE_EPROTO, "reply of kind %d to a request of kind %d", got, (int)expect);
    return scree__client_kill(c, SCREE_EPROTO);
  }
  *out = resp;
  return 0;
}

/* Puts body into req's oneof for kind and says which reply answers it. */
static int build(scree_client *c, Scree__V1__Request *req, Scree__V1__Request__BodyCase kind,
                 void *body, Scree__V1__Response__BodyCase *expect) {
  req->body_case = kind;
  /* Each kind has its own member of the oneof and its own reply. */
  switch (kind) {
  case SCREE__V1__REQUEST__BODY_HELLO:
    req->hello = body;
    *expect = SCREE__V1__RESPONSE__BODY_HELLO;
    break;
  case SCREE__V1__REQUEST__BODY_CREATE:
    req->create = body;
    *expect = SCREE__V1__RESPONSE__BODY_CREATE;
    break;
  case SCREE__V1__REQUEST__BODY_SEAL:
    req->seal = body;
    *expect = SCREE__V1__RESPONSE__BODY_SEAL;
    break;
  case SCREE__V1__REQUEST__BODY_GET:
    req->get = body;
    *expect = SCREE__V1__RESPONSE__BODY_GET;
    break;
  case SCREE__V1__REQUEST__BODY_RELEASE:
    req->release = body;
    *expect = SCREE__V1__RESPONSE__BODY_RELEASE;
    break;
  case SCREE__V1__REQUEST__BODY_DELETE:
    req->delete_ = body;
    *expect = SCREE__V1__RESPONSE__BODY_DELETE;
    break;
  case SCREE__V1__REQUEST__BODY_LIST:
    req->list = body;
    *expect = SCREE__V1__RESPONSE__BODY_LIST;
    break;
  case SCREE__V1__REQUEST__BODY_STAT:
    req->stat = body;
    *expect = SCREE__V1__RESPONSE__BODY_STAT;
    break;
  case SCREE__V1__REQUEST__BODY_STATS:
    req->stats = body;
    *expect = SCREE__V1__RESPONSE__BODY_STATS;
    break;
  case SCREE__V1__REQUEST__BODY_ATTENTION:
    req->attention = body;
    *expect = SCREE__V1__RESPONSE__BODY_ATTENTION;
    break;
  case SCREE__V1__REQUEST__BODY_WATCH:
    req->watch = body;
    *expect = SCREE__V1__RESPONSE__BODY_WATCH;
    break;
  case SCREE__V1__REQUEST__BODY_CANCEL:
    req->cancel = body;
    *expect = SCREE__V1__RESPONSE__BODY_CANCEL;
    break;
  case SCREE__V1__REQUEST__BODY_FETCH:
    req->fetch = body;
    *expect = SCREE__V1__RESPONSE__BODY_FETCH;
    break;
  default:
    return scree__client_fail(c, SCREE_EINVAL, "request of unknown kind %d", (int)kind);
  }
  return 0;
}

int scree__call_send(scree_client *c, Scree__V1__Request__BodyCase kind, void *body,
                     uint64_t *id) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Response__BodyCase expect = SCREE__V1__RESPONSE__BODY__NOT_SET;
  /* A pipelined Seal's reply comes before this request's: take it now, so
   * that its failure is reported before anything else is done. */
  int rc = scree__seal_collect(c);
  if (rc != 0)
    return rc;
  rc = build(c, &req, kind, body, &expect);
  if (rc == 0)
    rc = send_req(c, &req);
  if (rc == 0)
    *id = req.id;
  return rc;
}

int scree__call_recv(scree_client *c, Scree__V1__Request__BodyCase kind, uint64_t id,
                     Scree__V1__Response **out) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Response__BodyCase expect = SCREE__V1__RESPONSE__BODY__NOT_SET;
  int rc = build(c, &req, kind, NULL, &expect);
  if (rc != 0)
    return rc;
  Scree__V1__Response *resp;
  rc = recv_reply(c, id, expect, &resp);
  if (rc != 0)
    return rc;
  if (out != NULL)
    *out = resp;
  else
    scree__v1__response__free_unpacked(resp, NULL);
  return 0;
}

int scree__client_busy(scree_client *c) {
  if (c->wait_id != 0)
    return scree__client_fail(c, SCREE_EBUSY,
                              "a wait for '%s' is pending on this handle "
                              "(scree_client_get_wait_start): finish or cancel it first",
                              c->wait_name);
  return 0;
}

int scree__call(scree_client *c, Scree__V1__Request__BodyCase kind, void *body,
                Scree__V1__Response **out) {
  if (out != NULL)
    *out = NULL;
  /* A wait started by scree_client_get_wait_start owns the connection: its
   * reply comes next. */
  int rc = scree__client_busy(c);
  if (rc != 0)
    return rc;
  /* Taken here rather than in scree__call_send, so that the round trip
   * timed below is this request's alone. */
  rc = scree__seal_collect(c);
  if (rc != 0)
    return rc;
  uint64_t id;
  uint64_t t0 = scree__now_ns();
  rc = scree__call_send(c, kind, body, &id);
  if (rc == 0)
    rc = scree__call_recv(c, kind, id, out);
  c->info.last_call_ns = scree__now_ns() - t0;
  return rc;
}
