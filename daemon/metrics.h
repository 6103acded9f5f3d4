/* Request accounting and the Prometheus text exposition of screed's state.
 *
 * The server records every response here (type, status, handling time) and
 * the executor every attention job; the store's counters and the backend's
 * memory are read when /metrics is rendered. Everything runs on the loop thread: recording is a few integer
 * adds into fixed arrays, with no allocation and no lock. */
#ifndef SCREE_DAEMON_METRICS_H
#define SCREE_DAEMON_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mem.h"
#include "store.h"

/* Request types as metrics count them, XX(NAME, label) each, in their
 * order: the one list behind the SCREE__REQ_* values, the metrics' labels
 * and the handler's map from the protocol's request bodies
 * (SCREE__V1__REQUEST__BODY_NAME) onto these. */
#define SCREE__REQUEST_MAP(XX) \
  XX(HELLO, hello)             \
  XX(CREATE, create)           \
  XX(SEAL, seal)               \
  XX(GET, get)                 \
  XX(RELEASE, release)         \
  XX(DELETE, delete)           \
  XX(LIST, list)               \
  XX(STAT, stat)               \
  XX(STATS, stats)             \
  XX(ATTENTION, attention)     \
  XX(WATCH, watch)             \
  XX(CANCEL, cancel)           \
  XX(FETCH, fetch)

/* SCREE__REQ_INVALID is a packet that did not decode, had no known body,
 * or was refused before decoding (over --max-packet). */
enum {
  SCREE__REQ_INVALID = 0,
#define XX(name, label) SCREE__REQ_##name,
  SCREE__REQUEST_MAP(XX)
#undef XX
  SCREE__REQ_TYPES
};
/* Statuses: "ok", every code of SCREE_ERRNO_MAP, and "UNKNOWN" last. */
enum { SCREE__STATUS_SLOTS = 26 };
/* Latency buckets, upper bounds in ns: 10us .. 1s, then +Inf. */
enum { SCREE__LAT_BUCKETS = 16 };

typedef struct scree__metrics {
  uint64_t start_ns;
  uint64_t requests[SCREE__REQ_TYPES][SCREE__STATUS_SLOTS];
  uint64_t lat[SCREE__REQ_TYPES][SCREE__LAT_BUCKETS + 1]; /* not cumulative */
  uint64_t lat_sum_ns[SCREE__REQ_TYPES];
  uint64_t attention_jobs[SCREE__STATUS_SLOTS];
  uint64_t attention_lat[SCREE__LAT_BUCKETS + 1];
  uint64_t attention_sum_ns;
  /* Attention workers started after the first (exec.c): each follows a
   * worker's death. */
  uint64_t attention_worker_restarts;
  /* Listener events. */
  uint64_t accept_failures; /* accept() failed for lack of fds or memory */
  uint64_t accept_pauses;   /* times the listener stopped for a backoff */
  uint64_t conns_refused;   /* over --max-connections */
  uint64_t conns_accepted;
  /* What rendering reads; set by main (store and mem may stay NULL in
   * tests, the gauges are then left out). */
  const scree__store *store;
  scree__mem *mem;
  uint64_t bytes_limit;
  uint32_t max_connections;
  /* More text appended to the exposition (the peers', peers.h), growing
   * *buf as needed; NULL: none. Returns 0 or SCREE_ENOMEM. */
  int (*render_extra)(const void *arg, char **buf, size_t *len, size_t *cap);
  const void *render_extra_arg;
} scree__metrics;

/* Zeroes m and notes the start time. */
void scree__metrics_init(scree__metrics *m);

/* Counts one response: op is a SCREE__REQ_* type (anything else counts as
 * invalid), status 0 or a SCREE_E* code, ns the time spent handling it. */
void scree__metrics_request(scree__metrics *m, int op, int status, uint64_t ns);

/* Counts one finished attention job (for exec.c). */
void scree__metrics_attention(scree__metrics *m, int status, uint64_t ns);

/* Renders the text exposition format (version 0.0.4) into a new buffer
 * (malloc; the caller frees it) and stores its length. Returns 0 or
 * SCREE_ENOMEM. */
int scree__metrics_render(const scree__metrics *m, char **out, size_t *len);

/* The HTTP endpoint (metrics_http.c): GET /metrics on addr ("HOST:PORT",
 * "[V6]:PORT"). Returns 0; SCREE_EINVAL for an address that does not
 * parse; SCREE_ENOTSUP when screed was built without libmicrohttpd; another
 * code when the port cannot be bound. The server is a loop handle pair:
 * close it with scree__metrics_http_close. */
typedef struct scree__metrics_http scree__metrics_http;
int scree__metrics_http_start(uv_loop_t *loop, scree__metrics *m, const char *addr,
                              scree__metrics_http **out, char *msg, size_t msg_len);
/* Stops serving; the memory goes once the loop has closed the handles. */
void scree__metrics_http_close(scree__metrics_http *h);

#endif /* SCREE_DAEMON_METRICS_H */
