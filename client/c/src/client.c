/* libscreeclient: requests, replies and the per-connection arena cache.
 *
 * Every public call is one or a few blocking round trips on a SOCK_SEQPACKET
 * socket: pack a Request, send it as one packet, receive one packet, unpack
 * the Response, check that it answers this request. The handle's mutex is
 * held for the whole call so that a handle shared by threads never
 * interleaves two round trips or two updates of the arena cache. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "import.h"
#include "scree/client.h"
#include "scree/v1/scree.pb-c.h"
#include "wire.h"

/* The largest reply accepted. A List page is the biggest reply; this leaves
 * room for tens of thousands of entries while bounding what a confused peer
 * can make us allocate. */
/* The daemon keeps every reply under 1 MiB (List pages stop near 96 KiB). */
#define SCREE__MAX_REPLY (1u << 20)

/* One import of an arena: where it is mapped here, and the importer's
 * state for unmapping it. base NULL: no such mapping. */
typedef struct scree__mapping {
  void *base;
  void *state;
  scree_device device;
} scree__mapping;

/* An arena can be mapped twice. On host memory a Get brings a read-only fd
 * and a Create a writable one: a connection that reads an arena first and
 * then creates a batch in it receives both, and maps the second at a new
 * address (see arena_resolve). Get views go into ro where there is one, so
 * that they cannot be written by mistake; Create views into rw. */
typedef struct scree__arena {
  uint64_t id;
  size_t size;
  scree__mapping ro; /* mapped without write access */
  scree__mapping rw; /* mapped writable */
} scree__arena;

struct scree_lease {
  uint64_t id;
  scree_lease *prev;
  scree_lease *next;
};

struct scree_client {
  pthread_mutex_t mu;
  int fd;
  int dead; /* 1 once the connection is unusable; err says why */
  uint64_t next_id;
  char err[1024];
  char dead_reason[1024];
  scree_client_info info;
  const scree__importer *imp; /* NULL when this build cannot import */
  char imp_err[256];
  scree__arena *arenas;
  size_t n_arenas;
  size_t cap_arenas;
  scree_lease *leases; /* outstanding lease objects, freed at close */
  unsigned char *rbuf;
  size_t rcap;
  int fds[SCREE__WIRE_MAX_FDS]; /* fds of the last reply not yet consumed */
  int nfds;
};

static const char scree__no_handle_msg[] = "no client handle (out of memory)";

static int fail(scree_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(scree_client *c, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof(c->err), fmt, ap);
  va_end(ap);
  return code;
}

/* Marks the connection unusable; later calls answer SCREE_EDISCONNECTED with
 * this reason. */
static int kill_conn(scree_client *c, int code) {
  if (!c->dead) {
    c->dead = 1;
    snprintf(c->dead_reason, sizeof(c->dead_reason), "%s", c->err);
  }
  return code;
}

static void drop_fds(scree_client *c) {
  for (int i = 0; i < c->nfds; i++) {
    close(c->fds[i]);
    c->info.stray_fds_closed++;
  }
  c->nfds = 0;
}

static int check_name(scree_client *c, const char *name, const char *what) {
  if (name == NULL || name[0] == '\0')
    return fail(c, SCREE_EINVAL, "%s name is %s", what, name == NULL ? "NULL" : "empty");
  return 0;
}

static void arenas_forget(scree_client *c, const uint64_t *ids, size_t n);

/* Sends req and receives its Response into *out (freed by the caller with
 * scree__v1__response__free_unpacked). A non-zero status is returned with
 * the daemon's message in c->err. A reply of another kind than expect, or
 * one that answers another request, means the stream is out of step: the
 * connection is closed for good. */
static int rpc(scree_client *c, Scree__V1__Request *req, Scree__V1__Response__BodyCase expect,
               Scree__V1__Response **out) {
  *out = NULL;
  if (c->dead)
    return fail(c, SCREE_EDISCONNECTED, "%s", c->dead_reason);
  drop_fds(c);
  req->id = ++c->next_id;

  unsigned char stackbuf[512];
  size_t len = scree__v1__request__get_packed_size(req);
  unsigned char *sbuf = stackbuf;
  if (len > sizeof(stackbuf)) {
    sbuf = malloc(len);
    if (sbuf == NULL)
      return fail(c, SCREE_ENOMEM, "out of memory for a %zu-byte request", len);
  }
  scree__v1__request__pack(req, sbuf);
  int rc = scree__wire_send(c->fd, sbuf, len, c->err, sizeof(c->err));
  if (sbuf != stackbuf)
    free(sbuf);
  if (rc == SCREE_EDISCONNECTED)
    return kill_conn(c, rc);
  if (rc != 0)
    return rc;

  unsigned extra = 0;
  long n = scree__wire_recv(c->fd, &c->rbuf, &c->rcap, SCREE__MAX_REPLY, c->fds,
                            SCREE__WIRE_MAX_FDS, &c->nfds, &extra, c->err, sizeof(c->err));
  c->info.stray_fds_closed += extra;
  if (n < 0) {
    if (n == SCREE_EDISCONNECTED || n == SCREE_EPROTO || n == SCREE_EMSGSIZE)
      return kill_conn(c, (int)n);
    return (int)n;
  }
  Scree__V1__Response *resp = scree__v1__response__unpack(NULL, (size_t)n, c->rbuf);
  if (resp == NULL) {
    drop_fds(c);
    fail(c, SCREE_EPROTO, "cannot decode the daemon's %ld-byte reply", n);
    return kill_conn(c, SCREE_EPROTO);
  }
  /* Notices ride on any response, failures included. */
  if (resp->n_freed_arenas > 0)
    arenas_forget(c, resp->freed_arenas, resp->n_freed_arenas);
  if (resp->id != req->id) {
    uint64_t got = resp->id;
    scree__v1__response__free_unpacked(resp, NULL);
    drop_fds(c);
    fail(c, SCREE_EPROTO, "reply %" PRIu64 " answers another request than %" PRIu64, got,
         req->id);
    return kill_conn(c, SCREE_EPROTO);
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
    drop_fds(c);
    return status;
  }
  if (resp->body_case != expect) {
    int got = (int)resp->body_case;
    scree__v1__response__free_unpacked(resp, NULL);
    drop_fds(c);
    fail(c, SCREE_EPROTO, "reply of kind %d to a request of kind %d", got, (int)expect);
    return kill_conn(c, SCREE_EPROTO);
  }
  *out = resp;
  return 0;
}

