/* scree._native.Client and scree._native.Lease. */
#include "native.h"

#include <string.h>
#include <unistd.h>

int scree__py_handle_usable(int closed, pid_t pid, const char *what, const char *made,
                            const char *instead) {
  char msg[256];
  if (closed)
    snprintf(msg, sizeof(msg), "the %s is closed", what);
  else if (pid != getpid())
    snprintf(msg, sizeof(msg),
             "this %s was %s by another process (before a fork); %s in this process", what,
             made, instead);
  else
    return 1;
  scree__py_raise(SCREE_EDISCONNECTED, msg);
  return 0;
}

int scree__py_client_usable(scree__py_client *self) {
  if (!scree__py_handle_usable(self->c == NULL || self->closing, self->pid, "client",
                               "connected", "connect a new one"))
    return 0;
  if (self->held_rc != 0) {
    const int rc = self->held_rc;
    self->held_rc = 0;
    scree__py_raise(rc, self->held_err);
    return 0;
  }
  return 1;
}

/* Releases l for a caller that cannot raise (a Lease going away). The
 * reply of a pipelined seal still pending is taken first, under the same
 * hold of the lock (scree_client_flush: nothing to do when none is), so
 * that its failure, which the release would otherwise take and return in
 * its place, is kept for the next method to raise. libscreeclient alone
 * knows whether a seal is pending: a method can return before its call
 * takes the reply (a check made in this process, or one that sends
 * nothing, such as info), so a mark kept here would be wrong. The
 * release's own answer does not matter: a lost connection drops its
 * leases. */
static void release_holding_seal_failure(scree__py_client *client, scree_lease *l) {
  int seal_rc;
  char err[SCREE__ERRMSG];
  SCREE__LOCKED(client->lock, seal_rc = scree_client_flush(client->c);
                if (seal_rc < 0) snprintf(err, sizeof(err), "%s",
                                          scree_client_last_error(client->c));
                (void)scree_client_release(client->c, l));
  if (seal_rc < 0 && client->held_rc == 0) {
    client->held_rc = seal_rc;
    snprintf(client->held_err, sizeof(client->held_err), "%s", err);
  }
}

/* Closes the handle (unmapping every arena) once nothing can point into it.
 * A forked child only closes its copies of the fd and mappings, which does
 * not disturb the parent's connection. */
static void client_really_close(scree__py_client *self) {
  scree_client *c = self->c;
  if (c == NULL)
    return;
  self->c = NULL;
  SCREE__LOCKED(self->lock, scree_client_close(c));
}

void scree__py_client_unown(scree__py_client *self) {
  self->owners--;
  if (self->closing && self->owners == 0)
    client_really_close(self);
}

static int client_init(scree__py_client *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"socket", NULL};
  const char *path = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|z:Client", kwlist, &path))
    return -1;
  if (self->c != NULL) {
    PyErr_SetString(PyExc_RuntimeError, "Client.__init__ called twice");
    return -1;
  }
  if (self->lock == NULL) {
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
      PyErr_NoMemory();
      return -1;
    }
  }
  scree_client *c = NULL;
  int rc;
  char err[SCREE__ERRMSG] = "";
  Py_BEGIN_ALLOW_THREADS
  rc = scree_client_connect(path, &c);
  if (rc < 0)
    snprintf(err, sizeof(err), "%s", scree_client_last_error(c));
  if (rc < 0 && c != NULL) {
    scree_client_close(c);
    c = NULL;
  }
  Py_END_ALLOW_THREADS
  if (rc < 0) {
    scree__py_raise(rc, err);
    return -1;
  }
  self->c = c;
  self->pid = getpid();
  self->closing = 0;
  self->owners = 0;
  return 0;
}

