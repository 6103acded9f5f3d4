/* scree._native: the CPython extension over libscreeclient.
 *
 * Three object types carry the lifetimes:
 * - Client wraps one scree_client handle (one connection to screed).
 * - Lease owns what makes daemon memory valid in this process: a lease from
 *   scree_client_get, or the mapping of a batch made by scree_client_create.
 *   It holds a strong reference to its Client, so the connection (and with
 *   it every mapped arena) stays open while any Lease lives.
 * - Tensor is one array (values or offsets) over a Lease's memory. It hands
 *   it out through the buffer protocol (numpy) and DLPack (torch, cupy, jax,
 *   numpy.from_dlpack), and every array made from it keeps the Tensor, hence
 *   the Lease, alive: through numpy's base chain or the DLPack deleter.
 * So the memory behind a view is released only once no view is left, and a
 * view never outlives its lease. */
#ifndef SCREE_NATIVE_H
#define SCREE_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <sys/types.h>

#include "scree/client.h"

/* Room for the message of one failed call, copied out of the handle while
 * its lock is held (the handle keeps only the last one). */
#define SCREE__ERRMSG 1024

typedef struct scree__py_client {
  PyObject_HEAD
  scree_client *c;       /* NULL once closed */
  PyThread_type_lock lock; /* serialises a call with the read of its message */
  pid_t pid;             /* the process that connected: a forked child must not speak */
  int closing;           /* close() was asked for; done when owners reaches 0 */
  Py_ssize_t owners;     /* Lease objects alive on this connection */
  /* The failure of a seal sent without waiting (put or seal with
   * pipelined) whose reply a Lease's dealloc took, which cannot raise: the
   * next method raises it instead of doing its own work, as
   * libscreeclient's next call would have returned it. 0: none. */
  int held_rc;
  char held_err[SCREE__ERRMSG];
} scree__py_client;

typedef struct scree__py_lease {
  PyObject_HEAD
  scree__py_client *client; /* strong reference */
  scree_lease *lease;       /* NULL for memory from create (mapped until close) */
  scree_array arr;          /* descriptor, values and offsets in this process */
  int writable;
  PyObject *name;
  int fault_slots[2];       /* read-only ranges in fault.c's registry, or -1 */
  unsigned long long batch_id; /* the daemon's id of the batch (0: a daemon without ids) */
} scree__py_lease;

/* Runs the statements given with the GIL released and lock held: a call
 * on a handle (a Client's, a Watch's), or its close, which so waits for a
 * call in flight on another thread. */
#define SCREE__LOCKED(lock, ...)              \
  do {                                        \
    Py_BEGIN_ALLOW_THREADS                    \
    PyThread_acquire_lock((lock), WAIT_LOCK); \
    __VA_ARGS__;                              \
    PyThread_release_lock((lock));            \
    Py_END_ALLOW_THREADS                      \
  } while (0)

/* Runs call on self's handle with the GIL released and self->lock held, and
 * copies the handle's message into errbuf when it fails, before another
 * thread's call can replace it. */
#define SCREE__CALL(self, rc, errbuf, call)                           \
  SCREE__LOCKED((self)->lock, (rc) = (call);                          \
                if ((rc) < 0) snprintf((errbuf), SCREE__ERRMSG, "%s", \
                                       scree_client_last_error((self)->c)))

extern PyTypeObject scree__py_client_type;
extern PyTypeObject scree__py_lease_type;
extern PyTypeObject scree__py_tensor_type;
extern PyTypeObject scree__py_watch_type;

/* Whether a handle made in process pid, and not closed, may be used by this
 * process; raises Disconnected when not, naming what ("client", "watch"),
 * how it was made ("connected") and what to do instead in a forked child
 * ("connect a new one"). */
int scree__py_handle_usable(int closed, pid_t pid, const char *what, const char *made,
                            const char *instead);

/* Whether requests may go out on self; raises Disconnected when not. */
int scree__py_client_usable(scree__py_client *self);

/* A new Lease over a get's lease l (NULL for create's mapping) and view a,
 * owned by client. On failure the lease is released and NULL returned. */
PyObject *scree__py_lease_new(scree__py_client *client, scree_lease *l, const scree_array *a,
                              int writable, const char *name);

/* wait.c: the waits of Client (get with a wait, its start/finish/cancel
 * halves for event loops) and watch(), which makes a Watch. */
PyObject *scree__py_client_get_wait(scree__py_client *self, const char *name,
                                    long long wait_ms);
PyObject *scree__py_client_wait_start(scree__py_client *self, PyObject *args);
PyObject *scree__py_client_wait_finish(scree__py_client *self, PyObject *args);
PyObject *scree__py_client_wait_cancel(scree__py_client *self, PyObject *unused);
PyObject *scree__py_client_fileno(scree__py_client *self, PyObject *unused);
PyObject *scree__py_client_watch(scree__py_client *self, PyObject *args);

/* Raises the scree.errors class for code with message msg (code's
 * description when msg is NULL or empty). Returns NULL for convenience. */
PyObject *scree__py_raise(int code, const char *msg);

/* A new tuple of the n ints in v (a shape); NULL with an exception set
 * when Python runs out of memory. */
PyObject *scree__py_int64_tuple(const int64_t *v, int n);

/* A new Tensor over lease memory: values (which == 0) or offsets (1). */
PyObject *scree__py_tensor_new(scree__py_lease *owner, int which);

/* attention_fwd(**kw): screekernels' scree_attention_fwd on buffers given
 * by address (kernels.c). Returns None or raises the library's error. */
PyObject *scree__py_attention_fwd(PyObject *mod, PyObject *args, PyObject *kwds);

/* pack_plan(...) and pack_rows(...): scree/ragged.h's packing steps on
 * buffers given by address (kernels.c), positional arguments only: they sit
 * on the path of every CUDA from_hf_padded and from_padded. */
PyObject *scree__py_pack_plan(PyObject *mod, PyObject *args);
PyObject *scree__py_pack_rows(PyObject *mod, PyObject *args);
PyObject *scree__py_pack_lengths(PyObject *mod, PyObject *args);

/* fault.c: the SIGSEGV handler that names a read-only batch written to.
 * scree__fault_install puts it in front of the handler installed before
 * (once; later calls do nothing) and returns 0 or -1. scree__fault_register
 * records [start, start + len) as read-only memory of batch name and returns
 * its slot, or -1 when it cannot (no memory, or an empty range), in which
 * case a fault there just gets no message. scree__fault_unregister forgets a
 * slot (-1 is ignored). Call them with the GIL held. */
int scree__fault_install(void);
int scree__fault_register(const void *start, size_t len, const char *name);
void scree__fault_unregister(int slot);

/* Drops one owner of the client and closes it when close() was asked for and
 * none is left. Called with the GIL held. */
void scree__py_client_unown(scree__py_client *self);

#endif /* SCREE_NATIVE_H */
