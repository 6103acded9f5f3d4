/* The attention worker process (worker.h says what it is for). It is a
 * plain blocking loop: read a message, act on it, answer a job. Everything
 * it does is undone by its death, which is how screed cancels a job. */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "grow.h"
#include "log.h"
#include "scree/attention.h"
#include "scree/error.h"
#include "sys.h"
#ifdef SCREE_HAVE_CUDA
#include "worker_cuda.h"
#endif

typedef struct warena {
  uint64_t id;
  uint64_t size;
  int writable;
  void *host;      /* host memory: this process's mapping */
  uint64_t dev;    /* CUDA: this process's device address */
  void *cuda;      /* CUDA: the import (worker_cuda.c) */
} warena;

typedef struct wstate {
  int sock;
  int cuda;   /* 0: host memory */
  int device; /* CUDA ordinal */
  warena *a;
  size_t n;
  size_t cap;
} wstate;

#define WFAIL(code, ...) scree__fail((code), d->msg, sizeof(d->msg), __VA_ARGS__)

static warena *arena_find(wstate *w, uint64_t id) {
  for (size_t i = 0; i < w->n; i++)
    if (w->a[i].id == id)
      return &w->a[i];
  return NULL;
}

static void arena_unmap(warena *a) {
  if (a->host != NULL)
    munmap(a->host, (size_t)a->size);
#ifdef SCREE_HAVE_CUDA
  if (a->cuda != NULL)
    scree__wcuda_unmap(a->cuda);
#endif
  a->host = NULL;
  a->cuda = NULL;
}

static void arena_forget(wstate *w, uint64_t id) {
  warena *a = arena_find(w, id);
  if (a == NULL)
    return;
  arena_unmap(a);
  *a = w->a[--w->n];
}

/* Maps (or maps again, writable) the arena a message announces. An arena
 * the worker cannot map is only logged: the job that needs it is answered
 * with an error naming it. */
static void arena_add(wstate *w, const scree__wmsg_arena *m, int fd) {
  char msg[512] = "";
  warena *a = arena_find(w, m->arena_id);
  if (a != NULL)
    arena_forget(w, m->arena_id);
  if (SCREE__GROW(&w->a, &w->cap, w->n + 1, 16) != 0) {
    scree__log(SCREE__LOG_ERROR, "worker_arena_failed", "arena=%" PRIu64 " msg=\"out of memory\"",
               m->arena_id);
    return;
  }
  warena n = {.id = m->arena_id, .size = m->size, .writable = (int)m->writable};
  int rc = 0;
  if (!w->cuda) {
    if (fd < 0) {
      rc = scree__fail(SCREE_EPROTO, msg, sizeof(msg), "no fd came with the arena");
    } else {
      int prot = PROT_READ | (m->writable ? PROT_WRITE : 0);
      void *p = mmap(NULL, (size_t)m->size, prot, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED)
        rc = scree__fail(SCREE_EIO, msg, sizeof(msg), "mmap: %s", strerror(errno));
      else
        n.host = p;
    }
  } else {
#ifdef SCREE_HAVE_CUDA
    rc = scree__wcuda_import(w->device, fd, m->handle_len ? m->handle : NULL, m->handle_len,
                             (size_t)m->size, &n.cuda, &n.dev, msg, sizeof(msg));
#else
    rc = scree__fail(SCREE_ENOTSUP, msg, sizeof(msg), "built without CUDA");
#endif
  }
  if (rc != 0) {
    scree__log(SCREE__LOG_ERROR, "worker_arena_failed", "arena=%" PRIu64 " msg=%s",
               m->arena_id, scree__q(msg));
    return;
  }
  w->a[w->n++] = n;
}