static void client_dealloc(scree__py_client *self) {
  /* Every Lease holds a reference, so none is left here. */
  client_really_close(self);
  if (self->lock != NULL)
    PyThread_free_lock(self->lock);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *client_close(scree__py_client *self, PyObject *unused) {
  self->closing = 1;
  if (self->owners == 0)
    client_really_close(self);
  Py_RETURN_NONE;
}

static PyObject *client_get_closed(scree__py_client *self, void *unused) {
  return PyBool_FromLong(self->c == NULL || self->closing);
}

/* scree_client_socket: the path connected to (chosen from the resolution
 * order when Client() was given none); "" once closed. */
static PyObject *client_get_socket(scree__py_client *self, void *unused) {
  return PyUnicode_DecodeFSDefault(self->c != NULL ? scree_client_socket(self->c) : "");
}

static PyObject *client_get_connected(scree__py_client *self, void *unused) {
  return PyBool_FromLong(self->c != NULL);
}

static PyObject *client_get_owners(scree__py_client *self, void *unused) {
  return PyLong_FromSsize_t(self->owners);
}

static PyObject *client_info(scree__py_client *self, PyObject *unused) {
  if (!scree__py_client_usable(self))
    return NULL;
  scree_client_info in = SCREE_CLIENT_INFO_INIT;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_info_get(self->c, &in));
  if (rc < 0)
    return scree__py_raise(rc, err);
  PyObject *uuid = in.has_device_uuid
                       ? PyBytes_FromStringAndSize((const char *)in.device_uuid, 16)
                       : Py_NewRef(Py_None);
  if (uuid == NULL)
    return NULL;
  return Py_BuildValue(
      "{s:I,s:s,s:s,s:i,s:s,s:N,s:K,s:K,s:K,s:K,s:I,s:s,s:I,s:K,s:K}",
      "protocol_version", in.protocol_version,
      "backend", scree_backend_name(in.backend),
      "ipc_mode", scree_ipc_mode_name(in.ipc_mode),
      "device_index", (int)in.device_index,
      "device_name", in.device_name,
      "device_uuid", uuid,
      "granularity", (unsigned long long)in.granularity,
      "memory_limit", (unsigned long long)in.memory_limit,
      "max_packet", (unsigned long long)in.max_packet,
      "arena_size", (unsigned long long)in.arena_size,
      "max_name_len", in.max_name_len,
      "daemon_version", in.daemon_version,
      "arenas_mapped", in.arenas_mapped,
      "arena_imports", (unsigned long long)in.arena_imports,
      "stray_fds_closed", (unsigned long long)in.stray_fds_closed);
}

/* Fills a descriptor from Python's (dtype, inner, batch_size, total_rows,
 * offsets_dtype). */
static int parse_desc(int dtype, PyObject *inner, long long batch_size, long long total_rows,
                      int offsets_dtype, scree_array *a) {
  memset(a, 0, sizeof(*a));
  PyObject *seq = PySequence_Fast(inner, "inner_shape must be a sequence of ints");
  if (seq == NULL)
    return -1;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  if (n > SCREE_MAX_INNER_DIMS) {
    Py_DECREF(seq);
    scree__py_raise(SCREE_EINVAL, "too many inner dimensions");
    return -1;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    long long d = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
    if (d == -1 && PyErr_Occurred()) {
      Py_DECREF(seq);
      return -1;
    }
    a->inner[i] = d;
  }
  Py_DECREF(seq);
  a->ndim_inner = (int32_t)n;
  a->dtype = (scree_dtype)dtype;
  a->offsets_dtype = (scree_dtype)offsets_dtype;
  a->batch_size = batch_size;
  a->total_rows = total_rows;
  a->device.type = SCREE_DEVICE_CPU;
  return 0;
}

static PyObject *client_put(scree__py_client *self, PyObject *args) {
  const char *name;
  int dtype, offsets_dtype;
  PyObject *inner;
  long long batch_size, total_rows;
  Py_buffer values, offsets;
  int shared = 0, pipelined = 0;
  if (!PyArg_ParseTuple(args, "siOLLiy*y*|pp:put", &name, &dtype, &inner, &batch_size,
                        &total_rows, &offsets_dtype, &values, &offsets, &shared, &pipelined))
    return NULL;
  PyObject *result = NULL;
  scree_array a;
  if (!scree__py_client_usable(self) ||
      parse_desc(dtype, inner, batch_size, total_rows, offsets_dtype, &a) < 0)
    goto done;
  uint64_t vbytes, obytes;
  char err[SCREE__ERRMSG];
  int rc = scree_array_check_desc(&a, &vbytes, &obytes, err, sizeof(err));
  if (rc < 0) {
    scree__py_raise(rc, err);
    goto done;
  }
  if ((uint64_t)values.len != vbytes || (uint64_t)offsets.len != obytes) {
    PyErr_Format(PyExc_ValueError,
                 "buffers of %zd and %zd bytes for a batch of %llu value bytes and %llu "
                 "offset bytes",
                 values.len, offsets.len, (unsigned long long)vbytes,
                 (unsigned long long)obytes);
    goto done;
  }
  a.values = values.buf;
  a.offsets = offsets.buf;
  scree_put_options po = SCREE_PUT_OPTIONS_INIT;
  po.flags = shared ? SCREE_CREATE_SHARED : 0;
  po.async_seal = pipelined;
  SCREE__CALL(self, rc, err, scree_client_put(self->c, name, &a, &po));
  if (rc < 0) {
    scree__py_raise(rc, err);
    goto done;
  }
  result = Py_NewRef(Py_None);
done:
  PyBuffer_Release(&values);
  PyBuffer_Release(&offsets);
  return result;
}

