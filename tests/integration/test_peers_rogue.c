/* Peers that hold the secret and still break the protocol: a rogue
 * fetcher that reads what it does not hold, or too much at once, and a
 * rogue owner that answers reads with data nobody asked for or data that
 * does not match. The test itself is the rogue: it speaks UCX and the
 * peer messages (daemon/peers_wire.h), handshake included, to one real
 * screed. What must hold: the owner refuses the connection and keeps
 * serving; the fetcher fails the fetch with a message that says what was
 * wrong, writes nothing outside its reservation and keeps nothing of it. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include "harness.h"
#include "peers_auth.h"
#include "peers_util.h"
#include "peers_wire.h"
#include "scree/client.h"

#define SECRET "correct horse battery staple 0123"
#define AM 0x5c

typedef struct rogue {
  ucp_context_h ctx;
  ucp_worker_h worker;
  ucp_listener_h listener;
  ucp_conn_request_h creq;
  ucp_ep_h ep;
  /* Control messages received, in order. */
  unsigned char msgs[64][SCREE__PW_MAX];
  size_t lens[64];
  int n;
  /* DATA received: their headers, payload lengths and whether they came
   * by rendezvous (never received: the rogue drops them). */
  scree__pw_msg data[64];
  unsigned char data_bytes[64][256];
  size_t data_len[64];
  int ndata;
  int failed;
  /* Per control message: the bytes an OPEN_OK brought (length, and the
   * first 4,608), 0 for the others. */
  size_t inline_len[64];
  unsigned char inline_bytes[64][4608];
} rogue;

static ucs_status_t rogue_am(void *arg, const void *header, size_t header_length, void *data,
                             size_t length, const ucp_am_recv_param_t *prm) {
  rogue *r = arg;
  scree__pw_msg hm;
  if (header_length != 0 && header_length <= SCREE__PW_MAX &&
      scree__pw_decode(header, header_length, &hm, NULL, 0) == 0 &&
      hm.type != SCREE__PW_DATA) {
    /* An OPEN_OK that brings its (small) batch: the message is the header;
     * its bytes are kept apart. */
    if (r->n < 64) {
      memcpy(r->msgs[r->n], header, header_length);
      r->lens[r->n] = header_length;
      r->inline_len[r->n] = length;
      if (!(prm->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV))
        memcpy(r->inline_bytes[r->n], data, length < 4608 ? length : 4608);
      r->n++;
    }
    return UCS_OK;
  }
  if (header_length != 0) {
    if (r->ndata < 64 &&
        scree__pw_decode(header, header_length, &r->data[r->ndata], NULL, 0) == 0) {
      r->data_len[r->ndata] = length;
      if (!(prm->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV))
        memcpy(r->data_bytes[r->ndata], data, length < 256 ? length : 256);
      r->ndata++;
    }
    return UCS_OK;
  }
  if (r->n < 64 && length <= SCREE__PW_MAX) {
    memcpy(r->msgs[r->n], data, length);
    r->lens[r->n] = length;
    r->n++;
  }
  return UCS_OK;
}

static void rogue_err(void *arg, ucp_ep_h ep, ucs_status_t st) {
  (void)ep, (void)st;
  ((rogue *)arg)->failed = 1;
}

static void rogue_conn(ucp_conn_request_h req, void *arg) { ((rogue *)arg)->creq = req; }

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void rogue_init(rogue *r) {
  memset(r, 0, sizeof(*r));
  ucp_params_t up = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_AM};
  cr_assert_eq(ucp_init(&up, NULL, &r->ctx), UCS_OK);
  ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                            .thread_mode = UCS_THREAD_MODE_SINGLE};
  cr_assert_eq(ucp_worker_create(r->ctx, &wp, &r->worker), UCS_OK);
  ucp_am_handler_param_t ap = {.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                                             UCP_AM_HANDLER_PARAM_FIELD_CB |
                                             UCP_AM_HANDLER_PARAM_FIELD_ARG,
                               .id = AM,
                               .cb = rogue_am,
                               .arg = r};
  cr_assert_eq(ucp_worker_set_am_recv_handler(r->worker, &ap), UCS_OK);
}

