#include "drain.h"

#include <string.h>

void scree__drain_init(scree__drain *d, uv_loop_t *loop, uint64_t timeout_ms) {
  memset(d, 0, sizeof(*d));
  d->loop = loop;
  d->timeout_ms = timeout_ms;
  uv_timer_init(loop, &d->timer);
  d->timer.data = d;
}

static void finish(scree__drain *d, int timed_out) {
  if (d->done)
    return;
  d->done = 1;
  uv_timer_stop(&d->timer);
  if (d->cb != NULL)
    d->cb(d, timed_out, d->running);
}

static void on_timeout(uv_timer_t *t) {
  scree__drain *d = t->data;
  finish(d, d->running != 0);
}

void scree__drain_job_begin(scree__drain *d) {
  d->running++;
  d->started++;
}

void scree__drain_job_end(scree__drain *d) {
  if (d->running > 0)
    d->running--;
  /* A zero-delay timer runs cb on the next loop turn, so that a caller in
   * the middle of a reply never sees the server shut down under it. */
  if (d->active && !d->done && d->running == 0)
    uv_timer_start(&d->timer, on_timeout, 0, 0);
}

void scree__drain_start(scree__drain *d, scree__drain_cb cb) {
  if (d->active)
    return;
  d->active = 1;
  d->cb = cb;
  uv_timer_start(&d->timer, on_timeout, d->running == 0 ? 0 : d->timeout_ms, 0);
}

void scree__drain_close(scree__drain *d) {
  if (!uv_is_closing((uv_handle_t *)&d->timer))
    uv_close((uv_handle_t *)&d->timer, NULL);
}

void scree__drain_now(scree__drain *d) {
  if (d->active && !d->done)
    finish(d, d->running != 0);
}
