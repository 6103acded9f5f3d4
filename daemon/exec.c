#include "exec.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drain.h"
#include "log.h"
#include "metrics.h"
#include "scree/attention.h"
#include "scree/error.h"
#ifdef SCREE_HAVE_CUDA
#include "exec_cuda.h"
#endif

typedef struct scree__job {
  scree__exec *e;
  scree__session *sess; /* NULL once its connection has closed */
  uint64_t req_id;
  uv_work_t work;
  scree__batch *in[3]; /* q, k, v: pinned */
  scree__batch *out;   /* reserved until published */
  int64_t max_length_q;
  int32_t *cu_q;
  int32_t *cu_k;
  scree_attention_args args;
  int rc;
  char msg[512];
  uint64_t elapsed_ns;
  struct scree__job *next; /* the queue of jobs not yet started */
  scree__exec_done_cb cb;  /* where the end goes while sess is set */
  void *cb_arg;
} scree__job;

struct scree__exec {
  uv_loop_t *loop;
  scree__store *store;
  scree__mem *mem;
  int parallel;
  int threads;
  int running;
  scree__job *qhead;
  scree__job *qtail;
  int shutting_down;
#ifdef SCREE_HAVE_CUDA
  scree__gpu *gpu;
#endif
  scree__drain *drain;     /* may be NULL */
  scree__metrics *metrics; /* may be NULL */
};

/* Every check returns 0, or an error code with the message in msg. */
#define FAIL(code, ...) scree__fail((code), msg, msg_len, __VA_ARGS__)

/* ---- checks ------------------------------------------------------------ */

static int lookup(scree__exec *e, const char *role, const char *name, scree__batch **b,
                  scree__batch_view *v, char *msg, size_t msg_len) {
  char m[256];
  int rc = scree__name_check(name, m, sizeof(m));
  if (rc != 0)
    return FAIL(rc, "%s: %s", role, m);
  *b = scree__store_find(e->store, name);
  if (*b == NULL)
    return FAIL(SCREE_ENOENT, "%s: no batch named '%s'", role, name);
  scree__store_view(*b, v);
  if (!v->sealed)
    return FAIL(SCREE_ESTATE, "%s: batch '%s' is not sealed yet", role, name);
  return 0;
}

static int dtype_supported(const scree__exec *e, scree_dtype t) {
  if (t == SCREE_BFLOAT16 || t == SCREE_FLOAT16)
    return 1;
  return t == SCREE_FLOAT32 && e->mem->info.backend == SCREE__BACKEND_HOST;
}

static int check_shape(const char *role, const scree_array *a, char *msg, size_t msg_len) {
  if (a->ndim_inner != 2) {
    char dims[128] = "";
    size_t n = 0;
    for (int i = 0; i < a->ndim_inner && n < sizeof(dims); i++)
      n += (size_t)snprintf(dims + n, sizeof(dims) - n, "%s%" PRId64, i ? ", " : "",
                            a->inner[i]);
    return FAIL(SCREE_EINVAL,
                "%s has %d inner dims (%s); attention wants two: (heads, head_dim)", role,
                (int)a->ndim_inner, dims);
  }
  if (a->inner[0] <= 0 || a->inner[0] > INT32_MAX)
    return FAIL(SCREE_EINVAL, "%s has %" PRId64 " heads; it needs 1 to %d", role, a->inner[0],
                INT32_MAX);
  if (a->inner[1] <= 0 || a->inner[1] > INT32_MAX)
    return FAIL(SCREE_EINVAL, "%s has head_dim %" PRId64 "; it needs 1 to %d", role,
                a->inner[1], INT32_MAX);
  /* The kernels take int32 cu_seqlens and row counts. */
  if (a->total_rows > INT32_MAX || a->batch_size > INT32_MAX - 1)
    return FAIL(SCREE_EOVERFLOW,
                "%s has %" PRId64 " rows in %" PRId64
                " sequences; the kernels index rows and sequences with int32 (at most %d)",
                role, a->total_rows, a->batch_size, INT32_MAX);
  return 0;
}

