/* Waiting and watching for scree._native: Client.get with a wait, the
 * start/finish/cancel halves of that wait for event loops, and the Watch
 * type over libscreeclient's scree_watch.
 *
 * A blocking wait runs with the GIL released. libscreeclient calls
 * wait_interrupted when a signal interrupts its poll(); that takes the GIL
 * back, runs Python's pending signal handlers and abandons the wait when
 * one raised (Ctrl-C's KeyboardInterrupt), leaving the exception set for
 * the caller to see. The library cancels an abandoned Get with the daemon,
 * so the connection and its leases stay usable. */
#include "native.h"

#include <unistd.h>

/* What wait_interrupted needs: the thread state saved when the GIL was
 * released, updated each time the callback takes the GIL and gives it
 * back. */
typedef struct wait_ctx {
  PyThreadState *ts;
} wait_ctx;

static int wait_interrupted(void *arg) {
  wait_ctx *w = arg;
  PyEval_RestoreThread(w->ts);
  /* Runs the handlers only on the main thread, as Python always does; on
   * another thread the wait goes on, as a lock's acquire does there. */
  int raised = PyErr_CheckSignals() < 0;
  w->ts = PyEval_SaveThread();
  return raised;
}

/* The error of an abandoned wait: the handler's exception, already set. */
static PyObject *interrupted(void) {
  if (!PyErr_Occurred())
    PyErr_SetNone(PyExc_KeyboardInterrupt);
  return NULL;
}

PyObject *scree__py_client_get_wait(scree__py_client *self, const char *name,
                                    long long wait_ms) {
  scree_array a;
  scree_lease *l = NULL;
  int rc;
  char err[SCREE__ERRMSG];
  wait_ctx w;
  w.ts = PyEval_SaveThread();
  PyThread_acquire_lock(self->lock, WAIT_LOCK);
  scree_client_set_interrupt(self->c, wait_interrupted, &w);
  rc = scree_client_get_wait(self->c, name, (int64_t)wait_ms, &a, &l);
  if (rc < 0)
    snprintf(err, sizeof(err), "%s", scree_client_last_error(self->c));
  scree_client_set_interrupt(self->c, NULL, NULL);
  PyThread_release_lock(self->lock);
  PyEval_RestoreThread(w.ts);
  if (rc == SCREE_EINTR)
    return interrupted();
  if (rc < 0)
    return scree__py_raise(rc, err);
  return scree__py_lease_new(self, l, &a, 0, name);
}

PyObject *scree__py_client_wait_start(scree__py_client *self, PyObject *args) {
  const char *name;
  long long wait_ms;
  if (!PyArg_ParseTuple(args, "sL:get_wait_start", &name, &wait_ms) ||
      !scree__py_client_usable(self))
    return NULL;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_get_wait_start(self->c, name, (int64_t)wait_ms));
  if (rc < 0)
    return scree__py_raise(rc, err);
  Py_RETURN_NONE;
}

PyObject *scree__py_client_wait_finish(scree__py_client *self, PyObject *args) {
  const char *name; /* the started wait's, which the handle does not tell */
  if (!PyArg_ParseTuple(args, "s:get_wait_finish", &name) || !scree__py_client_usable(self))
    return NULL;
  scree_array a;
  scree_lease *l = NULL;
  int rc;
  char err[SCREE__ERRMSG];
  /* Called once the socket polled readable: the reply is there. */
  SCREE__CALL(self, rc, err, scree_client_get_wait_finish(self->c, &a, &l));
  if (rc < 0)
    return scree__py_raise(rc, err);
  return scree__py_lease_new(self, l, &a, 0, name);
}

PyObject *scree__py_client_wait_cancel(scree__py_client *self, PyObject *unused) {
  if (!scree__py_client_usable(self))
    return NULL;
  int rc;
  char err[SCREE__ERRMSG];
  SCREE__CALL(self, rc, err, scree_client_get_wait_cancel(self->c));
  if (rc < 0)
    return scree__py_raise(rc, err);
  Py_RETURN_NONE;
}

PyObject *scree__py_client_fileno(scree__py_client *self, PyObject *unused) {
  if (!scree__py_client_usable(self))
    return NULL;
  return PyLong_FromLong(scree_client_fd(self->c));
}

/* --- Watch ------------------------------------------------------------------ */

typedef struct scree__py_watch {
  PyObject_HEAD
  scree_watch *w;          /* NULL once closed */
  PyThread_type_lock lock; /* one call at a time, as scree_watch requires */
  pid_t pid;               /* a forked child's copy only closes its fd */
} scree__py_watch;

