/* screed's log: one line per event on stderr, as key=value fields.
 *
 * A line reads `screed level=info event=conn_open conn=3 uid=1000 pid=42`.
 * String values that may hold spaces or quotes go through scree__q(), which
 * quotes and escapes them so that every line stays machine-readable. Only
 * screed logs (never libscree or libscreeclient). Within screed, failures
 * travel as codes and messages and the caller decides what to log; the
 * store, the handler and the executor also log their own events (a batch
 * created, a request refused, a job done) at debug and info level. */
#ifndef SCREE_DAEMON_LOG_H
#define SCREE_DAEMON_LOG_H

#include <stddef.h>

typedef enum scree__log_level {
  SCREE__LOG_ERROR = 0,
  SCREE__LOG_WARN = 1,
  SCREE__LOG_INFO = 2,
  SCREE__LOG_DEBUG = 3,
} scree__log_level;

/* The level below which lines are written; SCREE__LOG_INFO at start. */
extern int scree__log_threshold;

/* Parses "error", "warn", "info" or "debug"; -1 for anything else. */
int scree__log_parse_level(const char *name);

/* True when a line at level would be written, so that callers can skip
 * formatting work for lines nobody reads. */
#define scree__log_enabled(level) ((int)(level) <= scree__log_threshold)

/* Writes `screed level=<level> event=<event> <fields>` and a newline, where
 * fields is a printf format producing the key=value pairs (may be NULL). */
void scree__log(scree__log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns s as a quoted, escaped log value ("a \"b\""). The result lives in
 * one of a few rotating static buffers, so up to four may appear in one
 * scree__log call; long values are cut. Not thread-safe: screed logs from
 * its loop thread only. */
const char *scree__q(const char *s);

/* scree__q into out (cap bytes, at least 16; the value is cut to fit), for
 * threads other than the loop's: UCX's log handler. Returns out. */
const char *scree__q_buf(char *out, size_t cap, const char *s);

/* Error paths format their message and return their code with scree__fail
 * (core/src/sys.h), which every daemon file gets through this header. */
#include "sys.h"

#endif /* SCREE_DAEMON_LOG_H */
