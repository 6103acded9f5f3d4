#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int scree__log_threshold = SCREE__LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int scree__log_parse_level(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0)
      return i;
  if (strcmp(name, "warning") == 0)
    return SCREE__LOG_WARN;
  return -1;
}

void scree__log(scree__log_level level, const char *event, const char *fields, ...) {
  if (!scree__log_enabled(level))
    return;
  /* The line is assembled first and written with one call, so that lines
   * from screed and from a test harness sharing stderr do not interleave. */
  char line[2048];
  int n = snprintf(line, sizeof(line), "screed level=%s event=%s", level_names[level], event);
  if (n < 0)
    return;
  if ((size_t)n < sizeof(line) - 2 && fields != NULL) {
    line[n++] = ' ';
    va_list ap;
    va_start(ap, fields);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fields, ap);
    va_end(ap);
    if (m > 0)
      n += m;
  }
  if ((size_t)n > sizeof(line) - 2)
    n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  fwrite(line, 1, (size_t)n, stderr);
}

const char *scree__q_buf(char *out, size_t cap, const char *s) {
  size_t o = 0;
  if (cap < 16) {
    if (cap > 0)
      out[0] = '\0';
    return out;
  }
  out[o++] = '"';
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p != '\0'; p++) {
    /* Leave room for the longest escape, the closing quote and the NUL. */
    if (o + 8 >= cap) {
      memcpy(out + o, "...", 3);
      o += 3;
      break;
    }
    if (*p == '"' || *p == '\\') {
      out[o++] = '\\';
      out[o++] = (char)*p;
    } else if (*p < 0x20 || *p == 0x7f) {
      o += (size_t)snprintf(out + o, cap - o, "\\x%02x", *p);
    } else {
      out[o++] = (char)*p;
    }
  }
  out[o++] = '"';
  out[o] = '\0';
  return out;
}

const char *scree__q(const char *s) {
  static char bufs[4][512];
  static unsigned next;
  return scree__q_buf(bufs[next++ % 4], sizeof(bufs[0]), s);
}
