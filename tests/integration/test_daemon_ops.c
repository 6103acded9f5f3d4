/* screed's operations side as a process: the Prometheus endpoint, request
 * accounting, the connection and lease limits, and accept backoff when the
 * process runs out of fds. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "raw_client.h"

static rc_daemon d;

static void fini(void) {
  if (d.pid > 0)
    rc_daemon_stop(&d);
  char copy[108];
  snprintf(copy, sizeof(copy), "%s", d.sock);
  unlink(d.sock);
  rmdir(dirname(copy));
}

TestSuite(ops, .fini = fini);

static void start(const char *tag, const char *const *extra) {
  memset(&d, 0, sizeof(d));
  d.err_fd = -1;
  rc_socket_path(d.sock, sizeof(d.sock), tag);
  cr_assert_eq(rc_daemon_start(&d, extra), 0, "screed did not start on %s", d.sock);
}

static void finish(void) {
  int st = rc_daemon_stop(&d);
  cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "screed did not exit cleanly: wait status 0x%x", st);
}

static void expect(Scree__V1__Response *resp, int status) {
  cr_assert_not_null(resp, "no response from screed");
  cr_assert_eq(resp->status, status, "status %d (%s), expected %d", resp->status,
               resp->message, status);
}

#ifdef SCREE_TEST_METRICS
/* A port that was free a moment ago (the kernel's choice for port 0). */
static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
  socklen_t len = sizeof(a);
  getsockname(s, (struct sockaddr *)&a, &len);
  close(s);
  return ntohs(a.sin_port);
}

/* A minimal HTTP/1.0 GET: returns the whole response (headers and body) in
 * a malloc'd string, or NULL. */
static char *http_get(int port, const char *path) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(s);
    return NULL;
  }
  char req[256];
  int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
  if (send(s, req, (size_t)n, MSG_NOSIGNAL) != n) {
    close(s);
    return NULL;
  }
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1)
      break;
    if (len + 4096 > cap)
      buf = realloc(buf, cap *= 2);
    ssize_t r = recv(s, buf + len, cap - len - 1, 0);
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  close(s);
  buf[len] = '\0';
  return buf;
}

/* The value of the sample whose name and labels are exactly series ("a" or
 * "a{b=\"c\"}"); -1 when absent. */
