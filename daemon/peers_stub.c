/* Peers in a build without UCX: screed refuses the --peer options with the
 * message of scree__peers_new, and Fetch is answered ENOTSUP by the
 * handler (which gets no peers). */
#include "peers.h"
#include "scree/error.h"
#include "sys.h"

int scree__peers_available(void) { return 0; }

int scree__peers_new(const scree__peers_config *cfg, scree__peers **out, char *msg,
                     size_t msg_len) {
  (void)cfg;
  *out = NULL;
  return scree__fail(SCREE_ENOTSUP, msg, msg_len,
                     "this screed was built without UCX (libucx-dev) and libcrypto, so it"
                     " has no peers: --peer-listen, --peer, --peer-secret-file and --mirror"
                     " are not available");
}

uint16_t scree__peers_listen_port(const scree__peers *p) {
  (void)p;
  return 0;
}

int scree__peers_fetch(scree__peers *p, scree__session *sess, uint64_t id,
                       const scree__fetch_req *q, scree__fetch_done_cb cb, void *cb_arg,
                       char *msg, size_t msg_len) {
  (void)p, (void)sess, (void)id, (void)q, (void)cb, (void)cb_arg;
  return scree__fail(SCREE_ENOTSUP, msg, msg_len, "this screed was built without peers (UCX)");
}

void scree__peers_detach(void *fetch) { (void)fetch; }

size_t scree__peers_count(const scree__peers *p) {
  (void)p;
  return 0;
}

void scree__peers_counts(const scree__peers *p, size_t i, scree__peer_counts *out) {
  (void)p, (void)i, (void)out;
}

void scree__peers_served_get(const scree__peers *p, scree__peers_served *out) {
  (void)p;
  out->conns = 0;
  out->refused = 0;
  out->leases = 0;
  out->opened = 0;
}

int scree__peers_render_metrics(const scree__peers *p, char **buf, size_t *len, size_t *cap) {
  (void)p, (void)buf, (void)len, (void)cap;
  return 0;
}

void scree__peers_shutdown(scree__peers *p) { (void)p; }

void scree__peers_free(scree__peers *p) { (void)p; }
