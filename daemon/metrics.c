#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scree/error.h"
#include "sys.h"

/* Labels of the SCREE__REQ_* types, in their order. */
static const char *const op_names[SCREE__REQ_TYPES] = {
    "invalid",
#define XX(name, label) #label,
    SCREE__REQUEST_MAP(XX)
#undef XX
};

static const int status_codes[] = {
#define XX(name, value, _) SCREE_##name,
    SCREE_ERRNO_MAP(XX)
#undef XX
};
_Static_assert(sizeof(status_codes) / sizeof(status_codes[0]) + 2 <= SCREE__STATUS_SLOTS,
               "SCREE__STATUS_SLOTS must hold ok, every code and UNKNOWN");
#define STATUS_UNKNOWN (SCREE__STATUS_SLOTS - 1)

/* Upper bounds in ns; the +Inf bucket follows. */
static const uint64_t bucket_ns[SCREE__LAT_BUCKETS] = {
    10000,    25000,    50000,     100000,    250000,    500000,    1000000,   2500000,
    5000000, 10000000, 25000000, 50000000, 100000000, 250000000, 500000000, 1000000000,
};
static const char *const bucket_le[SCREE__LAT_BUCKETS] = {
    "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
    "0.005", "0.01",    "0.025", "0.05",   "0.1",     "0.25",   "0.5",   "1",
};

void scree__metrics_init(scree__metrics *m) {
  memset(m, 0, sizeof(*m));
  m->start_ns = scree__now_ns();
}

static int op_index(int op) {
  return op > SCREE__REQ_INVALID && op < SCREE__REQ_TYPES ? op : SCREE__REQ_INVALID;
}

static int status_index(int status) {
  if (status == 0)
    return 0;
  for (size_t i = 0; i < sizeof(status_codes) / sizeof(status_codes[0]); i++)
    if (status_codes[i] == status)
      return (int)i + 1;
  return STATUS_UNKNOWN;
}

static const char *status_name(int slot) {
  if (slot == 0)
    return "ok";
  if (slot == STATUS_UNKNOWN)
    return "UNKNOWN";
  return scree_err_name(status_codes[slot - 1]);
}

static int bucket_index(uint64_t ns) {
  int i = 0;
  while (i < SCREE__LAT_BUCKETS && ns > bucket_ns[i])
    i++;
  return i;
}

void scree__metrics_request(scree__metrics *m, int op, int status, uint64_t ns) {
  int t = op_index(op);
  m->requests[t][status_index(status)]++;
  m->lat[t][bucket_index(ns)]++;
  m->lat_sum_ns[t] += ns;
}

void scree__metrics_attention(scree__metrics *m, int status, uint64_t ns) {
  m->attention_jobs[status_index(status)]++;
  m->attention_lat[bucket_index(ns)]++;
  m->attention_sum_ns += ns;
}

/* ---- rendering ---------------------------------------------------------- */

typedef struct textbuf {
  char *p;
  size_t len;
  size_t cap;
  int failed;
} textbuf;