PyObject *scree__py_client_watch(scree__py_client *self, PyObject *args) {
  const char *prefix;
  int no_replay;
  if (!PyArg_ParseTuple(args, "zp:watch", &prefix, &no_replay) ||
      !scree__py_client_usable(self))
    return NULL;
  scree__py_watch *watch = PyObject_New(scree__py_watch, &scree__py_watch_type);
  if (watch == NULL)
    return NULL;
  watch->w = NULL;
  watch->pid = getpid();
  watch->lock = PyThread_allocate_lock();
  if (watch->lock == NULL) {
    Py_DECREF(watch);
    return PyErr_NoMemory();
  }
  int rc;
  char err[SCREE__ERRMSG];
  scree_watch *w = NULL;
  /* The watch connects on its own; the client's lock only guards the
   * handle's message. */
  SCREE__CALL(self, rc, err,
              scree_client_watch(self->c, prefix, no_replay ? SCREE_WATCH_NO_REPLAY : 0u, &w));
  if (rc < 0) {
    Py_DECREF(watch);
    return scree__py_raise(rc, err);
  }
  watch->w = w;
  return (PyObject *)watch;
}

static int watch_open(scree__py_watch *self) {
  return scree__py_handle_usable(self->w == NULL, self->pid, "watch", "made", "watch again");
}

static void watch_really_close(scree__py_watch *self) {
  scree_watch *w = self->w;
  if (w == NULL)
    return;
  self->w = NULL;
  SCREE__LOCKED(self->lock, scree_watch_close(w));
}

static void watch_dealloc(scree__py_watch *self) {
  if (self->lock != NULL) {
    watch_really_close(self);
    PyThread_free_lock(self->lock);
  }
  PyObject_Free(self);
}

/* next(timeout_ms) -> (kind, name, seq), or None when none came in time. */
static PyObject *watch_next(scree__py_watch *self, PyObject *arg) {
  long long ms = PyLong_AsLongLong(arg);
  if ((ms == -1 && PyErr_Occurred()) || !watch_open(self))
    return NULL;
  scree_event ev = SCREE_EVENT_INIT;
  int rc;
  char err[SCREE__ERRMSG];
  scree_watch *w = self->w;
  if (ms == 0 && PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
    /* Only what has come already (an event loop's read after a wakeup):
     * no reason to let go of the GIL. */
    rc = scree_watch_next(w, 0, &ev);
    if (rc < 0)
      snprintf(err, sizeof(err), "%s", scree_watch_last_error(w));
    PyThread_release_lock(self->lock);
  } else {
    wait_ctx c;
    c.ts = PyEval_SaveThread();
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    scree_watch_set_interrupt(w, wait_interrupted, &c);
    rc = scree_watch_next(w, (int64_t)ms, &ev);
    if (rc < 0)
      snprintf(err, sizeof(err), "%s", scree_watch_last_error(w));
    scree_watch_set_interrupt(w, NULL, NULL);
    PyThread_release_lock(self->lock);
    PyEval_RestoreThread(c.ts);
  }
  if (rc == SCREE_ETIMEDOUT)
    Py_RETURN_NONE;
  if (rc == SCREE_EINTR)
    return interrupted();
  if (rc < 0)
    return scree__py_raise(rc, err);
  return Py_BuildValue("(ss#K)", scree_event_kind_name(ev.kind), ev.name,
                       (Py_ssize_t)ev.name_len, (unsigned long long)ev.seq);
}

static PyObject *watch_resync(scree__py_watch *self, PyObject *args) {
  int no_replay = 0;
  if (!PyArg_ParseTuple(args, "|p:resync", &no_replay) || !watch_open(self))
    return NULL;
  int rc;
  char err[SCREE__ERRMSG];
  scree_watch *w = self->w;
  SCREE__LOCKED(self->lock, rc = scree_watch_resync(w, no_replay ? SCREE_WATCH_NO_REPLAY : 0u);
                if (rc < 0) snprintf(err, sizeof(err), "%s", scree_watch_last_error(w)));
  if (rc < 0)
    return scree__py_raise(rc, err);
  Py_RETURN_NONE;
}

static PyObject *watch_fileno(scree__py_watch *self, PyObject *unused) {
  if (!watch_open(self))
    return NULL;
  return PyLong_FromLong(scree_watch_fd(self->w));
}

static PyObject *watch_close(scree__py_watch *self, PyObject *unused) {
  watch_really_close(self);
  Py_RETURN_NONE;
}

static PyObject *watch_get_closed(scree__py_watch *self, void *unused) {
  return PyBool_FromLong(self->w == NULL);
}

static PyMethodDef watch_methods[] = {
    {"next", (PyCFunction)watch_next, METH_O,
     "next(timeout_ms) -> (kind, name, seq) or None on timeout; -1 waits without limit"},
    {"resync", (PyCFunction)watch_resync, METH_VARARGS,
     "resync(no_replay=False): start the watch again (after an overflow)"},
    {"fileno", (PyCFunction)watch_fileno, METH_NOARGS,
     "fileno(): the watch's socket, readable when an event may be read"},
    {"close", (PyCFunction)watch_close, METH_NOARGS, "close(): end the watch"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef watch_getset[] = {
    {"closed", (getter)watch_get_closed, NULL, "close() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject scree__py_watch_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scree._native.Watch",
    .tp_basicsize = sizeof(scree__py_watch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A watch of a prefix (libscreeclient's scree_watch), on a connection of "
              "its own. Made by Client.watch.",
    .tp_dealloc = (destructor)watch_dealloc,
    .tp_methods = watch_methods,
    .tp_getset = watch_getset,
};
