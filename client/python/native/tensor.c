/* scree._native.Tensor: one array over a Lease's memory, handed out through
 * the buffer protocol and DLPack without a copy. */
#include "native.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <dlpack/dlpack.h>

#define SCREE__MAX_DIMS (SCREE_MAX_INNER_DIMS + 1)

/* kDLBool is 6 in every DLPack since 0.8; the Debian header may be older
 * (0.6 has no boolean code), and consumers (torch, numpy) know the value. */
#if DLPACK_VERSION < 80 && !defined(DLPACK_MAJOR_VERSION)
#define SCREE__DL_BOOL 6
#else
#define SCREE__DL_BOOL kDLBool
#endif

/* fp8 has DLPack codes from 1.1 on. With an older header the fp8 dtypes go
 * out as uint8 (the same bytes); scree's Python layer views them back as
 * torch.float8_* where torch has those. */
#if defined(DLPACK_MAJOR_VERSION) && \
    (DLPACK_MAJOR_VERSION > 1 || (DLPACK_MAJOR_VERSION == 1 && DLPACK_MINOR_VERSION >= 1))
#define SCREE__DL_HAVE_FP8 1
#endif

typedef struct scree__py_tensor {
  PyObject_HEAD
  scree__py_lease *owner; /* strong reference: keeps the memory valid */
  void *data;
  scree_dtype dtype;
  int ndim;
  int readonly;
  DLDevice device;
  int64_t shape[SCREE__MAX_DIMS];
  int64_t strides[SCREE__MAX_DIMS]; /* in elements, for DLPack */
  Py_ssize_t bshape[SCREE__MAX_DIMS];
  Py_ssize_t bstrides[SCREE__MAX_DIMS]; /* in bytes, for the buffer protocol */
  Py_ssize_t itemsize;
  Py_ssize_t nbytes;
} scree__py_tensor;

/* The memory a zero-byte buffer points at: consumers dislike NULL. */
static char scree__empty[1];

PyObject *scree__py_tensor_new(scree__py_lease *owner, int which) {
  const scree_array *a = &owner->arr;
  scree__py_tensor *self = PyObject_New(scree__py_tensor, &scree__py_tensor_type);
  if (self == NULL)
    return NULL;
  self->owner = (scree__py_lease *)Py_NewRef((PyObject *)owner);
  self->readonly = !owner->writable;
  self->device.device_type = a->device.type == SCREE_DEVICE_CUDA ? kDLCUDA : kDLCPU;
  self->device.device_id = a->device.type == SCREE_DEVICE_CUDA ? a->device.index : 0;
  if (which == 0) {
    self->data = a->values;
    self->dtype = a->dtype;
    self->ndim = 1 + a->ndim_inner;
    self->shape[0] = a->total_rows;
    for (int i = 0; i < a->ndim_inner; i++)
      self->shape[1 + i] = a->inner[i];
  } else {
    self->data = a->offsets;
    self->dtype = a->offsets_dtype;
    self->ndim = 1;
    self->shape[0] = a->batch_size + 1;
  }
  self->itemsize = (Py_ssize_t)scree_dtype_size(self->dtype);
  int64_t step = 1;
  for (int i = self->ndim - 1; i >= 0; i--) {
    self->strides[i] = step;
    self->bshape[i] = (Py_ssize_t)self->shape[i];
    self->bstrides[i] = (Py_ssize_t)step * self->itemsize;
    step *= self->shape[i];
  }
  self->nbytes = (Py_ssize_t)step * self->itemsize;
  if (self->data == NULL)
    self->data = scree__empty;
  return (PyObject *)self;
}

static void tensor_dealloc(scree__py_tensor *self) {
  Py_DECREF(self->owner);
  PyObject_Free(self);
}

/* --- buffer protocol (host memory) ---------------------------------------- */

/* struct-module format of a dtype. bfloat16 and fp8 have none: they are
 * exported as their bits (uint16, uint8) and viewed back by the Python
 * layer. */
static const char *buffer_format(scree_dtype d) {
  switch (d) {
  case SCREE_BOOL: return "?";
  case SCREE_INT8: return "b";
  case SCREE_INT16: return "h";
  case SCREE_INT32: return "i";
  case SCREE_INT64: return "q";
  case SCREE_UINT8: return "B";
  case SCREE_FLOAT16: return "e";
  case SCREE_BFLOAT16: return "H";
  case SCREE_FLOAT32: return "f";
  case SCREE_FLOAT64: return "d";
  case SCREE_FLOAT8_E4M3:
  case SCREE_FLOAT8_E5M2: return "B";
  default: return NULL;
  }
}