static void put(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(textbuf *b, const char *fmt, ...) {
  if (b->failed)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n;
    char *np = realloc(b->p, cap);
    if (np == NULL) {
      b->failed = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
}

static void put_histogram(textbuf *b, const char *name, const char *label,
                          const uint64_t *counts, uint64_t sum_ns) {
  const char *sep = label[0] != '\0' ? "," : "";
  uint64_t cum = 0;
  for (int i = 0; i < SCREE__LAT_BUCKETS; i++) {
    cum += counts[i];
    put(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, label, sep, bucket_le[i], cum);
  }
  cum += counts[SCREE__LAT_BUCKETS];
  put(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, label, sep, cum);
  const char *open = label[0] != '\0' ? "{" : "";
  const char *close = label[0] != '\0' ? "}" : "";
  put(b, "%s_sum%s%s%s %.9f\n", name, open, label, close, (double)sum_ns / 1e9);
  put(b, "%s_count%s%s%s %" PRIu64 "\n", name, open, label, close, cum);
}

static void put_gauge(textbuf *b, const char *name, const char *help, uint64_t v) {
  put(b, "# HELP %s %s\n# TYPE %s gauge\n%s %" PRIu64 "\n", name, help, name, name, v);
}

int scree__metrics_render(const scree__metrics *m, char **out, size_t *len) {
  textbuf b = {.p = malloc(16384), .len = 0, .cap = 16384, .failed = 0};
  if (b.p == NULL)
    return SCREE_ENOMEM;
  b.p[0] = '\0';

  if (m->store != NULL) {
    scree__store_counts c;
    scree__store_counts_get(m->store, &c);
    put_gauge(&b, "scree_bytes_used", "Bytes held by batches, alignment and pending deletes included.",
              c.bytes_used);
    put_gauge(&b, "scree_bytes_limit", "The store's limit (--memory-limit).", m->bytes_limit);
    put_gauge(&b, "scree_bytes_arenas", "Bytes of arenas allocated from the backend.",
              c.bytes_arenas);
    put_gauge(&b, "scree_arenas", "Arenas allocated from the backend.", c.arenas);
    put_gauge(&b, "scree_batches", "Named batches, sealed or not.", c.batches);
    put_gauge(&b, "scree_pending_deletes", "Deleted batches waiting for their last lease.",
              c.pending_deletes);
    put_gauge(&b, "scree_leases", "Leases held by connections.", c.leases);
    put_gauge(&b, "scree_connections", "Open client connections.", c.sessions);
    put_gauge(&b, "scree_waiters", "Gets waiting for a batch to be sealed.", c.waiters);
    put_gauge(&b, "scree_watchers", "Connections watching a prefix.", c.watchers);
    put(&b, "# HELP scree_watch_events_total Watch events handed to watchers.\n"
            "# TYPE scree_watch_events_total counter\n"
            "scree_watch_events_total %" PRIu64 "\n"
            "# HELP scree_watch_overflows_total Watches whose queue overflowed (one overflow "
            "event each).\n"
            "# TYPE scree_watch_overflows_total counter\n"
            "scree_watch_overflows_total %" PRIu64 "\n",
        c.watch_events, c.watch_overflows);
  }
  put_gauge(&b, "scree_connections_limit", "The connection limit (--max-connections).",
            m->max_connections);

  put(&b, "# HELP scree_requests_total Responses sent, by request type and status.\n"
          "# TYPE scree_requests_total counter\n");
  for (int t = 0; t < SCREE__REQ_TYPES; t++)
    for (int s = 0; s < SCREE__STATUS_SLOTS; s++)
      if (m->requests[t][s] != 0)
        put(&b, "scree_requests_total{type=\"%s\",status=\"%s\"} %" PRIu64 "\n",
            op_names[t], status_name(s), m->requests[t][s]);

  put(&b, "# HELP scree_request_duration_seconds Time from a request's arrival to its"
          " response, by request type.\n"
          "# TYPE scree_request_duration_seconds histogram\n");
  for (int t = 0; t < SCREE__REQ_TYPES; t++) {
    char label[64];
    snprintf(label, sizeof(label), "type=\"%s\"", op_names[t]);
    put_histogram(&b, "scree_request_duration_seconds", label, m->lat[t], m->lat_sum_ns[t]);
  }

  put(&b, "# HELP scree_attention_jobs_total Attention jobs finished, by status.\n"
          "# TYPE scree_attention_jobs_total counter\n");
  put(&b, "scree_attention_jobs_total{status=\"ok\"} %" PRIu64 "\n", m->attention_jobs[0]);
  for (int s = 1; s < SCREE__STATUS_SLOTS; s++)
    if (m->attention_jobs[s] != 0)
      put(&b, "scree_attention_jobs_total{status=\"%s\"} %" PRIu64 "\n", status_name(s),
          m->attention_jobs[s]);
  put(&b, "# HELP scree_attention_duration_seconds Time an attention job took.\n"
          "# TYPE scree_attention_duration_seconds histogram\n");
  put_histogram(&b, "scree_attention_duration_seconds", "", m->attention_lat,
                m->attention_sum_ns);
  put(&b, "# HELP scree_attention_worker_restarts_total Attention workers started again after "
          "one died or was killed.\n"
          "# TYPE scree_attention_worker_restarts_total counter\n"
          "scree_attention_worker_restarts_total %" PRIu64 "\n",
      m->attention_worker_restarts);

  put(&b, "# HELP scree_accept_failures_total accept() failures for lack of fds or memory.\n"
          "# TYPE scree_accept_failures_total counter\n"
          "scree_accept_failures_total %" PRIu64 "\n"
          "# HELP scree_accept_pauses_total Times the listener backed off after such a failure.\n"
          "# TYPE scree_accept_pauses_total counter\n"
          "scree_accept_pauses_total %" PRIu64 "\n"
          "# HELP scree_connections_accepted_total Connections accepted and served.\n"
          "# TYPE scree_connections_accepted_total counter\n"
          "scree_connections_accepted_total %" PRIu64 "\n"
          "# HELP scree_connections_refused_total Connections refused at --max-connections.\n"
          "# TYPE scree_connections_refused_total counter\n"
          "scree_connections_refused_total %" PRIu64 "\n",
      m->accept_failures, m->accept_pauses, m->conns_accepted, m->conns_refused);

  uint64_t used, total;
  if (m->mem != NULL && m->mem->ops->memory_info != NULL &&
      m->mem->ops->memory_info(m->mem, &used, &total) == 0)
    put(&b, "# HELP scree_gpu_memory_bytes The device's memory, as the driver reports it.\n"
            "# TYPE scree_gpu_memory_bytes gauge\n"
            "scree_gpu_memory_bytes{kind=\"used\"} %" PRIu64 "\n"
            "scree_gpu_memory_bytes{kind=\"total\"} %" PRIu64 "\n",
        used, total);

  put(&b, "# HELP scree_uptime_seconds Seconds since screed started.\n"
          "# TYPE scree_uptime_seconds gauge\n"
          "scree_uptime_seconds %.3f\n",
      (double)(scree__now_ns() - m->start_ns) / 1e9);

  if (!b.failed && m->render_extra != NULL &&
      m->render_extra(m->render_extra_arg, &b.p, &b.len, &b.cap) != 0)
    b.failed = 1;

  if (b.failed) {
    free(b.p);
    return SCREE_ENOMEM;
  }
  *out = b.p;
  *len = b.len;
  return 0;
}