/* ---- conversions between public structs and protobuf messages ---- */

static void desc_to_pb(const scree_array *a, Scree__V1__ArrayDesc *d) {
  d->dtype = (uint32_t)a->dtype;
  d->n_inner = (size_t)a->ndim_inner;
  d->inner = (int64_t *)a->inner;
  d->batch_size = a->batch_size;
  d->total_rows = a->total_rows;
  d->max_length = 0;
  d->offsets_dtype = (uint32_t)a->offsets_dtype;
}

/* Fills a from a daemon descriptor, checking what the library relies on. */
static int desc_from_pb(scree_client *c, const Scree__V1__ArrayDesc *d, scree_array *a) {
  memset(a, 0, sizeof(*a));
  if (d == NULL)
    return fail(c, SCREE_EPROTO, "the daemon's reply has no array descriptor");
  if (d->n_inner > SCREE_MAX_INNER_DIMS)
    return fail(c, SCREE_EPROTO, "the daemon's descriptor has %zu inner dims", d->n_inner);
  a->dtype = (scree_dtype)d->dtype;
  a->ndim_inner = (int32_t)d->n_inner;
  for (size_t i = 0; i < d->n_inner; i++)
    a->inner[i] = d->inner[i];
  a->batch_size = d->batch_size;
  a->total_rows = d->total_rows;
  a->max_length = d->max_length;
  a->offsets_dtype = (scree_dtype)d->offsets_dtype;
  a->device.type = SCREE_DEVICE_CPU;
  return 0;
}

static int info_from_pb(scree_client *c, const Scree__V1__BatchInfo *b, scree_batch_info *o) {
  memset(o, 0, sizeof(*o));
  if (b == NULL)
    return fail(c, SCREE_EPROTO, "the daemon's reply has no batch info");
  snprintf(o->name, sizeof(o->name), "%s", b->name != NULL ? b->name : "");
  int rc = desc_from_pb(c, b->desc, &o->desc);
  if (rc != 0)
    return rc;
  o->state = (scree_batch_state)b->state;
  o->values_bytes = b->values_bytes;
  o->offsets_bytes = b->offsets_bytes;
  o->leases = b->leases;
  o->owner_uid = b->owner_uid;
  o->owner_pid = b->owner_pid;
  o->age_ns = b->age_ns;
  o->arena_id = b->arena_id;
  o->delete_pending = b->delete_pending ? 1 : 0;
  return 0;
}

/* ---- the arena cache ---- */

static scree__arena *arena_find(scree_client *c, uint64_t id) {
  for (size_t i = 0; i < c->n_arenas; i++)
    if (c->arenas[i].id == id)
      return &c->arenas[i];
  return NULL;
}

static void arena_unmap(scree_client *c, scree__arena *a) {
  if (a->ro.base != NULL)
    c->imp->unmap(a->ro.base, a->size, a->ro.state);
  if (a->rw.base != NULL)
    c->imp->unmap(a->rw.base, a->size, a->rw.state);
}

/* Unmaps arenas the daemon has freed. None of this connection's leases or
 * created batches can be in them (the daemon frees an arena only when no
 * batch is left in it), so only views the caller already released, and
 * must no longer touch, pointed there. Ids this handle never mapped are
 * ignored. Callers never keep a pointer into c->arenas across an rpc, so
 * compacting the array here is safe. */
static void arenas_forget(scree_client *c, const uint64_t *ids, size_t n) {
  for (size_t i = 0; i < n; i++) {
    scree__arena *a = arena_find(c, ids[i]);
    if (a == NULL)
      continue;
    arena_unmap(c, a);
    size_t at = (size_t)(a - c->arenas);
    memmove(&c->arenas[at], &c->arenas[at + 1], (c->n_arenas - at - 1) * sizeof(*a));
    c->n_arenas--;
    c->info.arena_unmaps++;
  }
}

/* Imports the handle that came with the last reply (its first fd, or the
 * Location's handle bytes) as a mapping of size bytes into *m. The reply's
 * fds are consumed whatever happens. */
