/* A budget of log lines per window of time, for lines that a remote can
 * cause at will (a stranger's refused connections and dropped messages):
 * at most `burst` lines in a window of `window_ns`, and the lines held back
 * are counted, so that the caller can log their number once instead. A
 * window opens with the first line after the one before ended, so a quiet
 * limiter costs nothing. Not thread-safe: a caller on several threads
 * holds its own lock around these. */
#ifndef SCREE_DAEMON_RATELIMIT_H
#define SCREE_DAEMON_RATELIMIT_H

#include <stdint.h>

typedef struct scree__ratelimit {
  uint64_t window_ns;
  uint32_t burst;
  uint32_t used;       /* lines written in the open window */
  uint64_t start_ns;   /* when the open window began; 0: none open */
  uint64_t suppressed; /* lines held back in the open window */
} scree__ratelimit;

#define SCREE__RATELIMIT_INIT(window_ns_, burst_) {.window_ns = (window_ns_), .burst = (burst_)}

/* Closes the open window when its time is up at now_ns. Returns how many
 * lines it held back (for the caller to log once), else 0. */
static inline uint64_t scree__ratelimit_roll(scree__ratelimit *rl, uint64_t now_ns) {
  if (rl->start_ns == 0 || now_ns - rl->start_ns < rl->window_ns)
    return 0;
  uint64_t held = rl->suppressed;
  rl->start_ns = 0;
  rl->used = 0;
  rl->suppressed = 0;
  return held;
}

/* Closes the open window whatever its time (at shutdown). Returns how many
 * lines it held back. */
static inline uint64_t scree__ratelimit_drain(scree__ratelimit *rl) {
  uint64_t held = rl->suppressed;
  rl->start_ns = 0;
  rl->used = 0;
  rl->suppressed = 0;
  return held;
}

/* Asks for one line at now_ns (not 0). Returns 1 when it may be written,
 * 0 when it is held back (and counted). *held gets the count of a window
 * that ended meanwhile, to be logged before this line; else 0. */
static inline int scree__ratelimit_take(scree__ratelimit *rl, uint64_t now_ns, uint64_t *held) {
  *held = scree__ratelimit_roll(rl, now_ns);
  if (rl->start_ns == 0)
    rl->start_ns = now_ns;
  if (rl->used < rl->burst) {
    rl->used++;
    return 1;
  }
  rl->suppressed++;
  return 0;
}

#endif /* SCREE_DAEMON_RATELIMIT_H */