/* Reads b's offsets into a new int64 array, checking them again: a client
 * that can write the arena could have changed them since seal, and the
 * kernels must never see offsets that point outside the values. */
static int read_offsets(scree__exec *e, const char *role, const scree__batch_view *v,
                        int64_t **out, int64_t *max_length, char *msg, size_t msg_len) {
  size_t n = (size_t)v->desc.batch_size + 1;
  void *raw = malloc(v->offsets_bytes ? (size_t)v->offsets_bytes : 1);
  int64_t *o = malloc(n * sizeof(int64_t));
  int rc;
  char m[512];
  if (raw == NULL || o == NULL) {
    rc = FAIL(SCREE_ENOMEM, "out of host memory for the offsets of %s", role);
    goto err;
  }
  rc = e->mem->ops->read(e->mem, v->mem, v->offsets_offset, raw, (size_t)v->offsets_bytes, m,
                         sizeof(m));
  if (rc != 0) {
    rc = FAIL(rc, "reading the offsets of %s '%s': %s", role, v->name, m);
    goto err;
  }
  rc = scree_offsets_validate(raw, v->desc.offsets_dtype, v->desc.batch_size,
                              v->desc.total_rows, max_length, m, sizeof(m));
  if (rc != 0) {
    rc = FAIL(rc, "offsets of %s '%s' changed after seal and are invalid: %s", role, v->name,
              m);
    goto err;
  }
  for (size_t i = 0; i < n; i++)
    o[i] = v->desc.offsets_dtype == SCREE_INT32 ? ((const int32_t *)raw)[i]
                                                : ((const int64_t *)raw)[i];
  free(raw);
  *out = o;
  return 0;

err:
  free(raw);
  free(o);
  return rc;
}

/* Narrows validated offsets (all within [0, total_rows <= INT32_MAX]). */
static int32_t *to_int32(const int64_t *o, size_t n) {
  int32_t *c = malloc(n * sizeof(int32_t));
  if (c != NULL)
    for (size_t i = 0; i < n; i++)
      c[i] = (int32_t)o[i];
  return c;
}

static int check_params(const scree__attention_req *a, char *msg, size_t msg_len) {
  if (a->has_scale && !(a->scale > 0.0f && isfinite(a->scale)))
    return FAIL(SCREE_EINVAL, "scale is %g; it must be a positive finite number", a->scale);
  if (a->window_left < -1)
    return FAIL(SCREE_EINVAL, "window_left is %" PRId32 "; it must be -1 (unbounded) or >= 0",
                a->window_left);
  if (a->window_right < -1)
    return FAIL(SCREE_EINVAL,
                "window_right is %" PRId32 "; it must be -1 (unbounded) or >= 0",
                a->window_right);
  if (a->causal && a->window_right > 0)
    return FAIL(SCREE_EINVAL,
                "window_right is %" PRId32 " with causal; it must be -1 or 0 (causal hides "
                "every key to the right)",
                a->window_right);
  return 0;
}

/* ---- running ----------------------------------------------------------- */

static void job_free(scree__job *j) {
  free(j->cu_q);
  free(j->cu_k);
  free(j);
}

/* Undoes what scree__exec_attention did for a job that never ran. */
static void job_undo(scree__exec *e, scree__job *j) {
  for (int i = 0; i < 3; i++)
    if (j->in[i] != NULL)
      scree__store_unpin(e->store, j->in[i]);
  if (j->out != NULL)
    scree__store_discard(e->store, j->out);
  if (j->sess != NULL)
    scree__session_set_job(j->sess, NULL);
  job_free(j);
}

static void start_queued(scree__exec *e);

/* Finishes a job on the loop thread: publishes or frees the output, unpins
 * the inputs, and reports the end when the session is still there. */
