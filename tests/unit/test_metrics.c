/* Request accounting and the exposition text, without a daemon. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "scree/error.h"

static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p != NULL && *p != '\0';) {
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
    p = strchr(p, '\n');
    if (p != NULL)
      p++;
  }
  return -1;
}

static char *render(const scree__metrics *m) {
  char *text;
  size_t len;
  cr_assert_eq(scree__metrics_render(m, &text, &len), 0);
  cr_assert_eq(strlen(text), len);
  return text;
}

Test(metrics, counts_by_type_and_status) {
  static scree__metrics m;
  scree__metrics_init(&m);
  scree__metrics_request(&m, SCREE__REQ_GET, 0, 1000);
  scree__metrics_request(&m, SCREE__REQ_GET, SCREE_ENOENT, 1000);
  scree__metrics_request(&m, SCREE__REQ_GET, SCREE_ENOENT, 1000);
  scree__metrics_request(&m, 0, SCREE_EPROTO, 1000);
  scree__metrics_request(&m, 77, SCREE_EPROTO, 1000);  /* a type not known here */
  scree__metrics_request(&m, SCREE__REQ_HELLO, -12345, 1000);
  char *t = render(&m);
  cr_assert_eq(sample(t, "scree_requests_total{type=\"get\",status=\"ok\"}"), 1);
  cr_assert_eq(sample(t, "scree_requests_total{type=\"get\",status=\"ENOENT\"}"), 2);
  cr_assert_eq(sample(t, "scree_requests_total{type=\"invalid\",status=\"EPROTO\"}"), 2);
  cr_assert_eq(sample(t, "scree_requests_total{type=\"hello\",status=\"UNKNOWN\"}"), 1);
  cr_assert_eq(sample(t, "scree_requests_total{type=\"get\",status=\"EINVAL\"}"), -1,
               "series that never happened are left out");
  /* Store gauges need a store; none here. */
  cr_assert_eq(sample(t, "scree_bytes_used"), -1);
  cr_assert(strstr(t, "# TYPE scree_requests_total counter\n") != NULL);
  cr_assert(strstr(t, "# TYPE scree_request_duration_seconds histogram\n") != NULL);
  free(t);
}

Test(metrics, histogram_buckets_are_cumulative_with_inclusive_bounds) {
  static scree__metrics m;
  scree__metrics_init(&m);
  int op = SCREE__REQ_STATS;
  scree__metrics_request(&m, op, 0, 10000);       /* exactly 10 us: le="1e-05" */
  scree__metrics_request(&m, op, 0, 10001);       /* just above: le="2.5e-05" */
  scree__metrics_request(&m, op, 0, 1000000000);  /* 1 s: le="1" */
  scree__metrics_request(&m, op, 0, 5000000000u); /* 5 s: only +Inf */
  char *t = render(&m);
  const char *h = "scree_request_duration_seconds";
  char s[160];
  snprintf(s, sizeof(s), "%s_bucket{type=\"stats\",le=\"1e-05\"}", h);
  cr_assert_eq(sample(t, s), 1);
  snprintf(s, sizeof(s), "%s_bucket{type=\"stats\",le=\"2.5e-05\"}", h);
  cr_assert_eq(sample(t, s), 2);
  snprintf(s, sizeof(s), "%s_bucket{type=\"stats\",le=\"0.5\"}", h);
  cr_assert_eq(sample(t, s), 2);
  snprintf(s, sizeof(s), "%s_bucket{type=\"stats\",le=\"1\"}", h);
  cr_assert_eq(sample(t, s), 3);
  snprintf(s, sizeof(s), "%s_bucket{type=\"stats\",le=\"+Inf\"}", h);
  cr_assert_eq(sample(t, s), 4);
  snprintf(s, sizeof(s), "%s_count{type=\"stats\"}", h);
  cr_assert_eq(sample(t, s), 4);
  snprintf(s, sizeof(s), "%s_sum{type=\"stats\"}", h);
  cr_assert_float_eq(sample(t, s), 6.000020001, 1e-9);
  free(t);
}

Test(metrics, attention_series_exist_before_any_job) {
  static scree__metrics m;
  scree__metrics_init(&m);
  char *t = render(&m);
  cr_assert_eq(sample(t, "scree_attention_jobs_total{status=\"ok\"}"), 0);
  cr_assert_eq(sample(t, "scree_attention_duration_seconds_count"), 0);
  cr_assert_eq(sample(t, "scree_attention_duration_seconds_bucket{le=\"+Inf\"}"), 0);
  free(t);
  scree__metrics_attention(&m, 0, 2000000);
  scree__metrics_attention(&m, SCREE_ECUDA, 3000000);
  t = render(&m);
  cr_assert_eq(sample(t, "scree_attention_jobs_total{status=\"ok\"}"), 1);
  cr_assert_eq(sample(t, "scree_attention_jobs_total{status=\"ECUDA\"}"), 1);
  cr_assert_eq(sample(t, "scree_attention_duration_seconds_bucket{le=\"0.0025\"}"), 1);
  cr_assert_eq(sample(t, "scree_attention_duration_seconds_count"), 2);
  free(t);
}

static int fake_gpu(scree__mem *mem, uint64_t *used, uint64_t *total) {
  (void)mem;
  *used = 1000;
  *total = 80000;
  return 0;
}

Test(metrics, gpu_memory_comes_from_the_backend_hook) {
  static scree__metrics m;
  scree__metrics_init(&m);
  struct scree__mem_ops ops;
  memset(&ops, 0, sizeof(ops));
  scree__mem mem;
  memset(&mem, 0, sizeof(mem));
  mem.ops = &ops;
  m.mem = &mem;
  char *t = render(&m);
  cr_assert_null(strstr(t, "scree_gpu_memory_bytes"), "no hook, no series");
  free(t);
  ops.memory_info = fake_gpu;
  t = render(&m);
  cr_assert_eq(sample(t, "scree_gpu_memory_bytes{kind=\"used\"}"), 1000);
  cr_assert_eq(sample(t, "scree_gpu_memory_bytes{kind=\"total\"}"), 80000);
  free(t);
}