static void rogue_fini(rogue *r) {
  if (r->ep != NULL) {
    ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                               .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t q = ucp_ep_close_nbx(r->ep, &prm);
    for (int i = 0; i < 100000 && UCS_PTR_IS_PTR(q) &&
                    ucp_request_check_status(q) == UCS_INPROGRESS;
         i++)
      ucp_worker_progress(r->worker);
    if (UCS_PTR_IS_PTR(q))
      ucp_request_free(q);
  }
  if (r->listener != NULL)
    ucp_listener_destroy(r->listener);
  ucp_worker_destroy(r->worker);
  ucp_cleanup(r->ctx);
}

static struct sockaddr_in loopback(unsigned port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static ucp_ep_params_t ep_params(rogue *r) {
  ucp_ep_params_t ep;
  memset(&ep, 0, sizeof(ep));
  ep.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep.err_handler.cb = rogue_err;
  ep.err_handler.arg = r;
  return ep;
}

static void rogue_connect(rogue *r, unsigned port) {
  struct sockaddr_in a = loopback(port);
  ucp_ep_params_t ep = ep_params(r);
  ep.field_mask |= UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
  ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  ep.sockaddr.addr = (struct sockaddr *)&a;
  ep.sockaddr.addrlen = sizeof(a);
  cr_assert_eq(ucp_ep_create(r->worker, &ep, &r->ep), UCS_OK);
}

static void rogue_listen(rogue *r, unsigned port) {
  struct sockaddr_in a = loopback(port);
  ucp_listener_params_t lp = {
      .field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
      .sockaddr = {.addr = (struct sockaddr *)&a, .addrlen = sizeof(a)},
      .conn_handler = {.cb = rogue_conn, .arg = r}};
  cr_assert_eq(ucp_listener_create(r->worker, &lp, &r->listener), UCS_OK);
}

/* Progresses r for ms. */
static void rogue_wait(rogue *r, long ms) {
  uint64_t end = now_ms() + (uint64_t)ms;
  while (now_ms() < end)
    ucp_worker_progress(r->worker);
}

/* Progresses until cond holds or ms pass; returns cond. */
#define ROGUE_UNTIL(r, ms, cond)                                                 \
  ({                                                                           \
    uint64_t end_ = now_ms() + (ms);                                           \
    while (!(cond) && now_ms() < end_)                                         \
      ucp_worker_progress((r)->worker);                                        \
    (cond);                                                                    \
  })

/* Sends m (and bytes as the data of a DATA, or of an OPEN_OK that brings
 * its batch: then m is the header), and waits for the send to finish. */
static void rogue_send(rogue *r, const scree__pw_msg *m, const void *bytes, size_t len) {
  unsigned char buf[SCREE__PW_MAX];
  size_t n = scree__pw_encode(m, buf, sizeof(buf));
  cr_assert_gt(n, 0u, "cannot encode a %s", scree__pw_type_name(m->type));
  ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                             .flags = UCP_AM_SEND_FLAG_REPLY};
  ucs_status_ptr_t q = m->type == SCREE__PW_DATA || bytes != NULL
                           ? ucp_am_send_nbx(r->ep, AM, buf, n, bytes, len, &prm)
                           : ucp_am_send_nbx(r->ep, AM, NULL, 0, buf, n, &prm);
  if (UCS_PTR_IS_PTR(q)) {
    ROGUE_UNTIL(r, 5000, ucp_request_check_status(q) != UCS_INPROGRESS);
    ucp_request_free(q);
  }
}

/* The i-th control message received (waiting up to 5 s), decoded. */
static int rogue_msg(rogue *r, int i, scree__pw_msg *out) {
  if (!ROGUE_UNTIL(r, 5000, r->n > i))
    return -1;
  return scree__pw_decode(r->msgs[i], r->lens[i], out, NULL, 0);
}

/* ---- a rogue fetcher ----------------------------------------------------- */

typedef struct owner_side {
  harness owner;
  scree_client *co;
  char secret[128];
  unsigned port;
} owner_side;

