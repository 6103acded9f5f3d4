/* libscreeclient: the arenas this connection has imported.
 *
 * The daemon sends an arena's handle once per connection (once more,
 * writable, for a Create in an arena first read through a Get). The client
 * maps it on first use and keeps the mapping until the daemon says it freed
 * the arena (Response.freed_arenas) or the handle closes, so that attaching
 * to a batch afterwards is one request and no driver call. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_impl.h"
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
void scree__arenas_forget(scree_client *c, const uint64_t *ids, size_t n) {
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
  /* Refused here for every importer: there is nothing to map. */
  uint64_t t0 = scree__now_ns();
  int rc = size == 0 ? scree__client_fail(c, SCREE_EPROTO, "arena %" PRIu64 " has size 0",
                                          loc->arena_id)
                     : c->imp->import(&src, writable, &nm.base, &nm.device, &nm.state,
                                      c->err, sizeof(c->err));
  c->info.last_import_ns = scree__now_ns() - t0;
  if (src.fd >= 0)
    close(src.fd);
  scree__client_drop_fds(c);
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
    scree__client_drop_fds(c);
    return 0;
  }
  if (!loc->handle_attached) {
    /* No new handle: the daemon sent a writable one the first time (CUDA,
     * whose handles are all writable, or a daemon older than
     * Location.writable), so the mapping is upgraded where it is. */
    scree__client_drop_fds(c);
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
int scree__arena_resolve(scree_client *c, const Scree__V1__Location *loc, int writable,
                         scree__mapping **out) {
  if (loc == NULL)
    return scree__client_fail(c, SCREE_EPROTO, "the daemon's reply has no location");
  if (loc->values_offset > loc->arena_size ||
      loc->values_bytes > loc->arena_size - loc->values_offset ||
      loc->offsets_offset > loc->arena_size ||
      loc->offsets_bytes > loc->arena_size - loc->offsets_offset)
    return scree__client_fail(c, SCREE_EPROTO,
                "the daemon's location lies outside arena %" PRIu64 " of %" PRIu64 " bytes",
                loc->arena_id, loc->arena_size);
  if (c->imp == NULL)
    return scree__client_fail(c, SCREE_ENOTSUP, "%s", c->imp_err);

  scree__arena *a = arena_find(c, loc->arena_id);
  if (a != NULL) {
    if (loc->arena_size > a->size) {
      scree__client_drop_fds(c);
      return scree__client_fail(c, SCREE_EPROTO,
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
    scree__client_drop_fds(c);
    /* A Get in an arena this connection mapped only for writing (it created
     * batches there): views of sealed batches must not write them, so the
     * same memory is mapped once more, read-only, beside the writable
     * mapping, which keeps serving the connection's own created batches. */
    if (a->ro.base == NULL && c->imp->map_read_only != NULL) {
      int rc = c->imp->map_read_only(a->rw.base, a->size, a->rw.state, &a->ro.base,
                                     &a->ro.state, c->err, sizeof(c->err));
      if (rc != 0) {
        /* The message is already in c->err. */
        memset(&a->ro, 0, sizeof(a->ro));
        return rc;
      }
      a->ro.device = a->rw.device;
    }
    *out = a->ro.base != NULL ? &a->ro : &a->rw;
    return 0;
  }

  if (!loc->handle_attached) {
    scree__client_drop_fds(c);
    return scree__client_fail(c, SCREE_EPROTO,
                "the daemon sent no handle for arena %" PRIu64 ", which is not mapped here",
                loc->arena_id);
  }
  if (loc->arena_size > SIZE_MAX) {
    scree__client_drop_fds(c);
    return scree__client_fail(c, SCREE_EOVERFLOW, "arena of %" PRIu64 " bytes", loc->arena_size);
  }
  if (c->n_arenas == c->cap_arenas) {
    size_t ncap = c->cap_arenas ? c->cap_arenas * 2 : 8;
    scree__arena *na = realloc(c->arenas, ncap * sizeof(*na));
    if (na == NULL) {
      scree__client_drop_fds(c);
      return scree__client_fail(c, SCREE_ENOMEM, "out of memory for the arena cache");
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
int scree__arena_bind(scree_client *c, const Scree__V1__Location *loc, scree__mapping *ar,
                      scree_array *a) {
  uint64_t vbytes, obytes;
  char m[256];
  int rc = scree_array_check_desc(a, &vbytes, &obytes, m, sizeof(m));
  if (rc != 0)
    return scree__client_fail(c, SCREE_EPROTO, "the daemon's descriptor is invalid: %s", m);
  if (vbytes > loc->values_bytes || obytes > loc->offsets_bytes)
    return scree__client_fail(c, SCREE_EPROTO,
                "the daemon's location (%" PRIu64 " + %" PRIu64
                " bytes) is smaller than its descriptor needs (%" PRIu64 " + %" PRIu64 ")",
                loc->values_bytes, loc->offsets_bytes, vbytes, obytes);
  a->values = (unsigned char *)ar->base + loc->values_offset;
  a->offsets = (unsigned char *)ar->base + loc->offsets_offset;
  a->device = ar->device;
  return 0;
}

void scree__arenas_free(scree_client *c) {
  for (size_t i = 0; i < c->n_arenas; i++)
    arena_unmap(c, &c->arenas[i]);
  free(c->arenas);
  c->arenas = NULL;
  c->n_arenas = c->cap_arenas = 0;
}
