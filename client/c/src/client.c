/* libscreeclient: the public calls (scree/client.h). Each checks its
 * arguments, takes the handle's mutex, builds its request body and makes the
 * round trip through rpc.c; views of batches come from arena_cache.c. */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client_impl.h"

static const char scree__no_handle_msg[] = "no client handle (out of memory)";

/* Checks the struct_size of a versioned struct from the caller (scree/client.h,
 * "Structs that grow"). min is the struct's first published size: when a
 * member is added, min stays what it was and the code reads the new member
 * only where struct_size covers it. */
static int check_size(scree_client *c, size_t got, size_t min, const char *type,
                      const char *init) {
  if (got < min)
    return scree__client_fail(c, SCREE_EINVAL,
                              "%s.struct_size is %zu, less than the %zu bytes of its first "
                              "version: start from %s",
                              type, got, min, init);
  return 0;
}

#define SCREE__CHECK_SIZE(c, ptr, type, init) \
  check_size((c), (ptr)->struct_size, sizeof(type), #type, #init)

/* The same for a struct whose first published version ended before member
 * `first_added`. */
#define SCREE__CHECK_SIZE_UPTO(c, ptr, type, first_added, init) \
  check_size((c), (ptr)->struct_size, offsetof(type, first_added), #type, #init)

/* Whether the caller's struct reaches member m (one added after the
 * struct's first version): read it only then. */
#define SCREE__HAS(ptr, type, m) \
  ((ptr)->struct_size >= offsetof(type, m) + sizeof(((type *)0)->m))

/* The start of a call that takes an options struct, as
 * `int rc = SCREE__LOCK_OPTIONS(c, opts, type, INIT);`: NULL opts stand for
 * INIT (a compound literal, which lives as long as the caller's block), the
 * handle's mutex is taken (the caller unlocks it), and the value is
 * SCREE__CHECK_SIZE's code. */
#define SCREE__LOCK_OPTIONS(c, opts, type, init) \
  SCREE__LOCK_OPTIONS_MIN(c, opts, type, sizeof(type), #init, init)

/* The same for a struct whose first published version ended before member
 * `first_added` (SCREE__CHECK_SIZE_UPTO's rule). */
#define SCREE__LOCK_OPTIONS_UPTO(c, opts, type, first_added, init) \
  SCREE__LOCK_OPTIONS_MIN(c, opts, type, offsetof(type, first_added), #init, init)

/* The init macro's name comes stringified, before its expansion; the
 * expansion comes last and variadic, since it holds commas. */
#define SCREE__LOCK_OPTIONS_MIN(c, opts, type, min_size, init_name, ...) \
  ((opts) = (opts) != NULL ? (opts) : &(const type)__VA_ARGS__,          \
   pthread_mutex_lock(&(c)->mu),                                         \
   check_size((c), (opts)->struct_size, (min_size), #type, init_name))

static int check_name(scree_client *c, const char *name, const char *what) {
  if (name == NULL || name[0] == '\0')
    return scree__client_fail(c, SCREE_EINVAL, "%s name is %s", what,
                              name == NULL ? "NULL" : "empty");
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
    return scree__client_fail(c, SCREE_EPROTO, "the daemon's reply has no array descriptor");
  if (d->n_inner > SCREE_MAX_INNER_DIMS)
    return scree__client_fail(c, SCREE_EPROTO, "the daemon's descriptor has %zu inner dims", d->n_inner);
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
    return scree__client_fail(c, SCREE_EPROTO, "the daemon's reply has no batch info");
  scree_array desc;
  int rc = desc_from_pb(c, b->desc, &desc);
  if (rc == 0)
    *o = (scree_batch_info){
        .desc = desc,
        .state = (scree_batch_state)b->state,
        .values_bytes = b->values_bytes,
        .offsets_bytes = b->offsets_bytes,
        .leases = b->leases,
        .owner_uid = b->owner_uid, .owner_pid = b->owner_pid,
        .age_ns = b->age_ns,
        .arena_id = b->arena_id,
        .delete_pending = b->delete_pending ? 1 : 0,
    };
  /* o keeps the name even when the descriptor is refused. */
  snprintf(o->name, sizeof(o->name), "%s", b->name != NULL ? b->name : "");
  return rc;
}

/* A round trip whose reply describes one batch: the one looked at (Stat)
 * or made (Fetch, Attention). info, bytes and elapsed_ns, each when not NULL,
 * get the batch's info, the bytes fetched (Fetch) and the time the job took
 * (Attention). */
static int batch_call(scree_client *c, Scree__V1__Request__BodyCase body, void *req,
                      scree_batch_info *info, uint64_t *bytes, uint64_t *elapsed_ns) {
  Scree__V1__Response *resp;
  int rc = scree__call(c, body, req, &resp);
  if (rc != 0)
    return rc;
  const Scree__V1__BatchInfo *b;
  if (body == SCREE__V1__REQUEST__BODY_STAT) {
    b = resp->stat->info;
  } else if (body == SCREE__V1__REQUEST__BODY_FETCH) {
    b = resp->fetch->info;
    if (bytes != NULL)
      *bytes = resp->fetch->bytes;
  } else {
    b = resp->attention->info;
    if (elapsed_ns != NULL)
      *elapsed_ns = resp->attention->elapsed_ns;
  }
  if (info != NULL)
    rc = info_from_pb(c, b, info);
  scree__v1__response__free_unpacked(resp, NULL);
  return rc;
}

/* ---- public API ---- */

static int do_hello(scree_client *c) {
  Scree__V1__Hello hello = SCREE__V1__HELLO__INIT;
  hello.protocol_version = SCREE_CLIENT_PROTOCOL_VERSION;
  char name[64];
  snprintf(name, sizeof(name), "libscreeclient/%s[%ld]", program_invocation_short_name,
           (long)getpid());
  hello.client_name = name;
  Scree__V1__Response *resp;
  int rc = scree__call(c, SCREE__V1__REQUEST__BODY_HELLO, &hello, &resp);
  if (rc != 0)
    return rc;
  const Scree__V1__HelloReply *h = resp->hello;
  if (h->protocol_version != SCREE_CLIENT_PROTOCOL_VERSION) {
    scree__client_fail(c, SCREE_EPROTO, "the daemon speaks protocol version %" PRIu32 ", this client %d",
         h->protocol_version, SCREE_CLIENT_PROTOCOL_VERSION);
    scree__v1__response__free_unpacked(resp, NULL);
    return scree__client_kill(c, SCREE_EPROTO);
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
  i->inline_offsets = h->inline_offsets ? 1 : 0;
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

  int rc = scree__client_dial(c, path);
  if (rc != 0)
    goto err_dead;
  rc = do_hello(c);
  if (rc != 0)
    goto err_close;
  return 0;

err_close:
  close(c->fd);
  c->fd = -1;
err_dead:
  scree__client_kill(c, rc);
  return rc;
}

void scree_client_close(scree_client *c) {
  if (c == NULL)
    return;
  scree__client_drop_fds(c);
  if (c->fd >= 0)
    close(c->fd);
  scree__arenas_free(c);
  while (c->leases != NULL) {
    scree_lease *l = c->leases;
    c->leases = l->next;
    free(l);
  }
  free(c->rbuf);
  /* A pending pipelined Seal is not waited for: the daemon serves it
   * before it sees the connection close (client.h, scree_client_flush). */
  free(c->seal_name);
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
  int rc = SCREE__CHECK_SIZE_UPTO(c, out, scree_client_info, last_call_ns,
                                  SCREE_CLIENT_INFO_INIT);
  if (rc == 0) {
    scree_client_info i = c->info;
    i.arenas_mapped = (uint32_t)c->n_arenas;
    i.struct_size = out->struct_size;
    memcpy(out, &i, out->struct_size < sizeof(i) ? out->struct_size : sizeof(i));
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

static int delete_locked(scree_client *c, const char *name, int *deferred) {
  Scree__V1__Delete del = SCREE__V1__DELETE__INIT;
  del.name = scree__bytes(name);
  Scree__V1__Response *resp;
  int rc = scree__call(c, SCREE__V1__REQUEST__BODY_DELETE, &del, &resp);
  if (rc != 0)
    return rc;
  if (deferred != NULL)
    *deferred = resp->delete_->deferred ? 1 : 0;
  scree__v1__response__free_unpacked(resp, NULL);
  return 0;
}

/* Every flag of scree_client_put_flags and scree_client_create_flags. */
#define SCREE__CREATE_FLAGS SCREE_CREATE_SHARED

/* Create and bind; the caller holds the mutex. batch_id (may be NULL)
 * receives the created batch's id. */
static int create_locked(scree_client *c, const char *name, const scree_array *desc,
                         unsigned flags, scree_array *out, scree__mapping **arena_out,
                         uint64_t *batch_id) {
  int rc = check_name(c, name, "batch");
  if (rc != 0)
    return rc;
  if ((flags & ~SCREE__CREATE_FLAGS) != 0)
    return scree__client_fail(c, SCREE_EINVAL, "flags=0x%x has unknown bits 0x%x", flags,
                flags & ~SCREE__CREATE_FLAGS);
  if (desc == NULL || out == NULL)
    return scree__client_fail(c, SCREE_EINVAL, "NULL array argument");
  char m[256];
  rc = scree_array_check_desc(desc, NULL, NULL, m, sizeof(m));
  if (rc != 0)
    return scree__client_fail(c, rc, "%s", m);
  if (c->dead)
    return scree__client_fail(c, SCREE_EDISCONNECTED, "%s", c->dead_reason);
  if (c->imp == NULL)
    return scree__client_fail(c, SCREE_ENOTSUP, "%s", c->imp_err);

  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  desc_to_pb(desc, &d);
  Scree__V1__Create cr = SCREE__V1__CREATE__INIT;
  cr.name = scree__bytes(name);
  cr.desc = &d;
  cr.shared = (flags & SCREE_CREATE_SHARED) != 0;
  Scree__V1__Response *resp;
  rc = scree__call(c, SCREE__V1__REQUEST__BODY_CREATE, &cr, &resp);
  if (rc != 0)
    return rc;
  scree__mapping *ar;
  rc = scree__arena_resolve(c, resp->create->location, 1, &ar);
  if (rc != 0)
    goto err_delete;
  *out = *desc;
  out->max_length = 0;
  rc = scree__arena_bind(c, resp->create->location, ar, out);
  if (rc != 0)
    goto err_delete;
  if (batch_id != NULL)
    *batch_id = resp->create->batch_id;
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

/* Seals name, sending offsets inline (NULL: none; the caller checked that
 * the daemon takes them and that they fit its packet limit). */
static int seal_locked(scree_client *c, const char *name, const void *offsets,
                       size_t offsets_len) {
  int rc = check_name(c, name, "batch");
  if (rc != 0)
    return rc;
  Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
  s.name = scree__bytes(name);
  if (offsets != NULL) {
    s.offsets.data = (uint8_t *)offsets;
    s.offsets.len = offsets_len;
  }
  return scree__call(c, SCREE__V1__REQUEST__BODY_SEAL, &s, NULL);
}

/* As seal_locked, without waiting for the reply, which scree__seal_collect
 * takes later; delete_on_failure says whether a failure deletes the batch
 * (put) or leaves it created (seal). */
static int seal_send(scree_client *c, const char *name, const void *offsets,
                     size_t offsets_len, int delete_on_failure) {
  int rc = check_name(c, name, "batch");
  if (rc == 0)
    rc = scree__client_busy(c);
  if (rc != 0)
    return rc;
  /* An earlier pending seal is taken first, so that at most one is. */
  rc = scree__seal_collect(c);
  if (rc != 0)
    return rc;
  char *copy = strdup(name);
  if (copy == NULL)
    return scree__client_fail(c, SCREE_ENOMEM, "out of memory");
  Scree__V1__Seal s = SCREE__V1__SEAL__INIT;
  s.name = scree__bytes(name);
  if (offsets != NULL) {
    s.offsets.data = (uint8_t *)offsets;
    s.offsets.len = offsets_len;
  }
  uint64_t id;
  rc = scree__call_send(c, SCREE__V1__REQUEST__BODY_SEAL, &s, &id);
  if (rc != 0) {
    free(copy);
    return rc;
  }
  c->seal_id = id;
  c->seal_name = copy;
  c->seal_delete = delete_on_failure;
  return 0;
}

int scree__seal_collect(scree_client *c) {
  uint64_t id = c->seal_id;
  if (id == 0)
    return 0;
  char *name = c->seal_name;
  c->seal_id = 0;
  c->seal_name = NULL;
  int rc = scree__call_recv(c, SCREE__V1__REQUEST__BODY_SEAL, id, NULL);
  if (rc != 0) {
    char why[sizeof(c->err)];
    memcpy(why, c->err, sizeof(why));
    /* As a put that waits: the half-made batch goes, so the name is free
     * again (not when the connection is gone: it went with it). */
    if (c->seal_delete && !c->dead)
      delete_locked(c, name, NULL);
    scree__client_fail(c, rc, "the seal of '%s', sent without waiting for its reply, failed: %.900s",
                       name, why);
  }
  free(name);
  return rc;
}

int scree_client_flush(scree_client *c) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  int rc = scree__seal_collect(c);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_create(scree_client *c, const char *name, const scree_array *desc,
                        scree_array *out, const scree_create_options *opts) {
  if (c == NULL)
    return SCREE_EINVAL;
  int rc = SCREE__LOCK_OPTIONS_UPTO(c, opts, scree_create_options, batch_id,
                                    SCREE_CREATE_OPTIONS_INIT);
  if (rc == 0)
    rc = create_locked(c, name, desc, opts->flags, out, NULL,
                       SCREE__HAS(opts, scree_create_options, batch_id) ? opts->batch_id : NULL);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_seal(scree_client *c, const char *name, const scree_seal_options *opts) {
  if (c == NULL)
    return SCREE_EINVAL;
  int rc = SCREE__LOCK_OPTIONS_UPTO(c, opts, scree_seal_options, async, SCREE_SEAL_OPTIONS_INIT);
  if (rc != 0)
    goto out;
  int async = SCREE__HAS(opts, scree_seal_options, async) && opts->async;
  /* The daemon reads the offsets through its own mapping as soon as Seal
   * arrives, so this process's writes into the arena must have landed. */
#ifdef SCREE_CLIENT_HAVE_CUDA
  if (opts->stream != NULL || c->info.backend == SCREE_BACKEND_CUDA)
    rc = scree__cuda_sync(opts->stream, c->err, sizeof(c->err));
#else
  if (opts->stream != NULL)
    rc = scree__client_fail(c, SCREE_ENOTSUP,
                            "this libscreeclient was built without CUDA: no stream to wait for");
#endif
  if (rc == 0)
    rc = async ? seal_send(c, name, NULL, 0, 0) : seal_locked(c, name, NULL, 0);
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}

/* Bytes a Seal may take beyond its inline offsets and name: the envelope
 * needs a few dozen. */
#define SCREE__SEAL_SLACK 1024

/* Whether a put's offsets (obytes of them) go inline with its Seal. */
static int inline_fits(const scree_client *c, const char *name, uint64_t obytes) {
  return c->info.inline_offsets && obytes + strlen(name) + SCREE__SEAL_SLACK <= c->info.max_packet;
}

int scree_client_put(scree_client *c, const char *name, const scree_array *a,
                     const scree_put_options *opts) {
  if (c == NULL)
    return SCREE_EINVAL;
  int rc = SCREE__LOCK_OPTIONS_UPTO(c, opts, scree_put_options, async_seal,
                                    SCREE_PUT_OPTIONS_INIT);
  uint64_t vbytes, obytes;
  char m[256];
  void *stream = opts->stream;
  if (rc != 0)
    goto out;
  int async_seal = SCREE__HAS(opts, scree_put_options, async_seal) && opts->async_seal;
  if (a == NULL) {
    rc = scree__client_fail(c, SCREE_EINVAL, "NULL array");
    goto out;
  }
  rc = scree_array_check_desc(a, &vbytes, &obytes, m, sizeof(m));
  if (rc != 0) {
    rc = scree__client_fail(c, rc, "%s", m);
    goto out;
  }
  if ((vbytes > 0 && a->values == NULL) || a->offsets == NULL) {
    rc = scree__client_fail(c, SCREE_EINVAL, "%s pointer is NULL", a->offsets == NULL ? "offsets" : "values");
    goto out;
  }
  rc = check_name(c, name, "batch");
  if (rc != 0)
    goto out;
  int on_gpu = a->device.type == SCREE_DEVICE_CUDA;
  if (!on_gpu) {
    /* Checking here saves a create (and a delete) for the common mistake,
     * and gives the same message the daemon would. */
    rc = scree_offsets_validate(a->offsets, a->offsets_dtype, a->batch_size, a->total_rows,
                                NULL, m, sizeof(m));
    if (rc != 0) {
      rc = scree__client_fail(c, rc, "%s", m);
      goto out;
    }
  }
  if ((on_gpu || stream != NULL) && c->imp != NULL && c->imp->copy_in_async == NULL) {
    /* A stream orders copies from GPU memory, which this daemon does not
     * take: it is refused rather than ignored, even with a host array, so
     * that a caller who meant a GPU put learns it here. */
    if (on_gpu)
      rc = scree__client_fail(c, SCREE_ENOTSUP,
                "this daemon keeps batches in %s memory: put takes host arrays here "
                "(copy GPU data to the host first, or run screed --device N)",
                scree_backend_name(c->info.backend));
    else
      rc = scree__client_fail(c, SCREE_ENOTSUP,
                "this daemon keeps batches in %s memory, where a put has no GPU copies "
                "for a stream to order: pass no stream (NULL) with a host array",
                scree_backend_name(c->info.backend));
    goto out;
  }
  /* A host array's offsets go inline with Seal where the daemon asks for
   * them (host-memory daemons: HelloReply.inline_offsets) and they fit;
   * otherwise they are copied into the batch and the daemon reads them
   * back at seal. */
  const void *host_offsets = !on_gpu && inline_fits(c, name, obytes) ? a->offsets : NULL;
  scree_array dst;
  scree__mapping *ar;
  rc = create_locked(c, name, a, opts->flags, &dst, &ar, NULL);
  if (rc != 0)
    goto out;
  const scree__importer *imp = c->imp;
  void *state = ar->state;
  if (imp->copy_in_async != NULL) {
    /* GPU arenas: the copies are queued on one stream, then waited for
     * once (that stream only), so that the batch is whole at Seal. */
    rc = imp->copy_in_async(dst.values, a->values, (size_t)vbytes, stream, state, c->err,
                            sizeof(c->err));
    if (rc == 0 && host_offsets == NULL)
      rc = imp->copy_in_async(dst.offsets, a->offsets, (size_t)obytes, stream, state, c->err,
                              sizeof(c->err));
    if (rc == 0 && imp->sync != NULL)
      rc = imp->sync(stream, state, c->err, sizeof(c->err));
  } else {
    rc = imp->copy_in(dst.values, a->values, (size_t)vbytes, state, c->err, sizeof(c->err));
    if (rc == 0 && host_offsets == NULL)
      rc = imp->copy_in(dst.offsets, a->offsets, (size_t)obytes, state, c->err,
                        sizeof(c->err));
  }
  if (rc == 0)
    rc = async_seal ? seal_send(c, name, host_offsets, (size_t)obytes, 1)
                    : seal_locked(c, name, host_offsets, (size_t)obytes);
  if (rc != 0)
    goto err_delete;
  if (host_offsets != NULL)
    c->info.inline_puts++;
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

int scree__release_locked(scree_client *c, uint64_t lease_id) {
  Scree__V1__Release r = SCREE__V1__RELEASE__INIT;
  r.lease_id = lease_id;
  return scree__call(c, SCREE__V1__REQUEST__BODY_RELEASE, &r, NULL);
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
    rc = scree__client_fail(c, SCREE_EINVAL, "NULL array argument");
    goto out;
  }
  if (lease != NULL) {
    /* Allocated before asking, so that a lease granted by the daemon always
     * has an object to be released through. */
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
      rc = scree__client_fail(c, SCREE_ENOMEM, "out of memory for a lease");
      goto out;
    }
  }
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  g.name = scree__bytes(name);
  rc = scree__call(c, SCREE__V1__REQUEST__BODY_GET, &g, &resp);
  if (rc != 0)
    goto err_free_lease;
  rc = scree__get_finish(c, resp, out, l, lease);
  goto out;

err_free_lease:
  free(l);
out:
  if (resp != NULL)
    scree__v1__response__free_unpacked(resp, NULL);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree__get_finish(scree_client *c, const Scree__V1__Response *resp, scree_array *out,
                      scree_lease *l, scree_lease **lease) {
  uint64_t lease_id = resp->get->lease_id;
  scree__mapping *ar;
  scree_array a;
  int rc = desc_from_pb(c, resp->get->info != NULL ? resp->get->info->desc : NULL, &a);
  if (rc == 0)
    rc = scree__arena_resolve(c, resp->get->location, 0, &ar);
  if (rc == 0)
    rc = scree__arena_bind(c, resp->get->location, ar, &a);
  if (rc != 0) {
    /* The daemon granted a lease this call cannot hand out. */
    char keep[sizeof(c->err)];
    memcpy(keep, c->err, sizeof(keep));
    scree__release_locked(c, lease_id);
    memcpy(c->err, keep, sizeof(keep));
    free(l);
    return rc;
  }
  *out = a;
  if (l != NULL) {
    l->id = lease_id;
    l->batch_id = resp->get->info != NULL ? resp->get->info->batch_id : 0;
    l->next = c->leases;
    if (c->leases != NULL)
      c->leases->prev = l;
    c->leases = l;
    *lease = l;
  }
  return 0;
}

uint64_t scree_lease_batch_id(const scree_lease *lease) {
  return lease != NULL ? lease->batch_id : 0;
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
  uint64_t id = lease->id;
  free(lease);
  /* The lease object is gone, so the lease is released even when a
   * pipelined seal's failure is what this call reports. */
  char why[sizeof(c->err)];
  int seal_rc = scree__seal_collect(c);
  if (seal_rc != 0)
    memcpy(why, c->err, sizeof(why));
  int rc = scree__release_locked(c, id);
  if (seal_rc != 0) {
    memcpy(c->err, why, sizeof(why));
    rc = seal_rc;
  }
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
  /* The message goes into c->err, which other threads' calls write under
   * the mutex: take it before failing too. */
  pthread_mutex_lock(&c->mu);
  scree_batch_info *items = NULL;
  size_t n = 0, cap = 0;
  char *token = NULL;
  int rc = 0;
  if (out == NULL || count == NULL) {
    rc = scree__client_fail(c, SCREE_EINVAL, "NULL output argument");
    goto out;
  }
  *out = NULL;
  *count = 0;
  token = strdup("");
  if (token == NULL) {
    rc = scree__client_fail(c, SCREE_ENOMEM, "out of memory");
    goto out;
  }
  for (;;) {
    Scree__V1__List l = SCREE__V1__LIST__INIT;
    l.prefix = scree__bytes((prefix != NULL ? prefix : ""));
    l.page_token = scree__bytes(token);
    l.page_size = 0;
    Scree__V1__Response *resp;
    rc = scree__call(c, SCREE__V1__REQUEST__BODY_LIST, &l, &resp);
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
        rc = scree__client_fail(c, SCREE_ENOMEM, "out of memory for %zu list entries", ncap);
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
      rc = scree__client_fail(c, SCREE_EPROTO, "the daemon's list page token did not advance past '%s'",
                token);
      goto err_items;
    }
    char *nt = strdup(next);
    scree__v1__response__free_unpacked(resp, NULL);
    if (nt == NULL) {
      rc = scree__client_fail(c, SCREE_ENOMEM, "out of memory");
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
    rc = scree__client_fail(c, SCREE_EINVAL, "NULL output argument");
  if (rc != 0)
    goto out;
  Scree__V1__Stat s = SCREE__V1__STAT__INIT;
  s.name = scree__bytes(name);
  rc = batch_call(c, SCREE__V1__REQUEST__BODY_STAT, &s, out, NULL, NULL);
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}

/* One Stats round trip (scree_client_stats, scree_client_peer_stats): *resp
 * is the caller's to free. */
static int stats_call(scree_client *c, Scree__V1__Response **resp) {
  Scree__V1__Stats s = SCREE__V1__STATS__INIT;
  return scree__call(c, SCREE__V1__REQUEST__BODY_STATS, &s, resp);
}

int scree_client_stats(scree_client *c, scree_stats *out) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  Scree__V1__Response *resp = NULL;
  int rc = 0;
  if (out == NULL) {
    rc = scree__client_fail(c, SCREE_EINVAL, "NULL output argument");
    goto out;
  }
  /* The first published scree_stats ended with errors[]. */
  rc = check_size(c, out->struct_size, offsetof(scree_stats, waiters), "scree_stats",
                  "SCREE_STATS_INIT");
  if (rc == 0)
    rc = stats_call(c, &resp);
  if (rc != 0)
    goto out;
  const Scree__V1__StatsReply *r = resp->stats;
  /* Filled whole here, then copied as far as the caller's struct reaches. */
  scree_stats st;
  memset(&st, 0, sizeof(st));
  st.struct_size = out->struct_size;
  st.bytes_used = r->bytes_used;
  st.bytes_limit = r->bytes_limit;
  st.bytes_arenas = r->bytes_arenas;
  st.batches = r->batches;
  st.connections = r->connections;
  st.leases = r->leases;
  st.arenas = r->arenas;
  st.pending_deletes = r->pending_deletes;
  st.requests = r->requests;
  st.uptime_ns = r->uptime_ns;
  for (size_t i = 0; i < r->n_errors && st.n_errors < SCREE_STATS_MAX_ERRORS; i++) {
    if (r->errors[i] == NULL)
      continue;
    st.errors[st.n_errors].code = r->errors[i]->code;
    st.errors[st.n_errors].count = r->errors[i]->count;
    st.n_errors++;
  }
  st.waiters = r->waiters;
  st.watchers = r->watchers;
  st.watch_overflows = r->watch_overflows;
  memcpy(out, &st, out->struct_size < sizeof(st) ? out->struct_size : sizeof(st));
out:
  scree__v1__response__free_unpacked(resp, NULL);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_peer_stats(scree_client *c, scree_peer_stats *out, size_t max,
                            size_t *count) {
  if (c == NULL)
    return SCREE_EINVAL;
  pthread_mutex_lock(&c->mu);
  Scree__V1__Response *resp = NULL;
  int rc = 0;
  if (count == NULL || (out == NULL && max > 0)) {
    rc = scree__client_fail(c, SCREE_EINVAL, "NULL %s argument", count == NULL ? "count" : "out");
    goto out;
  }
  if (max > 0)
    rc = SCREE__CHECK_SIZE(c, out, scree_peer_stats, SCREE_PEER_STATS_INIT);
  if (rc == 0)
    rc = stats_call(c, &resp);
  if (rc != 0)
    goto out;
  const Scree__V1__StatsReply *r = resp->stats;
  /* The caller's elements are out[0].struct_size bytes apart: its header's
   * sizeof, which may be smaller (or larger) than this library's. */
  size_t stride = max > 0 ? out->struct_size : 0;
  for (size_t i = 0; i < r->n_peers && i < max; i++) {
    const Scree__V1__PeerStats *ps = r->peers[i];
    scree_peer_stats st;
    memset(&st, 0, sizeof(st));
    st.struct_size = stride;
    if (ps != NULL) {
      snprintf(st.name, sizeof(st.name), "%s", ps->name ? ps->name : "");
      st.connected = ps->connected != 0;
      st.batches_fetched = ps->batches_fetched;
      st.bytes_fetched = ps->bytes_fetched;
      for (size_t k = 0; k < ps->n_failures; k++) {
        const Scree__V1__PeerFailure *f = ps->failures[k];
        if (f == NULL)
          continue;
        int cause = SCREE_FETCH_FAIL_OTHER;
        for (int j = 0; j < SCREE_FETCH_FAIL_COUNT_; j++)
          if (f->cause != NULL && strcmp(f->cause, scree_fetch_failure_name(j)) == 0)
            cause = j;
        st.failures[cause] += f->count;
      }
      st.mirrors = ps->mirrors;
      st.batches_mirrored = ps->batches_mirrored;
      st.mirror_deletes = ps->mirror_deletes;
      st.mirror_resyncs = ps->mirror_resyncs;
    }
    memcpy((char *)out + i * stride, &st, stride < sizeof(st) ? stride : sizeof(st));
  }
  *count = r->n_peers;
out:
  scree__v1__response__free_unpacked(resp, NULL);
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_fetch_ex(scree_client *c, const char *peer, const char *remote_name,
                          const char *local_name, const scree_fetch_options *opts,
                          scree_batch_info *info, uint64_t *bytes) {
  if (c == NULL)
    return SCREE_EINVAL;
  int rc = SCREE__LOCK_OPTIONS(c, opts, scree_fetch_options, SCREE_FETCH_OPTIONS_INIT);
  if (rc == 0 && (peer == NULL || peer[0] == '\0'))
    rc = scree__client_fail(c, SCREE_EINVAL, "fetch needs a peer name");
  if (rc == 0)
    rc = check_name(c, remote_name, "remote_name");
  if (rc == 0 && local_name != NULL && local_name[0] != '\0')
    rc = check_name(c, local_name, "local_name");
  if (rc == 0 && opts->wait_ms != SCREE_FETCH_NO_WAIT && opts->wait_ms < -1)
    rc = scree__client_fail(c, SCREE_EINVAL,
                            "wait_ms is %" PRId64 "; it must be -1, >= 0 or SCREE_FETCH_NO_WAIT",
                            opts->wait_ms);
  if (rc != 0)
    goto out;
  Scree__V1__Fetch f = SCREE__V1__FETCH__INIT;
  f.peer = (char *)peer;
  f.name = (char *)remote_name;
  f.as_name = (char *)(local_name != NULL ? local_name : "");
  if (opts->wait_ms != SCREE_FETCH_NO_WAIT) {
    f.wait_present_case = SCREE__V1__FETCH__WAIT_PRESENT_WAIT_MS;
    f.wait_ms = opts->wait_ms;
  }
  f.timeout_ms = opts->timeout_ms;
  rc = batch_call(c, SCREE__V1__REQUEST__BODY_FETCH, &f, info, bytes, NULL);
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}

int scree_client_fetch(scree_client *c, const char *peer, const char *remote_name,
                       const char *local_name, uint64_t timeout_ms) {
  scree_fetch_options o = SCREE_FETCH_OPTIONS_INIT;
  o.timeout_ms = timeout_ms;
  return scree_client_fetch_ex(c, peer, remote_name, local_name, &o, NULL, NULL);
}

int scree_client_attention(scree_client *c, const char *q, const char *k, const char *v,
                           const char *out, const scree_attention_params *p,
                           scree_batch_info *info, uint64_t *elapsed_ns) {
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
  static const scree_attention_params defaults = SCREE_ATTENTION_PARAMS_INIT;
  if (p == NULL)
    p = &defaults;
  if (rc == 0)
    rc = SCREE__CHECK_SIZE(c, p, scree_attention_params, SCREE_ATTENTION_PARAMS_INIT);
  if (rc != 0)
    goto out;
  Scree__V1__Attention a = SCREE__V1__ATTENTION__INIT;
  a.q = scree__bytes(q);
  a.k = scree__bytes(k);
  a.v = scree__bytes(v);
  a.out = scree__bytes(out);
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
  rc = batch_call(c, SCREE__V1__REQUEST__BODY_ATTENTION, &a, info, NULL, elapsed_ns);
out:
  pthread_mutex_unlock(&c->mu);
  return rc;
}
