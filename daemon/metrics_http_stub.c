/* --metrics-listen in a build without libmicrohttpd. */
#include "log.h"
#include "metrics.h"
#include "scree/error.h"

int scree__metrics_http_start(uv_loop_t *loop, scree__metrics *m, const char *addr,
                              scree__metrics_http **out, char *msg, size_t msg_len) {
  (void)loop;
  (void)m;
  (void)out;
  return scree__fail(SCREE_ENOTSUP, msg, msg_len,
                     "--metrics-listen %s: this screed was built without libmicrohttpd"
                     " (install libmicrohttpd-dev and reconfigure)",
                     addr);
}

void scree__metrics_http_close(scree__metrics_http *h) { (void)h; }