static void job_complete(scree__exec *e, scree__job *j) {
  int rc = j->rc;
  char msg[1024];
  scree__batch_view ov, published;
  scree__store_view(j->out, &ov);
  if (rc == 0)
    rc = scree__store_publish(e->store, j->out, j->max_length_q, &published, msg,
                              sizeof(msg));
  else
    snprintf(msg, sizeof(msg), "attention into '%s' failed: %s", ov.name, j->msg);
  if (rc != 0) {
    scree__log(SCREE__LOG_INFO, "attention_failed", "out=%s code=%s msg=%s", scree__q(ov.name),
               scree_err_name(rc), scree__q(msg));
    scree__store_discard(e->store, j->out);
  } else {
    scree__log(SCREE__LOG_DEBUG, "attention_done", "out=%s elapsed_ns=%" PRIu64 " orphan=%d",
               scree__q(published.name), j->elapsed_ns, j->sess == NULL);
  }
  j->out = NULL;
  if (e->metrics != NULL)
    scree__metrics_attention(e->metrics, rc, j->elapsed_ns);
  if (e->drain != NULL)
    scree__drain_job_end(e->drain);
  for (int i = 0; i < 3; i++) {
    scree__store_unpin(e->store, j->in[i]);
    j->in[i] = NULL;
  }
  if (j->sess != NULL) {
    scree__session *sess = j->sess;
    scree__session_set_job(sess, NULL);
    scree__attention_result res = {.rc = rc,
                                   .msg = msg,
                                   .out = rc == 0 ? &published : NULL,
                                   .elapsed_ns = j->elapsed_ns};
    j->cb(j->cb_arg, sess, j->req_id, &res);
  }
  job_free(j);
}

static void work_run(uv_work_t *w) {
  scree__job *j = w->data;
  uint64_t t0 = scree__now_ns();
  j->rc = scree_attention_fwd(&j->args);
  j->elapsed_ns = scree__now_ns() - t0;
}

static void work_done(uv_work_t *w, int status) {
  scree__job *j = w->data;
  scree__exec *e = j->e;
  e->running--;
  if (status != 0 && j->rc == 0) {
    j->rc = SCREE_EIO;
    snprintf(j->msg, sizeof(j->msg), "the worker did not run: %s", uv_strerror(status));
  }
  job_complete(e, j);
  start_queued(e);
}

/* Hands j to libuv's thread pool. Returns 0 or a libuv error. */
static int start_one(scree__exec *e, scree__job *j) {
  j->work.data = j;
  int rc = uv_queue_work(e->loop, &j->work, work_run, work_done);
  if (rc == 0) {
    e->running++;
  }
  return rc;
}

/* Starts queued jobs while workers are free. Runs from loop callbacks only,
 * never inside a request's handling, so that a job failing to start can be
 * answered at once: its session already waits for the reply. */
static void start_queued(scree__exec *e) {
  while (e->qhead != NULL && e->running < e->parallel && !e->shutting_down) {
    scree__job *j = e->qhead;
    e->qhead = j->next;
    if (e->qhead == NULL)
      e->qtail = NULL;
    j->next = NULL;
    int rc = start_one(e, j);
    if (rc != 0) {
      j->rc = SCREE_EIO;
      snprintf(j->msg, sizeof(j->msg), "uv_queue_work: %s", uv_strerror(rc));
      job_complete(e, j);
    }
  }
}

#ifdef SCREE_HAVE_CUDA
static void gpu_done(void *job, int rc, const char *msg, uint64_t elapsed_ns) {
  scree__job *j = job;
  scree__exec *e = j->e;
  e->running--;
  j->rc = rc;
  if (rc != 0)
    snprintf(j->msg, sizeof(j->msg), "%s", msg);
  j->elapsed_ns = elapsed_ns;
  job_complete(e, j);
}
#endif

/* ---- requests ---------------------------------------------------------- */

