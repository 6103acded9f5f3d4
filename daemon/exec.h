/* Attention jobs: screed runs varlen attention on stored batches.
 *
 * An Attention request is checked on the loop thread (names, states, dtypes,
 * shapes, offsets), then becomes a job: its inputs are pinned (a Delete
 * meanwhile is deferred), its output batch is reserved (CREATED, unnamed,
 * owned by the requesting peer), q's offsets are copied into the output's
 * offsets region, and the kernel runs off the loop thread:
 * - host memory: on libuv's thread pool, one job at a time, each
 *   kernel call spreading over the machine's processors;
 * - CUDA: launched on one CUDA stream, with a host function at the end of
 *   the stream's work waking the loop through a uv_async_t.
 * On completion, on the loop thread, the output is named and sealed (or
 * freed on failure), the inputs unpinned, and the reply handed to the
 * callback given with the request. The requesting session reads no
 * further request until then, so replies stay in order.
 *
 * The executor speaks C (scree__attention_req); the handler turns the
 * protocol's Attention into one and the result back into a reply. It runs
 * in screed's process today; the plan is a worker process that imports the
 * arenas as a client does, behind this same interface.
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
} scree__exec_config;

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
 * may be NULL. Returns 0, SCREE_ENOMEM, or SCREE_ECUDA when the CUDA stream
 * cannot be made, with a message. */
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

/* Drops jobs that have not started (their outputs are freed, their inputs
 * unpinned); running ones finish on their own. Closes the executor's loop
 * handles once nothing runs, so that the loop can run out. Harmless twice;
 * NULL is allowed. */
void scree__exec_shutdown(scree__exec *e);

/* Frees the executor once the loop has run out after scree__exec_shutdown.
 * NULL is allowed. */
void scree__exec_free(scree__exec *e);

#endif /* SCREE_DAEMON_EXEC_H */
