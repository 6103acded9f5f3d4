/* Attention jobs: screed runs varlen attention on stored batches.
 *
 * An Attention request is checked on the loop thread (names, states, dtypes,
 * shapes, offsets), then becomes a job: its inputs are pinned (a Delete
 * meanwhile is deferred), its output batch is reserved (CREATED, unnamed,
 * owned by the requesting peer), q's offsets are copied into the output's
 * offsets region, and the kernel runs off the loop thread:
 * - host memory: on libuv's thread pool, one job at a time by default, each
 *   kernel call spreading over the machine's processors;
 * - CUDA: launched on one CUDA stream, with a host function at the end of
 *   the stream's work waking the loop through a uv_async_t.
 * On completion, on the loop thread, the output is named and sealed (or
 * freed on failure), the inputs unpinned, and the reply handed to the
 * callback given at creation. The requesting session reads no further
 * request until then (scree__reply.deferred), so replies stay in order.
 *
 * If the session closes while its job runs, the job still finishes and its
 * output is kept, sealed: the client asked for it. */
#ifndef SCREE_DAEMON_EXEC_H
#define SCREE_DAEMON_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store.h"

/* Delivers a deferred reply for sess (on the loop thread). The reply is the
 * job's: pack or copy it before returning. */
typedef void (*scree__exec_reply_cb)(void *arg, scree__session *sess, scree__reply *r);

typedef struct scree__exec_config {
  int parallel; /* host jobs running at once; 0: 1 */
  int threads;  /* kernel threads per host job; 0: online processors / parallel */
} scree__exec_config;

/* Makes an executor for the store's backend (host or CUDA) on loop, and
 * hands the store's Attention requests to it (scree__store_set_exec).
 * cfg may be NULL for the defaults. Returns 0, SCREE_ENOMEM, or SCREE_ECUDA
 * when the CUDA stream cannot be made, with a message. */
int scree__exec_new(uv_loop_t *loop, scree__store *store, const scree__exec_config *cfg,
                    scree__exec_reply_cb cb, void *cb_arg, scree__exec **out, char *msg,
                    size_t msg_len);

struct scree__drain;
struct scree__metrics;

/* Connects the executor to the daemon's shutdown drain and metrics (either
 * may be NULL). Every accepted job is counted running in the drain until it
 * completes, so that SIGTERM waits for it; once the drain has started, new
 * requests are refused with SCREE_EAGAIN. Each finished job is recorded in
 * the metrics' attention counters. */
void scree__exec_set_ops(scree__exec *e, struct scree__drain *drain,
                         struct scree__metrics *metrics);

/* Handles an Attention request of sess. Returns 0 with r->deferred set (the
 * reply comes through the callback), or an error code with the message in
 * r->msg, having changed nothing. */
int scree__exec_attention(scree__exec *e, scree__session *sess, uint64_t id,
                          const Scree__V1__Attention *a, scree__reply *r);

/* Called by the store when the job's session closes: the job finishes
 * without a reply. */
void scree__exec_detach(void *job);

/* Drops jobs that have not started (their outputs are freed, their inputs
 * unpinned); running ones finish on their own. Closes the executor's loop
 * handles once nothing runs, so that the loop can run out. Harmless twice. */
void scree__exec_shutdown(scree__exec *e);

/* Frees the executor once the loop has run out after scree__exec_shutdown.
 * NULL is allowed. */
void scree__exec_free(scree__exec *e);

#endif /* SCREE_DAEMON_EXEC_H */