static int tensor_getbuffer(scree__py_tensor *self, Py_buffer *view, int flags) {
  if (self->device.device_type != kDLCPU) {
    PyErr_SetString(PyExc_BufferError,
                    "GPU memory has no buffer interface: use DLPack (torch.from_dlpack)");
    return -1;
  }
  if ((flags & PyBUF_WRITABLE) && self->readonly) {
    PyErr_SetString(PyExc_BufferError,
                    "a batch from get is read-only: the daemon's memory is mapped read-only");
    return -1;
  }
  const char *fmt = buffer_format(self->dtype);
  if (fmt == NULL) {
    PyErr_SetString(PyExc_BufferError, "dtype without a buffer format");
    return -1;
  }
  view->obj = Py_NewRef((PyObject *)self);
  view->buf = self->data;
  view->len = self->nbytes;
  view->readonly = self->readonly;
  view->itemsize = self->itemsize;
  view->format = (flags & PyBUF_FORMAT) ? (char *)fmt : NULL;
  view->ndim = self->ndim;
  view->shape = (flags & PyBUF_ND) == PyBUF_ND ? self->bshape : NULL;
  view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? self->bstrides : NULL;
  view->suboffsets = NULL;
  view->internal = NULL;
  return 0;
}

static PyBufferProcs tensor_as_buffer = {
    .bf_getbuffer = (getbufferproc)tensor_getbuffer,
};

/* --- DLPack --------------------------------------------------------------- */

typedef struct scree__managed {
  DLManagedTensor mt;
  int64_t shape[SCREE__MAX_DIMS];
  int64_t strides[SCREE__MAX_DIMS];
} scree__managed;

static int interpreter_finalizing(void) {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

/* Called by the consumer (torch, numpy, cupy) when it frees its array, from
 * any thread, with or without the GIL: drops the Tensor reference, which may
 * release the lease. While the interpreter shuts down the reference is left
 * alone (the process is going, and its connection with it). */
static void managed_deleter(DLManagedTensor *mt) {
  if (mt == NULL)
    return;
  PyObject *owner = (PyObject *)mt->manager_ctx;
  if (owner != NULL && Py_IsInitialized() && !interpreter_finalizing()) {
    PyGILState_STATE g = PyGILState_Ensure();
    Py_DECREF(owner);
    PyGILState_Release(g);
  }
  PyMem_RawFree(mt);
}

/* A capsule nobody consumed still owns its tensor. A consumer renames the
 * capsule ("used_dltensor") and calls the deleter itself later. */
static void capsule_destructor(PyObject *cap) {
  if (!PyCapsule_IsValid(cap, "dltensor"))
    return;
  DLManagedTensor *mt = (DLManagedTensor *)PyCapsule_GetPointer(cap, "dltensor");
  if (mt != NULL && mt->deleter != NULL)
    mt->deleter(mt);
}

static DLDataType dl_dtype(scree_dtype d) {
  DLDataType t = {kDLUInt, 8, 1};
  switch (d) {
  case SCREE_BOOL: t.code = SCREE__DL_BOOL; t.bits = 8; break;
  case SCREE_INT8: t.code = kDLInt; t.bits = 8; break;
  case SCREE_INT16: t.code = kDLInt; t.bits = 16; break;
  case SCREE_INT32: t.code = kDLInt; t.bits = 32; break;
  case SCREE_INT64: t.code = kDLInt; t.bits = 64; break;
  case SCREE_UINT8: t.code = kDLUInt; t.bits = 8; break;
  case SCREE_FLOAT16: t.code = kDLFloat; t.bits = 16; break;
  case SCREE_BFLOAT16: t.code = kDLBfloat; t.bits = 16; break;
  case SCREE_FLOAT32: t.code = kDLFloat; t.bits = 32; break;
  case SCREE_FLOAT64: t.code = kDLFloat; t.bits = 64; break;
#ifdef SCREE__DL_HAVE_FP8
  case SCREE_FLOAT8_E4M3: t.code = kDLFloat8_e4m3fn; t.bits = 8; break;
  case SCREE_FLOAT8_E5M2: t.code = kDLFloat8_e5m2; t.bits = 8; break;
#endif
  default: break; /* fp8 without DLPack codes: uint8 */
  }
  return t;
}

static PyObject *tensor_dlpack(scree__py_tensor *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"stream", "max_version", "dl_device", "copy", NULL};
  PyObject *stream = Py_None, *max_version = Py_None, *dl_device = Py_None, *copy = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$OOO:__dlpack__", kwlist, &stream,
                                   &max_version, &dl_device, &copy))
    return NULL;
  /* A sealed batch has no pending work on any stream: whatever stream the
   * consumer names may read it at once, so there is nothing to order. */
  if (copy != Py_None && PyObject_IsTrue(copy)) {
    PyErr_SetString(PyExc_BufferError, "scree hands out daemon memory without copies");
    return NULL;
  }
  if (dl_device != Py_None) {
    int type, id;
    if (!PyArg_ParseTuple(dl_device, "ii:dl_device", &type, &id))
      return NULL;
    if (type != (int)self->device.device_type || id != self->device.device_id) {
      PyErr_SetString(PyExc_BufferError, "the batch lives on another device");
      return NULL;
    }
  }
  scree__managed *m = PyMem_RawCalloc(1, sizeof(*m));
  if (m == NULL)
    return PyErr_NoMemory();
  memcpy(m->shape, self->shape, sizeof(m->shape));
  memcpy(m->strides, self->strides, sizeof(m->strides));
  DLTensor *t = &m->mt.dl_tensor;
  t->data = self->data;
  t->device = self->device;
  t->ndim = self->ndim;
  t->dtype = dl_dtype(self->dtype);
  t->shape = m->shape;
  t->strides = m->strides;
  t->byte_offset = 0;
  m->mt.manager_ctx = Py_NewRef((PyObject *)self);
  m->mt.deleter = managed_deleter;
  PyObject *cap = PyCapsule_New(&m->mt, "dltensor", capsule_destructor);
  if (cap == NULL) {
    Py_DECREF(self);
    PyMem_RawFree(m);
    return NULL;
  }
  return cap;
}