static void owner_start(owner_side *o) {
  setenv("UCX_TLS", "tcp", 1);
  snprintf(o->secret, sizeof(o->secret), "/tmp/scree-rogue-%ld.secret", (long)getpid());
  cr_assert_eq(peers_write_secret(o->secret, SECRET), 0);
  o->port = peers_free_port();
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%u", o->port);
  const char *args[] = {"--peer-listen", listen, "--peer-secret-file", o->secret, NULL};
  cr_assert_eq(harness_start(&o->owner, args), 0, "owner did not start");
  cr_assert_eq(scree_client_connect(o->owner.socket, &o->co), 0);
}

static void owner_stop(owner_side *o) {
  scree_client_close(o->co);
  cr_expect_eq(harness_stop(&o->owner), 0, "owner exit (log %s)", o->owner.log);
  unlink(o->secret);
}

/* Connects r to the owner, proves the secret and opens batch name;
 * returns the handle. */
static uint64_t rogue_open(rogue *r, unsigned port, const char *name) {
  rogue_init(r);
  rogue_connect(r, port);
  scree__pw_msg m, in;
  unsigned char mine[32];
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_HELLO;
  m.version = SCREE__PW_VERSION;
  cr_assert_eq(scree__peer_random(mine, sizeof(mine)), 0);
  memcpy(m.nonce, mine, sizeof(mine));
  rogue_send(r, &m, NULL, 0);
  cr_assert_eq(rogue_msg(r, 0, &in), 0);
  cr_assert_eq(in.type, SCREE__PW_CHALLENGE);
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_PROOF;
  cr_assert_eq(scree__peer_proof((const unsigned char *)SECRET, strlen(SECRET),
                                 SCREE__PROOF_FETCHER, mine, in.nonce, m.mac),
               0);
  rogue_send(r, &m, NULL, 0);
  cr_assert_eq(rogue_msg(r, 1, &in), 0);
  cr_assert_eq(in.type, SCREE__PW_WELCOME, "got %s", scree__pw_type_name(in.type));
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_OPEN;
  m.req = 1;
  m.name = name;
  m.name_len = strlen(name);
  rogue_send(r, &m, NULL, 0);
  cr_assert_eq(rogue_msg(r, 2, &in), 0);
  cr_assert_eq(in.type, SCREE__PW_OPEN_OK, "got %s", scree__pw_type_name(in.type));
  /* A small batch comes with the answer: values, the padding to the
   * offsets' 256-byte boundary, offsets; a large one does not. */
  const uint64_t block = (in.values_bytes + 255) / 256 * 256 + in.offsets_bytes;
  cr_expect_eq(r->inline_len[2], block <= SCREE__PW_INLINE_MAX ? block : 0);
  return in.handle;
}

static void rogue_read(rogue *r, uint64_t req, uint64_t handle, int region, uint64_t offset,
                       uint64_t length) {
  scree__pw_msg m;
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_READ;
  m.req = req;
  m.handle = handle;
  m.region = (uint8_t)region;
  m.offset = offset;
  m.length = length;
  rogue_send(r, &m, NULL, 0);
}

static uint32_t owner_leases(owner_side *o) {
  scree_stats st = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(o->co, &st), 0);
  return st.leases;
}

/* A batch of bytes of pattern seed, n values. */
static void put_bytes(scree_client *c, const char *name, size_t n, unsigned seed,
                      unsigned char **out) {
  scree_array a;
  cr_assert_eq(peers_make(SCREE_UINT8, SCREE_INT64, 1, 1, 0, 1, &a), 0);
  free(a.values);
  a.ndim_inner = 1;
  a.inner[0] = (int64_t)n;
  unsigned char *v = malloc(n);
  for (size_t i = 0; i < n; i++)
    v[i] = (unsigned char)(i * 31 + seed);
  a.values = v;
  cr_assert_eq(scree_client_put(c, name, &a, NULL), 0, "%s", scree_client_last_error(c));
  free(a.offsets);
  *out = v;
}

