/* The shutdown drain: it waits for running jobs, up to its timeout. */
#include <criterion/criterion.h>
#include <uv.h>

#include "drain.h"

static uv_loop_t loop;
static int calls;
static int got_timed_out;
static uint32_t got_running;

static void on_done(scree__drain *d, int timed_out, uint32_t running) {
  calls++;
  got_timed_out = timed_out;
  got_running = running;
  scree__drain_close(d);
}

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  calls = 0;
  got_timed_out = -1;
  got_running = 99;
}

static void teardown(void) { cr_assert_eq(uv_loop_close(&loop), 0, "a handle was left open"); }

TestSuite(drain, .init = setup, .fini = teardown);

Test(drain, no_jobs_finishes_on_the_next_turn) {
  scree__drain d;
  scree__drain_init(&d, &loop, 60000);
  scree__drain_start(&d, on_done);
  cr_assert_eq(calls, 0, "the callback never runs inside drain_start");
  cr_assert(scree__drain_active(&d));
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(calls, 1);
  cr_assert_eq(got_timed_out, 0);
  cr_assert_eq(got_running, 0);
}

static void end_job(uv_timer_t *t) {
  scree__drain *d = t->data;
  scree__drain_job_end(d);
  uv_close((uv_handle_t *)t, NULL);
}

Test(drain, waits_for_the_last_job) {
  scree__drain d;
  scree__drain_init(&d, &loop, 60000);
  scree__drain_job_begin(&d);
  scree__drain_job_begin(&d);
  scree__drain_job_end(&d);
  scree__drain_start(&d, on_done);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &d;
  uv_timer_start(&t, end_job, 20, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(calls, 1);
  cr_assert_eq(got_timed_out, 0, "the job ended long before the 60 s timeout");
  cr_assert_eq(d.running, 0);
  cr_assert_eq(d.started, 2);
}

Test(drain, gives_up_at_the_timeout) {
  scree__drain d;
  scree__drain_init(&d, &loop, 30);
  scree__drain_job_begin(&d);
  scree__drain_start(&d, on_done);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(calls, 1);
  cr_assert_eq(got_timed_out, 1);
  cr_assert_eq(got_running, 1);
  /* A job that ends afterwards does not call back again. */
  scree__drain_job_end(&d);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(calls, 1);
}

Test(drain, now_ends_it_at_once_and_start_twice_is_harmless) {
  scree__drain d;
  scree__drain_init(&d, &loop, 60000);
  scree__drain_job_begin(&d);
  scree__drain_now(&d); /* before start: nothing */
  cr_assert_eq(calls, 0);
  scree__drain_start(&d, on_done);
  scree__drain_start(&d, on_done);
  scree__drain_now(&d);
  cr_assert_eq(calls, 1);
  cr_assert_eq(got_timed_out, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(calls, 1);
}

Test(drain, unused_drain_closes_cleanly) {
  scree__drain d;
  scree__drain_init(&d, &loop, 100);
  scree__drain_close(&d);
  scree__drain_close(&d);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(calls, 0);
}
