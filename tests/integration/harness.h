/* Starts and stops a real screed for integration tests.
 *
 * SCREED_PATH comes from CMake ($<TARGET_FILE:screed>). Each daemon gets a
 * unique socket under /tmp; harness_start returns once the daemon accepts a
 * connection, harness_stop sends SIGTERM and returns the exit status. */
#ifndef SCREE_TESTS_HARNESS_H
#define SCREE_TESTS_HARNESS_H

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testdata.h"

typedef struct harness {
  pid_t pid;
  char socket[108];
  char log[128];
} harness;

static inline int harness_can_connect(const char *path) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

/* Prints the end of a daemon's log (at most 4 KiB) to stderr: a screed that
 * ended badly says why there, and CI keeps only what the tests print. */
static inline void harness_show_log(const harness *h, int status) {
  int fd = open(h->log, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  char buf[4096];
  off_t end = lseek(fd, 0, SEEK_END);
  off_t from = end > (off_t)sizeof(buf) ? end - (off_t)sizeof(buf) : 0;
  ssize_t n = pread(fd, buf, sizeof(buf), from);
  close(fd);
  if (n <= 0)
    return;
  const char *text = buf;
  if (from > 0) { /* from the first whole line */
    const char *nl = memchr(buf, '\n', (size_t)n);
    if (nl != NULL)
      text = nl + 1;
  }
  fprintf(stderr, "---- screed %s ended with status %d; its log%s:\n", h->socket, status,
          from > 0 ? " (the end)" : "");
  fwrite(text, 1, (size_t)(buf + n - text), stderr);
  fprintf(stderr, "----\n");
}

/* Starts screed with extra arguments (a NULL-terminated list, may be NULL).
 * Returns 0, or -1 when it did not come up within 10 seconds. */
static inline int harness_start(harness *h, const char *const *extra) {
  static unsigned counter;
  snprintf(h->socket, sizeof(h->socket), "/tmp/scree-test-%ld-%u.sock", (long)getpid(),
           counter);
  snprintf(h->log, sizeof(h->log), "/tmp/scree-test-%ld-%u.log", (long)getpid(), counter++);
  unlink(h->socket);
  const char *argv[32];
  int n = 0;
  argv[n++] = SCREED_PATH;
  argv[n++] = "--socket";
  argv[n++] = h->socket;
  argv[n++] = "--log-level";
  argv[n++] = "warn";
  for (int i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
    argv[n++] = extra[i];
  argv[n] = NULL;
  pid_t parent = getpid();
  h->pid = fork();
  if (h->pid < 0)
    return -1;
  if (h->pid == 0) {
    /* Ends with the test: a failed assertion or a timeout ends the test's
     * process without harness_stop, and a daemon left behind (stopped,
     * even) would keep its socket, port and memory. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    int fd = open(h->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv(SCREED_PATH, (char *const *)argv);
    _exit(127);
  }
  for (int i = 0; i < 1000; i++) {
    if (harness_can_connect(h->socket))
      return 0;
    int st;
    if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
      h->pid = -1;
      harness_show_log(h, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
      return -1;
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  /* Not up in 10 s: it goes, and says why if it can. */
  kill(h->pid, SIGKILL);
  waitpid(h->pid, NULL, 0);
  h->pid = -1;
  harness_show_log(h, 128 + SIGKILL);
  return -1;
}

/* Whether h's log has a line holding text and, when not NULL, also (the
 * log stays until screed exits with 0, or is killed). */
static inline int harness_log_has(const harness *h, const char *text, const char *also) {
  FILE *f = fopen(h->log, "r");
  if (f == NULL)
    return 0;
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof(line), f) != NULL)
    found = strstr(line, text) != NULL && (also == NULL || strstr(line, also) != NULL);
  fclose(f);
  return found;
}

/* Waits for screed to exit on its own (after a SIGTERM already sent).
 * Returns the exit status, or 128 + the signal that ended it, or -1. A
 * screed that did not exit with 0 shows its log (harness_show_log). */
static inline int harness_wait(harness *h) {
  if (h->pid <= 0)
    return -1;
  int st;
  pid_t r;
  do
    r = waitpid(h->pid, &st, 0);
  while (r < 0 && errno == EINTR);
  h->pid = -1;
  unlink(h->socket);
  if (r < 0)
    return -1;
  int status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
  /* SIGKILL is the test's own doing (a daemon killed on purpose): its log
   * says nothing of interest. */
  if (status == 0 || (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
    unlink(h->log);
  else
    harness_show_log(h, status);
  return status;
}

/* Sends SIGTERM and waits, as harness_wait. */
static inline int harness_stop(harness *h) {
  if (h->pid <= 0)
    return -1;
  kill(h->pid, SIGTERM);
  return harness_wait(h);
}

#endif /* SCREE_TESTS_HARNESS_H */