static int import_handle(scree_client *c, const Scree__V1__Location *loc, size_t size,
                         int writable, scree__mapping *m) {
  scree__import_src src;
  memset(&src, 0, sizeof(src));
  src.fd = -1;
  src.arena_id = loc->arena_id;
  src.size = size;
  src.device_uuid = c->info.has_device_uuid ? c->info.device_uuid : NULL;
  if (c->nfds > 0) {
    src.fd = c->fds[0];
    c->fds[0] = -1;
    /* Keep the rest for drop_fds. */
    memmove(c->fds, c->fds + 1, (size_t)(c->nfds - 1) * sizeof(int));
    c->nfds--;
  }
  if (loc->ipc_handle.len > 0) {
    src.handle = loc->ipc_handle.data;
    src.handle_len = loc->ipc_handle.len;
  }
  scree__mapping nm;
  memset(&nm, 0, sizeof(nm));
  int rc = c->imp->import(&src, writable, &nm.base, &nm.device, &nm.state, c->err,
                          sizeof(c->err));
  if (src.fd >= 0)
    close(src.fd);
  drop_fds(c);
  if (rc != 0)
    return rc;
  *m = nm;
  c->info.arena_imports++;
  return 0;
}

/* Makes sure arena a has a writable mapping, for a Create. */
static int arena_make_writable(scree_client *c, const Scree__V1__Location *loc,
                               scree__arena *a) {
  if (a->rw.base != NULL) {
    drop_fds(c);
    return 0;
  }
  if (!loc->handle_attached) {
    /* No new handle: the daemon sent a writable one the first time (CUDA,
     * whose handles are all writable, or a daemon older than
     * Location.writable), so the mapping is upgraded where it is. */
    drop_fds(c);
    if (c->imp->make_writable != NULL) {
      int rc = c->imp->make_writable(a->ro.base, a->size, a->ro.state, c->err,
                                     sizeof(c->err));
      if (rc != 0)
        return rc;
    }
    a->rw = a->ro;
    memset(&a->ro, 0, sizeof(a->ro));
    return 0;
  }
  /* A writable fd for an arena mapped from a read-only one (host memory).
   * It is mapped at a new address and the read-only mapping stays, because
   * views handed out by earlier Gets point into it and may be in use by
   * other threads right now. Mapping over it with MAP_FIXED would keep
   * their addresses, but a MAP_FIXED mmap that fails may leave the range
   * unmapped (POSIX allows it), turning those views into dangling pointers.
   * The cost is address space only: both mappings share the memfd's pages.
   * The read-only mapping goes with the arena (freed_arenas: by then no
   * lease of this connection points into it) or at scree_client_close. */
  return import_handle(c, loc, a->size, 1, &a->rw);
}

/* Turns a Location into the mapping its batch is to be bound to, importing
 * the arena the first time it is named (and again, writable, when a Create
 * names an arena that a Get imported read-only). The reply's fd, if any, is
 * consumed: used for an import, or closed when it is not needed. */
static int arena_resolve(scree_client *c, const Scree__V1__Location *loc, int writable,
                         scree__mapping **out) {
  if (loc == NULL)
    return fail(c, SCREE_EPROTO, "the daemon's reply has no location");
  if (loc->values_offset > loc->arena_size ||
      loc->values_bytes > loc->arena_size - loc->values_offset ||
      loc->offsets_offset > loc->arena_size ||
      loc->offsets_bytes > loc->arena_size - loc->offsets_offset)
    return fail(c, SCREE_EPROTO,
                "the daemon's location lies outside arena %" PRIu64 " of %" PRIu64 " bytes",
                loc->arena_id, loc->arena_size);
  if (c->imp == NULL)
    return fail(c, SCREE_ENOTSUP, "%s", c->imp_err);

  scree__arena *a = arena_find(c, loc->arena_id);
  if (a != NULL) {
    if (loc->arena_size > a->size) {
      drop_fds(c);
      return fail(c, SCREE_EPROTO,
                  "arena %" PRIu64 " grew from %zu to %" PRIu64 " bytes", a->id, a->size,
                  loc->arena_size);
    }
    if (writable) {
      int rc = arena_make_writable(c, loc, a);
      if (rc != 0)
        return rc;
      *out = &a->rw;
      return 0;
    }
    /* The daemon shares an arena once per connection (once more writable
     * for a Create); an fd for one we hold is a duplicate and goes. */
    drop_fds(c);
    *out = a->ro.base != NULL ? &a->ro : &a->rw;
    return 0;
  }

  if (!loc->handle_attached) {
    drop_fds(c);
    return fail(c, SCREE_EPROTO,
                "the daemon sent no handle for arena %" PRIu64 ", which is not mapped here",
                loc->arena_id);
  }
  if (loc->arena_size > SIZE_MAX) {
    drop_fds(c);
    return fail(c, SCREE_EOVERFLOW, "arena of %" PRIu64 " bytes", loc->arena_size);
  }
  if (c->n_arenas == c->cap_arenas) {
    size_t ncap = c->cap_arenas ? c->cap_arenas * 2 : 8;
    scree__arena *na = realloc(c->arenas, ncap * sizeof(*na));
    if (na == NULL) {
      drop_fds(c);
      return fail(c, SCREE_ENOMEM, "out of memory for the arena cache");
    }
    c->arenas = na;
    c->cap_arenas = ncap;
  }
  scree__arena *na = &c->arenas[c->n_arenas];
  memset(na, 0, sizeof(*na));
  scree__mapping *m = writable ? &na->rw : &na->ro;
  int rc = import_handle(c, loc, (size_t)loc->arena_size, writable, m);
  if (rc != 0)
    return rc;
  na->id = loc->arena_id;
  na->size = (size_t)loc->arena_size;
  c->n_arenas++;
  *out = m;
  return 0;
}