static double metric(const char *text, const char *series) {
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

#endif

/* Creates a one-row uint8 batch with valid offsets and seals it. */
static void make_sealed(int fd, const char *name) {
  int afd = -1;
  Scree__V1__Response *resp = rc_create(fd, name, 6, 1, 1, &afd);
  expect(resp, 0);
  Scree__V1__Location loc = *resp->create->location;
  rc_free(resp);
  if (afd >= 0) {
    uint8_t *p = mmap(NULL, loc.arena_size, PROT_READ | PROT_WRITE, MAP_SHARED, afd, 0);
    cr_assert_neq(p, MAP_FAILED);
    int64_t offs[2] = {0, 1};
    memcpy(p + loc.offsets_offset, offs, sizeof(offs));
    munmap(p, loc.arena_size);
    close(afd);
  } else {
    cr_assert_fail("the first create on a connection must carry the arena fd");
  }
  resp = rc_seal(fd, name);
  expect(resp, 0);
  rc_free(resp);
}

/* ---- metrics ------------------------------------------------------------ */

#ifdef SCREE_TEST_METRICS
Test(ops, metrics_count_requests_and_show_the_store) {
  int port = free_port();
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  const char *extra[] = {"--metrics-listen", addr, "--memory-limit", "64M", NULL};
  start("metrics", extra);

  int fd = rc_open(d.sock);
  cr_assert_geq(fd, 0);
  make_sealed(fd, "m1");
  Scree__V1__Response *resp = rc_get(fd, "m1", NULL);
  expect(resp, 0);
  rc_free(resp);
  resp = rc_get(fd, "nope", NULL);
  expect(resp, -ENOENT);
  rc_free(resp);
  const uint8_t junk[] = {0xff, 0xff, 0xff};
  cr_assert_eq(rc_send(fd, junk, sizeof(junk), -1), 0);
  resp = rc_recv(fd, NULL, 10000);
  expect(resp, -EPROTO);
  rc_free(resp);

  char *text = http_get(port, "/metrics");
  cr_assert_not_null(text, "no answer on %s", addr);
  cr_assert(strncmp(text, "HTTP/1.0 200", 12) == 0 || strncmp(text, "HTTP/1.1 200", 12) == 0,
            "%.200s", text);
  cr_assert(strstr(text, "text/plain; version=0.0.4") != NULL, "%.300s", text);
  cr_assert_eq(metric(text, "scree_requests_total{type=\"hello\",status=\"ok\"}"), 1);
  cr_assert_eq(metric(text, "scree_requests_total{type=\"create\",status=\"ok\"}"), 1);
  cr_assert_eq(metric(text, "scree_requests_total{type=\"seal\",status=\"ok\"}"), 1);
  cr_assert_eq(metric(text, "scree_requests_total{type=\"get\",status=\"ok\"}"), 1);
  cr_assert_eq(metric(text, "scree_requests_total{type=\"get\",status=\"ENOENT\"}"), 1);
  cr_assert_eq(metric(text, "scree_requests_total{type=\"invalid\",status=\"EPROTO\"}"), 1);
  cr_assert_eq(metric(text, "scree_request_duration_seconds_count{type=\"get\"}"), 2);
  cr_assert_eq(
      metric(text, "scree_request_duration_seconds_bucket{type=\"get\",le=\"+Inf\"}"), 2);
  cr_assert_geq(metric(text, "scree_request_duration_seconds_sum{type=\"get\"}"), 0);
  cr_assert_eq(metric(text, "scree_request_duration_seconds_count{type=\"attention\"}"), 0);
  cr_assert_eq(metric(text, "scree_bytes_limit"), 64 << 20);
  cr_assert_eq(metric(text, "scree_bytes_used"), 512, "a 1-byte batch takes two 256-byte blocks");
  cr_assert_gt(metric(text, "scree_bytes_arenas"), 0);
  cr_assert_eq(metric(text, "scree_batches"), 1);
  cr_assert_eq(metric(text, "scree_leases"), 1);
  cr_assert_eq(metric(text, "scree_connections"), 1);
  cr_assert_eq(metric(text, "scree_attention_jobs_total{status=\"ok\"}"), 0);
  cr_assert_eq(metric(text, "scree_attention_duration_seconds_count"), 0);
  cr_assert_geq(metric(text, "scree_uptime_seconds"), 0);
  cr_assert_eq(metric(text, "scree_accept_failures_total"), 0);
  /* Host memory: no GPU series. */
  cr_assert_null(strstr(text, "scree_gpu_memory_bytes"));
  /* Histogram buckets are cumulative and in order. */
  double prev = 0;
  const char *les[] = {"1e-05", "0.0001", "0.001", "0.01", "0.1", "1", "+Inf"};
  for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
    char s[128];
    snprintf(s, sizeof(s), "scree_request_duration_seconds_bucket{type=\"get\",le=\"%s\"}",
             les[i]);
    double v = metric(text, s);
    cr_assert_geq(v, prev, "%s", s);
    prev = v;
  }
  free(text);

  text = http_get(port, "/other");
  cr_assert_not_null(text);
  cr_assert(strstr(text, " 404 ") != NULL, "%.200s", text);
  free(text);
  close(fd);
  /* The closed connection shows in the next scrape. */
  for (int i = 0; i < 200; i++) {
    text = http_get(port, "/metrics");
    double c = metric(text, "scree_connections");
    free(text);
    if (c == 0)
      break;
    usleep(10000);
  }
  text = http_get(port, "/metrics");
  cr_assert_eq(metric(text, "scree_connections"), 0);
  cr_assert_eq(metric(text, "scree_leases"), 0);
  free(text);
  finish();
}