Test(peers_rogue, fetcher_reads_what_it_holds_only, .timeout = 60) {
  owner_side o;
  owner_start(&o);
  unsigned char *v;
  put_bytes(o.co, "b", 4096, 3, &v);

  /* An honest read: the DATA names it and carries its bytes. */
  rogue r;
  uint64_t h = rogue_open(&r, o.port, "b");
  cr_expect(memcmp(r.inline_bytes[2], v, 4096) == 0, "the batch that came with OPEN_OK");
  rogue_read(&r, 10, h, SCREE__PW_REGION_VALUES, 100, 200);
  cr_assert(ROGUE_UNTIL(&r, 5000, r.ndata == 1));
  cr_expect_eq(r.data[0].req, 10u);
  cr_expect_eq(r.data[0].code, 0);
  cr_expect_eq(r.data[0].offset, 100u);
  cr_expect_eq(r.data[0].length, 200u);
  cr_expect_eq(r.data_len[0], 200u);
  cr_expect(memcmp(r.data_bytes[0], v + 100, 200) == 0, "the bytes read are not the batch's");

  /* A read on a handle this connection does not hold: refused, and the
   * connection gets nothing more (not even a DATA), its lease ended. */
  rogue_read(&r, 11, h + 1000, SCREE__PW_REGION_VALUES, 0, 16);
  rogue_read(&r, 12, h, SCREE__PW_REGION_VALUES, 0, 16);
  rogue_wait(&r, 500);
  cr_expect_eq(r.ndata, 1, "a refused connection was answered");
  cr_expect(harness_log_has(&o.owner, "which this peer does not hold", NULL), "log %s",
            o.owner.log);
  cr_expect_eq(owner_leases(&o), 0u);
  rogue_fini(&r);

  /* Outside the batch: refused. */
  h = rogue_open(&r, o.port, "b");
  rogue_read(&r, 20, h, SCREE__PW_REGION_VALUES, 4000, 200);
  rogue_wait(&r, 500);
  cr_expect_eq(r.ndata, 0);
  cr_expect(harness_log_has(&o.owner, "read of 200 bytes at 4000 of a 4096-byte values region",
                            NULL));
  rogue_fini(&r);

  /* More reads at once than the protocol allows: the owner answers no
   * more than that. The rogue does not progress between its reads, so
   * no rendezvous answer (16 MiB each) can complete meanwhile. */
  free(v);
  put_bytes(o.co, "big", SCREE__PW_READ_MAX, 5, &v);
  h = rogue_open(&r, o.port, "big");
  for (int i = 0; i <= SCREE__PW_READS_MAX; i++)
    rogue_read(&r, 30 + (uint64_t)i, h, SCREE__PW_REGION_VALUES, 0, SCREE__PW_READ_MAX);
  rogue_wait(&r, 1000);
  cr_expect_leq(r.ndata, SCREE__PW_READS_MAX);
  char line[64];
  snprintf(line, sizeof(line), "more than %d reads at once", SCREE__PW_READS_MAX);
  cr_expect(harness_log_has(&o.owner, line, NULL), "log %s", o.owner.log);
  rogue_fini(&r);
  free(v);

  /* The owner holds nothing for the rogues and still serves. */
  for (int i = 0; i < 100 && owner_leases(&o) != 0; i++)
    usleep(10000);
  cr_expect_eq(owner_leases(&o), 0u);
  h = rogue_open(&r, o.port, "b");
  rogue_read(&r, 40, h, SCREE__PW_REGION_OFFSETS, 0, 16);
  cr_expect(ROGUE_UNTIL(&r, 5000, r.ndata == 1));
  rogue_fini(&r);
  owner_stop(&o);
}

/* A version-1 fetcher is told no at once, and the owner says why. */
Test(peers_rogue, old_protocol_version, .timeout = 60) {
  owner_side o;
  owner_start(&o);
  rogue r;
  rogue_init(&r);
  rogue_connect(&r, o.port);
  scree__pw_msg m, in;
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_HELLO;
  m.version = 1;
  rogue_send(&r, &m, NULL, 0);
  cr_assert_eq(rogue_msg(&r, 0, &in), 0);
  cr_expect_eq(in.type, SCREE__PW_DENIED, "got %s", scree__pw_type_name(in.type));
  cr_expect(harness_log_has(&o.owner, "peer protocol version 1; this screed speaks only version 2",
                            NULL),
            "log %s", o.owner.log);
  rogue_fini(&r);
  owner_stop(&o);
}

/* ---- a rogue owner ------------------------------------------------------- */