/* Points a's values and offsets into the arena mapping after checking that
 * the location holds the bytes the descriptor needs. */
static int bind_array(scree_client *c, const Scree__V1__Location *loc, scree__mapping *ar,
                      scree_array *a) {
  uint64_t vbytes, obytes;
  char m[256];
  int rc = scree_array_check_desc(a, &vbytes, &obytes, m, sizeof(m));
  if (rc != 0)
    return fail(c, SCREE_EPROTO, "the daemon's descriptor is invalid: %s", m);
  if (vbytes > loc->values_bytes || obytes > loc->offsets_bytes)
    return fail(c, SCREE_EPROTO,
                "the daemon's location (%" PRIu64 " + %" PRIu64
                " bytes) is smaller than its descriptor needs (%" PRIu64 " + %" PRIu64 ")",
                loc->values_bytes, loc->offsets_bytes, vbytes, obytes);
  a->values = (unsigned char *)ar->base + loc->values_offset;
  a->offsets = (unsigned char *)ar->base + loc->offsets_offset;
  a->device = ar->device;
  return 0;
}

/* ---- public API ---- */

const char *scree_batch_state_name(scree_batch_state s) {
  switch (s) {
  case SCREE_BATCH_CREATED: return "created";
  case SCREE_BATCH_SEALED: return "sealed";
  default: return "unspecified";
  }
}

const char *scree_backend_name(scree_backend b) {
  switch (b) {
  case SCREE_BACKEND_HOST: return "host";
  case SCREE_BACKEND_CUDA: return "cuda";
  default: return "unspecified";
  }
}

const char *scree_ipc_mode_name(scree_ipc_mode m) {
  switch (m) {
  case SCREE_IPC_MEMFD: return "memfd";
  case SCREE_IPC_VMM_FD: return "vmm-fd";
  case SCREE_IPC_LEGACY: return "legacy";
  default: return "unspecified";
  }
}

static int do_hello(scree_client *c) {
  Scree__V1__Hello hello = SCREE__V1__HELLO__INIT;
  hello.protocol_version = SCREE_CLIENT_PROTOCOL_VERSION;
  char name[64];
  snprintf(name, sizeof(name), "libscreeclient/%s[%ld]", program_invocation_short_name,
           (long)getpid());
  hello.client_name = name;
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &hello;
  Scree__V1__Response *resp;
  int rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_HELLO, &resp);
  if (rc != 0)
    return rc;
  const Scree__V1__HelloReply *h = resp->hello;
  if (h->protocol_version != SCREE_CLIENT_PROTOCOL_VERSION) {
    fail(c, SCREE_EPROTO, "the daemon speaks protocol version %" PRIu32 ", this client %d",
         h->protocol_version, SCREE_CLIENT_PROTOCOL_VERSION);
    scree__v1__response__free_unpacked(resp, NULL);
    return kill_conn(c, SCREE_EPROTO);
  }
  scree_client_info *i = &c->info;
  i->protocol_version = h->protocol_version;
  i->backend = (scree_backend)h->backend;
  i->ipc_mode = (scree_ipc_mode)h->ipc_mode;
  i->device_index = h->device_index;
  snprintf(i->device_name, sizeof(i->device_name), "%s",
           h->device_name != NULL ? h->device_name : "");
  if (h->device_uuid.len == sizeof(i->device_uuid)) {
    memcpy(i->device_uuid, h->device_uuid.data, sizeof(i->device_uuid));
    i->has_device_uuid = 1;
  }
  i->granularity = h->granularity;
  i->memory_limit = h->memory_limit;
  i->max_packet = h->max_packet;
  i->arena_size = h->arena_size;
  i->max_name_len = h->max_name_len;
  snprintf(i->daemon_version, sizeof(i->daemon_version), "%s",
           h->version != NULL ? h->version : "");
  scree__v1__response__free_unpacked(resp, NULL);

  /* A daemon whose memory this build cannot map still serves list, stat,
   * delete and stats, so this is reported by get and create, not here. */
  if (scree__import_select((int)i->backend, (int)i->ipc_mode,
                           i->has_device_uuid ? i->device_uuid : NULL, &c->imp, c->imp_err,
                           sizeof(c->imp_err)) != 0)
    c->imp = NULL;
  return 0;
}

