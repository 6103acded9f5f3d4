/* Graceful shutdown: running jobs are counted, and shutdown waits for the
 * count to reach zero, or for --drain-timeout, before connections close.
 *
 * The attention executor (exec.c) calls scree__drain_job_begin when a job
 * starts and scree__drain_job_end when its reply has been handed to the
 * server; it should refuse new jobs once scree__drain_active is true. All
 * calls happen on the loop thread: a job that finishes on another thread
 * reports back through the loop (uv_async_t) before calling job_end. */
#ifndef SCREE_DAEMON_DRAIN_H
#define SCREE_DAEMON_DRAIN_H

#include <stdint.h>
#include <uv.h>

typedef struct scree__drain scree__drain;

/* Called once, on the loop, when draining ends: timed_out is 1 when jobs
 * were still running at the timeout (running says how many), else 0. */
typedef void (*scree__drain_cb)(scree__drain *d, int timed_out, uint32_t running);

struct scree__drain {
  uv_loop_t *loop;
  uv_timer_t timer;  /* the timeout; also defers the callback by a turn */
  uint64_t timeout_ms;
  uint32_t running;  /* jobs started and not ended */
  uint64_t started;  /* jobs ever started */
  int active;        /* scree__drain_start was called */
  int done;          /* the callback has run */
  scree__drain_cb cb;
  void *data;        /* for the caller */
};

/* Prepares d (its timer becomes a loop handle; close it with
 * scree__drain_close). */
void scree__drain_init(scree__drain *d, uv_loop_t *loop, uint64_t timeout_ms);

void scree__drain_job_begin(scree__drain *d);
/* Ends a job; when draining and this was the last one, cb runs on the next
 * loop turn (never inside the caller's stack). */
void scree__drain_job_end(scree__drain *d);

/* True once shutdown has begun: new jobs should be refused. */
#define scree__drain_active(d) ((d)->active)

/* Begins draining: cb runs once no job runs (on the next loop turn when
 * none does now) or when timeout_ms pass, whichever comes first. Calling it
 * again does nothing. */
void scree__drain_start(scree__drain *d, scree__drain_cb cb);

/* Ends draining at once (a second SIGTERM): cb runs now, with timed_out
 * set when jobs still run. Does nothing before scree__drain_start or after
 * cb has run. */
void scree__drain_now(scree__drain *d);

/* Closes the timer handle. */
void scree__drain_close(scree__drain *d);

#endif /* SCREE_DAEMON_DRAIN_H */
