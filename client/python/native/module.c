/* scree._native: module init and the mapping of SCREE_E* codes onto the
 * exception classes of scree.errors. */
#include "native.h"

#include <dlpack/dlpack.h>

#include "scree/attention.h"
#include "scree/client.h"
#include "scree/dtype.h"
#include "scree/ragged.h"
#include "scree/version.h"

/* The scree.errors class for a code. Codes without a closer class raise the
 * base class, scree.Error; every one carries its code. */
static const char *error_class(int code) {
  switch (code) {
  case SCREE_EINVAL:
  case SCREE_ENAMETOOLONG:
  case SCREE_EOVERFLOW:
  case SCREE_EMSGSIZE:
    return "InvalidArgument";
  case SCREE_ENOENT: return "NotFound";
  case SCREE_EEXIST: return "Exists";
  case SCREE_ENOSPC: return "NoSpace";
  case SCREE_EACCES:
  case SCREE_EPERM:
    return "PermissionDenied";
  case SCREE_EDISCONNECTED:
  case SCREE_ECONNREFUSED:
    return "Disconnected";
  case SCREE_ECUDA: return "CudaError";
  case SCREE_ENOTSUP:
  case SCREE_ENODEV:
    return "NotSupported";
  case SCREE_ESTATE: return "WrongState";
  case SCREE_EPROTO: return "ProtocolError";
  case SCREE_EAGAIN:
  case SCREE_EBUSY:
    return "Busy";
  case SCREE_ETIMEDOUT: return "Timeout";
  default: return "Error";
  }
}

PyObject *scree__py_int64_tuple(const int64_t *v, int n) {
  PyObject *t = PyTuple_New(n);
  if (t == NULL)
    return NULL;
  for (int i = 0; i < n; i++) {
    PyObject *d = PyLong_FromLongLong(v[i]);
    if (d == NULL) {
      Py_DECREF(t);
      return NULL;
    }
    PyTuple_SET_ITEM(t, i, d);
  }
  return t;
}

PyObject *scree__py_raise(int code, const char *msg) {
  if (msg == NULL || msg[0] == '\0')
    msg = scree_strerror(code);
  PyObject *mod = PyImport_ImportModule("scree.errors");
  if (mod == NULL)
    return NULL;
  PyObject *cls = PyObject_GetAttrString(mod, error_class(code));
  Py_DECREF(mod);
  if (cls == NULL)
    return NULL;
  PyObject *exc = PyObject_CallFunction(cls, "si", msg, code);
  Py_DECREF(cls);
  if (exc == NULL)
    return NULL;
  PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
  Py_DECREF(exc);
  return NULL;
}

static PyObject *py_strerror(PyObject *mod, PyObject *arg) {
  long code = PyLong_AsLong(arg);
  if (code == -1 && PyErr_Occurred())
    return NULL;
  return PyUnicode_FromString(scree_strerror((int)code));
}

static PyObject *py_err_name(PyObject *mod, PyObject *arg) {
  long code = PyLong_AsLong(arg);
  if (code == -1 && PyErr_Occurred())
    return NULL;
  return PyUnicode_FromString(scree_err_name((int)code));
}

/* scree_default_socket_paths(): where Client() looks when given no path, in
 * order, from the C library so that Python and C never disagree. */
static PyObject *py_default_socket_paths(PyObject *mod, PyObject *unused) {
  char paths[4][SCREE_SOCKET_PATH_MAX];
  int n = scree_default_socket_paths(paths, 4);
  if (n < 0)
    return scree__py_raise(n, "$SCREE_SOCKET is longer than a socket path may be");
  PyObject *list = PyList_New(0);
  for (int i = 0; list != NULL && i < n && i < 4; i++) {
    PyObject *s = PyUnicode_DecodeFSDefault(paths[i]);
    if (s == NULL || PyList_Append(list, s) < 0) {
      Py_XDECREF(s);
      Py_CLEAR(list);
      break;
    }
    Py_DECREF(s);
  }
  return list;
}

static PyObject *py_version(PyObject *mod, PyObject *unused) {
  return PyUnicode_FromString(scree_version());
}

/* The plan's work layout for a batch of b rows, from the SCREE_PACK_WORK_*
 * macros of scree/ragged.h, so that scree.bridges copies none of it. */
static PyObject *py_pack_plan_layout(PyObject *mod, PyObject *arg) {
  long long b = PyLong_AsLongLong(arg);
  if (b == -1 && PyErr_Occurred())
    return NULL;
  if (scree_pack_plan_work_len(b) < 0)
    return scree__py_raise(SCREE_EINVAL, "pack_plan_layout: batch is negative or too large");
  return Py_BuildValue("{sLsLsLsLsLsLsLsi}", "work_len", (long long)SCREE_PACK_WORK_LEN(b),
                       "host_len", (long long)SCREE_PACK_HOST_LEN(b), "offsets",
                       (long long)SCREE_PACK_WORK_OFFSETS(b), "bad_row",
                       (long long)SCREE_PACK_WORK_BAD_ROW(b), "longest",
                       (long long)SCREE_PACK_WORK_LONGEST(b), "shift",
                       (long long)SCREE_PACK_WORK_SHIFT(b), "summary",
                       (long long)SCREE_PACK_WORK_SUMMARY(b), "summary_entries",
                       (int)SCREE_PACK_SUMMARY_ENTRIES);
}