static PyObject *tensor_dlpack_device(scree__py_tensor *self, PyObject *unused) {
  return Py_BuildValue("(ii)", (int)self->device.device_type, (int)self->device.device_id);
}

static PyObject *tensor_get_attr(scree__py_tensor *self, void *closure) {
  switch ((intptr_t)closure) {
  case 0: return PyLong_FromLong(self->dtype);
  case 1: return scree__py_int64_tuple(self->shape, self->ndim);
  case 2: return PyBool_FromLong(self->readonly);
  case 3: return PyLong_FromSize_t((size_t)(uintptr_t)self->data);
  case 4: return PyLong_FromSsize_t(self->nbytes);
  case 5: return Py_NewRef((PyObject *)self->owner);
  default: Py_RETURN_NONE;
  }
}

static PyMethodDef tensor_methods[] = {
    {"__dlpack__", (PyCFunction)(void (*)(void))tensor_dlpack, METH_VARARGS | METH_KEYWORDS,
     "A 'dltensor' capsule over this memory; its deleter keeps the lease alive."},
    {"__dlpack_device__", (PyCFunction)tensor_dlpack_device, METH_NOARGS,
     "(device_type, device_id) as DLPack numbers them"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tensor_getset[] = {
    {"dtype", (getter)tensor_get_attr, NULL, "scree dtype code", (void *)0},
    {"shape", (getter)tensor_get_attr, NULL, NULL, (void *)1},
    {"readonly", (getter)tensor_get_attr, NULL, NULL, (void *)2},
    {"address", (getter)tensor_get_attr, NULL, "address of the first element", (void *)3},
    {"nbytes", (getter)tensor_get_attr, NULL, NULL, (void *)4},
    {"lease", (getter)tensor_get_attr, NULL, "the Lease keeping this memory valid", (void *)5},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject scree__py_tensor_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scree._native.Tensor",
    .tp_basicsize = sizeof(scree__py_tensor),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An array over daemon memory (buffer protocol on the host, DLPack anywhere).",
    .tp_dealloc = (destructor)tensor_dealloc,
    .tp_as_buffer = &tensor_as_buffer,
    .tp_methods = tensor_methods,
    .tp_getset = tensor_getset,
};