typedef enum bad_data {
  NEVER_ASKED,  /* a DATA with a request id no READ had */
  WRONG_OFFSET, /* the right request, another offset */
  SHORT,        /* the right fields, fewer bytes */
  OWNER_ERROR,  /* no bytes, an error code and a message */
  INLINE_SHORT, /* OPEN_OK bringing the batch, 8 bytes short of its block */
  INLINE_BAD_OFFSETS, /* OPEN_OK bringing the block whole, its offsets invalid */
} bad_data;

typedef struct fetch_job {
  const char *socket;
  int rc;
  char msg[512];
} fetch_job;

static void *fetch_thread(void *arg) {
  fetch_job *j = arg;
  scree_client *c;
  j->rc = scree_client_connect(j->socket, &c);
  if (j->rc == 0)
    j->rc = scree_client_fetch(c, "owner", "x", NULL, 20000);
  snprintf(j->msg, sizeof(j->msg), "%s", scree_client_last_error(c));
  scree_client_close(c);
  return NULL;
}

/* The fetcher asks a rogue owner for batch x (8 KiB of uint8 in one row)
 * and gets bad as the answer to its first READ. */
static void rogue_owner_case(bad_data bad, int want_rc, const char *want_msg) {
  setenv("UCX_TLS", "tcp", 1);
  char secret[128], peer[64];
  snprintf(secret, sizeof(secret), "/tmp/scree-rogue-%ld.secret", (long)getpid());
  cr_assert_eq(peers_write_secret(secret, SECRET), 0);
  unsigned port = peers_free_port();
  rogue r;
  rogue_init(&r);
  rogue_listen(&r, port);
  snprintf(peer, sizeof(peer), "owner=127.0.0.1:%u", port);
  harness fetcher;
  const char *args[] = {"--peer", peer, "--peer-secret-file", secret, NULL};
  cr_assert_eq(harness_start(&fetcher, args), 0);
  fetch_job job = {.socket = fetcher.socket};
  pthread_t t;
  pthread_create(&t, NULL, fetch_thread, &job);

  cr_assert(ROGUE_UNTIL(&r, 5000, r.creq != NULL), "the fetcher did not connect");
  ucp_ep_params_t ep = ep_params(&r);
  ep.field_mask |= UCP_EP_PARAM_FIELD_CONN_REQUEST;
  ep.conn_request = r.creq;
  cr_assert_eq(ucp_ep_create(r.worker, &ep, &r.ep), UCS_OK);
  scree__pw_msg in, m;
  cr_assert_eq(rogue_msg(&r, 0, &in), 0);
  cr_assert_eq(in.type, SCREE__PW_HELLO);
  unsigned char theirs[32], mine[32];
  memcpy(theirs, in.nonce, 32);
  cr_assert_eq(scree__peer_random(mine, sizeof(mine)), 0);
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_CHALLENGE;
  memcpy(m.nonce, mine, 32);
  cr_assert_eq(scree__peer_proof((const unsigned char *)SECRET, strlen(SECRET),
                                 SCREE__PROOF_OWNER, theirs, mine, m.mac),
               0);
  rogue_send(&r, &m, NULL, 0);
  cr_assert_eq(rogue_msg(&r, 1, &in), 0);
  cr_assert_eq(in.type, SCREE__PW_PROOF);
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_WELCOME;
  rogue_send(&r, &m, NULL, 0);
  cr_assert_eq(rogue_msg(&r, 2, &in), 0);
  cr_assert_eq(in.type, SCREE__PW_OPEN);
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_OPEN_OK;
  m.req = in.req;
  m.handle = 77;
  m.desc.dtype = SCREE_UINT8;
  m.desc.offsets_dtype = SCREE_INT64;
  m.desc.ndim_inner = 1;
  m.desc.inner[0] = 8192;
  m.desc.batch_size = 1;
  m.desc.total_rows = 1;
  m.desc.max_length = 1;
  m.values_bytes = 8192;
  m.offsets_bytes = 16;
  static unsigned char bytes[8192 + 16];
  memset(bytes, 0xab, sizeof(bytes));
  if (bad == INLINE_SHORT || bad == INLINE_BAD_OFFSETS) {
    /* The block with the answer: 8192 values, then offsets 0 and 9 (past
     * the one row), or 8 bytes short. */
    int64_t offs[2] = {0, 9};
    memcpy(bytes + 8192, offs, sizeof(offs));
    rogue_send(&r, &m, bytes, bad == INLINE_SHORT ? sizeof(bytes) - 8 : sizeof(bytes));
    goto wait_fetch;
  }
  rogue_send(&r, &m, NULL, 0);
  cr_assert_eq(rogue_msg(&r, 3, &in), 0);
  cr_assert_eq(in.type, SCREE__PW_READ, "got %s", scree__pw_type_name(in.type));
  cr_expect_eq(in.handle, 77u);

  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_DATA;
  m.req = in.req;
  m.handle = in.handle;
  m.region = in.region;
  m.offset = in.offset;
  m.length = in.length;
  size_t len = (size_t)in.length;
  switch (bad) {
  case NEVER_ASKED:
    m.req = in.req + 1000;
    break;
  case WRONG_OFFSET:
    m.offset = in.offset + 8;
    break;
  case SHORT:
    len -= 1;
    break;
  case OWNER_ERROR:
    m.code = SCREE_ECUDA;
    m.msg = "the device copy failed";
    m.msg_len = strlen(m.msg);
    len = 0;
    break;
  default:
    break;
  }
  rogue_send(&r, &m, len ? bytes : NULL, len);
wait_fetch:
  /* The fetcher may still read its other chunk; the rogue drops it. */
  for (uint64_t end = now_ms() + 20000; now_ms() < end;) {
    ucp_worker_progress(r.worker);
    if (pthread_tryjoin_np(t, NULL) == 0)
      break;
  }
  cr_expect_eq(job.rc, want_rc, "%s (%s)", job.msg, scree_err_name(job.rc));
  cr_expect(strstr(job.msg, want_msg) != NULL, "'%s' does not say '%s'", job.msg, want_msg);
  cr_expect(strstr(job.msg, "peer 'owner'") != NULL, "%s", job.msg);

  /* Nothing of the batch is left on the fetcher. */
  scree_client *c;
  cr_assert_eq(scree_client_connect(fetcher.socket, &c), 0);
  scree_batch_info info;
  cr_expect_eq(scree_client_stat(c, "x", &info), SCREE_ENOENT, "a half-fetched batch is named");
  scree_stats st = SCREE_STATS_INIT;
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(scree_client_stats(c, &st), 0);
    if (st.bytes_used == 0)
      break;
    ucp_worker_progress(r.worker);
    usleep(10000);
  }
  cr_expect_eq(st.bytes_used, 0u, "the reservation is released");
  scree_client_close(c);
  rogue_fini(&r);
  cr_expect_eq(harness_stop(&fetcher), 0, "fetcher exit (log %s)", fetcher.log);
  unlink(secret);
}

Test(peers_rogue, data_never_asked_for, .timeout = 60) {
  rogue_owner_case(NEVER_ASKED, SCREE_EPROTO, "sent data that was never asked for");
}

Test(peers_rogue, data_for_other_bytes, .timeout = 60) {
  rogue_owner_case(WRONG_OFFSET, SCREE_EPROTO, "with data for 8192 bytes at 8");
}

Test(peers_rogue, data_too_short, .timeout = 60) {
  rogue_owner_case(SHORT, SCREE_EPROTO, "sent 8191 bytes for a read of 8192");
}

Test(peers_rogue, a_batch_with_its_answer_a_block_short, .timeout = 60) {
  rogue_owner_case(INLINE_SHORT, SCREE_EPROTO, "sent 8200 bytes with 'x', whose block is 8208");
}

Test(peers_rogue, a_batch_with_its_answer_with_bad_offsets, .timeout = 60) {
  rogue_owner_case(INLINE_BAD_OFFSETS, SCREE_EINVAL, "sent bad bytes: offsets of 'x' are invalid");
}

Test(peers_rogue, owner_could_not_read, .timeout = 60) {
  rogue_owner_case(OWNER_ERROR, SCREE_ECUDA, "could not read 'x': the device copy failed");
}