int scree__exec_attention(scree__exec *e, scree__session *sess, uint64_t id,
                          const scree__attention_req *a, scree__exec_done_cb cb, void *cb_arg,
                          char *msg, size_t msg_len) {
  static const char *const roles[3] = {"q", "k", "v"};
  const char *names[3] = {a->q, a->k, a->v};
  scree__batch *b[3];
  scree__batch_view v[3];
  int rc;
  if (e->shutting_down || (e->drain != NULL && scree__drain_active(e->drain)))
    return FAIL(SCREE_EAGAIN, "screed is shutting down");
  for (int i = 0; i < 3; i++) {
    rc = lookup(e, roles[i], names[i], &b[i], &v[i], msg, msg_len);
    if (rc != 0)
      return rc;
  }
  char m[512];
  rc = scree__name_check(a->out, m, sizeof(m));
  if (rc != 0)
    return FAIL(rc, "out: %s", m);
  if (scree__store_find(e->store, a->out) != NULL)
    return FAIL(SCREE_EEXIST, "out: batch '%s' already exists", a->out);

  const scree_array *q = &v[0].desc, *k = &v[1].desc, *vv = &v[2].desc;
  if (k->dtype != q->dtype || vv->dtype != q->dtype)
    return FAIL(SCREE_EINVAL, "q is %s, k is %s, v is %s: they must have one dtype",
                scree_dtype_name(q->dtype), scree_dtype_name(k->dtype),
                scree_dtype_name(vv->dtype));
  if (!dtype_supported(e, q->dtype))
    return FAIL(SCREE_ENOTSUP, "attention on %s takes bfloat16 or float16%s, not %s",
                e->mem->info.backend == SCREE__BACKEND_HOST ? "host memory" : "the GPU",
                e->mem->info.backend == SCREE__BACKEND_HOST ? " or float32" : "",
                scree_dtype_name(q->dtype));
  for (int i = 0; i < 3; i++) {
    rc = check_shape(roles[i], &v[i].desc, msg, msg_len);
    if (rc != 0)
      return rc;
  }
  if (k->inner[1] != q->inner[1] || vv->inner[1] != q->inner[1])
    return FAIL(SCREE_EINVAL,
                "q has head_dim %" PRId64 ", k %" PRId64 ", v %" PRId64 ": they must be equal",
                q->inner[1], k->inner[1], vv->inner[1]);
  if (k->inner[0] != vv->inner[0])
    return FAIL(SCREE_EINVAL, "k has %" PRId64 " heads, v has %" PRId64 ": they must be equal",
                k->inner[0], vv->inner[0]);
  if (q->inner[0] % k->inner[0] != 0)
    return FAIL(SCREE_EINVAL,
                "q has %" PRId64 " heads, k has %" PRId64 ": %" PRId64
                " is not a multiple of %" PRId64,
                q->inner[0], k->inner[0], q->inner[0], k->inner[0]);
  if (k->batch_size != q->batch_size)
    return FAIL(SCREE_EINVAL,
                "q has %" PRId64 " sequences, k has %" PRId64 ": they must have as many",
                q->batch_size, k->batch_size);
  if (vv->batch_size != k->batch_size || vv->total_rows != k->total_rows)
    return FAIL(SCREE_EINVAL,
                "k and v must share offsets: k has %" PRId64 " rows in %" PRId64
                " sequences, v has %" PRId64 " rows in %" PRId64,
                k->total_rows, k->batch_size, vv->total_rows, vv->batch_size);
  rc = check_params(a, msg, msg_len);
  if (rc != 0)
    return rc;

  scree__job *j = calloc(1, sizeof(*j));
  if (j == NULL)
    return FAIL(SCREE_ENOMEM, "out of host memory");
  j->e = e;
  j->req_id = id;
  j->cb = cb;
  j->cb_arg = cb_arg;
  int64_t *oq = NULL, *ok = NULL, *ov = NULL;
  int64_t max_k = 0, max_v = 0;
  size_t nq = (size_t)q->batch_size + 1;
  rc = read_offsets(e, "q", &v[0], &oq, &j->max_length_q, msg, msg_len);
  if (rc == 0)
    rc = read_offsets(e, "k", &v[1], &ok, &max_k, msg, msg_len);
  if (rc == 0)
    rc = read_offsets(e, "v", &v[2], &ov, &max_v, msg, msg_len);
  if (rc != 0)
    goto err_offsets;
  for (size_t i = 0; i < nq; i++) {
    if (ok[i] != ov[i]) {
      rc = FAIL(SCREE_EINVAL,
                "k and v must share offsets: k's offsets[%zu]=%" PRId64
                ", v's offsets[%zu]=%" PRId64,
                i, ok[i], i, ov[i]);
      goto err_offsets;
    }
  }
  j->cu_q = to_int32(oq, nq);
  j->cu_k = to_int32(ok, nq);
  if (j->cu_q == NULL || j->cu_k == NULL) {
    rc = FAIL(SCREE_ENOMEM, "out of host memory");
    goto err_offsets;
  }

  /* The output: q's shape and offsets. */
  scree_array od = *q;
  od.values = od.offsets = NULL;
  rc = scree__store_reserve(e->store, sess, a->out, &od, &j->out, msg, msg_len);
  if (rc != 0)
    goto err_offsets;
  scree__batch_view outv;
  scree__store_view(j->out, &outv);
  {
    /* q's offsets in q's own offsets dtype, as the output's descriptor says. */
    void *raw = malloc(outv.offsets_bytes ? (size_t)outv.offsets_bytes : 1);
    if (raw == NULL) {
      rc = FAIL(SCREE_ENOMEM, "out of host memory");
      goto err_offsets;
    }
    for (size_t i = 0; i < nq; i++) {
      if (od.offsets_dtype == SCREE_INT32)
        ((int32_t *)raw)[i] = (int32_t)oq[i];
      else
        ((int64_t *)raw)[i] = oq[i];
    }
    rc = e->mem->ops->write(e->mem, outv.mem, outv.offsets_offset, raw,
                            (size_t)outv.offsets_bytes, m, sizeof(m));
    free(raw);
    if (rc != 0) {
      rc = FAIL(rc, "writing the offsets of '%s': %s", a->out, m);
      goto err_offsets;
    }
  }
  for (int i = 0; i < 3; i++) {
    rc = scree__store_pin(e->store, b[i]);
    if (rc != 0) {
      rc = FAIL(rc, "%s: batch '%s' has too many leases", roles[i], names[i]);
      goto err_offsets;
    }
    j->in[i] = b[i];
  }
  free(oq);
  free(ok);
  free(ov);
  oq = ok = ov = NULL;

  scree_attention_args *x = &j->args;
  x->q_dtype = x->k_dtype = x->v_dtype = x->out_dtype = q->dtype;
  x->cu_seqlens_q = j->cu_q;
  x->cu_seqlens_k = j->cu_k;
  x->batch = (int32_t)q->batch_size;
  x->total_q = (int32_t)q->total_rows;
  x->total_k = (int32_t)k->total_rows;
  x->max_seqlen_q = (int32_t)j->max_length_q;
  x->max_seqlen_k = (int32_t)max_k;
  x->num_heads_q = (int32_t)q->inner[0];
  x->num_heads_kv = (int32_t)k->inner[0];
  x->head_dim = (int32_t)q->inner[1];
  x->softmax_scale = a->has_scale ? a->scale : 0.0f;
  x->causal = a->causal;
  x->window_left = a->window_left;
  x->window_right = a->window_right;
  x->msg = j->msg;
  x->msg_len = sizeof(j->msg);

  if (e->mem->info.backend == SCREE__BACKEND_CUDA) {
#ifdef SCREE_HAVE_CUDA
    x->device = SCREE_DEVICE_CUDA;
    x->q = (const void *)(uintptr_t)(v[0].mem->dev_ptr + v[0].values_offset);
    x->k = (const void *)(uintptr_t)(v[1].mem->dev_ptr + v[1].values_offset);
    x->v = (const void *)(uintptr_t)(v[2].mem->dev_ptr + v[2].values_offset);
    x->out = (void *)(uintptr_t)(outv.mem->dev_ptr + outv.values_offset);
    rc = scree__gpu_launch(e->gpu, x, j->cu_q, j->cu_k, j, m, sizeof(m));
    if (rc != 0) {
      rc = FAIL(rc, "attention into '%s' failed: %s", a->out, m);
      goto err_offsets;
    }
    e->running++;
#else
    rc = FAIL(SCREE_ENOTSUP, "screed was built without CUDA kernels");
    goto err_offsets;
#endif
  } else {
    x->device = SCREE_DEVICE_CPU;
    x->num_threads = e->threads;
    x->q = (const char *)v[0].mem->host_ptr + v[0].values_offset;
    x->k = (const char *)v[1].mem->host_ptr + v[1].values_offset;
    x->v = (const char *)v[2].mem->host_ptr + v[2].values_offset;
    x->out = (char *)outv.mem->host_ptr + outv.values_offset;
    if (e->running < e->parallel) {
      int uvrc = start_one(e, j);
      if (uvrc != 0) {
        rc = FAIL(SCREE_EIO, "cannot start the attention job: %s", uv_strerror(uvrc));
        goto err_offsets;
      }
    } else {
      if (e->qtail)
        e->qtail->next = j;
      else
        e->qhead = j;
      e->qtail = j;
    }
  }
  j->sess = sess;
  scree__session_set_job(sess, j);
  if (e->drain != NULL)
    scree__drain_job_begin(e->drain);
  scree__log(SCREE__LOG_DEBUG, "attention_start",
             "conn=%" PRIu64 " q=%s k=%s v=%s out=%s causal=%d", scree__session_id(sess),
             scree__q(a->q), scree__q(a->k), scree__q(a->v), scree__q(a->out),
             (int)a->causal);
  return 0;

err_offsets:
  free(oq);
  free(ok);
  free(ov);
  job_undo(e, j);
  return rc;
}

