#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drain.h"
#include "grow.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "scree/attention.h"
#include "scree/error.h"
#include "worker.h"

typedef struct scree__wproc scree__wproc;

typedef struct scree__job {
  scree__exec *e;
  scree__session *sess; /* NULL once its connection has closed */
  uint64_t req_id;
  scree__batch *in[3]; /* q, k, v: pinned */
  scree__batch *out;   /* reserved until published */
  int64_t max_length_q;
  int32_t *cu; /* cu_seqlens_q then cu_seqlens_k, batch + 1 each */
  scree__wmsg_job w;   /* what the worker is sent */
  int rc;
  char msg[768];
  uint64_t elapsed_ns;
  struct scree__job *next; /* the queue of jobs not yet started */
  scree__exec_done_cb cb;  /* where the end goes while sess is set */
  void *cb_arg;
} scree__job;

/* An arena a worker holds, with the access it was sent. */
typedef struct known_arena {
  uint64_t id;
  int writable;
} known_arena;

/* One worker process, from spawn until both its handles have closed. A
 * worker that screed gives up on (killed, or hung up) stops being the
 * executor's current worker at once, but keeps its job until its exit has
 * been reaped: only then can nothing write the job's output any more. */
struct scree__wproc {
  scree__exec *e;
  uv_process_t proc;
  uv_poll_t poll;
  int fd;        /* screed's end of the socketpair */
  int polling;
  scree__job *job; /* the job sent to it and not answered */
  known_arena *known;
  size_t nknown, capknown;
  uint64_t *forget; /* arenas freed since it was told last */
  size_t nforget, capforget;
  int exited;
  int killed;    /* screed gave up on it, for the reason in why */
  int signalled; /* SIGKILL sent */
  char why[256]; /* why screed killed it, for the job's message */
  int ecode;     /* the job's code when screed killed it */
  int nclosed;
};