/* Tells fault.c where this lease's read-only memory lies, so that a write
 * through a torch view of it dies with a message naming the batch. Nothing
 * here can fail the get: without a slot the fault just has no message. */
static void register_read_only(scree__py_lease *self, const char *name) {
  const scree_array *a = &self->arr;
  uint64_t vbytes = scree_dtype_size(a->dtype) * (uint64_t)a->total_rows;
  for (int i = 0; i < a->ndim_inner; i++)
    vbytes *= (uint64_t)a->inner[i];
  uint64_t obytes = scree_dtype_size(a->offsets_dtype) * (uint64_t)(a->batch_size + 1);
  if (scree__fault_install() < 0)
    return;
  self->fault_slots[0] = scree__fault_register(a->values, (size_t)vbytes, name);
  self->fault_slots[1] = scree__fault_register(a->offsets, (size_t)obytes, name);
}

PyObject *scree__py_lease_new(scree__py_client *client, scree_lease *l, const scree_array *a,
                              int writable, const char *name) {
  scree__py_lease *self = PyObject_New(scree__py_lease, &scree__py_lease_type);
  if (self == NULL) {
    if (l != NULL) {
      /* No object to release it through later: hand the lease back now. */
      release_holding_seal_failure(client, l);
    }
    return NULL;
  }
  self->client = (scree__py_client *)Py_NewRef((PyObject *)client);
  self->lease = l;
  self->batch_id = scree_lease_batch_id(l);
  self->arr = *a;
  self->writable = writable;
  self->name = NULL;
  self->fault_slots[0] = self->fault_slots[1] = -1;
  client->owners++;
  /* From here on, dealloc releases the lease whatever fails. */
  self->name = PyUnicode_FromString(name);
  if (self->name == NULL) {
    Py_DECREF(self);
    return NULL;
  }
  if (!writable && a->device.type == SCREE_DEVICE_CPU)
    register_read_only(self, name);
  return (PyObject *)self;
}

static PyObject *client_create(scree__py_client *self, PyObject *args) {
  const char *name;
  int dtype, offsets_dtype;
  PyObject *inner;
  long long batch_size, total_rows;
  int shared = 0;
  if (!PyArg_ParseTuple(args, "siOLLi|p:create", &name, &dtype, &inner, &batch_size,
                        &total_rows, &offsets_dtype, &shared))
    return NULL;
  scree_array desc, out;
  if (!scree__py_client_usable(self) ||
      parse_desc(dtype, inner, batch_size, total_rows, offsets_dtype, &desc) < 0)
    return NULL;
  int rc;
  char err[SCREE__ERRMSG];
  /* The created batch's id comes with Create's reply, for a pickled Batch
   * to be told from a later one of its name (0 from a daemon that does not
   * say: the Batch is then identified at pickle time by the id the name
   * holds then). */
  uint64_t id = 0;
  scree_create_options co = SCREE_CREATE_OPTIONS_INIT;
  co.flags = shared ? SCREE_CREATE_SHARED : 0;
  co.batch_id = &id;
  SCREE__CALL(self, rc, err, scree_client_create(self->c, name, &desc, &out, &co));
  if (rc < 0)
    return scree__py_raise(rc, err);
  PyObject *lease = scree__py_lease_new(self, NULL, &out, 1, name);
  if (lease != NULL)
    ((scree__py_lease *)lease)->batch_id = id;
  return lease;
}

static PyObject *client_seal(scree__py_client *self, PyObject *args) {
  const char *name;
  int pipelined = 0;
  if (!PyArg_ParseTuple(args, "s|p:seal", &name, &pipelined) || !scree__py_client_usable(self))
    return NULL;
  int rc;
  char err[SCREE__ERRMSG];
  scree_seal_options so = SCREE_SEAL_OPTIONS_INIT;
  so.async = pipelined;
  SCREE__CALL(self, rc, err, scree_client_seal(self->c, name, &so));
  if (rc < 0)
    return scree__py_raise(rc, err);
  Py_RETURN_NONE;
}