void scree__exec_detach(void *job) {
  scree__job *j = job;
  j->sess = NULL;
}

/* ---- life -------------------------------------------------------------- */

int scree__exec_new(uv_loop_t *loop, scree__store *store, const scree__exec_config *cfg,
                    scree__exec **out, char *msg, size_t msg_len) {
  scree__exec *e = calloc(1, sizeof(*e));
  if (e == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  e->loop = loop;
  e->store = store;
  e->mem = scree__store_mem(store);
  if (cfg != NULL) {
    e->drain = cfg->drain;
    e->metrics = cfg->metrics;
  }
  /* One job at a time: the CPU kernel already spreads each call over every
   * processor, so running jobs side by side would only make them compete,
   * and a queue keeps each job's time honest. */
  e->parallel = 1;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  e->threads = n > 1 ? (int)n : 1;
#ifdef SCREE_HAVE_CUDA
  if (e->mem->info.backend == SCREE__BACKEND_CUDA) {
    int rc = scree__gpu_new(loop, e->mem->info.device_index, gpu_done, &e->gpu, msg, msg_len);
    if (rc != 0) {
      free(e);
      return rc;
    }
  }
#endif
  *out = e;
  return 0;
}

void scree__exec_shutdown(scree__exec *e) {
  if (e == NULL || e->shutting_down)
    return;
  e->shutting_down = 1;
  while (e->qhead != NULL) {
    scree__job *j = e->qhead;
    e->qhead = j->next;
    scree__log(SCREE__LOG_INFO, "attention_dropped", "reason=shutdown");
    job_undo(e, j);
  }
  e->qtail = NULL;
#ifdef SCREE_HAVE_CUDA
  if (e->gpu != NULL)
    scree__gpu_close(e->gpu);
#endif
}

void scree__exec_free(scree__exec *e) {
  if (e == NULL)
    return;
#ifdef SCREE_HAVE_CUDA
  scree__gpu_free(e->gpu);
#endif
  free(e);
}