int scree_client_connect(const char *path, scree_client **out) {
  if (out == NULL)
    return SCREE_EINVAL;
  scree_client *c = calloc(1, sizeof(*c));
  *out = c;
  if (c == NULL)
    return SCREE_ENOMEM;
  c->fd = -1;
  pthread_mutex_init(&c->mu, NULL);

  if (path == NULL || path[0] == '\0') {
    const char *env = getenv("SCREE_SOCKET");
    path = (env != NULL && env[0] != '\0') ? env : SCREE_CLIENT_DEFAULT_SOCKET;
  }
  int rc;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(addr.sun_path)) {
    rc = fail(c, SCREE_ENAMETOOLONG, "socket path is longer than %zu bytes: %s",
              sizeof(addr.sun_path) - 1, path);
    goto err_dead;
  }
  memcpy(addr.sun_path, path, strlen(path) + 1);

  c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    rc = fail(c, SCREE_EIO, "socket: %s", strerror(errno));
    goto err_dead;
  }
  while (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    int e = errno;
    if (e == EINTR)
      continue;
    if (e == ENOENT || e == ECONNREFUSED)
      rc = fail(c, SCREE_ECONNREFUSED, "no daemon at %s: %s", path, strerror(e));
    else if (e == EACCES || e == EPERM)
      rc = fail(c, SCREE_EACCES, "cannot connect to %s: %s", path, strerror(e));
    else if (e == EAGAIN)
      rc = fail(c, SCREE_EAGAIN, "daemon at %s is not accepting: %s", path, strerror(e));
    else
      rc = fail(c, SCREE_EIO, "cannot connect to %s: %s", path, strerror(e));
    goto err_close;
  }
  rc = do_hello(c);
  if (rc != 0)
    goto err_close;
  return 0;

err_close:
  close(c->fd);
  c->fd = -1;
err_dead:
  kill_conn(c, rc);
  return rc;
}

void scree_client_close(scree_client *c) {
  if (c == NULL)
    return;
  drop_fds(c);
  if (c->fd >= 0)
    close(c->fd);
  for (size_t i = 0; i < c->n_arenas; i++)
    arena_unmap(c, &c->arenas[i]);
  free(c->arenas);
  while (c->leases != NULL) {
    scree_lease *l = c->leases;
    c->leases = l->next;
    free(l);
  }
  free(c->rbuf);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

const char *scree_client_last_error(const scree_client *c) {
  return c == NULL ? scree__no_handle_msg : c->err;
}

int scree_client_info_get(scree_client *c, scree_client_info *out) {
  if (c == NULL || out == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  *out = c->info;
  out->arenas_mapped = (uint32_t)c->n_arenas;
  pthread_mutex_unlock(&c->mu);
  return 0;
}

static int delete_locked(scree_client *c, const char *name, int *deferred) {
  Scree__V1__Delete del = SCREE__V1__DELETE__INIT;
  del.name = (char *)name;
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_DELETE;
  req.delete_ = &del;
  Scree__V1__Response *resp;
  int rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_DELETE, &resp);
  if (rc != 0)
    return rc;
  if (deferred != NULL)
    *deferred = resp->delete_->deferred ? 1 : 0;
  scree__v1__response__free_unpacked(resp, NULL);
  return 0;
}

/* Every flag of scree_client_put_flags and scree_client_create_flags. */
#define SCREE__CREATE_FLAGS SCREE_CREATE_SHARED

/* Create and bind; the caller holds the mutex. */
static int create_locked(scree_client *c, const char *name, const scree_array *desc,
                         unsigned flags, scree_array *out, scree__mapping **arena_out) {
  int rc = check_name(c, name, "batch");
  if (rc != 0)
    return rc;
  if ((flags & ~SCREE__CREATE_FLAGS) != 0)
    return fail(c, SCREE_EINVAL, "flags=0x%x has unknown bits 0x%x", flags,
                flags & ~SCREE__CREATE_FLAGS);
  if (desc == NULL || out == NULL)
    return fail(c, SCREE_EINVAL, "NULL array argument");
  char m[256];
  rc = scree_array_check_desc(desc, NULL, NULL, m, sizeof(m));
  if (rc != 0)
    return fail(c, rc, "%s", m);
  if (c->dead)
    return fail(c, SCREE_EDISCONNECTED, "%s", c->dead_reason);
  if (c->imp == NULL)
    return fail(c, SCREE_ENOTSUP, "%s", c->imp_err);

  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  desc_to_pb(desc, &d);
  Scree__V1__Create cr = SCREE__V1__CREATE__INIT;
  cr.name = (char *)name;
  cr.desc = &d;
  cr.shared = (flags & SCREE_CREATE_SHARED) != 0;
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
  req.create = &cr;
  Scree__V1__Response *resp;
  rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_CREATE, &resp);
  if (rc != 0)
    return rc;
  scree__mapping *ar;
  rc = arena_resolve(c, resp->create->location, 1, &ar);
  if (rc != 0)
    goto err_delete;
  *out = *desc;
  out->max_length = 0;
  rc = bind_array(c, resp->create->location, ar, out);
  if (rc != 0)
    goto err_delete;
  scree__v1__response__free_unpacked(resp, NULL);
  if (arena_out != NULL)
    *arena_out = ar;
  return 0;

err_delete:
  /* The batch exists in the daemon but is unusable here; take it back so
   * the name is free again. The first error's message is kept. */
  scree__v1__response__free_unpacked(resp, NULL);
  {
    char keep[sizeof(c->err)];
    memcpy(keep, c->err, sizeof(keep));
    delete_locked(c, name, NULL);
    memcpy(c->err, keep, sizeof(keep));
  }
  memset(out, 0, sizeof(*out));
  return rc;
}