/* The address of loc in this process, checked against the arena. */
static int locate(wstate *w, const char *role, const scree__wmsg_loc *loc, uint64_t want,
                  int write, uintptr_t *out, scree__wmsg_done *d) {
  warena *a = arena_find(w, loc->arena_id);
  if (a == NULL)
    return WFAIL(SCREE_EIO, "%s: arena %" PRIu64 " is not mapped in the worker", role,
                 loc->arena_id);
  if (loc->bytes != want || loc->offset > a->size || want > a->size - loc->offset)
    return WFAIL(SCREE_EPROTO,
                 "%s: %" PRIu64 " bytes at %" PRIu64 " (want %" PRIu64
                 ") do not fit arena %" PRIu64 " of %" PRIu64 " bytes",
                 role, loc->bytes, loc->offset, want, a->id, a->size);
  if (write && !a->writable)
    return WFAIL(SCREE_EPROTO, "%s: arena %" PRIu64 " is mapped read-only", role, a->id);
  *out = (w->cuda ? (uintptr_t)a->dev : (uintptr_t)a->host) + (uintptr_t)loc->offset;
  return 0;
}

/* Checks cu_seqlens again, as cheap insurance that the kernels index
 * nothing outside the tensors whatever the message says. */
static int cu_check(const char *role, const int32_t *cu, int32_t batch, int32_t total,
                    int32_t max, scree__wmsg_done *d) {
  if (cu[0] != 0 || cu[batch] != total)
    return WFAIL(SCREE_EPROTO, "cu_seqlens_%s runs from %" PRId32 " to %" PRId32
                 ", not 0 to %" PRId32, role, cu[0], cu[batch], total);
  for (int32_t i = 0; i < batch; i++)
    if (cu[i + 1] < cu[i] || cu[i + 1] - cu[i] > max)
      return WFAIL(SCREE_EPROTO, "cu_seqlens_%s[%" PRId32 "] is out of order or too long",
                   role, i + 1);
  return 0;
}

#ifdef SCREE_TEST_HOOKS
/* The test builds' fault switch: SCREE_TEST_WORKER_FAULT is a comma
 * separated list of KIND[:OUT]; the job whose output is named OUT (every
 * job, without :OUT) crashes (segv), hangs (hang), or, on a GPU, launches a
 * kernel that traps (cuda-trap). Compiled only with SCREE_TEST_HOOKS
 * (docs/testing.md). Returns 1 for cuda-trap. */
static int test_fault(const scree__wmsg_job *j) {
  const char *f = getenv("SCREE_TEST_WORKER_FAULT");
  while (f != NULL && *f != '\0') {
    size_t len = strcspn(f, ",");
    const char *colon = memchr(f, ':', len);
    size_t klen = colon ? (size_t)(colon - f) : len;
    int match = colon == NULL || (strlen(j->out_name) == len - klen - 1 &&
                                  strncmp(colon + 1, j->out_name, len - klen - 1) == 0);
    if (match) {
      scree__log(SCREE__LOG_WARN, "worker_test_fault", "kind=%.*s out=%s", (int)klen, f,
                 scree__q(j->out_name));
      if (klen == 4 && strncmp(f, "segv", 4) == 0) {
        volatile int *p = NULL;
        *p = 1;
        raise(SIGSEGV);
      } else if (klen == 4 && strncmp(f, "hang", 4) == 0) {
        for (;;)
          pause();
      } else if (klen == 9 && strncmp(f, "cuda-trap", 9) == 0) {
        return 1;
      }
    }
    f += len;
    if (*f == ',')
      f++;
  }
  return 0;
}
#endif