/* The result of a seal sent without waiting (put or seal with pipelined):
 * None, or the seal's error raised. */
static PyObject *client_flush(scree__py_client *self, PyObject *noargs) {
  (void)noargs;
  if (!scree__py_client_usable(self))
    return NULL;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_flush(self->c));
  if (rc < 0)
    return scree__py_raise(rc, err);
  Py_RETURN_NONE;
}

static PyObject *client_get(scree__py_client *self, PyObject *args) {
  const char *name;
  PyObject *wait = Py_None;
  if (!PyArg_ParseTuple(args, "s|O:get", &name, &wait) || !scree__py_client_usable(self))
    return NULL;
  if (wait != Py_None) {
    long long ms = PyLong_AsLongLong(wait);
    if (ms == -1 && PyErr_Occurred())
      return NULL;
    return scree__py_client_get_wait(self, name, ms);
  }
  scree_array a;
  scree_lease *l = NULL;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_get(self->c, name, &a, &l));
  if (rc < 0)
    return scree__py_raise(rc, err);
  return scree__py_lease_new(self, l, &a, 0, name);
}

static PyObject *client_delete(scree__py_client *self, PyObject *args) {
  const char *name;
  if (!PyArg_ParseTuple(args, "s:delete", &name) || !scree__py_client_usable(self))
    return NULL;
  int rc, deferred = 0;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_delete(self->c, name, &deferred));
  if (rc < 0)
    return scree__py_raise(rc, err);
  return PyBool_FromLong(deferred);
}

static PyObject *inner_tuple(const scree_array *a) {
  return scree__py_int64_tuple(a->inner, a->ndim_inner);
}

static PyObject *batch_info_dict(const scree_batch_info *b) {
  PyObject *inner = inner_tuple(&b->desc);
  if (inner == NULL)
    return NULL;
  return Py_BuildValue(
      "{s:s,s:i,s:N,s:L,s:L,s:L,s:i,s:s,s:K,s:K,s:I,s:I,s:i,s:K,s:K,s:O}",
      "name", b->name,
      "dtype", (int)b->desc.dtype,
      "inner_shape", inner,
      "batch_size", (long long)b->desc.batch_size,
      "total_length", (long long)b->desc.total_rows,
      "max_length", (long long)b->desc.max_length,
      "offsets_dtype", (int)b->desc.offsets_dtype,
      "state", scree_batch_state_name(b->state),
      "values_bytes", (unsigned long long)b->values_bytes,
      "offsets_bytes", (unsigned long long)b->offsets_bytes,
      "leases", b->leases,
      "owner_uid", b->owner_uid,
      "owner_pid", (int)b->owner_pid,
      "age_ns", (unsigned long long)b->age_ns,
      "arena_id", (unsigned long long)b->arena_id,
      "delete_pending", b->delete_pending ? Py_True : Py_False);
}

static PyObject *client_list(scree__py_client *self, PyObject *args) {
  const char *prefix = NULL;
  if (!PyArg_ParseTuple(args, "|z:list", &prefix) || !scree__py_client_usable(self))
    return NULL;
  scree_batch_info *items = NULL;
  size_t count = 0;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_list(self->c, prefix, &items, &count));
  if (rc < 0)
    return scree__py_raise(rc, err);
  PyObject *list = PyList_New((Py_ssize_t)count);
  if (list == NULL)
    goto err_free_items;
  for (size_t i = 0; i < count; i++) {
    PyObject *d = batch_info_dict(&items[i]);
    if (d == NULL)
      goto err_free_list;
    PyList_SET_ITEM(list, (Py_ssize_t)i, d);
  }
  scree_client_free_list(items);
  return list;

err_free_list:
  Py_DECREF(list);
err_free_items:
  scree_client_free_list(items);
  return NULL;
}

static PyObject *client_stat(scree__py_client *self, PyObject *args) {
  const char *name;
  if (!PyArg_ParseTuple(args, "s:stat", &name) || !scree__py_client_usable(self))
    return NULL;
  scree_batch_info b;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_stat(self->c, name, &b));
  if (rc < 0)
    return scree__py_raise(rc, err);
  return batch_info_dict(&b);
}

/* The daemon's peers as a list of dicts (scree_client_peer_stats: a
 * second Stats request). */
