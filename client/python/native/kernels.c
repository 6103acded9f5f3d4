/* scree._native.attention_fwd: screekernels' varlen attention for
 * scree.kernels.varlen_attention.
 *
 * The Python layer owns the tensors: it checks shapes, makes everything
 * contiguous, allocates out and lse, puts the offsets in int32 on the right
 * device and computes the max lengths on the host. This function receives
 * their addresses, fills scree_attention_args and runs the kernel with the
 * GIL released. The caller's references keep every buffer alive for the
 * call; on CUDA the launch is asynchronous on the given stream, where the
 * caller's stream-ordered allocator keeps them valid. */
#include "native.h"

#include <string.h>

#include "scree/attention.h"
#include "scree/ragged.h"

/* None for a call that succeeded, else the exception for its code with the
 * library's message. */
static PyObject *call_result(int rc, const char *msg) {
  if (rc < 0)
    return scree__py_raise(rc, msg);
  Py_RETURN_NONE;
}

PyObject *scree__py_attention_fwd(PyObject *mod, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"device", "q_dtype", "k_dtype", "v_dtype", "q", "k", "v",
                           "out", "lse", "cu_seqlens_q", "cu_seqlens_k", "batch",
                           "total_q", "total_k", "max_seqlen_q", "max_seqlen_k",
                           "num_heads_q", "num_heads_kv", "head_dim", "scale", "causal",
                           "window_left", "window_right", "stream", "num_threads", NULL};
  int device, q_dtype, k_dtype, v_dtype, causal;
  unsigned long long q, k, v, out, lse, cu_q, cu_k, stream = 0;
  int batch, total_q, total_k, max_q, max_k, hq, hkv, head_dim;
  int left = -1, right = -1, num_threads = 0;
  double scale = 0.0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiiiKKKKKKKiiiiiiiidp|iiKi:attention_fwd",
                                   kwlist, &device, &q_dtype, &k_dtype, &v_dtype, &q, &k,
                                   &v, &out, &lse, &cu_q, &cu_k, &batch, &total_q, &total_k,
                                   &max_q, &max_k, &hq, &hkv, &head_dim, &scale, &causal,
                                   &left, &right, &stream, &num_threads))
    return NULL;

  scree_attention_args a;
  char msg[SCREE__ERRMSG] = "";
  memset(&a, 0, sizeof(a));
  a.device = (scree_device_type)device;
  a.q_dtype = a.out_dtype = (scree_dtype)q_dtype;
  a.k_dtype = (scree_dtype)k_dtype;
  a.v_dtype = (scree_dtype)v_dtype;
  a.q = (const void *)(uintptr_t)q;
  a.k = (const void *)(uintptr_t)k;
  a.v = (const void *)(uintptr_t)v;
  a.out = (void *)(uintptr_t)out;
  a.lse = (float *)(uintptr_t)lse;
  a.cu_seqlens_q = (const int32_t *)(uintptr_t)cu_q;
  a.cu_seqlens_k = (const int32_t *)(uintptr_t)cu_k;
  a.batch = batch;
  a.total_q = total_q;
  a.total_k = total_k;
  a.max_seqlen_q = max_q;
  a.max_seqlen_k = max_k;
  a.num_heads_q = hq;
  a.num_heads_kv = hkv;
  a.head_dim = head_dim;
  a.softmax_scale = (float)scale;
  a.causal = causal;
  a.window_left = left;
  a.window_right = right;
  a.num_threads = num_threads;
  a.stream = (void *)(uintptr_t)stream;
  a.msg = msg;
  a.msg_len = sizeof(msg);

  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = scree_attention_fwd(&a);
  Py_END_ALLOW_THREADS
  return call_result(rc, msg);
}

/* The Python layer (scree.bridges) allocates work, host (pinned) and the
 * packed values with torch and passes their addresses and torch's current
 * stream. The plan waits for its stream, so the GIL is released around it. */
PyObject *scree__py_pack_plan(PyObject *mod, PyObject *args) {
  unsigned long long mask, work, host, stream;
  int mask_dtype, side;
  long long batch, seqlen;
  if (!PyArg_ParseTuple(args, "KiLLiKKK:pack_plan", &mask, &mask_dtype, &batch, &seqlen, &side,
                        &work, &host, &stream))
    return NULL;
  char msg[SCREE__ERRMSG] = "";
  scree_pack_plan_args a = {
      .mask = (const void *)(uintptr_t)mask,
      .mask_dtype = (scree_dtype)mask_dtype,
      .batch = batch,
      .seqlen = seqlen,
      .side = side,
      .work = (int64_t *)(uintptr_t)work,
      .host = (int64_t *)(uintptr_t)host,
      .stream = (void *)(uintptr_t)stream,
      .msg = msg,
      .msg_len = sizeof(msg),
  };
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = scree_pack_plan_cuda(&a);
  Py_END_ALLOW_THREADS
  return call_result(rc, msg);
}

/* Only queues the gather: the GIL stays held, as for any launch. */
PyObject *scree__py_pack_rows(PyObject *mod, PyObject *args) {
  unsigned long long padded, values, offsets, shift, stream;
  unsigned long long row_bytes;
  long long batch, total;
  if (!PyArg_ParseTuple(args, "KKKKKLLK:pack_rows", &padded, &values, &row_bytes, &offsets,
                        &shift, &batch, &total, &stream))
    return NULL;
  char msg[SCREE__ERRMSG] = "";
  int rc = scree_pack_rows_cuda((const void *)(uintptr_t)padded, (void *)(uintptr_t)values,
                                (size_t)row_bytes, (const int64_t *)(uintptr_t)offsets,
                                (const int64_t *)(uintptr_t)shift, batch, total,
                                (void *)(uintptr_t)stream, msg, sizeof(msg));
  return call_result(rc, msg);
}

/* Validates the host lengths, writes the offsets into host_offsets and
 * queues the staging copy and the gather; returns without waiting for
 * them. */
PyObject *scree__py_pack_lengths(PyObject *mod, PyObject *args) {
  unsigned long long padded, values, row_bytes, lengths, host_offsets, work, stream;
  long long batch, seqlen, total;
  int side;
  if (!PyArg_ParseTuple(args, "KKKKLLLiKKK:pack_lengths", &padded, &values, &row_bytes,
                        &lengths, &batch, &seqlen, &total, &side, &host_offsets, &work,
                        &stream))
    return NULL;
  char msg[SCREE__ERRMSG] = "";
  scree_pack_lengths_args a = {
      .padded = (const void *)(uintptr_t)padded,
      .values = (void *)(uintptr_t)values,
      .row_bytes = (size_t)row_bytes,
      .lengths = (const int64_t *)(uintptr_t)lengths,
      .batch = batch,
      .seqlen = seqlen,
      .total = total,
      .side = side,
      .host_offsets = (int64_t *)(uintptr_t)host_offsets,
      .work = (int64_t *)(uintptr_t)work,
      .stream = (void *)(uintptr_t)stream,
      .msg = msg,
      .msg_len = sizeof(msg),
  };
  /* Released: a staging slot may have to wait for its previous copy. The
   * caller's references keep lengths and host_offsets alive. */
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = scree_pack_lengths_cuda(&a);
  Py_END_ALLOW_THREADS
  return call_result(rc, msg);
}