struct scree__exec {
  uv_loop_t *loop;
  scree__store *store;
  scree__mem *mem;
  int threads;
  char worker_path[4096];
  uint64_t job_timeout_ms;
  scree__job *qhead;
  scree__job *qtail;
  scree__wproc *w;   /* the current worker, or NULL */
  int dying;         /* workers given up on that still hold a job */
  uint64_t next_job_id;
  uint64_t spawns;
  unsigned failures; /* worker deaths in a row, for the restart pause */
  uint64_t next_spawn_ms; /* uv_now before which no worker starts */
  uv_timer_t deadline;
  uv_timer_t backoff;
  int shutting_down;
  int handles_closed;
  void (*stop_cb)(void *arg);
  void *stop_arg;
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

/* ---- jobs -------------------------------------------------------------- */

static void job_free(scree__job *j) {
  free(j->cu);
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

static void maybe_stopped(scree__exec *e);

/* Finishes a job on the loop thread: publishes or frees the output, unpins
 * the inputs, and reports the end when the session is still there. */
static void job_complete(scree__exec *e, scree__job *j) {
  int rc = j->rc;
  char msg[1024];
  scree__batch_view ov, published;
  scree__store_view(j->out, &ov);
  /* The output's offsets were written through the backend when the job
   * started; a pageable copy to a GPU returns once its bytes are staged, so
   * they are fenced before readers can see the batch (long landed by now:
   * the fence costs a stream synchronisation). */
  if (rc == 0 && e->mem->ops->fence != NULL) {
    char m[512];
    rc = e->mem->ops->fence(e->mem, m, sizeof(m));
    if (rc != 0)
      snprintf(msg, sizeof(msg), "attention into '%s': fencing its offsets: %s", ov.name, m);
  }
  if (rc == 0)
    rc = scree__store_publish(e->store, j->out, j->max_length_q, &published, msg,
                              sizeof(msg));
  else if (j->rc != 0)
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

/* ---- the worker --------------------------------------------------------- */

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u

static void pump(scree__exec *e);

static void wproc_closed(uv_handle_t *h) {
  scree__wproc *w = h->data;
  if (++w->nclosed < 2)
    return;
  free(w->known);
  free(w->forget);
  free(w);
}

/* Stops listening to w and makes sure it dies: SIGKILL, unless it has
 * exited already (its pid may then be another process's). why (NULL: see
 * wproc_lost) names the reason in the job's message; code is then the
 * job's error code. */
static void wproc_kill(scree__exec *e, scree__wproc *w, int code, const char *why) {
  if (w->polling) {
    uv_poll_stop(&w->poll);
    w->polling = 0;
  }
  if (e->w == w) {
    e->w = NULL;
    if (w->job != NULL)
      e->dying++;
    uv_timer_stop(&e->deadline);
  }
  if (w->exited)
    return;
  if (why != NULL && !w->killed) {
    w->killed = 1;
    w->ecode = code;
    snprintf(w->why, sizeof(w->why), "%s", why);
    scree__log(SCREE__LOG_WARN, "worker_kill", "pid=%d reason=%s", w->proc.pid, scree__q(why));
  }
  if (!w->signalled) {
    w->signalled = 1;
    uv_process_kill(&w->proc, SIGKILL);
  }
}

/* The worker's socket hung up or failed: it is dying or broken. It is made
 * sure of with SIGKILL, but its job's message says how it ended (a crash,
 * a signal from elsewhere) rather than blaming screed's kill. */
static void wproc_lost(scree__exec *e, scree__wproc *w) { wproc_kill(e, w, SCREE_EIO, NULL); }

static void on_worker_exit(uv_process_t *p, int64_t status, int term_signal) {
  scree__wproc *w = p->data;
  scree__exec *e = w->e;
  w->exited = 1;
  char how[128];
  if (term_signal != 0)
    snprintf(how, sizeof(how), "killed by signal %d (%s)", term_signal, strsignal(term_signal));
  else
    snprintf(how, sizeof(how), "exited with status %" PRId64, status);
  int was_current = e->w == w;
  if (was_current) {
    e->w = NULL;
    uv_timer_stop(&e->deadline);
  } else if (w->job != NULL) {
    e->dying--;
  }
  scree__log(w->killed || w->job != NULL || status != 0 ? SCREE__LOG_WARN : SCREE__LOG_DEBUG,
             "worker_exit", "pid=%d how=%s job=%d", p->pid, scree__q(how), w->job != NULL);
  if (w->polling) {
    uv_poll_stop(&w->poll);
    w->polling = 0;
  }
  uv_close((uv_handle_t *)&w->poll, wproc_closed);
  uv_close((uv_handle_t *)&w->proc, wproc_closed);
  close(w->fd);
  w->fd = -1;
  if (w->job != NULL || (was_current && status != 0) || w->killed) {
    /* A death, whatever caused it: the next worker waits a while, longer
     * with each death in a row. */
    if (e->failures < 16)
      e->failures++;
    uint64_t pause = (uint64_t)BACKOFF_MIN_MS << (e->failures - 1);
    e->next_spawn_ms = uv_now(e->loop) + (pause < BACKOFF_MAX_MS ? pause : BACKOFF_MAX_MS);
  }
  scree__job *j = w->job;
  w->job = NULL;
  if (j != NULL) {
    j->rc = w->killed ? w->ecode : SCREE_EIO;
    if (w->killed)
      snprintf(j->msg, sizeof(j->msg), "attention worker died: killed because %s", w->why);
    else
      snprintf(j->msg, sizeof(j->msg), "attention worker died: %s during the job", how);
    job_complete(e, j);
  }
  pump(e);
  maybe_stopped(e);
}

/* Sends one message; a worker whose socket is full or gone is broken. */
static int wsend(scree__wproc *w, const void *m, size_t len, int fd, char *msg,
                 size_t msg_len) {
  ssize_t n = scree__send_fd(w->fd, m, len, fd, MSG_DONTWAIT);
  if (n == (ssize_t)len)
    return 0;
  return scree__fail(SCREE_EIO, msg, msg_len, "cannot send to the worker: %s",
                     n < 0 ? strerror((int)-n) : "short send");
}

/* Tells w of the arenas freed since its last job, so that it unmaps them:
 * on a GPU an imported allocation stays allocated while any process maps
 * it. Only an idle worker is told (it reads nothing during a job). */
static int flush_forget(scree__wproc *w, char *msg, size_t msg_len) {
  while (w->nforget > 0) {
    scree__wmsg_forget f;
    memset(&f, 0, sizeof(f));
    f.type = SCREE__WMSG_FORGET;
    f.n = (uint32_t)(w->nforget < SCREE__WMSG_FORGET_MAX ? w->nforget : SCREE__WMSG_FORGET_MAX);
    memcpy(f.ids, w->forget + w->nforget - f.n, f.n * sizeof(uint64_t));
    int rc = wsend(w, &f, sizeof(f), -1, msg, msg_len);
    if (rc != 0)
      return rc;
    w->nforget -= f.n;
  }
  return 0;
}

static void on_arena_freed(void *arg, uint64_t id) {
  scree__exec *e = arg;
  scree__wproc *w = e->w;
  if (w == NULL)
    return;
  for (size_t i = 0; i < w->nknown; i++) {
    if (w->known[i].id != id)
      continue;
    w->known[i] = w->known[--w->nknown];
    if (SCREE__GROW(&w->forget, &w->capforget, w->nforget + 1, 16) != 0) {
      /* It cannot be told: a new worker maps only what it needs. */
      wproc_kill(e, w, SCREE_ENOMEM, "screed ran out of memory");
      return;
    }
    w->forget[w->nforget++] = id;
    char m[256];
    if (w->job == NULL && flush_forget(w, m, sizeof(m)) != 0)
      wproc_kill(e, w, SCREE_EIO, m);
    return;
  }
}

/* Sends the worker the arena of v unless it holds it with the access the
 * job needs. */
static int send_arena(scree__exec *e, scree__wproc *w, const scree__batch_view *v,
                      int writable, char *msg, size_t msg_len) {
  size_t i;
  for (i = 0; i < w->nknown; i++)
    if (w->known[i].id == v->arena_id)
      break;
  if (i < w->nknown && (w->known[i].writable || !writable))
    return 0;
  if (i == w->nknown && SCREE__GROW(&w->known, &w->capknown, w->nknown + 1, 16) != 0)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  scree__wmsg_arena a;
  memset(&a, 0, sizeof(a));
  a.type = SCREE__WMSG_ARENA;
  a.arena_id = v->arena_id;
  a.size = v->mem->size;
  int fd = -1, rc = 0;
  char m[512];
  if (e->mem->info.ipc_mode == SCREE__IPC_LEGACY) {
    a.writable = 1;
    a.handle_len = (uint32_t)v->mem->ipc_handle_len;
    memcpy(a.handle, v->mem->ipc_handle, v->mem->ipc_handle_len);
  } else if (!writable && e->mem->ops->share_fd_ro != NULL) {
    rc = e->mem->ops->share_fd_ro(e->mem, v->mem, &fd, m, sizeof(m));
  } else {
    a.writable = 1;
    rc = e->mem->ops->share_fd(e->mem, v->mem, &fd, m, sizeof(m));
  }
  if (rc != 0)
    return scree__fail(rc, msg, msg_len, "sharing arena %" PRIu64 " with the worker: %s",
                       v->arena_id, m);
  rc = wsend(w, &a, sizeof(a), fd, msg, msg_len);
  if (fd >= 0)
    close(fd);
  if (rc != 0)
    return rc;
  w->known[i].id = v->arena_id;
  w->known[i].writable = (int)a.writable;
  if (i == w->nknown)
    w->nknown++;
  return 0;
}

/* A memfd holding the job's cu_seqlens: they can be as long as the batch
 * has sequences, more than one packet carries. */
static int cu_memfd(const scree__job *j, int *out, char *msg, size_t msg_len) {
  size_t bytes = 2 * ((size_t)j->w.batch + 1) * sizeof(int32_t);
  int fd = memfd_create("scree-cu-seqlens", MFD_CLOEXEC);
  if (fd < 0)
    return scree__fail(SCREE_EIO, msg, msg_len, "memfd_create: %s", strerror(errno));
  const char *p = (const char *)j->cu;
  size_t done = 0;
  while (done < bytes) {
    ssize_t n = write(fd, p + done, bytes - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      return scree__fail(SCREE_EIO, msg, msg_len, "writing the cu_seqlens memfd: %s",
                         strerror(err));
    }
    done += (size_t)n;
  }
  *out = fd;
  return 0;
}

static void on_deadline(uv_timer_t *t) {
  scree__exec *e = t->data;
  if (e->w == NULL || e->w->job == NULL)
    return;
  char why[128];
  snprintf(why, sizeof(why), "the job ran past --attention-timeout (%" PRIu64 " ms)",
           e->job_timeout_ms);
  wproc_kill(e, e->w, SCREE_ETIMEDOUT, why);
}

/* Hands j to the idle worker w: the arenas it lacks, then the job. On
 * failure w is broken (the caller kills it) and j is not w's. */
static int send_job(scree__exec *e, scree__wproc *w, scree__job *j, char *msg,
                    size_t msg_len) {
  int rc = flush_forget(w, msg, msg_len);
  for (int i = 0; i < 3 && rc == 0; i++) {
    scree__batch_view v;
    scree__store_view(j->in[i], &v);
    rc = send_arena(e, w, &v, 0, msg, msg_len);
  }
  scree__batch_view ov;
  scree__store_view(j->out, &ov);
  if (rc == 0)
    rc = send_arena(e, w, &ov, 1, msg, msg_len);
  int fd = -1;
  if (rc == 0)
    rc = cu_memfd(j, &fd, msg, msg_len);
  if (rc == 0) {
    j->w.job_id = ++e->next_job_id;
    rc = wsend(w, &j->w, sizeof(j->w), fd, msg, msg_len);
    close(fd);
  }
  if (rc != 0)
    return rc;
  w->job = j;
  uv_timer_start(&e->deadline, on_deadline, e->job_timeout_ms, 0);
  return 0;
}

static void on_worker_io(uv_poll_t *p, int status, int events) {
  scree__wproc *w = p->data;
  scree__exec *e = w->e;
  if (status < 0) {
    wproc_lost(e, w);
    return;
  }
  if (events & UV_READABLE) {
    for (;;) {
      scree__wmsg_done d;
      ssize_t n = scree__recv_fds(w->fd, &d, sizeof(d), MSG_DONTWAIT, NULL, 0, NULL, NULL, NULL);
      if (n == -EAGAIN || n == -EWOULDBLOCK)
        break;
      if (n <= 0) {
        /* EOF: it closed its socket, which it does only on its way out. Its
         * exit (and the job's end) comes through on_worker_exit. */
        wproc_lost(e, w);
        return;
      }
      if ((size_t)n != sizeof(d) || d.type != SCREE__WMSG_DONE || w->job == NULL ||
          d.job_id != w->job->w.job_id) {
        wproc_kill(e, w, SCREE_EIO, "it sent a message screed did not expect");
        return;
      }
      scree__job *j = w->job;
      w->job = NULL;
      uv_timer_stop(&e->deadline);
      d.msg[sizeof(d.msg) - 1] = '\0';
      j->rc = d.rc;
      j->elapsed_ns = d.elapsed_ns;
      if (d.fatal) {
        snprintf(j->msg, sizeof(j->msg), "attention worker died: %s (its CUDA context is lost)",
                 d.msg);
        wproc_kill(e, w, SCREE_EIO, "its CUDA context is lost");
      } else {
        snprintf(j->msg, sizeof(j->msg), "%s", d.msg);
        e->failures = 0;
      }
      job_complete(e, j);
      if (e->w == w) {
        char m[256];
        if (flush_forget(w, m, sizeof(m)) != 0)
          wproc_kill(e, w, SCREE_EIO, m);
      }
      pump(e);
      maybe_stopped(e);
      return;
    }
  }
  if (events & UV_DISCONNECT)
    wproc_lost(e, w);
}

/* Starts a worker. Returns 0 or an error with a message. */
static int spawn(scree__exec *e, char *msg, size_t msg_len) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return scree__fail(SCREE_EIO, msg, msg_len, "socketpair: %s", strerror(errno));
  scree__wproc *w = calloc(1, sizeof(*w));
  if (w == NULL) {
    close(sv[0]);
    close(sv[1]);
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  }
  w->e = e;
  w->fd = sv[0];
  w->proc.data = w->poll.data = w;
  char backend[16], level[16], ppid[32];
  if (e->mem->info.backend == SCREE__BACKEND_CUDA)
    snprintf(backend, sizeof(backend), "%d", e->mem->info.device_index);
  else
    snprintf(backend, sizeof(backend), "cpu");
  snprintf(level, sizeof(level), "%d", scree__log_threshold);
  snprintf(ppid, sizeof(ppid), "%ld", (long)getpid());
  char *args[] = {e->worker_path, SCREE__WORKER_ARG, backend, level, ppid, NULL};
  uv_stdio_container_t stdio[4];
  memset(stdio, 0, sizeof(stdio));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = sv[1];
  uv_process_options_t o;
  memset(&o, 0, sizeof(o));
  o.file = e->worker_path;
  o.args = args;
  o.exit_cb = on_worker_exit;
  o.stdio = stdio;
  o.stdio_count = 4;
  int uvrc = uv_spawn(e->loop, &w->proc, &o);
  close(sv[1]);
  if (uvrc != 0) {
    close(sv[0]);
    /* The handle is the loop's even when the spawn failed. */
    w->nclosed = 1;
    uv_close((uv_handle_t *)&w->proc, wproc_closed);
    return scree__fail(SCREE_EIO, msg, msg_len, "cannot start the attention worker %s: %s",
                       e->worker_path, uv_strerror(uvrc));
  }
  int fl = fcntl(sv[0], F_GETFL);
  if (fl >= 0)
    fcntl(sv[0], F_SETFL, fl | O_NONBLOCK);
  uv_poll_init(e->loop, &w->poll, sv[0]);
  uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, on_worker_io);
  w->polling = 1;
  if (e->spawns++ > 0 && e->metrics != NULL)
    e->metrics->attention_worker_restarts++;
  scree__log(SCREE__LOG_INFO, "worker_start", "pid=%d backend=%s restarts=%" PRIu64,
             w->proc.pid, backend, e->spawns - 1);
  e->w = w;
  return 0;
}

static void on_backoff(uv_timer_t *t) { pump(t->data); }

/* Whether a job can be handed to a worker now: 1 (e->w is idle), 0 (wait:
 * the worker is busy, or the restart pause runs), or an error code with a
 * message when no worker can be started. */
static int worker_ready(scree__exec *e, char *msg, size_t msg_len) {
  if (e->w != NULL)
    return e->w->job == NULL;
  uint64_t now = uv_now(e->loop);
  if (now < e->next_spawn_ms) {
    if (!uv_is_active((uv_handle_t *)&e->backoff))
      uv_timer_start(&e->backoff, on_backoff, e->next_spawn_ms - now, 0);
    return 0;
  }
  int rc = spawn(e, msg, msg_len);
  return rc == 0 ? 1 : rc;
}

/* Starts queued jobs while the worker is free. Runs from loop callbacks
 * only, never inside a request's handling, so that a job failing to start
 * can be answered at once: its session already waits for the reply. */
static void pump(scree__exec *e) {
  while (e->qhead != NULL && !e->shutting_down) {
    char m[512];
    int ready = worker_ready(e, m, sizeof(m));
    if (ready == 0)
      return;
    scree__job *j = e->qhead;
    e->qhead = j->next;
    if (e->qhead == NULL)
      e->qtail = NULL;
    j->next = NULL;
    if (ready < 0) {
      j->rc = ready;
      snprintf(j->msg, sizeof(j->msg), "%s", m);
      job_complete(e, j);
      continue;
    }
    scree__wproc *w = e->w;
    int rc = send_job(e, w, j, m, sizeof(m));
    if (rc != 0) {
      wproc_kill(e, w, SCREE_EIO, m);
      j->rc = rc;
      snprintf(j->msg, sizeof(j->msg), "attention worker died: %s", m);
      job_complete(e, j);
    }
  }
}

/* The end of scree__exec_stop: no job left. */
static void maybe_stopped(scree__exec *e) {
  if (e->stop_cb == NULL || e->dying > 0 || (e->w != NULL && e->w->job != NULL) ||
      e->qhead != NULL)
    return;
  void (*cb)(void *) = e->stop_cb;
  e->stop_cb = NULL;
  cb(e->stop_arg);
}

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
  j->cu = malloc(2 * nq * sizeof(int32_t));
  if (j->cu == NULL) {
    rc = FAIL(SCREE_ENOMEM, "out of host memory");
    goto err_offsets;
  }
  /* Validated offsets lie within [0, total_rows <= INT32_MAX]. */
  for (size_t i = 0; i < nq; i++) {
    j->cu[i] = (int32_t)oq[i];
    j->cu[nq + i] = (int32_t)ok[i];
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

  scree__wmsg_job *x = &j->w;
  x->type = SCREE__WMSG_JOB;
  x->dtype = (uint32_t)q->dtype;
  for (int i = 0; i < 4; i++) {
    const scree__batch_view *bv = i < 3 ? &v[i] : &outv;
    scree__wmsg_loc *loc = i == 0 ? &x->q : i == 1 ? &x->k : i == 2 ? &x->v : &x->out;
    loc->arena_id = bv->arena_id;
    loc->offset = bv->values_offset;
    loc->bytes = bv->values_bytes;
  }
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
  x->num_threads = e->threads;
  snprintf(x->out_name, sizeof(x->out_name), "%s", a->out);

  /* Started now when the worker is free, so that a failure to start is
   * this request's answer; else queued for pump. */
  int ready = worker_ready(e, m, sizeof(m));
  if (ready < 0) {
    rc = FAIL(ready, "%s", m);
    goto err_offsets;
  }
  if (ready == 1) {
    scree__wproc *w = e->w;
    rc = send_job(e, w, j, m, sizeof(m));
    if (rc != 0) {
      wproc_kill(e, w, SCREE_EIO, m);
      rc = FAIL(rc, "attention worker died: %s", m);
      goto err_offsets;
    }
  } else {
    SCREE__LIST_APPEND(e->qhead, e->qtail, j);
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
  e->job_timeout_ms = SCREE__EXEC_DEFAULT_TIMEOUT_MS;
  const char *path = "/proc/self/exe";
  if (cfg != NULL) {
    e->drain = cfg->drain;
    e->metrics = cfg->metrics;
    if (cfg->job_timeout_ms != 0)
      e->job_timeout_ms = cfg->job_timeout_ms;
    if (cfg->worker_path != NULL)
      path = cfg->worker_path;
  }
  snprintf(e->worker_path, sizeof(e->worker_path), "%s", path);
  /* The worker runs one job at a time: the CPU kernel already spreads each
   * call over every processor, so running jobs side by side would only make
   * them compete, and a queue keeps each job's time honest. */
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  e->threads = n > 1 ? (int)n : 1;
  uv_timer_init(loop, &e->deadline);
  uv_timer_init(loop, &e->backoff);
  e->deadline.data = e->backoff.data = e;
  scree__store_set_arena_hook(store, on_arena_freed, e);
  *out = e;
  return 0;
}

void scree__exec_stop(scree__exec *e, const char *why, void (*cb)(void *arg), void *arg) {
  if (e == NULL) {
    cb(arg);
    return;
  }
  while (e->qhead != NULL) {
    scree__job *j = e->qhead;
    e->qhead = j->next;
    j->next = NULL;
    j->rc = SCREE_EAGAIN;
    snprintf(j->msg, sizeof(j->msg), "screed is shutting down (%s) before the job started",
             why);
    job_complete(e, j);
  }
  e->qtail = NULL;
  e->stop_cb = cb;
  e->stop_arg = arg;
  if (e->w != NULL && e->w->job != NULL)
    wproc_kill(e, e->w, SCREE_EAGAIN, why);
  maybe_stopped(e);
}

void scree__exec_shutdown(scree__exec *e) {
  if (e == NULL || e->shutting_down)
    return;
  e->shutting_down = 1;
  e->stop_cb = NULL;
  scree__store_set_arena_hook(e->store, NULL, NULL);
  while (e->qhead != NULL) {
    scree__job *j = e->qhead;
    e->qhead = j->next;
    scree__log(SCREE__LOG_INFO, "attention_dropped", "reason=shutdown");
    job_undo(e, j);
  }
  e->qtail = NULL;
  scree__wproc *w = e->w;
  if (w != NULL) {
    if (w->job != NULL) {
      wproc_kill(e, w, SCREE_EAGAIN, "screed is shutting down");
    } else {
      /* An idle worker leaves on its own once its socket reads EOF, and
       * unmaps what it holds on the way. */
      if (w->polling) {
        uv_poll_stop(&w->poll);
        w->polling = 0;
      }
      shutdown(w->fd, SHUT_RDWR);
      e->w = NULL;
    }
  }
  uv_close((uv_handle_t *)&e->deadline, NULL);
  uv_close((uv_handle_t *)&e->backoff, NULL);
}

void scree__exec_free(scree__exec *e) { free(e); }