Test(ops, a_bad_metrics_address_or_a_taken_port_exits_1) {
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), "badmetrics");
  const char *extra[] = {"--metrics-listen", "localhost", NULL};
  cr_assert_eq(rc_daemon_spawn(&d, extra, 1), 0);
  int st = rc_daemon_wait(&d, 20000);
  char err[1024];
  rc_daemon_read_stderr(&d, err, sizeof(err), 1000);
  close(d.err_fd);
  d.pid = 0;
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "wait status 0x%x", st);
  cr_assert(strstr(err, "--metrics-listen takes a numeric address and port") != NULL,
            "stderr was: %s", err);
  cr_assert_neq(access(d.sock, F_OK), 0, "the socket file was left behind");

  /* A port someone else listens on. */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
  cr_assert_eq(listen(s, 1), 0);
  socklen_t len = sizeof(a);
  getsockname(s, (struct sockaddr *)&a, &len);
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(a.sin_port));
  const char *extra2[] = {"--metrics-listen", addr, NULL};
  cr_assert_eq(rc_daemon_spawn(&d, extra2, 1), 0);
  st = rc_daemon_wait(&d, 20000);
  rc_daemon_read_stderr(&d, err, sizeof(err), 1000);
  close(d.err_fd);
  d.pid = 0;
  close(s);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "wait status 0x%x", st);
  cr_assert(strstr(err, "cannot serve metrics on") != NULL, "stderr was: %s", err);
}

#else
Test(ops, metrics_listen_without_libmicrohttpd_is_a_clear_error) {
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), "nomhd");
  const char *extra[] = {"--metrics-listen", "127.0.0.1:9464", NULL};
  cr_assert_eq(rc_daemon_spawn(&d, extra, 1), 0);
  int st = rc_daemon_wait(&d, 20000);
  char err[1024];
  rc_daemon_read_stderr(&d, err, sizeof(err), 1000);
  close(d.err_fd);
  d.pid = 0;
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "wait status 0x%x", st);
  cr_assert(strstr(err, "built without libmicrohttpd") != NULL, "stderr was: %s", err);
}
#endif

Test(ops, bad_limit_options_exit_2) {
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), "badlimits");
  const char *cases[][3] = {
      {"--max-connections", "-1", NULL},
      {"--max-connections", "many", NULL},
      {"--max-leases-per-connection", "99999999999", NULL},
      {"--drain-timeout", "5min", NULL},
      {"--drain-timeout", "-3", NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cr_assert_eq(rc_daemon_spawn(&d, cases[i], 1), 0);
    int st = rc_daemon_wait(&d, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s %s: wait status 0x%x", cases[i][0],
              cases[i][1], st);
    char err[512];
    rc_daemon_read_stderr(&d, err, sizeof(err), 1000);
    close(d.err_fd);
    cr_assert(strstr(err, cases[i][0]) != NULL, "stderr was: %s", err);
  }
  d.pid = 0;
}

/* ---- limits ------------------------------------------------------------- */

Test(ops, over_max_connections_the_hello_gets_eagain) {
  const char *extra[] = {"--max-connections", "2", NULL};
  start("maxconn", extra);
  /* rc_daemon_start's probe connection may still be closing: wait for the
   * daemon to have none before counting. */
  int a = -1, b = -1;
  for (int i = 0; i < 200 && (a < 0 || b < 0); i++) {
    if (a >= 0)
      close(a);
    if (b >= 0)
      close(b);
    usleep(10000);
    a = rc_open(d.sock);
    b = rc_open(d.sock);
  }
  cr_assert(a >= 0 && b >= 0, "two connections must be served");

  int c = rc_connect(d.sock);
  cr_assert_geq(c, 0, "the kernel accepts; screed answers");
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  req.id = 42;
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  Scree__V1__Response *resp = rc_call(c, &req, NULL);
  expect(resp, -EAGAIN);
  cr_assert_eq(resp->id, 42, "the refusal answers the request it refuses");
  cr_assert_str_eq(resp->message,
                   "screed is at its connection limit (2 connections); try again later");
  rc_free(resp);
  char x;
  struct pollfd p = {.fd = c, .events = POLLIN};
  cr_assert_eq(poll(&p, 1, 10000), 1);
  cr_assert_eq(recv(c, &x, 1, 0), 0, "the refused connection is closed");
  close(c);

  /* The served ones are untouched, and a slot that frees is taken again. */
  resp = rc_stats(a);
  expect(resp, 0);
  cr_assert_eq(resp->stats->connections, 2);
  rc_free(resp);
  close(b);
  int e = -1;
  for (int i = 0; i < 200 && e < 0; i++) {
    usleep(10000);
    e = rc_open(d.sock);
  }
  cr_assert_geq(e, 0, "a freed slot is served again");
  close(e);
  close(a);
  finish();
}

