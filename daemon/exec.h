/* Attention jobs: screed runs varlen attention on stored batches.
 *
 * An Attention request is checked on the loop thread (names, states, dtypes,
 * shapes, offsets), then becomes a job: its inputs are pinned (a Delete
 * meanwhile is deferred), its output batch is reserved under its name
 * (CREATED, owned by the requesting peer; a Create of the name meanwhile gets
 * EEXIST), q's offsets are copied into the output's offsets region, and the
 * kernel runs in the attention worker, a child process (worker.h), one job
 * at a time. The loop never waits for it: the worker's socket is polled,
 * and its exit comes through libuv's process handle.
 *
 * On completion, on the loop thread, the output is sealed (or freed on
 * failure), the inputs unpinned, and the reply handed to the callback given
 * with the request. The requesting session reads no further request until
 * then, so replies stay in order.
 *
 * A worker that dies (a crash, a CUDA fault that poisons its context), or
 * that runs past the job deadline (scree__exec_config.job_timeout_ms) and
 * is killed, fails only its job, with "attention worker died: ..."; the
 * next job starts a new worker (after a pause that doubles with each death
 * in a row, from 100 ms up to 5 s). The stored batches are screed's and
 * never depend on the worker.
 *
 * The executor speaks C (scree__attention_req); the handler turns the
 * protocol's Attention into one and the result back into a reply.
 *
 * If the session closes while its job runs, the job still finishes and its
 * output is kept, sealed: the client asked for it. */
#ifndef SCREE_DAEMON_EXEC_H
#define SCREE_DAEMON_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store.h"

struct scree__drain;
struct scree__metrics;

typedef struct scree__exec scree__exec;

typedef struct scree__exec_config {
  /* The daemon's shutdown drain and metrics (either may be NULL). Every
   * accepted job is counted running in the drain until it completes, so
   * that SIGTERM waits for it; once the drain has started, new requests are
   * refused with SCREE_EAGAIN. Each finished job is recorded in the
   * metrics' attention counters. */
  struct scree__drain *drain;
  struct scree__metrics *metrics;
  /* How long one job may run in the worker before the worker is killed
   * and the job fails with SCREE_ETIMEDOUT (--attention-timeout); 0: the
   * default, 600 s. */
  uint64_t job_timeout_ms;
  /* The program started as the worker, with SCREE__WORKER_ARG (worker.h);
   * NULL: /proc/self/exe, screed itself. */
  const char *worker_path;
} scree__exec_config;

#define SCREE__EXEC_DEFAULT_TIMEOUT_MS 600000u

/* An Attention request in C terms. Window bounds are -1 when unbounded. */
typedef struct scree__attention_req {
  const char *q, *k, *v, *out; /* batch names; NULL: missing */
  int causal;
  int has_scale;
  float scale;
  int32_t window_left;
  int32_t window_right;
} scree__attention_req;

/* How a job ended: rc 0 with out (the sealed output) and elapsed_ns, or an
 * error code with msg. Valid during the callback only. */
typedef struct scree__attention_result {
  int rc;
  const char *msg;
  const scree__batch_view *out;
  uint64_t elapsed_ns;
} scree__attention_result;

/* Receives a job's end for the session that asked (on the loop thread),
 * with the id of its request. Not called when the session closed first. */
typedef void (*scree__exec_done_cb)(void *arg, scree__session *sess, uint64_t id,
                                    const scree__attention_result *res);

/* Makes an executor for the store's backend (host or CUDA) on loop. cfg
 * may be NULL. No worker starts until the first job. Returns 0 or
 * SCREE_ENOMEM with a message. */
int scree__exec_new(uv_loop_t *loop, scree__store *store, const scree__exec_config *cfg,
                    scree__exec **out, char *msg, size_t msg_len);

/* Starts an Attention job for sess (request id). Returns 0 when the job is
 * accepted: its end comes through cb(cb_arg, ...) later, and until then
 * the session's job (scree__session_job) is set. Otherwise returns an
 * error code with the message in msg, having changed nothing. */
int scree__exec_attention(scree__exec *e, scree__session *sess, uint64_t id,
                          const scree__attention_req *a, scree__exec_done_cb cb, void *cb_arg,
                          char *msg, size_t msg_len);

/* Called when the job's session closes: the job finishes without calling
 * its callback, keeping its output. */
void scree__exec_detach(void *job);

/* Ends jobs at once because screed is stopping (the drain timeout passed,
 * or a second signal came): queued jobs are answered SCREE_EAGAIN, the
 * worker running a job is killed and its job answered "attention worker
 * died: killed because <why>". cb(arg) runs once no job is left (at once
 * when none runs), so that the replies can go out before the connections
 * close. */
void scree__exec_stop(scree__exec *e, const char *why, void (*cb)(void *arg), void *arg);

/* Drops jobs that have not started (their outputs are freed, their inputs
 * unpinned), kills a worker that still runs a job and lets an idle one exit.
 * The executor's loop handles close once the worker has exited, so that
 * the loop can run out. Harmless twice; NULL is allowed. */
void scree__exec_shutdown(scree__exec *e);

/* Frees the executor once the loop has run out after scree__exec_shutdown.
 * NULL is allowed. */
void scree__exec_free(scree__exec *e);

#endif /* SCREE_DAEMON_EXEC_H */