static PyObject *peer_stats_list(scree__py_client *self) {
  enum { MAX = 64 }; /* screed's --peer limit */
  scree_peer_stats *ps = PyMem_Malloc(MAX * sizeof(*ps));
  if (ps == NULL)
    return PyErr_NoMemory();
  for (int i = 0; i < MAX; i++)
    ps[i] = (scree_peer_stats)SCREE_PEER_STATS_INIT;
  size_t n = 0;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_peer_stats(self->c, ps, MAX, &n));
  if (rc < 0) {
    PyMem_Free(ps);
    return scree__py_raise(rc, err);
  }
  if (n > MAX)
    n = MAX;
  PyObject *list = PyList_New((Py_ssize_t)n);
  for (size_t i = 0; list != NULL && i < n; i++) {
    PyObject *fails = PyDict_New();
    for (int k = 0; fails != NULL && k < SCREE_FETCH_FAIL_COUNT_; k++) {
      if (ps[i].failures[k] == 0)
        continue;
      PyObject *v = PyLong_FromUnsignedLongLong(ps[i].failures[k]);
      if (v == NULL || PyDict_SetItemString(fails, scree_fetch_failure_name(k), v) < 0)
        Py_CLEAR(fails);
      Py_XDECREF(v);
    }
    PyObject *d = fails == NULL ? NULL
                                : Py_BuildValue("{s:s,s:O,s:K,s:K,s:N,s:I,s:K,s:K,s:K}",
                                                "name", ps[i].name,
                                                "connected", ps[i].connected ? Py_True : Py_False,
                                                "batches_fetched",
                                                (unsigned long long)ps[i].batches_fetched,
                                                "bytes_fetched",
                                                (unsigned long long)ps[i].bytes_fetched,
                                                "failures", fails,
                                                "mirrors", ps[i].mirrors,
                                                "batches_mirrored",
                                                (unsigned long long)ps[i].batches_mirrored,
                                                "mirror_deletes",
                                                (unsigned long long)ps[i].mirror_deletes,
                                                "mirror_resyncs",
                                                (unsigned long long)ps[i].mirror_resyncs);
    if (d == NULL) {
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, d);
  }
  PyMem_Free(ps);
  return list;
}

static PyObject *client_stats(scree__py_client *self, PyObject *unused) {
  if (!scree__py_client_usable(self))
    return NULL;
  scree_stats s = SCREE_STATS_INIT;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_stats(self->c, &s));
  if (rc < 0)
    return scree__py_raise(rc, err);
  PyObject *errors = PyDict_New();
  if (errors == NULL)
    return NULL;
  for (uint32_t i = 0; i < s.n_errors && i < SCREE_STATS_MAX_ERRORS; i++) {
    PyObject *k = PyUnicode_FromString(scree_err_name(s.errors[i].code));
    PyObject *v = PyLong_FromUnsignedLongLong(s.errors[i].count);
    if (k == NULL || v == NULL || PyDict_SetItem(errors, k, v) < 0) {
      Py_XDECREF(k);
      Py_XDECREF(v);
      Py_DECREF(errors);
      return NULL;
    }
    Py_DECREF(k);
    Py_DECREF(v);
  }
  PyObject *peers = peer_stats_list(self);
  if (peers == NULL) {
    Py_DECREF(errors);
    return NULL;
  }
  return Py_BuildValue("{s:K,s:K,s:K,s:I,s:I,s:I,s:I,s:I,s:K,s:K,s:I,s:I,s:K,s:N,s:N}",
                       "bytes_used", (unsigned long long)s.bytes_used,
                       "bytes_limit", (unsigned long long)s.bytes_limit,
                       "bytes_arenas", (unsigned long long)s.bytes_arenas,
                       "batches", s.batches,
                       "connections", s.connections,
                       "leases", s.leases,
                       "arenas", s.arenas,
                       "pending_deletes", s.pending_deletes,
                       "requests", (unsigned long long)s.requests,
                       "uptime_ns", (unsigned long long)s.uptime_ns,
                       "waiters", s.waiters,
                       "watchers", s.watchers,
                       "watch_overflows", (unsigned long long)s.watch_overflows,
                       "errors", errors, "peers", peers);
}