static void run_job(wstate *w, const scree__wmsg_job *j, int cu_fd, scree__wmsg_done *d) {
  d->rc = 0;
  d->msg[0] = '\0';
  int32_t *cu = NULL;
  size_t n = (size_t)j->batch + 1;
  size_t cu_bytes = 2 * n * sizeof(int32_t);
  if (j->batch < 0 || cu_fd < 0) {
    d->rc = WFAIL(SCREE_EPROTO, "a job without its cu_seqlens");
    return;
  }
  struct stat st;
  if (fstat(cu_fd, &st) != 0 || (uint64_t)st.st_size != cu_bytes) {
    d->rc = WFAIL(SCREE_EPROTO, "the cu_seqlens memfd does not hold %zu bytes", cu_bytes);
    return;
  }
  cu = malloc(cu_bytes);
  if (cu == NULL) {
    d->rc = WFAIL(SCREE_ENOMEM, "out of host memory in the worker");
    return;
  }
  if (pread(cu_fd, cu, cu_bytes, 0) != (ssize_t)cu_bytes) {
    d->rc = WFAIL(SCREE_EIO, "reading the cu_seqlens memfd: %s", strerror(errno));
    goto out;
  }
  const int32_t *cu_q = cu, *cu_k = cu + n;
  d->rc = cu_check("q", cu_q, j->batch, j->total_q, j->max_seqlen_q, d);
  if (d->rc == 0)
    d->rc = cu_check("k", cu_k, j->batch, j->total_k, j->max_seqlen_k, d);
  if (d->rc != 0)
    goto out;

  uint64_t esz = scree_dtype_size((scree_dtype)j->dtype);
  uint64_t qb = (uint64_t)j->total_q * (uint64_t)j->num_heads_q * (uint64_t)j->head_dim * esz;
  uint64_t kb = (uint64_t)j->total_k * (uint64_t)j->num_heads_kv * (uint64_t)j->head_dim * esz;
  scree_attention_args x;
  memset(&x, 0, sizeof(x));
  uintptr_t pq, pk, pv, po;
  if ((d->rc = locate(w, "q", &j->q, qb, 0, &pq, d)) != 0 ||
      (d->rc = locate(w, "k", &j->k, kb, 0, &pk, d)) != 0 ||
      (d->rc = locate(w, "v", &j->v, kb, 0, &pv, d)) != 0 ||
      (d->rc = locate(w, "out", &j->out, qb, 1, &po, d)) != 0)
    goto out;
  x.q_dtype = x.k_dtype = x.v_dtype = x.out_dtype = (scree_dtype)j->dtype;
  x.q = (const void *)pq;
  x.k = (const void *)pk;
  x.v = (const void *)pv;
  x.out = (void *)po;
  x.batch = j->batch;
  x.total_q = j->total_q;
  x.total_k = j->total_k;
  x.max_seqlen_q = j->max_seqlen_q;
  x.max_seqlen_k = j->max_seqlen_k;
  x.num_heads_q = j->num_heads_q;
  x.num_heads_kv = j->num_heads_kv;
  x.head_dim = j->head_dim;
  x.softmax_scale = j->softmax_scale;
  x.causal = j->causal;
  x.window_left = j->window_left;
  x.window_right = j->window_right;
  x.num_threads = j->num_threads;
  x.msg = d->msg;
  x.msg_len = sizeof(d->msg);

  int trap = 0;
#ifdef SCREE_TEST_HOOKS
  trap = test_fault(j);
#endif
  uint64_t t0 = scree__now_ns();
  if (!w->cuda) {
    x.device = SCREE_DEVICE_CPU;
    x.cu_seqlens_q = cu_q;
    x.cu_seqlens_k = cu_k;
    d->rc = scree_attention_fwd(&x);
    if (d->rc != 0 && d->msg[0] == '\0')
      snprintf(d->msg, sizeof(d->msg), "%s", scree_strerror(d->rc));
  } else {
#ifdef SCREE_HAVE_CUDA
    int fatal = 0;
    d->rc = scree__wcuda_run(&x, cu_q, cu_k, trap, &fatal, d->msg, sizeof(d->msg));
    d->fatal = (uint32_t)fatal;
#else
    d->rc = WFAIL(SCREE_ENOTSUP, "built without CUDA");
#endif
  }
  (void)trap;
  d->elapsed_ns = scree__now_ns() - t0;
out:
  free(cu);
}

/* Closes every fd above the socket: screed's own fds (connections, the
 * listener, a lock) must not live on in the worker, whether or not each
 * was opened close-on-exec. */
static void close_others(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, SCREE__WORKER_FD + 1, ~0U, 0) == 0)
    return;
#endif
  long max = sysconf(_SC_OPEN_MAX);
  for (long fd = SCREE__WORKER_FD + 1; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
    close((int)fd);
}