Test(ops, max_leases_per_connection_is_ebusy) {
  const char *extra[] = {"--max-leases-per-connection", "3", NULL};
  start("maxleases", extra);
  int fd = rc_open(d.sock);
  cr_assert_geq(fd, 0);
  make_sealed(fd, "l");
  uint64_t first = 0;
  for (int i = 0; i < 3; i++) {
    Scree__V1__Response *resp = rc_get(fd, "l", NULL);
    expect(resp, 0);
    if (i == 0)
      first = resp->get->lease_id;
    rc_free(resp);
  }
  Scree__V1__Response *resp = rc_get(fd, "l", NULL);
  expect(resp, -EBUSY);
  cr_assert(strstr(resp->message, "holds 3 leases") != NULL &&
                strstr(resp->message, "--max-leases-per-connection") != NULL,
            "%s", resp->message);
  rc_free(resp);
  /* The limit is per connection. */
  int other = rc_open(d.sock);
  cr_assert_geq(other, 0);
  resp = rc_get(other, "l", NULL);
  expect(resp, 0);
  rc_free(resp);
  /* A release makes room. */
  resp = rc_release(fd, first);
  expect(resp, 0);
  rc_free(resp);
  resp = rc_get(fd, "l", NULL);
  expect(resp, 0);
  rc_free(resp);
  close(other);
  close(fd);
  finish();
}

/* ---- out of fds ---------------------------------------------------------- */

#ifdef SCREE_TEST_METRICS
static void low_nofile(void *arg) {
  struct rlimit rl = {.rlim_cur = (rlim_t)(uintptr_t)arg, .rlim_max = (rlim_t)(uintptr_t)arg};
  setrlimit(RLIMIT_NOFILE, &rl);
}

Test(ops, out_of_fds_the_listener_backs_off_and_recovers) {
  int port = free_port();
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  const char *extra[] = {"--metrics-listen", addr, NULL};
  memset(&d, 0, sizeof(d));
  rc_socket_path(d.sock, sizeof(d.sock), "emfile");
  cr_assert_eq(rc_daemon_spawn_ex(&d, extra, 0, low_nofile, (void *)(uintptr_t)48, NULL, NULL),
               0);
  cr_assert_eq(rc_daemon_wait_socket(&d, 20000), 0);

  /* More connections than screed has fds: the kernel queues the rest in the
   * listener's backlog, where accept fails with EMFILE. */
  enum { N = 80 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = rc_connect(d.sock);
    cr_assert_geq(fds[i], 0, "connect %d: %s", i, strerror(errno));
  }
  /* Long enough for several back-off rounds (100, 200, 400, 800 ms...). */
  usleep(1500 * 1000);
  /* Every connection closes; screed sees EOF on those it accepted, and
   * takes (and closes) the queued ones once its pause is over. */
  for (int i = 0; i < N; i++)
    close(fds[i]);

  /* Each try is one more connection, which screed may also have to refuse
   * through the spare fd while it is still short of fds (one more accept
   * failure each): counted for the bound below. */
  int fd = -1, tries = 0;
  for (int i = 0; i < 500 && fd < 0; i++) {
    usleep(10000);
    fd = rc_open(d.sock);
    tries++;
  }
  cr_assert_geq(fd, 0, "screed accepts again after running out of fds");
  Scree__V1__Response *resp = rc_stats(fd);
  expect(resp, 0);
  rc_free(resp);

  char *text = NULL;
  for (int i = 0; i < 500 && text == NULL; i++) {
    text = http_get(port, "/metrics");
    if (text == NULL)
      usleep(10000);
  }
  cr_assert_not_null(text);
  double failures = metric(text, "scree_accept_failures_total");
  double pauses = metric(text, "scree_accept_pauses_total");
  free(text);
  cr_assert_geq(failures, 1, "accept must have hit EMFILE");
  /* Each EMFILE either takes one connection off the backlog through the
   * spare fd (answered EAGAIN and closed) or, when the spare cannot be had,
   * pauses the listener (100 ms doubling to 2 s); so there are at most
   * about as many as connections; a loop that spun on the backlog would
   * count them in the thousands. */
  cr_assert_leq(pauses, failures);
  cr_assert_lt(failures, N + tries + 40,
               "accept failed %.0f times for %d connections: the listener spins", failures,
               N + tries);
  close(fd);
  finish();
}
#endif /* SCREE_TEST_METRICS */