static PyObject *client_attention(scree__py_client *self, PyObject *args) {
  const char *q, *k, *v, *out;
  int causal, window_left, window_right;
  PyObject *scale;
  if (!PyArg_ParseTuple(args, "sssspOii:attention", &q, &k, &v, &out, &causal, &scale,
                        &window_left, &window_right) ||
      !scree__py_client_usable(self))
    return NULL;
  scree_attention_params p = SCREE_ATTENTION_PARAMS_INIT;
  p.causal = causal;
  if (scale != Py_None) {
    double s = PyFloat_AsDouble(scale);
    if (s == -1.0 && PyErr_Occurred())
      return NULL;
    p.has_scale = 1;
    p.scale = (float)s;
  }
  p.window_left = window_left;
  p.window_right = window_right;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_attention(self->c, q, k, v, out, &p, NULL, NULL));
  if (rc < 0)
    return scree__py_raise(rc, err);
  Py_RETURN_NONE;
}

static PyObject *client_fetch(scree__py_client *self, PyObject *args) {
  const char *peer, *name, *as_name;
  long long wait_ms;
  unsigned long long timeout_ms;
  if (!PyArg_ParseTuple(args, "sszLK:fetch", &peer, &name, &as_name, &wait_ms, &timeout_ms) ||
      !scree__py_client_usable(self))
    return NULL;
  scree_fetch_options o = SCREE_FETCH_OPTIONS_INIT;
  /* Python passes -2 for "do not wait" (wait=None). */
  o.wait_ms = wait_ms == -2 ? SCREE_FETCH_NO_WAIT : (int64_t)wait_ms;
  o.timeout_ms = (uint64_t)timeout_ms;
  scree_batch_info b;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_fetch_ex(self->c, peer, name, as_name, &o, &b, NULL));
  if (rc < 0)
    return scree__py_raise(rc, err);
  return batch_info_dict(&b);
}