static int seal_locked(scree_client *c, const char *name) {
  int rc = check_name(c, name, "batch");
  if (rc != 0)
    return rc;
  Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
  s.name = (char *)name;
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
  req.seal = &s;
  Scree__V1__Response *resp;
  rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_SEAL, &resp);
  if (rc != 0)
    return rc;
  scree__v1__response__free_unpacked(resp, NULL);
  return 0;
}

int scree_client_create(scree_client *c, const char *name, const scree_array *desc,
                        scree_array *out) {
  return scree_client_create_flags(c, name, desc, out, 0);
}

int scree_client_create_flags(scree_client *c, const char *name, const scree_array *desc,
                              scree_array *out, unsigned flags) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc = create_locked(c, name, desc, flags, out, NULL);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_seal(scree_client *c, const char *name) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc = 0;
#ifdef SCREE_CLIENT_HAVE_CUDA
  /* The daemon reads the offsets through its own mapping as soon as Seal
   * arrives, so this process's copies into the arena must have landed. */
  if (c->info.backend == SCREE_BACKEND_CUDA)
    rc = scree__cuda_sync(NULL, c->err, sizeof(c->err));
#endif
  if (rc == 0)
    rc = seal_locked(c, name);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

/* put, put_stream and put_flags. use_stream says whether stream was given
 * (the copies then go on it, and it is waited for before Seal); flags are
 * those of scree_client_put_flags. */
static int put_impl(scree_client *c, const char *name, const scree_array *a, int use_stream,
                    void *stream, unsigned flags) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc;
  uint64_t vbytes, obytes;
  char m[256];
  if (a == NULL) {
    rc = fail(c, SCREE_EINVAL, "NULL array");
    goto out;
  }
  rc = scree_array_check_desc(a, &vbytes, &obytes, m, sizeof(m));
  if (rc != 0) {
    rc = fail(c, rc, "%s", m);
    goto out;
  }
  if ((vbytes > 0 && a->values == NULL) || a->offsets == NULL) {
    rc = fail(c, SCREE_EINVAL, "%s pointer is NULL", a->offsets == NULL ? "offsets" : "values");
    goto out;
  }
  int on_gpu = a->device.type == SCREE_DEVICE_CUDA;
  if (!on_gpu) {
    /* Checking here saves a create and a delete for the common mistake, and
     * gives the same message the daemon would. Offsets in GPU memory are
     * left to the daemon's check at seal, which reads them itself. */
    rc = scree_offsets_validate(a->offsets, a->offsets_dtype, a->batch_size, a->total_rows,
                                NULL, m, sizeof(m));
    if (rc != 0) {
      rc = fail(c, rc, "%s", m);
      goto out;
    }
  }
  if ((on_gpu || use_stream) && c->imp != NULL && c->imp->copy_in_async == NULL) {
    rc = fail(c, SCREE_ENOTSUP,
              "this daemon keeps batches in %s memory: put takes host arrays here "
              "(copy GPU data to the host first, or run screed --device N)",
              scree_backend_name(c->info.backend));
    goto out;
  }
  scree_array dst;
  scree__mapping *ar;
  rc = create_locked(c, name, a, flags, &dst, &ar);
  if (rc != 0)
    goto out;
  const scree__importer *imp = c->imp;
  void *state = ar->state;
  if (imp->copy_in_async != NULL) {
    /* GPU arenas: both copies are queued on one stream, then waited for
     * once, so that the daemon reads finished offsets at Seal. */
    rc = imp->copy_in_async(dst.values, a->values, (size_t)vbytes, stream, state, c->err,
                            sizeof(c->err));
    if (rc == 0)
      rc = imp->copy_in_async(dst.offsets, a->offsets, (size_t)obytes, stream, state, c->err,
                              sizeof(c->err));
#ifdef SCREE_CLIENT_HAVE_CUDA
    if (rc == 0)
      rc = scree__cuda_sync(stream, c->err, sizeof(c->err));
#endif
  } else {
    rc = imp->copy_in(dst.values, a->values, (size_t)vbytes, state, c->err, sizeof(c->err));
    if (rc == 0)
      rc = imp->copy_in(dst.offsets, a->offsets, (size_t)obytes, state, c->err,
                        sizeof(c->err));
  }
  if (rc == 0)
    rc = seal_locked(c, name);
  if (rc != 0)
    goto err_delete;
  goto out;

err_delete:
  {
    char keep[sizeof(c->err)];
    memcpy(keep, c->err, sizeof(keep));
    delete_locked(c, name, NULL);
    memcpy(c->err, keep, sizeof(keep));
  }
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_put(scree_client *c, const char *name, const scree_array *a) {
  return put_impl(c, name, a, 0, NULL, 0);
}

int scree_client_put_stream(scree_client *c, const char *name, const scree_array *a,
                            void *stream) {
  return put_impl(c, name, a, 1, stream, 0);
}

int scree_client_put_flags(scree_client *c, const char *name, const scree_array *a,
                           unsigned flags) {
  return put_impl(c, name, a, 0, NULL, flags);
}

int scree_client_seal_stream(scree_client *c, const char *name, void *stream) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc;
#ifdef SCREE_CLIENT_HAVE_CUDA
  /* The batch's bytes must be in place before the daemon reads its
   * offsets: wait for the writer's stream first. */
  rc = scree__cuda_sync(stream, c->err, sizeof(c->err));
