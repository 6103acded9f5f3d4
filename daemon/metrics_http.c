/* GET /metrics over HTTP through libmicrohttpd.
 *
 * MHD runs inside screed's loop, not in a thread of its own: it is started
 * without MHD_USE_INTERNAL_POLLING_THREAD and with MHD_USE_EPOLL, so all of
 * its sockets sit behind one epoll fd, which a uv_poll_t watches; a uv timer
 * covers MHD's own timeouts. The request handler therefore runs on the loop
 * thread and reads the store directly, like any request handler. The other
 * design, an MHD thread reading a snapshot that the loop publishes under a
 * mutex, would cost a copy per loop turn (or a timer and staleness) and a
 * second thread in a daemon that is otherwise single-threaded, for a
 * page that is rendered a few times a minute. A scrape is a few kilobytes
 * rendered in microseconds, so it does not hold the loop up. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"
#include "scree/error.h"

struct scree__metrics_http {
  struct MHD_Daemon *mhd;
  scree__metrics *m;
  uv_poll_t poll;
  uv_timer_t timer;
  int closing;
  int pending_closes;
};

/* "HOST:PORT" or "[V6]:PORT" into a socket address. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, int *v6, char *msg,
                      size_t msg_len) {
  char host[128];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || colon == addr || colon[1] == '\0')
    goto bad;
  size_t hlen = (size_t)(colon - addr);
  const char *h = addr;
  if (addr[0] == '[') {
    if (hlen < 3 || addr[hlen - 1] != ']')
      goto bad;
    h = addr + 1;
    hlen -= 2;
  }
  if (hlen >= sizeof(host))
    goto bad;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  char *end;
  errno = 0;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (errno != 0 || *end != '\0' || port > 65535 || colon[1] == '-' || colon[1] == '+')
    goto bad;
  memset(ss, 0, sizeof(*ss));
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    *v6 = 0;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    *v6 = 1;
    return 0;
  }
bad:
  return scree__fail(SCREE_EINVAL, msg, msg_len,
                     "--metrics-listen takes a numeric address and port such as"
                     " 127.0.0.1:9464 or [::1]:9464, not '%s'",
                     addr);
}

static enum MHD_Result queue_text(struct MHD_Connection *conn, unsigned status,
                                  const char *text) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
  if (resp == NULL)
    return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
  enum MHD_Result r = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
  scree__metrics_http *h = cls;
  (void)version;
  (void)upload_data;
  /* A request body is not expected; one that comes is consumed unread. */
  if (*upload_data_size != 0) {
    *upload_data_size = 0;
    return MHD_YES;
  }
  (void)req_cls;
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return queue_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics is served\n");
  if (strcmp(url, "/metrics") != 0)
    return queue_text(conn, MHD_HTTP_NOT_FOUND, "not found; try /metrics\n");
  char *body;
  size_t len;
  if (scree__metrics_render(h->m, &body, &len) != 0)
    return queue_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/plain; version=0.0.4; charset=utf-8");
  enum MHD_Result r = MHD_queue_response(conn, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return r;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char text[512];
  vsnprintf(text, sizeof(text), fmt, ap);
  size_t n = strlen(text);
  while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
    text[--n] = '\0';
  scree__log(SCREE__LOG_WARN, "metrics_http", "msg=%s", scree__q(text));
}

static void on_timer(uv_timer_t *t);

/* Runs MHD's pending work and arms the timer for its next timeout. */
static void run_mhd(scree__metrics_http *h) {
  MHD_run(h->mhd);
  MHD_UNSIGNED_LONG_LONG ms;
  if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
    uv_timer_start(&h->timer, on_timer, ms, 0);
  else
    uv_timer_stop(&h->timer);
}

static void on_timer(uv_timer_t *t) { run_mhd(t->data); }

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  run_mhd(p->data);
}

int scree__metrics_http_start(uv_loop_t *loop, scree__metrics *m, const char *addr,
                              scree__metrics_http **out, char *msg, size_t msg_len) {
  struct sockaddr_storage ss;
  int v6 = 0;
  int rc = parse_addr(addr, &ss, &v6, msg, msg_len);
  if (rc != 0)
    return rc;
  scree__metrics_http *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
  h->m = m;
  unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
  /* MHD reports a bind failure only through its logger: keep errno. */
  errno = 0;
  /* The logger comes first, so that no message goes to MHD's own. */
  h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                            on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
  if (h->mhd == NULL) {
    int e = errno != 0 ? errno : EADDRINUSE;
    free(h);
    return scree__fail(SCREE__ERR(e), msg, msg_len, "cannot serve metrics on %s: %s", addr,
                       strerror(e));
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == NULL || uv_poll_init(loop, &h->poll, info->epoll_fd) != 0) {
    MHD_stop_daemon(h->mhd);
    free(h);
    return scree__fail(SCREE_EIO, msg, msg_len, "cannot poll the metrics server's epoll fd");
  }
  h->poll.data = h;
  uv_timer_init(loop, &h->timer);
  h->timer.data = h;
  uv_poll_start(&h->poll, UV_READABLE, on_poll);
  run_mhd(h);
  *out = h;
  return 0;
}

static void on_closed(uv_handle_t *handle) {
  scree__metrics_http *h = handle->data;
  if (--h->pending_closes > 0)
    return;
  /* The epoll fd is MHD's: it goes only once libuv no longer watches it. */
  MHD_stop_daemon(h->mhd);
  free(h);
}

void scree__metrics_http_close(scree__metrics_http *h) {
  if (h == NULL || h->closing)
    return;
  h->closing = 1;
  h->pending_closes = 2;
  uv_close((uv_handle_t *)&h->poll, on_closed);
  uv_close((uv_handle_t *)&h->timer, on_closed);
}