static PyMethodDef client_methods[] = {
    {"close", (PyCFunction)client_close, METH_NOARGS,
     "Close the connection once no lease or created batch of it is alive."},
    {"info", (PyCFunction)client_info, METH_NOARGS, "The daemon's Hello facts, a dict."},
    {"put", (PyCFunction)client_put, METH_VARARGS,
     "put(name, dtype, inner, batch_size, total_rows, offsets_dtype, values, offsets, "
     "shared=False, pipelined=False)"},
    {"create", (PyCFunction)client_create, METH_VARARGS,
     "create(name, dtype, inner, batch_size, total_rows, offsets_dtype, shared=False) -> "
     "Lease"},
    {"seal", (PyCFunction)client_seal, METH_VARARGS, "seal(name, pipelined=False)"},
    {"flush", (PyCFunction)client_flush, METH_NOARGS, "flush()"},
    {"get", (PyCFunction)client_get, METH_VARARGS,
     "get(name, wait_ms=None) -> Lease; wait_ms: None answers now, -1 waits without limit"},
    {"get_wait_start", (PyCFunction)scree__py_client_wait_start, METH_VARARGS,
     "get_wait_start(name, wait_ms): send a waiting Get; its reply turns fileno() readable"},
    {"get_wait_finish", (PyCFunction)scree__py_client_wait_finish, METH_VARARGS,
     "get_wait_finish(name) -> Lease: the answer of the started wait of name"},
    {"get_wait_cancel", (PyCFunction)scree__py_client_wait_cancel, METH_NOARGS,
     "get_wait_cancel(): abandon the started wait (nothing when none is)"},
    {"fileno", (PyCFunction)scree__py_client_fileno, METH_NOARGS,
     "fileno(): the connection's socket, to poll a started wait"},
    {"watch", (PyCFunction)scree__py_client_watch, METH_VARARGS,
     "watch(prefix, no_replay) -> Watch, on a connection of its own"},
    {"delete", (PyCFunction)client_delete, METH_VARARGS, "delete(name) -> deferred"},
    {"list", (PyCFunction)client_list, METH_VARARGS, "list(prefix=None) -> [dict]"},
    {"stat", (PyCFunction)client_stat, METH_VARARGS, "stat(name) -> dict"},
    {"stats", (PyCFunction)client_stats, METH_NOARGS, "stats() -> dict"},
    {"attention", (PyCFunction)client_attention, METH_VARARGS,
     "attention(q, k, v, out, causal, scale, window_left, window_right)"},
    {"fetch", (PyCFunction)client_fetch, METH_VARARGS,
     "fetch(peer, name, as_name, wait_ms, timeout_ms) -> dict (wait_ms -2: no wait)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef client_getset[] = {
    {"closed", (getter)client_get_closed, NULL, "close() was called", NULL},
    {"socket", (getter)client_get_socket, NULL, "the socket path connected to", NULL},
    {"connected", (getter)client_get_connected, NULL,
     "the connection is still open (close() waits for the last lease)", NULL},
    {"owners", (getter)client_get_owners, NULL, "Lease objects alive on this connection",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject scree__py_client_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scree._native.Client",
    .tp_basicsize = sizeof(scree__py_client),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One connection to screed (libscreeclient's scree_client).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)client_init,
    .tp_dealloc = (destructor)client_dealloc,
    .tp_methods = client_methods,
    .tp_getset = client_getset,
};

/* --- Lease ---------------------------------------------------------------- */

static void lease_dealloc(scree__py_lease *self) {
  scree__py_client *client = self->client;
  if (self->lease != NULL && client->c != NULL && client->pid == getpid()) {
    release_holding_seal_failure(client, self->lease);
  }
  self->lease = NULL;
  scree__fault_unregister(self->fault_slots[0]);
  scree__fault_unregister(self->fault_slots[1]);
  Py_XDECREF(self->name);
  scree__py_client_unown(client);
  Py_DECREF(client);
  PyObject_Free(self);
}

static PyObject *lease_tensor(scree__py_lease *self, PyObject *arg) {
  long which = PyLong_AsLong(arg);
  if (which == -1 && PyErr_Occurred())
    return NULL;
  if (which != 0 && which != 1) {
    PyErr_SetString(PyExc_ValueError, "tensor(0) is values, tensor(1) offsets");
    return NULL;
  }
  return scree__py_tensor_new(self, (int)which);
}

static PyObject *lease_get_attr(scree__py_lease *self, void *closure) {
  const scree_array *a = &self->arr;
  switch ((intptr_t)closure) {
  case 0: return PyLong_FromLong(a->dtype);
  case 1: return inner_tuple(a);
  case 2: return PyLong_FromLongLong(a->batch_size);
  case 3: return PyLong_FromLongLong(a->total_rows);
  case 4: return PyLong_FromLongLong(a->max_length);
  case 5: return PyLong_FromLong(a->offsets_dtype);
  case 6:
    return Py_BuildValue("(si)", a->device.type == SCREE_DEVICE_CUDA ? "cuda" : "cpu",
                         a->device.index);
  case 7: return PyBool_FromLong(self->writable);
  case 8: return Py_NewRef(self->name);
  case 9: return PyLong_FromSize_t((size_t)(uintptr_t)a->values);
  case 10: return PyLong_FromUnsignedLongLong(self->batch_id);
  default: Py_RETURN_NONE;
  }
}

static PyMethodDef lease_methods[] = {
    {"tensor", (PyCFunction)lease_tensor, METH_O,
     "tensor(0): the values, tensor(1): the offsets, as a Tensor over this lease"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef lease_getset[] = {
    {"dtype", (getter)lease_get_attr, NULL, "scree dtype code", (void *)0},
    {"inner_shape", (getter)lease_get_attr, NULL, "non-ragged dims", (void *)1},
    {"batch_size", (getter)lease_get_attr, NULL, NULL, (void *)2},
    {"total_length", (getter)lease_get_attr, NULL, NULL, (void *)3},
    {"max_length", (getter)lease_get_attr, NULL, NULL, (void *)4},
    {"offsets_dtype", (getter)lease_get_attr, NULL, "scree dtype code", (void *)5},
    {"device", (getter)lease_get_attr, NULL, "('cpu' or 'cuda', index)", (void *)6},
    {"writable", (getter)lease_get_attr, NULL, "memory from create", (void *)7},
    {"name", (getter)lease_get_attr, NULL, "the batch's name", (void *)8},
    {"address", (getter)lease_get_attr, NULL, "address of the values", (void *)9},
    {"batch_id", (getter)lease_get_attr, NULL,
     "the daemon's id of the batch, never reused (0: a daemon without ids)", (void *)10},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject scree__py_lease_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scree._native.Lease",
    .tp_basicsize = sizeof(scree__py_lease),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Keeps a batch's memory valid in this process: a lease from get, or the "
              "mapping of a batch from create. Released when the last reference goes.",
    .tp_dealloc = (destructor)lease_dealloc,
    .tp_methods = lease_methods,
    .tp_getset = lease_getset,
};