#else
  rc = stream == NULL ? 0
                      : fail(c, SCREE_ENOTSUP,
                             "this libscreeclient was built without CUDA: no stream to wait for");
#endif
  if (rc == 0)
    rc = seal_locked(c, name);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_get(scree_client *c, const char *name, scree_array *out,
                     scree_lease **lease) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc = check_name(c, name, "batch");
  scree_lease *l = NULL;
  Scree__V1__Response *resp = NULL;
  if (lease != NULL)
    *lease = NULL;
  if (rc != 0)
    goto out;
  if (out == NULL) {
    rc = fail(c, SCREE_EINVAL, "NULL array argument");
    goto out;
  }
  if (lease != NULL) {
    /* Allocated before asking, so that a lease granted by the daemon always
     * has an object to be released through. */
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
      rc = fail(c, SCREE_ENOMEM, "out of memory for a lease");
      goto out;
    }
  }
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  g.name = (char *)name;
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_GET;
  req.get = &g;
  rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_GET, &resp);
  if (rc != 0)
    goto err_free_lease;
  uint64_t lease_id = resp->get->lease_id;
  scree__mapping *ar;
  scree_array a;
  rc = desc_from_pb(c, resp->get->info != NULL ? resp->get->info->desc : NULL, &a);
  if (rc == 0)
    rc = arena_resolve(c, resp->get->location, 0, &ar);
  if (rc == 0)
    rc = bind_array(c, resp->get->location, ar, &a);
  if (rc != 0)
    goto err_release;
  *out = a;
  if (l != NULL) {
    l->id = lease_id;
    l->next = c->leases;
    if (c->leases != NULL)
      c->leases->prev = l;
    c->leases = l;
    *lease = l;
  }
  goto out;

err_release:
  {
    /* The daemon granted a lease this call cannot hand out. */
    char keep[sizeof(c->err)];
    memcpy(keep, c->err, sizeof(keep));
    Scree__V1__Release r = SCREE__V1__RELEASE__INIT;
    r.lease_id = lease_id;
    Scree__V1__Request rreq = SCREE__V1__REQUEST__INIT;
    rreq.body_case = SCREE__V1__REQUEST__BODY_RELEASE;
    rreq.release = &r;
    Scree__V1__Response *rresp;
    if (rpc(c, &rreq, SCREE__V1__RESPONSE__BODY_RELEASE, &rresp) == 0)
      scree__v1__response__free_unpacked(rresp, NULL);
    memcpy(c->err, keep, sizeof(keep));
  }
err_free_lease:
  free(l);
out:
  if (resp != NULL)
    scree__v1__response__free_unpacked(resp, NULL);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_release(scree_client *c, scree_lease *lease) {
  if (c == NULL)
    return SCREE_EINVAL;
  if (lease == NULL)
    return 0;
  pthread_mutex_lock(&c->mu);
  if (lease->prev != NULL)
    lease->prev->next = lease->next;
  else
    c->leases = lease->next;
  if (lease->next != NULL)
    lease->next->prev = lease->prev;
  Scree__V1__Release r = SCREE__V1__RELEASE__INIT;
  r.lease_id = lease->id;
  free(lease);
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_RELEASE;
  req.release = &r;
  Scree__V1__Response *resp;
  int rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_RELEASE, &resp);
  if (rc == 0)
    scree__v1__response__free_unpacked(resp, NULL);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_delete(scree_client *c, const char *name, int *deferred) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc = check_name(c, name, "batch");
  if (rc == 0)
    rc = delete_locked(c, name, deferred);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_list(scree_client *c, const char *prefix, scree_batch_info **out,
                      size_t *count) {
  if (c == NULL)
    return SCREE_EINVAL;
  if (out == NULL || count == NULL)
    return fail(c, SCREE_EINVAL, "NULL output argument");
  *out = NULL;
  *count = 0;
  pthread_mutex_lock(&c->mu);
  scree_batch_info *items = NULL;
  size_t n = 0, cap = 0;
  char *token = strdup("");
  int rc = 0;
  if (token == NULL) {
    rc = fail(c, SCREE_ENOMEM, "out of memory");
    goto out;
  }
  for (;;) {
    Scree__V1__List l = SCREE__V1__LIST__INIT;
    l.prefix = (char *)(prefix != NULL ? prefix : "");
    l.page_token = token;
    l.page_size = 0;
    Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
    req.body_case = SCREE__V1__REQUEST__BODY_LIST;
    req.list = &l;
    Scree__V1__Response *resp;
    rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_LIST, &resp);
    if (rc != 0)
      goto err_items;
    const Scree__V1__ListReply *lr = resp->list;
    if (n + lr->n_batches > cap) {
      size_t ncap = cap ? cap : 64;
      while (ncap < n + lr->n_batches)
        ncap *= 2;
      scree_batch_info *ni = realloc(items, ncap * sizeof(*ni));
      if (ni == NULL) {
        scree__v1__response__free_unpacked(resp, NULL);
        rc = fail(c, SCREE_ENOMEM, "out of memory for %zu list entries", ncap);
        goto err_items;
      }
      items = ni;
      cap = ncap;
    }
    for (size_t i = 0; i < lr->n_batches; i++) {
      rc = info_from_pb(c, lr->batches[i], &items[n]);
      if (rc != 0) {
        scree__v1__response__free_unpacked(resp, NULL);
        goto err_items;
      }
      n++;
    }
    const char *next = lr->next_page_token != NULL ? lr->next_page_token : "";
    if (next[0] == '\0') {
      scree__v1__response__free_unpacked(resp, NULL);
      break;
    }
    /* Tokens move forward by contract; one that does not would loop. */
    if (strcmp(next, token) <= 0) {
      scree__v1__response__free_unpacked(resp, NULL);
      rc = fail(c, SCREE_EPROTO, "the daemon's list page token did not advance past '%s'",
                token);
      goto err_items;
    }
    char *nt = strdup(next);
    scree__v1__response__free_unpacked(resp, NULL);
    if (nt == NULL) {
      rc = fail(c, SCREE_ENOMEM, "out of memory");
      goto err_items;
    }
    free(token);
    token = nt;
  }
  *out = items;
  *count = n;
  goto out;