/* {name: code} of every scree_dtype, under libscree's names. */
static PyObject *dtype_codes(void) {
  PyObject *d = PyDict_New();
  if (d == NULL)
    return NULL;
  for (int t = SCREE_BOOL; t < SCREE_DTYPE_COUNT_; t++) {
    PyObject *code = PyLong_FromLong(t);
    int rc = code == NULL ? -1 : PyDict_SetItemString(d, scree_dtype_name((scree_dtype)t), code);
    Py_XDECREF(code);
    if (rc < 0) {
      Py_DECREF(d);
      return NULL;
    }
  }
  return d;
}

static PyMethodDef module_methods[] = {
    {"version", py_version, METH_NOARGS,
     "scree_version(): the version of libscree in this module, 'MAJOR.MINOR.PATCH'"},
    {"pack_plan_layout", py_pack_plan_layout, METH_O,
     "pack_plan_layout(batch): where each part of scree_pack_plan_cuda's work buffer starts "
     "(int64 entries; scree/ragged.h's SCREE_PACK_WORK_*)"},
    {"strerror", py_strerror, METH_O, "scree_strerror(code)"},
    {"default_socket_paths", py_default_socket_paths, METH_NOARGS,
     "scree_default_socket_paths(): the sockets Client() tries when given none, in order"},
    {"err_name", py_err_name, METH_O, "scree_err_name(code), such as 'ENOENT'"},
    {"attention_fwd", (PyCFunction)(void (*)(void))scree__py_attention_fwd,
     METH_VARARGS | METH_KEYWORDS,
     "attention_fwd(device, q_dtype, k_dtype, v_dtype, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, batch, "
     "total_q, total_k, max_seqlen_q, max_seqlen_k, num_heads_q, num_heads_kv, head_dim, "
     "scale, causal, window_left=-1, window_right=-1, stream=0, num_threads=0): "
     "scree_attention_fwd on buffers given by address"},
    {"pack_plan", scree__py_pack_plan, METH_VARARGS,
     "pack_plan(mask, mask_dtype, batch, seqlen, side, work, host, stream): "
     "scree_pack_plan_cuda on buffers given by address; waits for the stream"},
    {"pack_rows", scree__py_pack_rows, METH_VARARGS,
     "pack_rows(padded, values, row_bytes, offsets, shift, batch, total, stream): "
     "scree_pack_rows_cuda on buffers given by address"},
    {"pack_lengths", scree__py_pack_lengths, METH_VARARGS,
     "pack_lengths(padded, values, row_bytes, lengths, batch, seqlen, total, side, "
     "host_offsets, work, stream): scree_pack_lengths_cuda on buffers given by address"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "scree._native",
    .m_doc = "The C client of screed (libscreeclient) for scree.Client, and the attention "
             "kernels (screekernels) for scree.kernels.",
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_type(PyObject *m, const char *name, PyTypeObject *t) {
  if (PyType_Ready(t) < 0)
    return -1;
  return PyModule_AddObjectRef(m, name, (PyObject *)t);
}

PyMODINIT_FUNC PyInit__native(void);
PyMODINIT_FUNC PyInit__native(void) {
  PyObject *m = PyModule_Create(&module_def);
  if (m == NULL)
    return NULL;
  if (add_type(m, "Client", &scree__py_client_type) < 0 ||
      add_type(m, "Lease", &scree__py_lease_type) < 0 ||
      add_type(m, "Tensor", &scree__py_tensor_type) < 0 ||
      add_type(m, "Watch", &scree__py_watch_type) < 0)
    goto err_module;
#define XX(name, value, _)                                                     \
  if (PyModule_AddIntConstant(m, #name, SCREE_##name) < 0)                     \
    goto err_module;
  SCREE_ERRNO_MAP(XX)
#undef XX
  if (PyModule_AddIntConstant(m, "PROTOCOL_VERSION", SCREE_CLIENT_PROTOCOL_VERSION) < 0 ||
      PyModule_AddIntConstant(m, "DLPACK_VERSION", DLPACK_VERSION) < 0 ||
      PyModule_AddStringConstant(m, "DEFAULT_SOCKET", SCREE_DEFAULT_SOCKET) < 0 ||
      PyModule_AddStringConstant(m, "VERSION", SCREE_VERSION_STRING) < 0 ||
      PyModule_AddIntConstant(m, "PAD_RIGHT", SCREE_PAD_RIGHT) < 0 ||
      PyModule_AddIntConstant(m, "PAD_LEFT", SCREE_PAD_LEFT) < 0 ||
      PyModule_AddIntConstant(m, "PAD_AUTO", SCREE_PAD_AUTO) < 0)
    goto err_module;
  PyObject *dtypes = dtype_codes();
  int rc = dtypes == NULL ? -1 : PyModule_AddObjectRef(m, "DTYPES", dtypes);
  Py_XDECREF(dtypes);
  if (rc < 0)
    goto err_module;
#ifdef SCREE_NATIVE_HAVE_CUDA
  if (PyModule_AddIntConstant(m, "HAVE_CUDA", 1) < 0)
    goto err_module;
#else
  if (PyModule_AddIntConstant(m, "HAVE_CUDA", 0) < 0)
    goto err_module;
#endif
  if (PyModule_AddIntConstant(m, "HAVE_CUDA_KERNELS", scree_attention_have_cuda()) < 0)
    goto err_module;
  return m;

err_module:
  Py_DECREF(m);
  return NULL;
}