int scree__worker_main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "screed: %s is for screed's own use\n", SCREE__WORKER_ARG);
    return 2;
  }
  /* The worker must not outlive screed, even one killed with SIGKILL. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if ((long)getppid() != strtol(argv[4], NULL, 10))
    return 1;
  prctl(PR_SET_NAME, "screed-worker");
  close_others();
  signal(SIGPIPE, SIG_IGN);
  /* Stop signals are screed's to act on: a SIGINT for the terminal's
   * process group, or systemd's SIGTERM to every process of the unit, must
   * not end the worker under a job that the drain still waits for. screed
   * ends the worker itself (EOF, or SIGKILL). */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);

  wstate w;
  memset(&w, 0, sizeof(w));
  w.sock = SCREE__WORKER_FD;
  if (strcmp(argv[2], "cpu") != 0) {
    w.cuda = 1;
    w.device = atoi(argv[2]);
#ifdef SCREE_HAVE_CUDA
    char msg[512];
    int rc = scree__wcuda_init(w.device, msg, sizeof(msg));
    if (rc != 0) {
      scree__log(SCREE__LOG_ERROR, "worker_start_failed", "device=%d msg=%s", w.device,
                 scree__q(msg));
      return 1;
    }
#else
    scree__log(SCREE__LOG_ERROR, "worker_start_failed", "msg=\"built without CUDA\"");
    return 1;
#endif
  }
  int lvl = atoi(argv[3]);
  if (lvl >= SCREE__LOG_ERROR && lvl <= SCREE__LOG_DEBUG)
    scree__log_threshold = lvl;

  union {
    uint32_t type;
    scree__wmsg_arena arena;
    scree__wmsg_forget forget;
    scree__wmsg_job job;
    unsigned char raw[1024];
  } m;
  int status = 0;
  for (;;) {
    int fds[1];
    int nfds = 0, ctrunc = 0;
    ssize_t len = scree__recv_fds(w.sock, &m, sizeof(m), 0, fds, 1, &nfds, NULL, &ctrunc);
    if (len == 0)
      break; /* screed closed its end: the worker's work is over */
    if (len < 0) {
      scree__log(SCREE__LOG_ERROR, "worker_recv_failed", "error=%s",
                 scree__q(strerror((int)-len)));
      status = 1;
      break;
    }
    int fd = nfds > 0 ? fds[0] : -1;
    if (m.type == SCREE__WMSG_ARENA && (size_t)len == sizeof(m.arena)) {
      arena_add(&w, &m.arena, fd);
    } else if (m.type == SCREE__WMSG_FORGET && (size_t)len == sizeof(m.forget) &&
               m.forget.n <= SCREE__WMSG_FORGET_MAX) {
      for (uint32_t i = 0; i < m.forget.n; i++)
        arena_forget(&w, m.forget.ids[i]);
    } else if (m.type == SCREE__WMSG_JOB && (size_t)len == sizeof(m.job)) {
      scree__wmsg_job j = m.job;
      j.out_name[sizeof(j.out_name) - 1] = '\0';
      scree__wmsg_done d;
      memset(&d, 0, sizeof(d));
      d.type = SCREE__WMSG_DONE;
      d.job_id = j.job_id;
      run_job(&w, &j, fd, &d);
      ssize_t sent = scree__send_fd(w.sock, &d, sizeof(d), -1, 0);
      /* A poisoned CUDA context cannot even be cleaned up reliably: the
       * process's exit releases everything. */
      if (d.fatal)
        _exit(3);
      if (sent != (ssize_t)sizeof(d)) {
        if (fd >= 0)
          close(fd);
        status = 1;
        break;
      }
    } else {
      scree__log(SCREE__LOG_ERROR, "worker_bad_message", "type=%" PRIu32 " len=%zd", m.type,
                 len);
      if (fd >= 0)
        close(fd);
      status = 1;
      break;
    }
    if (fd >= 0)
      close(fd);
  }
  while (w.n > 0)
    arena_forget(&w, w.a[w.n - 1].id);
  free(w.a);
#ifdef SCREE_HAVE_CUDA
  if (w.cuda)
    scree__wcuda_close();
#endif
  close(w.sock);
  return status;
}