err_items:
  free(items);
out:
  free(token);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

void scree_client_free_list(scree_batch_info *list) {
  free(list);
}

int scree_client_stat(scree_client *c, const char *name, scree_batch_info *out) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc = check_name(c, name, "batch");
  if (rc == 0 && out == NULL)
    rc = fail(c, SCREE_EINVAL, "NULL output argument");
  if (rc != 0)
    goto out;
  Scree__V1__Stat s = SCREE__V1__STAT__INIT;
  s.name = (char *)name;
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_STAT;
  req.stat = &s;
  Scree__V1__Response *resp;
  rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_STAT, &resp);
  if (rc != 0)
    goto out;
  rc = info_from_pb(c, resp->stat->info, out);
  scree__v1__response__free_unpacked(resp, NULL);
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_stats(scree_client *c, scree_stats *out) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc = 0;
  if (out == NULL) {
    rc = fail(c, SCREE_EINVAL, "NULL output argument");
    goto out;
  }
  Scree__V1__Stats s = SCREE__V1__STATS__INIT;
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_STATS;
  req.stats = &s;
  Scree__V1__Response *resp;
  rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_STATS, &resp);
  if (rc != 0)
    goto out;
  const Scree__V1__StatsReply *r = resp->stats;
  memset(out, 0, sizeof(*out));
  out->bytes_used = r->bytes_used;
  out->bytes_limit = r->bytes_limit;
  out->bytes_arenas = r->bytes_arenas;
  out->batches = r->batches;
  out->connections = r->connections;
  out->leases = r->leases;
  out->arenas = r->arenas;
  out->pending_deletes = r->pending_deletes;
  out->requests = r->requests;
  out->uptime_ns = r->uptime_ns;
  for (size_t i = 0; i < r->n_errors && out->n_errors < SCREE_STATS_MAX_ERRORS; i++) {
    if (r->errors[i] == NULL)
      continue;
    out->errors[out->n_errors].code = r->errors[i]->code;
    out->errors[out->n_errors].count = r->errors[i]->count;
    out->n_errors++;
  }
  scree__v1__response__free_unpacked(resp, NULL);
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_attention(scree_client *c, const char *q, const char *k, const char *v,
                           const char *out, const scree_attention_params *p) {
  return scree_client_attention_info(c, q, k, v, out, p, NULL, NULL);
}

int scree_client_attention_info(scree_client *c, const char *q, const char *k,
                                const char *v, const char *out,
                                const scree_attention_params *p, scree_batch_info *info,
                                uint64_t *elapsed_ns) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc = check_name(c, q, "q");
  if (rc == 0)
    rc = check_name(c, k, "k");
  if (rc == 0)
    rc = check_name(c, v, "v");
  if (rc == 0)
    rc = check_name(c, out, "out");
  if (rc != 0)
    goto out;
  static const scree_attention_params defaults = SCREE_ATTENTION_PARAMS_INIT;
  if (p == NULL)
    p = &defaults;
  Scree__V1__Attention a = SCREE__V1__ATTENTION__INIT;
  a.q = (char *)q;
  a.k = (char *)k;
  a.v = (char *)v;
  a.out = (char *)out;
  a.causal = p->causal != 0;
  a.has_scale = p->has_scale != 0;
  a.scale = p->scale;
  /* Sent only when bounded: an absent field means unbounded. */
  if (p->window_left != -1) {
    a.window_left_present_case = SCREE__V1__ATTENTION__WINDOW_LEFT_PRESENT_WINDOW_LEFT;
    a.window_left = p->window_left;
  }
  if (p->window_right != -1) {
    a.window_right_present_case = SCREE__V1__ATTENTION__WINDOW_RIGHT_PRESENT_WINDOW_RIGHT;
    a.window_right = p->window_right;
  }
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  req.body_case = SCREE__V1__REQUEST__BODY_ATTENTION;
  req.attention = &a;
  Scree__V1__Response *resp;
  rc = rpc(c, &req, SCREE__V1__RESPONSE__BODY_ATTENTION, &resp);
  if (rc != 0)
    goto out;
  if (info != NULL)
    rc = info_from_pb(c, resp->attention->info, info);
  if (elapsed_ns != NULL)
    *elapsed_ns = resp->attention->elapsed_ns;
  scree__v1__response__free_unpacked(resp, NULL);
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}
