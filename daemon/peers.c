/* Peers over UCX: see peers.h for the shape and docs/cluster.md for the
 * design. Everything here runs on the loop thread.
 *
 * Driving UCX from libuv: the worker is made with UCP_FEATURE_WAKEUP and
 * UCS_THREAD_MODE_SINGLE; its event fd is polled with uv_poll_t. Each
 * wakeup progresses the worker a bounded number of times, runs what the
 * callbacks deferred (reap), and re-arms the worker; when arming says more
 * work is pending (UCS_ERR_BUSY) past the bound, an idle handle brings the
 * loop back on its next turn instead of spinning here. Operations posted
 * from outside a wakeup (a Fetch from a client) start the idle handle too,
 * and a 100 ms timer progresses the worker and enforces the handshake
 * deadline whatever the event fd says; while staging copies run, a 1 ms
 * timer asks the backend whether they are done.
 *
 * The bytes move as active messages, never as one-sided operations: the
 * fetcher asks READ for a chunk of a leased batch, the owner answers DATA
 * with the bytes (eager or rendezvous, as UCX picks), and the fetcher
 * receives them into its reservation after checking that they are what it
 * asked for. The UCP context has no UCP_FEATURE_RMA, so UCX registers no
 * handler that would read or write memory at an address a remote names
 * (its software emulation of get and put over tcp did, before any scree
 * message was exchanged: docs/cluster.md, "Security model").
 *
 * UCX callbacks (active messages, endpoint errors, completions) never close
 * an endpoint or free a connection themselves: they mark it, and reap does
 * it after ucp_worker_progress has returned. */
#include "peers.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>
#include <ucs/config/global_opts.h>
#include <ucs/debug/log_def.h>
#include <unistd.h>

#include "list.h"
#include "log.h"
#include "mem.h"
#include "peers_auth.h"
#include "peers_mirror.h"
#include "peers_wire.h"
#include "ratelimit.h"
#include "scree/error.h"

#define AM_ID 0x5c
/* Bounds of one wakeup: progress calls per round, rounds per wakeup. */
#define PUMP_SPINS 1024
#define PUMP_ROUNDS 16
/* After UCX made progress or screed sent a message, the loop keeps polling
 * UCX on every turn (an idle handle) for this long before it sleeps on the
 * worker's event fd, so that the answer to what was just sent is taken
 * without a wakeup. */
#define SPIN_NS 100000ull
#define TICK_MS 100
/* How often staging copies are asked whether they are done. */
#define COPY_POLL_MS 1
/* A connection must finish the handshake within this. */
#define HANDSHAKE_MS 10000
/* Connections accepted but not yet authenticated, at most. */
#define MAX_UNAUTH 32
/* Log lines that a remote can cause at will, at most, per window: screed's
 * own about refused connections and messages, and UCX's (see ucx_log_*). */
#define LOG_WINDOW_S 60
#define REFUSED_LINES 20
#define UCX_LINES 20
/* Leases one peer connection may hold on this screed. */
#define MAX_LEASES_PER_CONN 1024
#define DEFAULT_TIMEOUT_MS 60000
/* How long a refused connection is kept muted, waiting for its remote to
 * close it. */
#define MUTE_MS 30000
/* A fetch asks for its batch in chunks of this many bytes, and keeps at
 * most WINDOW of them asked per connection (peers_wire.h says why half of
 * what an owner allows). */
#define CHUNK SCREE__PW_READ_MAX
#define WINDOW (SCREE__PW_READS_MAX / 2)
/* An owner on host memory sends a batch of at most this many bytes (its
 * block: the values, the padding to 256 bytes and the offsets) with the
 * OPEN_OK, which saves the fetch its READ round trip. */
#define INLINE_MAX SCREE__PW_INLINE_MAX
/* Copies of such batches that UCX has not finished sending, at most, per
 * connection: past it, OPEN_OK goes without its batch (the fetcher READs
 * it), so a fetcher that opens without reading holds no more than this. */
#define INLINE_WINDOW (4 * INLINE_MAX)
/* An OPEN_OK's length at most (8 inner dimensions), with room to spare: the
 * header UCX must carry for one that brings its batch. */
#define OPEN_OK_MAX 256
/* Staging buffers (of CHUNK bytes) for each role: two, so that one chunk's
 * copy to or from the device overlaps the next chunk's transfer. The roles
 * have buffers of their own so that two screeds fetching from each other
 * cannot each hold all of theirs waiting for the other. */
#define STAGES 2
/* A fetch that waits for its batch asks the owner to wait at most this
 * long past the fetch's own deadline, so that the fetch's timeout comes
 * first and the owner's waiter does not outlive it by more. */
#define WAIT_GRACE_MS 1000
/* OPENs one peer connection may have waiting here for their batch. */
#define MAX_PARKED_PER_CONN 256
/* Watches one peer connection may hold here. */
#define MAX_WATCHES_PER_CONN 16
/* EVENTs that UCX has not finished sending on one connection, at most: the
 * rest wait in the store's bounded queue of each watch, where a remote
 * that does not keep up overflows as a local watcher does. */
#define EVENT_WINDOW 64

typedef struct conn conn;
typedef struct peer peer;
typedef struct fetch fetch;
typedef struct lease lease;
typedef struct parked parked;
typedef struct pwatch pwatch;
typedef struct answer answer;
typedef struct ask ask;
typedef struct stage stage;

/* How this screed's batches meet UCX, chosen at start. */
typedef enum xfer_path {
  PATH_NONE,     /* device memory that nothing here can move: fetches are ENOTSUP */
  PATH_HOST,     /* host memory, handed to UCX where it lies (zero-copy) */
  PATH_UCX_CUDA, /* device memory, handed to UCX, which supports CUDA */
  PATH_STAGED,   /* device memory, copied through pinned host stages */
} xfer_path;

typedef enum conn_state {
  C_HELLO_SENT,  /* fetcher: waits for the owner's challenge */
  C_PROOF_SENT,  /* fetcher: waits for WELCOME */
  C_AWAIT_HELLO, /* owner */
  C_AWAIT_PROOF, /* owner */
  C_READY,
} conn_state;

struct conn {
  scree__peers *p;
  ucp_ep_h ep;
  uint64_t id;
  int owner; /* accepted by our listener: the remote fetches from us */
  conn_state state;
  peer *peer; /* fetcher side: the --peer it reaches */
  char addr[300];
  uint64_t start_ns;
  unsigned char nonce_mine[SCREE__PW_NONCE];
  unsigned char nonce_theirs[SCREE__PW_NONCE];
  /* Set by callbacks; reap acts on it. */
  int failed;
  int fail_rc;
  int fail_cause;
  char fail_msg[256];
  int was_ready;
  int graceful; /* close after what was sent has gone (a DENIED) */
  /* Owner side, refused: UCX 1.13 can crash handling a message that
   * arrives for an endpoint this side already closed, so a refused
   * connection is muted (every message dropped) and closed only once the
   * remote has gone (the endpoint's error) or after MUTE_MS. */
  int muted;
  uint64_t muted_ns;
  int gone; /* the endpoint reported an error: the remote is gone */
  /* Owner side: the leases the remote holds here. */
  lease *leases;
  uint32_t nleases;
  /* Owner side: its OPENs waiting for a seal, its watches, and the EVENTs
   * UCX is still sending. */
  parked *parked;
  uint32_t nparked;
  pwatch *watches;
  uint32_t nwatches;
  uint32_t events_inflight;
  /* Bytes of batches sent with OPEN_OK that UCX has not finished sending
   * (copies held by screed until then): bounded by INLINE_WINDOW. */
  size_t inline_pending;
  /* READs on this connection not yet answered: asked by us (fetcher
   * side), or being answered by us (owner side). */
  uint32_t reads;
  conn *prev, *next;
};

/* An OPEN waiting here for its batch to be sealed: a waiter of the store,
 * on a session of its own (the store lets a session wait for one name). */
struct parked {
  conn *c;
  scree__session *sess;
  parked *prev, *next;
};

/* A remote's watch of a prefix here: the store's watch, on a session of
 * its own. */
struct pwatch {
  conn *c;
  scree__session *sess;
  uint64_t req;
  char prefix[SCREE__PW_NAME_MAX + 1];
  pwatch *prev, *next;
};

/* Owner side: a batch a peer holds open. It outlives its connection or
 * CLOSE while DATA answers that read its bytes are in flight (refs). */
struct lease {
  uint64_t handle;
  scree__batch *b;
  uint32_t refs;
  int ended;
  lease *prev, *next;
};

/* A staging buffer (PATH_STAGED): the backend's pinned host memory. */
struct stage {
  scree__stage *st; /* made at first use */
  void *host;
  int busy;
};

/* Owner side: one READ being answered. */
typedef enum answer_state {
  O_WAIT_STAGE, /* staged: waits for a free stage */
  O_COPYING,    /* staged: the device copies into the stage */
  O_SENDING,    /* the DATA is with UCX */
  O_DONE,       /* sent, failed or dropped: reap frees it */
} answer_state;

struct answer {
  scree__peers *p;
  conn *c; /* NULL once the connection is gone */
  lease *l;
  uint64_t req;
  uint8_t region;
  uint64_t offset;
  uint64_t length;
  uint64_t arena_off; /* where the bytes lie in their arena */
  const scree__arena_mem *mem;
  answer_state state;
  int counted; /* still one of its connection's reads (conn->reads) */
  stage *st;
  /* The DATA message, UCX's active-message header, which must live until
   * the send completes. */
  unsigned char hdr[SCREE__PW_MAX];
  size_t hdr_len;
  answer *prev, *next;
};

/* Fetcher side: one READ asked. */
typedef enum ask_state {
  R_ASKED,     /* waits for its DATA */
  R_RECEIVING, /* UCX receives the DATA's bytes (rendezvous) */
  R_RECEIVED,  /* the bytes are here (or failed): reap goes on */
  R_COPYING,   /* staged: the device copies them out of the stage */
} ask_state;

struct ask {
  fetch *f; /* NULL once its fetch gave up on it (only while R_ASKED) */
  conn *c;  /* NULL once the connection is gone */
  uint64_t req;
  uint64_t handle;
  uint8_t region;
  uint64_t offset;
  uint64_t length;
  ask_state state;
  /* Still one of its connection's reads (conn->reads): from the READ
   * until its bytes are all here, so that the window bounds what is in
   * flight, and an owner never counts more than the fetcher did. */
  int windowed;
  ucs_status_t status; /* of the receive */
  void *recv_req;      /* UCX's request while R_RECEIVING */
  /* While R_RECEIVING from a connection that is gone: the id of that
   * connection, and from when (once its endpoint's close is done) the
   * receive is given up (ask_abandon). 0 while the connection lives. */
  uint64_t lost_conn;
  uint64_t abandon_ns;
  stage *st;
  ask *prev, *next;
};

struct peer {
  scree__peer_spec spec;
  struct sockaddr_storage sa;
  socklen_t salen;
  conn *conn; /* the current connection, or NULL */
  scree__peer_counts counts;
};

typedef enum fetch_state {
  F_WAIT_CONN, /* the connection is being made and authenticated */
  F_OPEN_SENT, /* the owner answers when it can (it may wait for the seal) */
  F_READING,   /* READs asked, bytes arriving */
  F_SETTLING,  /* failed or done, waiting for writes into the reservation to end */
} fetch_state;

struct fetch {
  scree__peers *p;
  peer *peer;
  conn *conn;
  fetch_state state;
  scree__session *sess; /* NULL once detached */
  int replied;
  uint64_t id; /* the client's request id */
  uint64_t wire_req;
  char name[SCREE__MAX_NAME_LEN + 1];
  char as_name[SCREE__MAX_NAME_LEN + 1];
  uint64_t start_ns;
  uint64_t deadline_ns;
  uint64_t wait_until_ns; /* 0: no waiting for the batch to appear */
  uv_timer_t timer;
  /* The remote lease and the reads. */
  int have_handle;
  uint64_t handle;
  scree__batch *out; /* reserved locally until published */
  uint64_t region_bytes[2];  /* values, offsets */
  uint64_t region_start[2];  /* where each begins in the reservation's arena */
  int next_region;           /* the next READ's region; 2 when all are asked */
  uint64_t next_offset;      /* and offset in it */
  uint32_t asked;            /* READs whose DATA has not come */
  uint32_t outstanding;      /* receives and copies that write into the reservation */
  uint64_t bytes;
  int rc;
  int cause;
  char msg[512];
  int settled;
  scree__fetch_done_cb cb;
  void *cb_arg;
  fetch *prev, *next;
};

struct scree__peers {
  uv_loop_t *loop;
  scree__store *store;
  scree__mem *mem;
  xfer_path path;
  unsigned char *secret;
  size_t secret_len;
  char node[SCREE__PW_NODE_MAX + 1];
  ucp_context_h ctx;
  ucp_worker_h worker;
  ucp_listener_h listener;
  uint16_t listen_port;
  size_t data_msg_max; /* the longest message a DATA error may carry */
  size_t am_header_max; /* the longest header UCX carries (0: unknown) */
  int efd;
  uv_poll_t poll;
  uv_idle_t idle;
  uv_timer_t tick;
  uv_timer_t waits; /* the earliest deadline of the store's waiters */
  uv_timer_t copy_timer;
  int handles_open;
  int copy_timer_on;
  int pumping;
  uint64_t active_ns; /* when UCX last made progress or screed last sent */
  int shutting_down;
  peer *peers;
  size_t npeers;
  conn *conns;
  uint32_t nunauth;
  fetch *fetches;
  uint64_t next_conn_id;
  uint64_t next_wire_req;
  uint64_t next_handle;
  /* Connection requests that arrived during progress, handled in reap. */
  ucp_conn_request_h pending[MAX_UNAUTH];
  uint32_t npending;
  /* Endpoints being closed: their close requests, waited for at shutdown. */
  uint32_t closing;
  /* Reads in flight, in the order they came (answers: the order stages are
   * given out in); leases ended while DATA still read their bytes. */
  answer *answers, *answers_tail;
  ask *asks, *asks_tail;
  lease *ended;
  uint32_t copies; /* staging copies running */
  stage stages[2][STAGES]; /* [0] answering reads, [1] fetching */
  scree__peers_served served;
  scree__mirror *mirror; /* --mirror; NULL: none */
  /* The lines about refused connections and messages (refused_log_ok). */
  scree__ratelimit refused_log;
};

static void kick(scree__peers *p);

/* ---- what a remote can make screed log ---------------------------------------- */

static void log_held(const char *of, uint64_t held) {
  if (held != 0)
    scree__log(SCREE__LOG_WARN, "log_suppressed", "of=%s lines=%" PRIu64 " window_s=%d", of,
               held, LOG_WINDOW_S);
}

/* Whether a line about a refused connection or message may be written now.
 * Anyone who reaches --peer-listen can open connections and have them
 * refused as fast as it likes; past REFUSED_LINES in a window the lines
 * are held back and counted (served.refused still counts every refusal),
 * and the count is logged once the window has ended. An endpoint that UCX
 * cannot accept (peer_accept_failed) shares the budget. */
static int refused_log_ok(scree__peers *p) {
  uint64_t held;
  int ok = scree__ratelimit_take(&p->refused_log, scree__now_ns(), &held);
  log_held("peer_refused", held);
  return ok;
}

/* UCX logs from its own code, on its own terms. Its tcp transport answers
 * every active message of a kind that has no handler with a warning, a
 * hex dump of the payload and a backtrace, about 22 lines: a stranger's
 * one-sided write or read, whose handlers screed does not install (no
 * UCP_FEATURE_RMA), is one, at whatever rate the stranger sends them. An
 * endpoint opened with another error handling mode than screed's costs an
 * error line. So unless UCX_LOG_LEVEL is in the environment (then UCX's
 * logging is left entirely as the user set it), screed lowers UCX's
 * threshold to errors, which skips those warnings before anything is
 * formatted, and takes what UCX still logs into its own log through a
 * handler: one line per message, at most UCX_LINES per window, the rest
 * counted. UCX reads UCX_LOG_LEVEL when its library is loaded, before
 * main, so the threshold is changed through UCX's global options rather
 * than the environment. UCX may log from threads of its own: hence the
 * mutex and scree__q_buf. */
static struct {
  pthread_mutex_t mu;
  scree__ratelimit rl;
  int taken;      /* peers objects that took UCX's log */
  int handled;    /* whether the handler is UCX's and the threshold changed */
  char level[32]; /* UCX's threshold before */
} ucx_log = {.mu = PTHREAD_MUTEX_INITIALIZER,
             .rl = SCREE__RATELIMIT_INIT(LOG_WINDOW_S * 1000000000ull, UCX_LINES)};

static ucs_log_func_rc_t ucx_log_line(const char *file, unsigned line, const char *function,
                                      ucs_log_level_t level,
                                      const ucs_log_component_config_t *comp, const char *fmt,
                                      va_list ap) {
  (void)function, (void)comp;
  scree__log_level l = level <= UCS_LOG_LEVEL_ERROR  ? SCREE__LOG_ERROR
                       : level == UCS_LOG_LEVEL_WARN ? SCREE__LOG_WARN
                       : level <= UCS_LOG_LEVEL_INFO ? SCREE__LOG_INFO
                                                     : SCREE__LOG_DEBUG;
  if (!scree__log_enabled(l))
    return UCS_LOG_FUNC_RC_STOP;
  /* A fatal error, which UCX follows with an abort, is always said. */
  if (level != UCS_LOG_LEVEL_FATAL) {
    uint64_t held;
    pthread_mutex_lock(&ucx_log.mu);
    int ok = scree__ratelimit_take(&ucx_log.rl, scree__now_ns(), &held);
    pthread_mutex_unlock(&ucx_log.mu);
    log_held("ucx", held);
    if (!ok)
      return UCS_LOG_FUNC_RC_STOP;
  }
  char text[1024], qtext[1200], qfile[128];
  vsnprintf(text, sizeof(text), fmt, ap);
  size_t n = strlen(text);
  while (n > 0 && text[n - 1] == '\n')
    text[--n] = '\0';
  const char *base = strrchr(file, '/');
  scree__log(l, "ucx", "file=%s line=%u msg=%s",
             scree__q_buf(qfile, sizeof(qfile), base != NULL ? base + 1 : file), line,
             scree__q_buf(qtext, sizeof(qtext), text));
  return UCS_LOG_FUNC_RC_STOP;
}

static void ucx_log_take(void) {
  if (ucx_log.taken++ > 0 || getenv("UCX_LOG_LEVEL") != NULL)
    return;
  ucx_log.handled = 1;
  if (ucs_global_opts_get_value("LOG_LEVEL", ucx_log.level, sizeof(ucx_log.level)) != UCS_OK)
    ucx_log.level[0] = '\0';
  (void)ucs_global_opts_set_value("LOG_LEVEL", "error");
  ucs_log_push_handler(ucx_log_line);
}

/* Logs the count of UCX's lines held back in a window that has ended, or
 * in any window with force. */
static void ucx_log_flush(int force) {
  pthread_mutex_lock(&ucx_log.mu);
  uint64_t held = force ? scree__ratelimit_drain(&ucx_log.rl)
                        : scree__ratelimit_roll(&ucx_log.rl, scree__now_ns());
  pthread_mutex_unlock(&ucx_log.mu);
  log_held("ucx", held);
}

static void ucx_log_give_back(void) {
  if (ucx_log.taken == 0 || --ucx_log.taken > 0 || !ucx_log.handled)
    return;
  ucx_log.handled = 0;
  ucs_log_pop_handler();
  if (ucx_log.level[0] != '\0')
    (void)ucs_global_opts_set_value("LOG_LEVEL", ucx_log.level);
  ucx_log_flush(1);
}

static void fetch_settle(fetch *f);
static void fetch_fail(fetch *f, int rc, int cause, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fetch_note_error(fetch *f, int rc, int cause, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fetch_send_open(fetch *f);
static void fetch_timer(uv_timer_t *t);

int scree__peers_available(void) { return 1; }

uint16_t scree__peers_listen_port(const scree__peers *p) { return p ? p->listen_port : 0; }

static const char *path_name(xfer_path path) {
  switch (path) {
  case PATH_HOST: return "host";
  case PATH_UCX_CUDA: return "ucx-cuda";
  case PATH_STAGED: return "staged";
  default: return "none";
  }
}

static const char *region_name(int region) {
  return region == SCREE__PW_REGION_OFFSETS ? "offsets" : "values";
}

/* Printable bytes only from a peer into logs and replies. */
static void sanitize(const char *in, size_t n, char *out, size_t cap) {
  size_t k = 0;
  for (size_t i = 0; i < n && k + 1 < cap; i++)
    out[k++] = (in[i] >= 0x20 && in[i] != 0x7f) || (unsigned char)in[i] >= 0x80 ? in[i] : '?';
  out[k] = '\0';
}

/* ---- staging buffers ------------------------------------------------------- */

/* A free stage of role (0 answering, 1 fetching) into *out, made at first
 * use; *out NULL when all are busy. Returns 0 or the backend's error. */
static int stage_take(scree__peers *p, int role, stage **out, char *msg, size_t msg_len) {
  *out = NULL;
  for (int i = 0; i < STAGES; i++) {
    stage *s = &p->stages[role][i];
    if (s->busy)
      continue;
    if (s->st == NULL) {
      int rc = p->mem->ops->stage_new(p->mem, CHUNK, &s->st, &s->host, msg, msg_len);
      if (rc != 0) {
        s->st = NULL;
        return rc;
      }
    }
    s->busy = 1;
    *out = s;
    return 0;
  }
  return 0;
}

static void stage_give(stage *s) {
  if (s != NULL)
    s->busy = 0;
}

static void on_copy_timer(uv_timer_t *t);

/* Keeps the copy timer running while staging copies do, and only then. */
static void copies_changed(scree__peers *p) {
  if (!p->handles_open)
    return;
  if (p->copies > 0 && !p->copy_timer_on) {
    p->copy_timer_on = 1;
    uv_timer_start(&p->copy_timer, on_copy_timer, COPY_POLL_MS, COPY_POLL_MS);
  } else if (p->copies == 0 && p->copy_timer_on) {
    p->copy_timer_on = 0;
    uv_timer_stop(&p->copy_timer);
  }
}
/* ---- connections ----------------------------------------------------------- */

static conn *conn_by_ep(scree__peers *p, ucp_ep_h ep) {
  for (conn *c = p->conns; c != NULL; c = c->next)
    if (c->ep == ep)
      return c;
  return NULL;
}

/* A message on its way: the bytes, and for an EVENT whose connection
 * counts it (events_inflight), which connection that is. */
typedef struct sendbuf {
  scree__peers *p;
  uint64_t conn_id; /* the connection it goes on, looked up at completion */
  int counted;      /* counted in the connection's events_inflight */
  size_t inline_len; /* counted in its inline_pending */
  unsigned char data[];
} sendbuf;

static conn *conn_by_id(scree__peers *p, uint64_t id) {
  for (conn *c = p->conns; c != NULL; c = c->next)
    if (c->id == id)
      return c;
  return NULL;
}

static void send_done(void *req, ucs_status_t st, void *user_data) {
  (void)st;
  sendbuf *sb = user_data;
  /* The connection may be gone: it is looked up, not remembered. */
  conn *c = sb->counted || sb->inline_len ? conn_by_id(sb->p, sb->conn_id) : NULL;
  if (c != NULL && sb->counted && c->events_inflight > 0) {
    c->events_inflight--;
    kick(sb->p); /* reap sends what waits */
  }
  if (c != NULL && sb->inline_len <= c->inline_pending)
    c->inline_pending -= sb->inline_len;
  free(sb);
  ucp_request_free(req);
}

/* Sends one message on c, counted in c->events_inflight until UCX is done
 * with it when counted is set. With plen > 0 the message goes as the
 * active message's header and a copy of payload as its data (an OPEN_OK
 * that carries its batch); else the message is the data. The buffer lives
 * until UCX is done with it. */
static int conn_post_with(conn *c, const scree__pw_msg *m, int counted, const void *payload,
                          size_t plen) {
  unsigned char tmp[SCREE__PW_MAX];
  size_t n = scree__pw_encode(m, tmp, sizeof(tmp));
  if (n == 0)
    return SCREE_EINVAL;
  sendbuf *sb = malloc(sizeof(*sb) + n + plen);
  if (sb == NULL)
    return SCREE_ENOMEM;
  sb->p = c->p;
  sb->conn_id = c->id;
  sb->counted = counted;
  sb->inline_len = plen;
  memcpy(sb->data, tmp, n);
  if (plen > 0)
    memcpy(sb->data + n, payload, plen);
  ucp_request_param_t prm;
  memset(&prm, 0, sizeof(prm));
  prm.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  prm.cb.send = send_done;
  prm.user_data = sb;
  prm.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  /* Counted before the call: UCX may run send_done inside it and still
   * return the request (see fetcher_on_data). */
  if (counted)
    c->events_inflight++;
  c->inline_pending += plen;
  ucs_status_ptr_t r =
      plen > 0 ? ucp_am_send_nbx(c->ep, AM_ID, sb->data, n, sb->data + n, plen, &prm)
               : ucp_am_send_nbx(c->ep, AM_ID, NULL, 0, sb->data, n, &prm);
  c->p->active_ns = scree__now_ns();
  kick(c->p);
  if (UCS_PTR_IS_PTR(r))
    return 0; /* send_done ends it, maybe already has */
  /* Done at once (no callback) or failed. */
  if (counted)
    c->events_inflight--;
  c->inline_pending -= plen;
  free(sb);
  return r == NULL ? 0 : SCREE_EIO;
}

static int conn_post(conn *c, const scree__pw_msg *m, int counted) {
  return conn_post_with(c, m, counted, NULL, 0);
}

static int conn_send(conn *c, const scree__pw_msg *m) { return conn_post(c, m, 0); }

/* Marks c failed; reap closes it after progress. The first failure's
 * reason is the one kept. */
static void conn_mark_failed(conn *c, int rc, int cause, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_mark_failed(conn *c, int rc, int cause, const char *fmt, ...) {
  if (c->failed)
    return;
  c->failed = 1;
  c->fail_rc = rc;
  c->fail_cause = cause;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->fail_msg, sizeof(c->fail_msg), fmt, ap);
  va_end(ap);
  kick(c->p);
}

static void ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status) {
  conn *c = arg;
  (void)ep;
  c->gone = 1;
  kick(c->p);
  if (c->owner) {
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST, "connection from %s failed: %s",
                     c->addr, ucs_status_string(status));
    return;
  }
  /* Before the owner's challenge nothing was ever heard from it: nothing
   * listens there, or it refused the endpoint. */
  if (c->state == C_HELLO_SENT)
    conn_mark_failed(c, SCREE_ECONNREFUSED, SCREE__FETCH_FAIL_UNREACHABLE,
                     "peer '%s' at %s: cannot connect (%s); is its screed running with"
                     " --peer-listen there?",
                     c->peer->spec.name, c->addr, ucs_status_string(status));
  else
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST,
                     "peer '%s' at %s: the connection failed (%s)", c->peer->spec.name,
                     c->addr, ucs_status_string(status));
}

static conn *conn_new(scree__peers *p, int owner) {
  conn *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->p = p;
  c->owner = owner;
  c->id = ++p->next_conn_id;
  c->start_ns = scree__now_ns();
  c->next = p->conns;
  if (p->conns)
    p->conns->prev = c;
  p->conns = c;
  return c;
}

static void lease_free(scree__peers *p, lease *l) {
  scree__store_unpin(p->store, l->b);
  free(l);
}

/* Ends a lease: the batch is unpinned now, or once the DATA answers that
 * read its bytes are done (reap). */
static void lease_end(scree__peers *p, conn *c, lease *l) {
  SCREE__LIST_REMOVE(c->leases, l);
  c->nleases--;
  p->served.leases--;
  if (l->refs == 0) {
    lease_free(p, l);
    return;
  }
  l->ended = 1;
  l->prev = NULL;
  l->next = p->ended;
  if (p->ended)
    p->ended->prev = l;
  p->ended = l;
}

static void parked_end(conn *c, parked *pk) {
  SCREE__LIST_REMOVE(c->parked, pk);
  c->nparked--;
  scree__session_close(c->p->store, pk->sess);
  free(pk);
}

static void pwatch_end(conn *c, pwatch *w) {
  SCREE__LIST_REMOVE(c->watches, w);
  c->nwatches--;
  scree__session_close(c->p->store, w->sess);
  free(w);
}

/* Ends what the remote of c has here: its leases, its waiting OPENs (the
 * store answers nobody for a closed session) and its watches. */
static void conn_end_served(conn *c) {
  while (c->leases != NULL)
    lease_end(c->p, c, c->leases);
  while (c->parked != NULL)
    parked_end(c, c->parked);
  while (c->watches != NULL)
    pwatch_end(c, c->watches);
}

/* An endpoint's close under way, for ep_close_done. */
typedef struct ep_closing {
  scree__peers *p;
  uint64_t conn_id;
} ep_closing;

/* The receives still under way from connection conn_id, whose endpoint is
 * closed now, are given up one tick from now. The forced close should
 * have ended them (UCX purges an endpoint's requests); this bounds what a
 * receive UCX leaves unfinished would hold, its reservation and its fetch,
 * as nothing else can end one: ucp_request_cancel serves tag receives
 * only. With the endpoint's transports gone nothing more arrives for it;
 * the tick is a margin on top. */
static void asks_lost(scree__peers *p, uint64_t conn_id) {
  uint64_t at = scree__now_ns() + TICK_MS * 1000000ull;
  for (ask *r = p->asks; r != NULL; r = r->next)
    if (r->state == R_RECEIVING && r->lost_conn == conn_id && r->abandon_ns == 0)
      r->abandon_ns = at;
}

static void ep_close_done(void *req, ucs_status_t st, void *user_data) {
  (void)st;
  ep_closing *e = user_data;
  e->p->closing--;
  asks_lost(e->p, e->conn_id);
  ucp_request_free(req);
  free(e);
}

/* Closes c's endpoint at once (cancelling its transfers, whose callbacks
 * run now or during later progress), ends its leases and frees it. Reads
 * on it forget it: those still waiting for their DATA go now; receives
 * into a reservation or a stage end through their callbacks, or are given
 * up once the close is done (asks_lost). */
static void conn_destroy(conn *c) {
  scree__peers *p = c->p;
  conn_end_served(c);
  int was_current = c->peer != NULL && c->peer->conn == c;
  if (was_current) {
    c->peer->conn = NULL;
    c->peer->counts.connected = 0;
  }
  if (c->owner && c->state != C_READY)
    p->nunauth--;
  if (c->owner && c->state == C_READY)
    p->served.conns--;
  for (fetch *f = p->fetches; f != NULL; f = f->next)
    if (f->conn == c)
      f->conn = NULL;
  for (answer *o = p->answers; o != NULL; o = o->next)
    if (o->c == c)
      o->c = NULL;
  for (ask *r = p->asks, *rn; r != NULL; r = rn) {
    rn = r->next;
    if (r->c != c)
      continue;
    r->c = NULL;
    if (r->state == R_RECEIVING)
      r->lost_conn = c->id;
    if (r->state == R_ASKED) {
      if (r->f != NULL)
        r->f->asked--;
      stage_give(r->st);
      SCREE__LIST_REMOVE_TAIL(p->asks, p->asks_tail, r);
      free(r);
    }
  }
  if (c->ep != NULL) {
    ucp_request_param_t prm;
    memset(&prm, 0, sizeof(prm));
    prm.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK |
                       UCP_OP_ATTR_FIELD_USER_DATA;
    prm.flags = c->graceful && !p->shutting_down ? 0 : UCP_EP_CLOSE_FLAG_FORCE;
    prm.cb.send = ep_close_done;
    ep_closing *e = malloc(sizeof(*e));
    if (e != NULL) {
      *e = (ep_closing){.p = p, .conn_id = c->id};
      prm.user_data = e;
    } else {
      /* No memory to follow the close: it runs on its own. */
      prm.op_attr_mask &= ~(uint32_t)(UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA);
    }
    /* Counted before the call: ep_close_done may run inside it. */
    if (e != NULL)
      p->closing++;
    ucs_status_ptr_t r = ucp_ep_close_nbx(c->ep, &prm);
    if (!UCS_PTR_IS_PTR(r) || e == NULL) {
      /* Closed at once, failed, or not followed: nothing to wait for. */
      if (UCS_PTR_IS_PTR(r))
        ucp_request_free(r);
      if (e != NULL)
        p->closing--;
      free(e);
      asks_lost(p, c->id);
    }
  }
  size_t peer_index = was_current ? (size_t)(c->peer - p->peers) : 0;
  SCREE__LIST_REMOVE(p->conns, c);
  free(c);
  if (was_current)
    scree__mirror_down(p->mirror, peer_index);
}

/* ---- the handshake --------------------------------------------------------- */

/* Fetcher: opens a connection to pe and sends HELLO. */
static int peer_connect(scree__peers *p, peer *pe, char *msg, size_t msg_len) {
  conn *c = conn_new(p, 0);
  if (c == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  c->peer = pe;
  c->state = C_HELLO_SENT;
  snprintf(c->addr, sizeof(c->addr), "%s:%u", pe->spec.host, pe->spec.port);
  ucp_ep_params_t ep;
  memset(&ep, 0, sizeof(ep));
  ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
                  UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  ep.sockaddr.addr = (const struct sockaddr *)&pe->sa;
  ep.sockaddr.addrlen = pe->salen;
  ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep.err_handler.cb = ep_err_cb;
  ep.err_handler.arg = c;
  ucs_status_t st = ucp_ep_create(p->worker, &ep, &c->ep);
  if (st != UCS_OK) {
    c->ep = NULL;
    conn_destroy(c);
    return scree__fail(SCREE_ECONNREFUSED, msg, msg_len, "peer '%s' at %s:%u: %s",
                       pe->spec.name, pe->spec.host, pe->spec.port, ucs_status_string(st));
  }
  pe->conn = c;
  if (scree__peer_random(c->nonce_mine, sizeof(c->nonce_mine)) != 0) {
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_OTHER, "no random bytes for a nonce");
    return 0;
  }
  scree__pw_msg m;
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_HELLO;
  m.version = SCREE__PW_VERSION;
  memcpy(m.nonce, c->nonce_mine, sizeof(m.nonce));
  m.node = p->node;
  m.node_len = strlen(p->node);
  if (conn_send(c, &m) != 0)
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_UNREACHABLE,
                     "peer '%s' at %s: cannot send", pe->spec.name, c->addr);
  scree__log(SCREE__LOG_INFO, "peer_connect", "peer=%s addr=%s conn=%" PRIu64,
             pe->spec.name, scree__q(c->addr), c->id);
  return 0;
}

/* Owner: refuses c, logging why; nothing of the store has been said. */
static void owner_refuse(conn *c, const char *why) {
  scree__peers *p = c->p;
  p->served.refused++;
  if (refused_log_ok(p))
    scree__log(SCREE__LOG_WARN, "peer_refused", "conn=%" PRIu64 " addr=%s reason=%s", c->id,
               scree__q(c->addr), scree__q(why));
  conn_mark_failed(c, SCREE_EACCES, SCREE__FETCH_FAIL_AUTH, "%s", why);
}

static void owner_on_hello(conn *c, const scree__pw_msg *m) {
  scree__peers *p = c->p;
  if (m->version != SCREE__PW_VERSION) {
    /* Said in a DENIED too, so that the other screed fails at once
     * rather than at its handshake deadline. */
    char why[160];
    snprintf(why, sizeof(why),
             "the peer speaks peer protocol version %u; this screed speaks only version %d"
             " (upgrade the older screed)",
             m->version, SCREE__PW_VERSION);
    scree__pw_msg r;
    memset(&r, 0, sizeof(r));
    r.type = SCREE__PW_DENIED;
    conn_send(c, &r);
    c->graceful = 1;
    owner_refuse(c, why);
    return;
  }
  memcpy(c->nonce_theirs, m->nonce, sizeof(c->nonce_theirs));
  char node[SCREE__PW_NODE_MAX + 1];
  memcpy(node, m->node, m->node_len);
  node[m->node_len] = '\0';
  scree__pw_msg r;
  memset(&r, 0, sizeof(r));
  r.type = SCREE__PW_CHALLENGE;
  if (scree__peer_random(c->nonce_mine, sizeof(c->nonce_mine)) != 0 ||
      scree__peer_proof(p->secret, p->secret_len, SCREE__PROOF_OWNER, c->nonce_theirs,
                        c->nonce_mine, r.mac) != 0) {
    owner_refuse(c, "cannot make a proof (libcrypto failed)");
    return;
  }
  memcpy(r.nonce, c->nonce_mine, sizeof(r.nonce));
  c->state = C_AWAIT_PROOF;
  scree__log(SCREE__LOG_DEBUG, "peer_hello", "conn=%" PRIu64 " addr=%s node=%s", c->id,
             scree__q(c->addr), scree__q(node));
  if (conn_send(c, &r) != 0)
    owner_refuse(c, "cannot send the challenge");
}

static void owner_on_proof(conn *c, const scree__pw_msg *m) {
  scree__peers *p = c->p;
  unsigned char want[SCREE__PW_MAC];
  if (scree__peer_proof(p->secret, p->secret_len, SCREE__PROOF_FETCHER, c->nonce_theirs,
                        c->nonce_mine, want) != 0 ||
      !scree__peer_proof_equal(want, m->mac)) {
    scree__pw_msg r;
    memset(&r, 0, sizeof(r));
    r.type = SCREE__PW_DENIED;
    conn_send(c, &r);
    c->graceful = 1;
    owner_refuse(c, "wrong proof of the shared secret (--peer-secret-file differs)");
    return;
  }
  c->state = C_READY;
  p->nunauth--;
  p->served.conns++;
  scree__pw_msg r;
  memset(&r, 0, sizeof(r));
  r.type = SCREE__PW_WELCOME;
  scree__log(SCREE__LOG_INFO, "peer_accepted", "conn=%" PRIu64 " addr=%s", c->id,
             scree__q(c->addr));
  if (conn_send(c, &r) != 0)
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST, "cannot send to %s", c->addr);
}

static void fetcher_on_challenge(conn *c, const scree__pw_msg *m) {
  scree__peers *p = c->p;
  unsigned char want[SCREE__PW_MAC];
  memcpy(c->nonce_theirs, m->nonce, sizeof(c->nonce_theirs));
  if (scree__peer_proof(p->secret, p->secret_len, SCREE__PROOF_OWNER, c->nonce_mine,
                        c->nonce_theirs, want) != 0 ||
      !scree__peer_proof_equal(want, m->mac)) {
    if (refused_log_ok(c->p))
      scree__log(SCREE__LOG_WARN, "peer_refused", "peer=%s addr=%s reason=%s",
                 c->peer->spec.name, scree__q(c->addr),
                 scree__q("the peer did not prove the shared secret"));
    conn_mark_failed(c, SCREE_EACCES, SCREE__FETCH_FAIL_AUTH,
                     "peer '%s' at %s did not prove the shared secret (is its"
                     " --peer-secret-file the same as this screed's?)",
                     c->peer->spec.name, c->addr);
    return;
  }
  scree__pw_msg r;
  memset(&r, 0, sizeof(r));
  r.type = SCREE__PW_PROOF;
  if (scree__peer_proof(p->secret, p->secret_len, SCREE__PROOF_FETCHER, c->nonce_mine,
                        c->nonce_theirs, r.mac) != 0) {
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_OTHER, "libcrypto failed");
    return;
  }
  c->state = C_PROOF_SENT;
  if (conn_send(c, &r) != 0)
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST, "cannot send to %s", c->addr);
}

static void fetcher_on_welcome(conn *c) {
  c->state = C_READY;
  c->was_ready = 1;
  c->peer->counts.connected = 1;
  scree__log(SCREE__LOG_INFO, "peer_ready", "peer=%s addr=%s conn=%" PRIu64,
             c->peer->spec.name, scree__q(c->addr), c->id);
  for (fetch *f = c->p->fetches; f != NULL; f = f->next)
    if (f->peer == c->peer && f->state == F_WAIT_CONN && f->rc == 0) {
      f->conn = c;
      fetch_send_open(f);
    }
  scree__mirror_ready(c->p->mirror, (size_t)(c->peer - c->p->peers));
}

/* ---- owner side: leases and reads ------------------------------------------- */

static void owner_open_err(conn *c, uint64_t req, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An OPEN_ERR or WATCH_ERR (type) answering req. */
static void owner_send_err(conn *c, scree__pw_type type, uint64_t req, int code,
                           const char *text) {
  scree__pw_msg r;
  memset(&r, 0, sizeof(r));
  r.type = type;
  r.req = req;
  r.code = code;
  r.msg = text;
  r.msg_len = strlen(text);
  conn_send(c, &r);
}

static void owner_open_err(conn *c, uint64_t req, int code, const char *fmt, ...) {
  char text[SCREE__PW_MSG_MAX + 1];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  owner_send_err(c, SCREE__PW_OPEN_ERR, req, code, text);
}

static void owner_open(conn *c, uint64_t req, const char *name, int64_t wait_ms,
                       int64_t waited_ms);

/* The wait of a parked OPEN ended (store.h): a seal of its name, or its
 * deadline. The OPEN is answered now as if it had just come, without
 * waiting again. */
static void parked_done(void *arg, scree__session *sess, const scree__wait_end *end) {
  (void)sess;
  parked *pk = arg;
  conn *c = pk->c;
  parked_end(c, pk);
  if (!c->failed)
    owner_open(c, end->req_id, end->name, 0, end->rc == 0 ? -1 : end->wait_ms);
}

static void on_waits(uv_timer_t *t);

/* Arms the timer for the earliest deadline among the store's waiters
 * (the handler's Gets included: expiring theirs early is impossible, late
 * is what their own timer avoids). */
static void arm_waits(scree__peers *p) {
  uint64_t d = scree__store_wait_deadline(p->store);
  if (d == 0 || !p->handles_open)
    return;
  uint64_t now = scree__now_ns();
  uv_timer_start(&p->waits, on_waits, d > now ? (d - now + 999999) / 1000000 : 0, 0);
}

static void on_waits(uv_timer_t *t) {
  scree__peers *p = t->data;
  scree__store_wait_expire(p->store, scree__now_ns());
  arm_waits(p);
}

/* Parks OPEN req until a batch of name is sealed, or wait_ms (-1: no
 * limit but the connection's) has passed. */
static void owner_park(conn *c, uint64_t req, const char *name, int64_t wait_ms) {
  scree__peers *p = c->p;
  if (c->nparked >= MAX_PARKED_PER_CONN) {
    owner_open_err(c, req, SCREE_EBUSY,
                   "this peer has %u OPENs waiting here for their batch, the limit", c->nparked);
    return;
  }
  parked *pk = calloc(1, sizeof(*pk));
  scree__store_hooks hk = {.wait_done = parked_done, .arg = pk};
  if (pk != NULL)
    pk->sess = scree__session_open_own(p->store, (uint32_t)getuid(), (int32_t)getpid(), &hk);
  if (pk == NULL || pk->sess == NULL) {
    free(pk);
    owner_open_err(c, req, SCREE_ENOMEM, "out of host memory");
    return;
  }
  char err[256];
  if (wait_ms > SCREE__MAX_WAIT_MS)
    wait_ms = SCREE__MAX_WAIT_MS;
  int rc = scree__store_wait(p->store, pk->sess, name, req, wait_ms, err, sizeof(err));
  if (rc != 0) {
    scree__session_close(p->store, pk->sess);
    free(pk);
    owner_open_err(c, req, rc, "%s", err);
    return;
  }
  pk->c = c;
  pk->next = c->parked;
  if (c->parked)
    c->parked->prev = pk;
  c->parked = pk;
  c->nparked++;
  arm_waits(p);
  scree__log(SCREE__LOG_DEBUG, "peer_open_waits", "conn=%" PRIu64 " batch=%s wait_ms=%" PRId64,
             c->id, scree__q(name), wait_ms);
}

static void owner_on_open(conn *c, const scree__pw_msg *m) {
  char name[SCREE__PW_NAME_MAX + 1];
  memcpy(name, m->name, m->name_len);
  name[m->name_len] = '\0';
  char err[256];
  if (scree__name_check(name, err, sizeof(err)) != 0 || strlen(name) != m->name_len) {
    owner_open_err(c, m->req, SCREE_EINVAL, "bad batch name: %s", err);
    return;
  }
  owner_open(c, m->req, name, m->wait_ms, -1);
}

/* Answers OPEN req of name: OPEN_OK with a lease when its batch is sealed;
 * when it is missing or not sealed yet, parks the OPEN if wait_ms allows
 * (not 0), else OPEN_ERR. waited_ms (-1: none) is how long a parked OPEN
 * waited, for the message. */
static void owner_open(conn *c, uint64_t req, const char *name, int64_t wait_ms,
                       int64_t waited_ms) {
  scree__peers *p = c->p;
  if (p->path == PATH_NONE) {
    owner_open_err(c, req, SCREE_ENOTSUP,
                   "this screed serves GPU memory, which neither its UCX nor its memory"
                   " backend can move to peers");
    return;
  }
  scree__batch *b = scree__store_find(p->store, name);
  scree__batch_view v;
  if (b != NULL)
    scree__store_view(b, &v);
  if (b == NULL || !v.sealed) {
    if (wait_ms != 0) {
      owner_park(c, req, name, wait_ms);
      return;
    }
    char waited[64] = "";
    if (waited_ms >= 0)
      snprintf(waited, sizeof(waited), " (waited %" PRId64 " ms)", waited_ms);
    if (b == NULL)
      owner_open_err(c, req, SCREE_ENOENT, "no batch named '%s'%s", name, waited);
    else
      owner_open_err(c, req, SCREE_ESTATE, "batch '%s' is not sealed yet%s", name, waited);
    return;
  }
  if (c->nleases >= MAX_LEASES_PER_CONN) {
    owner_open_err(c, req, SCREE_EBUSY, "this peer holds %u leases here, the limit",
                   c->nleases);
    return;
  }
  lease *l = calloc(1, sizeof(*l));
  if (l == NULL) {
    owner_open_err(c, req, SCREE_ENOMEM, "out of host memory");
    return;
  }
  if (scree__store_pin(p->store, b) != 0) {
    free(l);
    owner_open_err(c, req, SCREE_EBUSY, "batch '%s' has too many leases", name);
    return;
  }
  /* The handle is all the peer gets: its READs name it, and only this
   * connection's leases are looked in, so a peer reads the batches it
   * opened, inside their bounds, and nothing after CLOSE. */
  l->b = b;
  l->handle = ++p->next_handle;
  l->next = c->leases;
  if (c->leases)
    c->leases->prev = l;
  c->leases = l;
  c->nleases++;
  p->served.leases++;
  p->served.opened++;

  scree__pw_msg r;
  memset(&r, 0, sizeof(r));
  r.type = SCREE__PW_OPEN_OK;
  r.req = req;
  r.handle = l->handle;
  r.desc = v.desc;
  r.values_bytes = v.values_bytes;
  r.offsets_bytes = v.offsets_bytes;
  /* A small batch on host memory goes with the answer: its block, from the
   * values to the end of the offsets (copied now, so that a CLOSE that
   * comes before UCX is done cannot free what it reads). */
  const uint64_t block = v.offsets_offset - v.values_offset + v.offsets_bytes;
  int rc;
  if (p->path == PATH_HOST && block <= INLINE_MAX && p->am_header_max >= OPEN_OK_MAX &&
      c->inline_pending + block <= INLINE_WINDOW)
    rc = conn_post_with(c, &r, 0, (const char *)v.mem->host_ptr + v.values_offset,
                        (size_t)block);
  else
    rc = conn_send(c, &r);
  scree__log(SCREE__LOG_DEBUG, "peer_lease", "conn=%" PRIu64 " batch=%s handle=%" PRIu64
             " bytes=%" PRIu64, c->id, scree__q(name), l->handle,
             v.values_bytes + v.offsets_bytes);
  if (rc != 0)
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST, "cannot send to %s", c->addr);
}

static void owner_on_close(conn *c, const scree__pw_msg *m) {
  for (lease *l = c->leases; l != NULL; l = l->next)
    if (l->handle == m->handle) {
      lease_end(c->p, c, l);
      return;
    }
  scree__log(SCREE__LOG_DEBUG, "peer_close_unknown", "conn=%" PRIu64 " handle=%" PRIu64,
             c->id, m->handle);
}

/* o is answered (or will never be): it stops counting against its
 * connection's reads at once, not in reap, so that a READ that arrives in
 * the same progress call as the completion is not refused; reap frees
 * it. */
static void answer_finish(answer *o) {
  o->state = O_DONE;
  if (o->counted && o->c != NULL)
    o->c->reads--;
  o->counted = 0;
}

static void answer_sent(void *req, ucs_status_t st, void *user_data) {
  answer *o = user_data;
  (void)st; /* a failed send means a failed connection, which its endpoint reports */
  answer_finish(o);
  ucp_request_free(req);
  kick(o->p);
}

/* Sends o's DATA: buf (length bytes, of memory type mt) with code 0, or
 * no bytes (buf NULL) with code and text. */
static void answer_send(answer *o, const void *buf, ucs_memory_type_t mt, int code,
                        const char *text) {
  scree__peers *p = o->p;
  conn *c = o->c;
  if (c == NULL || c->failed) {
    answer_finish(o);
    return;
  }
  scree__pw_msg d;
  memset(&d, 0, sizeof(d));
  d.type = SCREE__PW_DATA;
  d.req = o->req;
  d.handle = o->l->handle;
  d.region = o->region;
  d.offset = o->offset;
  d.length = o->length;
  d.code = buf != NULL ? 0 : code;
  if (buf == NULL) {
    d.msg = text;
    d.msg_len = strlen(text) < p->data_msg_max ? strlen(text) : p->data_msg_max;
  }
  o->hdr_len = scree__pw_encode(&d, o->hdr, sizeof(o->hdr));
  ucp_request_param_t prm;
  memset(&prm, 0, sizeof(prm));
  prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                     UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_MEMORY_TYPE;
  prm.cb.send = answer_sent;
  prm.user_data = o;
  /* REPLY: the fetcher tells its connections apart by the endpoint. The
   * protocol (eager or rendezvous) is left to UCX. */
  prm.flags = UCP_AM_SEND_FLAG_REPLY;
  prm.memory_type = mt;
  /* O_SENDING before the call: UCX may run answer_sent (O_DONE) inside it
   * and still return the request (see fetcher_on_data). */
  o->state = O_SENDING;
  ucs_status_ptr_t r = ucp_am_send_nbx(c->ep, AM_ID, o->hdr, o->hdr_len, buf,
                                       buf != NULL ? (size_t)o->length : 0, &prm);
  kick(p);
  if (r == NULL) {
    answer_finish(o);
  } else if (UCS_PTR_IS_ERR(r)) {
    answer_finish(o);
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST, "cannot send to %s: %s", c->addr,
                     ucs_status_string(UCS_PTR_STATUS(r)));
  }
}

static void answer_fail(answer *o, int code, const char *text) {
  scree__log(SCREE__LOG_WARN, "peer_read_failed", "conn=%" PRIu64 " handle=%" PRIu64
             " msg=%s", o->c ? o->c->id : 0, o->l->handle, scree__q(text));
  answer_send(o, NULL, UCS_MEMORY_TYPE_HOST, code, text);
}

/* A READ: checked against this connection's leases and limits (a peer
 * that asks for what it does not hold, or more at once than the protocol
 * allows, is refused), then answered at once, or once staged. */
static void owner_on_read(conn *c, const scree__pw_msg *m) {
  scree__peers *p = c->p;
  lease *l = c->leases;
  while (l != NULL && l->handle != m->handle)
    l = l->next;
  char why[160];
  if (l == NULL) {
    snprintf(why, sizeof(why), "read on handle %" PRIu64 ", which this peer does not hold",
             m->handle);
    owner_refuse(c, why);
    return;
  }
  scree__batch_view v;
  scree__store_view(l->b, &v);
  uint64_t size = m->region == SCREE__PW_REGION_VALUES ? v.values_bytes : v.offsets_bytes;
  uint64_t start = m->region == SCREE__PW_REGION_VALUES ? v.values_offset : v.offsets_offset;
  if (m->offset > size || m->length > size - m->offset) {
    snprintf(why, sizeof(why),
             "read of %" PRIu64 " bytes at %" PRIu64 " of a %" PRIu64 "-byte %s region",
             m->length, m->offset, size, region_name(m->region));
    owner_refuse(c, why);
    return;
  }
  if (c->reads >= SCREE__PW_READS_MAX) {
    snprintf(why, sizeof(why), "more than %d reads at once", SCREE__PW_READS_MAX);
    owner_refuse(c, why);
    return;
  }
  answer *o = calloc(1, sizeof(*o));
  if (o == NULL) {
    owner_refuse(c, "out of host memory for a read");
    return;
  }
  *o = (answer){.p = p, .c = c, .l = l, .req = m->req, .region = m->region,
                .offset = m->offset, .length = m->length, .arena_off = start + m->offset,
                .mem = v.mem, .counted = 1, .prev = p->answers_tail};
  c->reads++;
  l->refs++;
  SCREE__LIST_APPEND(p->answers, p->answers_tail, o);
  switch (p->path) {
  case PATH_HOST:
    answer_send(o, (const char *)v.mem->host_ptr + o->arena_off, UCS_MEMORY_TYPE_HOST, 0, NULL);
    break;
  case PATH_UCX_CUDA:
    answer_send(o, (const void *)(uintptr_t)(v.mem->dev_ptr + o->arena_off),
                UCS_MEMORY_TYPE_CUDA, 0, NULL);
    break;
  default:
    /* Staged: reap gives out stages in the order reads came, copies the
     * chunk out of the device and sends it from there. */
    o->state = O_WAIT_STAGE;
    kick(p);
    break;
  }
}

/* What callbacks left of the reads being answered: stages given out and
 * copies started and seen done (staged path), finished reads freed, and
 * leases that ended meanwhile unpinned once nothing reads them. */
static void reap_answers(scree__peers *p) {
  int stages_left = 1;
  for (answer *o = p->answers, *on; o != NULL; o = on) {
    on = o->next;
    char m[256];
    int rc;
    switch (o->state) {
    case O_WAIT_STAGE:
      if (o->c == NULL || o->c->failed) {
        answer_finish(o);
        break;
      }
      if (!stages_left)
        break;
      rc = stage_take(p, 0, &o->st, m, sizeof(m));
      if (rc != 0) {
        answer_fail(o, rc, m);
        break;
      }
      if (o->st == NULL) {
        stages_left = 0; /* later reads wait their turn */
        break;
      }
      rc = p->mem->ops->stage_copy(p->mem, o->st->st, o->mem, o->arena_off,
                                   (size_t)o->length, 1, m, sizeof(m));
      if (rc != 0) {
        answer_fail(o, rc, m);
        break;
      }
      o->state = O_COPYING;
      p->copies++;
      break;
    case O_COPYING:
      rc = p->mem->ops->stage_poll(p->mem, o->st->st, m, sizeof(m));
      if (rc == 0)
        break;
      p->copies--;
      if (rc < 0)
        answer_fail(o, rc, m);
      else
        answer_send(o, o->st->host, UCS_MEMORY_TYPE_HOST, 0, NULL);
      break;
    default:
      break;
    }
    if (o->state != O_DONE)
      continue;
    stage_give(o->st);
    lease *l = o->l;
    if (--l->refs == 0 && l->ended) {
      SCREE__LIST_REMOVE(p->ended, l);
      lease_free(p, l);
    }
    SCREE__LIST_REMOVE_TAIL(p->answers, p->answers_tail, o);
    free(o);
  }
}

/* ---- owner side: watches ----------------------------------------------------- */

/* Sends one EVENT of the watch whose WATCH was req; a sealed one carries
 * the batch's stamp (its creation time here), when it is still there. */
static int owner_send_event(conn *c, uint64_t req, uint64_t seq, int kind, const char *name) {
  scree__pw_msg m;
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_EVENT;
  m.req = req;
  m.seq = seq;
  m.kind = (uint8_t)kind;
  m.name = name;
  m.name_len = strlen(name);
  if (kind == SCREE__PW_EV_SEALED) {
    scree__batch *b = scree__store_find(c->p->store, name);
    if (b != NULL) {
      scree__batch_view v;
      scree__store_view(b, &v);
      if (v.sealed)
        m.stamp = v.created_ns;
    }
  }
  int rc = conn_post(c, &m, 1);
  if (rc != 0)
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST, "cannot send to %s", c->addr);
  return rc;
}

/* Sends what c's watches have to hand out, one event of each in turn,
 * while fewer than EVENT_WINDOW are on their way; the rest waits in the
 * store (reap comes back as sends complete). The end of a replay is
 * said with a synced event. */
static void owner_pump_events(conn *c) {
  for (int more = 1; more && !c->failed && c->events_inflight < EVENT_WINDOW;) {
    more = 0;
    for (pwatch *w = c->watches; w != NULL; w = w->next) {
      if (c->failed || c->events_inflight >= EVENT_WINDOW)
        break;
      int replaying = scree__store_watch_replaying(w->sess);
      scree__event ev;
      int got = scree__store_watch_next(c->p->store, w->sess, &ev);
      if (replaying && !scree__store_watch_replaying(w->sess) &&
          owner_send_event(c, w->req, 0, SCREE__PW_EV_SYNCED, "") != 0)
        break;
      if (!got)
        continue;
      if (owner_send_event(c, ev.req_id, ev.seq, ev.kind, ev.name) != 0)
        break;
      more = 1;
    }
  }
}

/* A watch had nothing to hand out and now has (store.h). */
static void pwatch_ready(void *arg, scree__session *sess) {
  (void)sess;
  pwatch *w = arg;
  owner_pump_events(w->c);
}

static void owner_watch_err(conn *c, uint64_t req, int code, const char *text) {
  owner_send_err(c, SCREE__PW_WATCH_ERR, req, code, text);
}

/* WATCH: the store's watch of the prefix, on a session of its own per
 * prefix (a WATCH of a prefix watched already restarts that watch). Seen
 * by the same rules as a local watcher's: the store's. */
static void owner_on_watch(conn *c, const scree__pw_msg *m) {
  scree__peers *p = c->p;
  char prefix[SCREE__PW_NAME_MAX + 1];
  if (m->name_len > 0)
    memcpy(prefix, m->name, m->name_len);
  prefix[m->name_len] = '\0';
  if (strlen(prefix) != m->name_len) {
    owner_watch_err(c, m->req, SCREE_EINVAL, "the watch prefix contains U+0000");
    return;
  }
  pwatch *w = c->watches;
  while (w != NULL && strcmp(w->prefix, prefix) != 0)
    w = w->next;
  int made = 0;
  if (w == NULL) {
    if (c->nwatches >= MAX_WATCHES_PER_CONN) {
      char text[128];
      snprintf(text, sizeof(text), "this peer holds %u watches here, the limit", c->nwatches);
      owner_watch_err(c, m->req, SCREE_EBUSY, text);
      return;
    }
    w = calloc(1, sizeof(*w));
    scree__store_hooks hk = {.watch_ready = pwatch_ready, .arg = w};
    if (w != NULL)
      w->sess = scree__session_open_own(p->store, (uint32_t)getuid(), (int32_t)getpid(), &hk);
    if (w == NULL || w->sess == NULL) {
      free(w);
      owner_watch_err(c, m->req, SCREE_ENOMEM, "out of host memory");
      return;
    }
    w->c = c;
    snprintf(w->prefix, sizeof(w->prefix), "%s", prefix);
    w->next = c->watches;
    if (c->watches)
      c->watches->prev = w;
    c->watches = w;
    c->nwatches++;
    made = 1;
  }
  int replay = (m->flags & SCREE__PW_WATCH_REPLAY) != 0;
  char err[256];
  int rc = scree__store_watch(p->store, w->sess, prefix, replay, m->req, err, sizeof(err));
  if (rc != 0) {
    if (made)
      pwatch_end(c, w);
    owner_watch_err(c, m->req, rc, err);
    return;
  }
  w->req = m->req;
  scree__log(SCREE__LOG_DEBUG, "peer_watch", "conn=%" PRIu64 " prefix=%s replay=%d", c->id,
             scree__q(prefix), replay);
  /* Without a replay there is nothing to replay: it has ended already. */
  if (!replay && owner_send_event(c, m->req, 0, SCREE__PW_EV_SYNCED, "") != 0)
    return;
  owner_pump_events(c);
}

/* ---- fetcher side ------------------------------------------------------------ */

static fetch *fetch_by_req(scree__peers *p, conn *c, uint64_t req) {
  for (fetch *f = p->fetches; f != NULL; f = f->next)
    if (f->conn == c && f->wire_req == req && f->state == F_OPEN_SENT)
      return f;
  return NULL;
}

static void send_close(conn *c, uint64_t handle) {
  if (c == NULL || c->failed || c->state != C_READY)
    return;
  scree__pw_msg m;
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_CLOSE;
  m.handle = handle;
  conn_send(c, &m);
}

static void fetch_arm(fetch *f) {
  uint64_t now = scree__now_ns();
  uint64_t at = f->deadline_ns;
  uint64_t ms = at > now ? (at - now + 999999) / 1000000 : 0;
  uv_timer_start(&f->timer, fetch_timer, ms, 0);
}

static void fetch_send_open(fetch *f) {
  scree__pw_msg m;
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_OPEN;
  f->wire_req = ++f->p->next_wire_req;
  m.req = f->wire_req;
  m.name = f->name;
  m.name_len = strlen(f->name);
  if (f->wait_until_ns != 0) {
    /* The owner keeps the OPEN until the batch is sealed or this wait
     * ends, and answers then: no asking again. The wait is cut to the
     * fetch's deadline and a little more, so that the fetch's own timeout
     * comes first when the wait would outlast it. */
    uint64_t now = scree__now_ns();
    uint64_t until = f->wait_until_ns;
    if (until > f->deadline_ns + WAIT_GRACE_MS * 1000000ull)
      until = f->deadline_ns + WAIT_GRACE_MS * 1000000ull;
    m.wait_ms = until > now ? (int64_t)((until - now + 999999) / 1000000) : 0;
  }
  f->state = F_OPEN_SENT;
  if (conn_send(f->conn, &m) != 0)
    conn_mark_failed(f->conn, SCREE_EIO, SCREE__FETCH_FAIL_LOST, "peer '%s' at %s: cannot send",
                     f->peer->spec.name, f->conn->addr);
}

/* Where a read's bytes go in the reservation: the byte offset into its
 * arena. */
static uint64_t ask_arena_off(const fetch *f, const ask *r) {
  return f->region_start[r->region] + r->offset;
}

/* Asks for the next chunks of f while its connection's window (and, on
 * the staged path, a stage for each) allows. */
static void fetch_pump(fetch *f) {
  scree__peers *p = f->p;
  conn *c = f->conn;
  for (;;) {
    /* Past the regions already asked for in full (or empty). */
    while (f->next_region < 2 && f->next_offset >= f->region_bytes[f->next_region]) {
      f->next_region++;
      f->next_offset = 0;
    }
    if (f->state != F_READING || f->rc != 0 || c == NULL || c->failed || f->next_region >= 2 ||
        c->reads >= WINDOW)
      return;
    uint64_t size = f->region_bytes[f->next_region];
    uint64_t len = size - f->next_offset < CHUNK ? size - f->next_offset : CHUNK;
    stage *st = NULL;
    if (p->path == PATH_STAGED) {
      char m[256];
      int rc = stage_take(p, 1, &st, m, sizeof(m));
      if (rc != 0) {
        fetch_fail(f, rc, SCREE__FETCH_FAIL_LOCAL, "fetching '%s' from peer '%s': %s", f->name,
                   f->peer->spec.name, m);
        return;
      }
      if (st == NULL)
        return; /* a stage comes free when a copy ends; reap pumps again */
    }
    ask *r = calloc(1, sizeof(*r));
    if (r == NULL) {
      stage_give(st);
      fetch_fail(f, SCREE_ENOMEM, SCREE__FETCH_FAIL_LOCAL, "out of host memory");
      return;
    }
    r->f = f;
    r->c = c;
    r->req = ++p->next_wire_req;
    r->handle = f->handle;
    r->region = (uint8_t)f->next_region;
    r->offset = f->next_offset;
    r->length = len;
    r->state = R_ASKED;
    r->st = st;
    r->windowed = 1;
    r->prev = p->asks_tail;
    SCREE__LIST_APPEND(p->asks, p->asks_tail, r);
    f->asked++;
    c->reads++;
    f->next_offset += len;
    scree__pw_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SCREE__PW_READ;
    m.req = r->req;
    m.handle = r->handle;
    m.region = r->region;
    m.offset = r->offset;
    m.length = r->length;
    if (conn_send(c, &m) != 0) {
      /* The read goes with the connection. */
      conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST, "peer '%s' at %s: cannot send",
                       f->peer->spec.name, c->addr);
      return;
    }
  }
}

/* OPEN_OK for one of our fetches: reserves the local batch and asks for its
 * bytes, or, when the owner sent the block with the answer (data, length;
 * data NULL when it did not), writes them in and completes. */
static void fetcher_on_open_ok(conn *c, const scree__pw_msg *m, const void *data,
                               size_t length) {
  scree__peers *p = c->p;
  fetch *f = fetch_by_req(p, c, m->req);
  if (f == NULL) {
    /* The fetch ended meanwhile (timed out): end the lease it got. */
    send_close(c, m->handle);
    return;
  }
  f->have_handle = 1;
  f->handle = m->handle;
  scree_array d = m->desc;
  uint64_t vb, ob;
  char err[256];
  if (scree_array_check_desc(&d, &vb, &ob, err, sizeof(err)) != 0 || vb != m->values_bytes ||
      ob != m->offsets_bytes) {
    fetch_fail(f, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID,
               "peer '%s' described '%s' inconsistently: %s", f->peer->spec.name, f->name,
               vb != m->values_bytes || ob != m->offsets_bytes ? "sizes do not match" : err);
    return;
  }
  if (f->sess == NULL) {
    fetch_fail(f, SCREE_EAGAIN, SCREE__FETCH_FAIL_OTHER, "the client went away");
    return;
  }
  if (scree__store_find(p->store, f->as_name) != NULL) {
    fetch_fail(f, SCREE_EEXIST, SCREE__FETCH_FAIL_LOCAL, "batch '%s' already exists here",
               f->as_name);
    return;
  }
  d.max_length = 0;
  char msg[512];
  int rc = scree__store_reserve(p->store, f->sess, f->as_name, &d, &f->out, msg, sizeof(msg));
  if (rc != 0) {
    f->out = NULL;
    fetch_fail(f, rc, SCREE__FETCH_FAIL_LOCAL, "fetching '%s' from peer '%s': %s", f->name,
               f->peer->spec.name, msg);
    return;
  }
  scree__batch_view v;
  scree__store_view(f->out, &v);
  f->region_bytes[SCREE__PW_REGION_VALUES] = vb;
  f->region_bytes[SCREE__PW_REGION_OFFSETS] = ob;
  f->region_start[SCREE__PW_REGION_VALUES] = v.values_offset;
  f->region_start[SCREE__PW_REGION_OFFSETS] = v.offsets_offset;
  f->next_region = 0;
  f->next_offset = 0;
  f->state = F_READING;
  f->bytes = vb + ob;
  if (data != NULL) {
    /* The block as the owner lays it out, the same rule as here: values,
     * padding to the offsets' 256-byte boundary, offsets. Checked, then
     * written through the backend (a pageable copy on a GPU, fenced before
     * the seal); nothing is asked. */
    const uint64_t pad = v.offsets_offset - v.values_offset;
    if (length != pad + ob) {
      fetch_fail(f, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID,
                 "peer '%s' sent %zu bytes with '%s', whose block is %" PRIu64 " bytes",
                 f->peer->spec.name, length, f->name, pad + ob);
      return;
    }
    scree__mem *mem = scree__store_mem(p->store);
    rc = mem->ops->write(mem, v.mem, v.values_offset, data, (size_t)vb, msg, sizeof(msg));
    if (rc == 0)
      rc = mem->ops->write(mem, v.mem, v.offsets_offset, (const char *)data + pad, (size_t)ob,
                           msg, sizeof(msg));
    if (rc != 0) {
      fetch_fail(f, rc, SCREE__FETCH_FAIL_LOCAL, "fetching '%s' from peer '%s': %s", f->name,
                 f->peer->spec.name, msg);
      return;
    }
    f->next_region = 2; /* all here: reap completes it */
    kick(p);
    return;
  }
  fetch_pump(f);
  kick(p); /* a batch with no bytes at all completes in reap */
}

static ask *ask_by_req(scree__peers *p, conn *c, uint64_t req) {
  for (ask *r = p->asks; r != NULL; r = r->next)
    if (r->c == c && r->req == req && r->state == R_ASKED)
      return r;
  return NULL;
}

/* r's bytes are all here, or will never come: it leaves the window. */
static void ask_unwindow(ask *r) {
  if (r->windowed && r->c != NULL)
    r->c->reads--;
  r->windowed = 0;
}

static void ask_free(scree__peers *p, ask *r) {
  ask_unwindow(r);
  stage_give(r->st);
  SCREE__LIST_REMOVE_TAIL(p->asks, p->asks_tail, r);
  free(r);
}

static void ask_recv_done(void *req, ucs_status_t st, size_t length, void *user_data) {
  ask *r = user_data;
  r->recv_req = NULL;
  r->status = st == UCS_OK && length != r->length ? UCS_ERR_MESSAGE_TRUNCATED : st;
  r->state = R_RECEIVED;
  ask_unwindow(r);
  ucp_request_free(req);
  kick(r->f->p);
}

/* Gives up a receive from a connection that is gone (asks_lost): UCX
 * calls nothing for it any more, and reap goes on as for a failed one. */
static void ask_abandon(ask *r) {
  scree__log(SCREE__LOG_INFO, "peer_receive_given_up",
             "batch=%s bytes=%" PRIu64 " msg=\"UCX did not end it after its connection closed\"",
             r->f != NULL ? scree__q(r->f->name) : "\"\"", r->length);
  ucp_request_free(r->recv_req);
  r->recv_req = NULL;
  r->status = UCS_ERR_CONNECTION_RESET;
  r->state = R_RECEIVED;
  ask_unwindow(r);
}

/* A DATA: the answer to one of our READs on c, checked against what was
 * asked before a byte of it is written anywhere, then received into the
 * reservation (or the read's stage) at the place the READ named. A DATA
 * nobody asked for refuses the connection; one that does not match its
 * READ fails that fetch. data is UCX's: bytes, or a rendezvous
 * descriptor. */
static void fetcher_on_data(conn *c, const scree__pw_msg *m, void *data, size_t length,
                            int rndv) {
  scree__peers *p = c->p;
  ask *r = ask_by_req(p, c, m->req);
  if (r == NULL) {
    conn_mark_failed(c, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID,
                     "peer '%s' at %s sent data that was never asked for", c->peer->spec.name,
                     c->addr);
    return;
  }
  fetch *f = r->f;
  if (f == NULL) {
    /* Its fetch ended meanwhile: the bytes are not wanted. */
    ask_free(p, r);
    kick(p);
    return;
  }
  f->asked--;
  const ask want = *r; /* for the messages below, after r is freed */
  if (m->handle != want.handle || m->region != want.region || m->offset != want.offset ||
      m->length != want.length) {
    ask_free(p, r);
    fetch_fail(f, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID,
               "peer '%s' answered a read of %" PRIu64 " bytes at %" PRIu64 " of the %s of"
               " '%s' with data for %" PRIu64 " bytes at %" PRIu64 " of the %s of handle %"
               PRIu64,
               f->peer->spec.name, want.length, want.offset, region_name(want.region), f->name,
               m->length, m->offset, region_name(m->region), m->handle);
    return;
  }
  if (m->code != 0) {
    char text[SCREE__PW_MSG_MAX + 1];
    sanitize(m->msg, m->msg_len, text, sizeof(text));
    int code = scree_err_known(m->code) ? m->code : SCREE_EPROTO;
    ask_free(p, r);
    fetch_fail(f, code, SCREE__FETCH_FAIL_REMOTE, "peer '%s' could not read '%s': %s",
               f->peer->spec.name, f->name, text);
    return;
  }
  if (length != want.length) {
    ask_free(p, r);
    fetch_fail(f, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID,
               "peer '%s' sent %zu bytes for a read of %" PRIu64 " of '%s'", f->peer->spec.name,
               length, want.length, f->name);
    return;
  }
  scree__batch_view v;
  scree__store_view(f->out, &v);
  uint64_t at = ask_arena_off(f, r);
  f->outstanding++;
  r->state = R_RECEIVED;
  r->status = UCS_OK;
  if (!rndv) {
    /* Eager: the bytes are here now, in UCX's buffer. */
    if (p->path == PATH_STAGED) {
      memcpy(r->st->host, data, length);
    } else if (p->path == PATH_UCX_CUDA) {
      char err[256];
      if (p->mem->ops->write(p->mem, v.mem, at, data, length, err, sizeof(err)) != 0)
        fetch_note_error(f, SCREE_ECUDA, SCREE__FETCH_FAIL_LOCAL, "%s", err);
    } else {
      memcpy((char *)v.mem->host_ptr + at, data, length);
    }
    ask_unwindow(r);
    kick(p);
    return;
  }
  void *dst;
  ucs_memory_type_t mt = UCS_MEMORY_TYPE_HOST;
  if (p->path == PATH_STAGED) {
    dst = r->st->host;
  } else if (p->path == PATH_UCX_CUDA) {
    dst = (void *)(uintptr_t)(v.mem->dev_ptr + at);
    mt = UCS_MEMORY_TYPE_CUDA;
  } else {
    dst = (char *)v.mem->host_ptr + at;
  }
  ucp_request_param_t prm;
  memset(&prm, 0, sizeof(prm));
  prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                     UCP_OP_ATTR_FIELD_MEMORY_TYPE;
  prm.cb.recv_am = ask_recv_done;
  prm.user_data = r;
  prm.memory_type = mt;
  /* R_RECEIVING before the call: a rendezvous that fails at its start (its
   * endpoint already failed) completes inside ucp_am_recv_data_nbx, whose
   * callback (ask_recv_done: R_RECEIVED, the request freed) then runs
   * before the call returns the request, which must not be kept. */
  r->state = R_RECEIVING;
  r->recv_req = NULL;
  ucs_status_ptr_t q = ucp_am_recv_data_nbx(p->worker, data, dst, length, &prm);
  if (UCS_PTR_IS_ERR(q) || q == NULL) {
    /* Failed, or done at once (no callback then). */
    r->status = UCS_PTR_STATUS(q);
    r->state = R_RECEIVED;
    ask_unwindow(r);
  } else if (r->state == R_RECEIVING) {
    r->recv_req = q; /* under way: ask_recv_done takes it out of the window */
  }
  kick(p);
}

/* What callbacks left of our reads: received bytes copied out of their
 * stage (staged path) and, once there, counted done; failures noted on
 * their fetch. */
static void reap_asks(scree__peers *p) {
  uint64_t now = scree__now_ns();
  for (ask *r = p->asks, *rn; r != NULL; r = rn) {
    rn = r->next;
    if (r->state == R_RECEIVING && r->abandon_ns != 0 && now >= r->abandon_ns)
      ask_abandon(r);
    if (r->state != R_RECEIVED && r->state != R_COPYING)
      continue;
    fetch *f = r->f;
    char m[256];
    int rc;
    if (r->state == R_RECEIVED) {
      if (r->status != UCS_OK) {
        fetch_note_error(f, SCREE_EIO, SCREE__FETCH_FAIL_LOST,
                         "peer '%s': receiving '%s' failed: %s", f->peer->spec.name, f->name,
                         ucs_status_string(r->status));
      } else if (p->path == PATH_STAGED && f->rc == 0) {
        scree__batch_view v;
        scree__store_view(f->out, &v);
        rc = p->mem->ops->stage_copy(p->mem, r->st->st, v.mem, ask_arena_off(f, r),
                                     (size_t)r->length, 0, m, sizeof(m));
        if (rc == 0) {
          r->state = R_COPYING;
          p->copies++;
          continue;
        }
        fetch_note_error(f, rc, SCREE__FETCH_FAIL_LOCAL, "%s", m);
      }
    } else {
      rc = p->mem->ops->stage_poll(p->mem, r->st->st, m, sizeof(m));
      if (rc == 0)
        continue;
      p->copies--;
      if (rc < 0)
        fetch_note_error(f, rc, SCREE__FETCH_FAIL_LOCAL, "%s", m);
    }
    f->outstanding--;
    ask_free(p, r);
  }
}

static void fetcher_on_open_err(conn *c, const scree__pw_msg *m) {
  scree__peers *p = c->p;
  fetch *f = fetch_by_req(p, c, m->req);
  if (f == NULL)
    return;
  char text[SCREE__PW_MSG_MAX + 1];
  sanitize(m->msg, m->msg_len, text, sizeof(text));
  int code = m->code < 0 && scree_err_known(m->code) ? m->code : SCREE_EPROTO;
  fetch_fail(f, code, SCREE__FETCH_FAIL_REMOTE, "peer '%s': %s", f->peer->spec.name, text);
}

/* Called once the reads are all done and nothing failed: checks the
 * offsets, names and seals the batch. */
static void fetch_complete(fetch *f) {
  scree__peers *p = f->p;
  int64_t max_length = 0;
  char msg[512];
  /* Bytes written through the backend (eager DATA on the ucx-cuda path)
   * may still be landing: a pageable copy to a GPU returns once staged. */
  scree__mem *mem = scree__store_mem(p->store);
  int rc = mem->ops->fence != NULL ? mem->ops->fence(mem, msg, sizeof(msg)) : 0;
  if (rc != 0) {
    fetch_fail(f, rc, SCREE__FETCH_FAIL_LOCAL, "%s", msg);
    return;
  }
  rc = scree__store_check_offsets(p->store, f->out, &max_length, msg, sizeof(msg));
  if (rc != 0) {
    fetch_fail(f, rc, SCREE__FETCH_FAIL_INVALID, "peer '%s' sent bad bytes: %s",
               f->peer->spec.name, msg);
    return;
  }
  scree__batch_view v;
  rc = scree__store_publish(p->store, f->out, max_length, &v, msg, sizeof(msg));
  if (rc != 0) {
    fetch_fail(f, rc, SCREE__FETCH_FAIL_LOCAL, "%s", msg);
    return;
  }
  f->out = NULL;
  f->state = F_SETTLING;
  f->peer->counts.batches++;
  f->peer->counts.bytes += f->bytes;
  uint64_t elapsed = scree__now_ns() - f->start_ns;
  scree__log(SCREE__LOG_INFO, "fetched",
             "peer=%s batch=%s as=%s bytes=%" PRIu64 " ms=%.3f", f->peer->spec.name,
             scree__q(f->name), scree__q(f->as_name), f->bytes, (double)elapsed / 1e6);
  if (!f->replied) {
    f->replied = 1;
    if (f->sess != NULL) {
      scree__session_set_fetch(f->sess, NULL);
      scree__fetch_result res = {
          .rc = 0, .msg = "", .out = &v, .bytes = f->bytes, .elapsed_ns = elapsed};
      f->cb(f->cb_arg, f->sess, f->id, &res);
    }
  }
  fetch_settle(f);
}

static void fetch_reply_error(fetch *f) {
  if (f->replied)
    return;
  f->replied = 1;
  f->peer->counts.failures[f->cause]++;
  scree__log(SCREE__LOG_INFO, "fetch_failed", "peer=%s batch=%s cause=%s code=%s msg=%s",
             f->peer->spec.name, scree__q(f->name), scree__fetch_fail_name(f->cause),
             scree_err_name(f->rc), scree__q(f->msg));
  if (f->sess != NULL) {
    scree__session_set_fetch(f->sess, NULL);
    scree__fetch_result res = {.rc = f->rc, .msg = f->msg};
    f->cb(f->cb_arg, f->sess, f->id, &res);
  }
}

static void fetch_closed(uv_handle_t *h) { free(h->data); }

/* Gives up the reads of f still waiting for their DATA: when it comes, it
 * is dropped (fetcher_on_data). */
static void fetch_detach_reads(fetch *f) {
  for (ask *r = f->p->asks; r != NULL && f->asked > 0; r = r->next)
    if (r->f == f && r->state == R_ASKED) {
      r->f = NULL;
      f->asked--;
    }
}

/* Ends a fetch that failed or completed, once nothing writes into its
 * reservation: the reservation (if not published) goes, the remote lease
 * ends, the client hears (if it has not), and the fetch is freed. */
static void fetch_settle(fetch *f) {
  if (f->settled)
    return;
  if (f->outstanding > 0) {
    f->state = F_SETTLING;
    return;
  }
  scree__peers *p = f->p;
  fetch_detach_reads(f);
  if (f->out != NULL) {
    scree__store_discard(p->store, f->out);
    f->out = NULL;
  }
  if (f->have_handle) {
    send_close(f->conn, f->handle);
    f->have_handle = 0;
  }
  fetch_reply_error(f);
  SCREE__LIST_REMOVE(p->fetches, f);
  f->prev = f->next = NULL;
  f->state = F_SETTLING;
  f->settled = 1; /* off the list; freed when its timer has closed */
  uv_close((uv_handle_t *)&f->timer, fetch_closed);
}

static void fetch_vrecord(fetch *f, int rc, int cause, const char *fmt, va_list ap) {
  if (f->rc != 0)
    return;
  f->rc = rc;
  f->cause = cause;
  vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
}

/* Fails f where receives or copies may still write into its reservation:
 * the client hears now, the memory goes when they end (reap settles it). */
static void fetch_note_error(fetch *f, int rc, int cause, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fetch_vrecord(f, rc, cause, fmt, ap);
  va_end(ap);
  fetch_detach_reads(f);
  fetch_reply_error(f);
  f->state = F_SETTLING;
  kick(f->p);
}

static void fetch_fail(fetch *f, int rc, int cause, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fetch_vrecord(f, rc, cause, fmt, ap);
  va_end(ap);
  if (f->outstanding > 0) {
    fetch_detach_reads(f);
    fetch_reply_error(f);
    f->state = F_SETTLING;
    return;
  }
  fetch_settle(f);
}

static void fetch_timer(uv_timer_t *t) {
  fetch *f = t->data;
  uint64_t now = scree__now_ns();
  if (f->state == F_SETTLING)
    return;
  if (now >= f->deadline_ns) {
    int reading = f->state == F_READING && (f->outstanding > 0 || f->asked > 0);
    conn *c = f->conn;
    fetch_fail(f, SCREE_ETIMEDOUT, SCREE__FETCH_FAIL_TIMEOUT,
               "fetching '%s' from peer '%s' timed out after %.1f s%s", f->name,
               f->peer->spec.name, (double)(now - f->start_ns) / 1e9,
               f->state == F_WAIT_CONN ? " (no authenticated connection)" : "");
    /* Reads that did not finish in time may never finish: the connection
     * is dropped, which ends or gives them up (asks_lost), so the
     * reservation can go and the connection's window is not held by
     * answers that never come. */
    if (reading && c != NULL)
      conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST,
                       "peer '%s': connection dropped after a fetch timed out",
                       f->peer->spec.name);
    return;
  }
  fetch_arm(f);
}

/* ---- messages -------------------------------------------------------------- */

static void on_message(conn *c, const void *data, size_t len) {
  scree__pw_msg m;
  char err[256];
  if (scree__pw_decode(data, len, &m, err, sizeof(err)) != 0) {
    if (c->owner)
      owner_refuse(c, err);
    else
      conn_mark_failed(c, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID, "peer '%s' at %s: %s",
                       c->peer->spec.name, c->addr, err);
    return;
  }
  if (c->owner) {
    switch (c->state) {
    case C_AWAIT_HELLO:
      if (m.type == SCREE__PW_HELLO)
        return owner_on_hello(c, &m);
      break;
    case C_AWAIT_PROOF:
      if (m.type == SCREE__PW_PROOF)
        return owner_on_proof(c, &m);
      break;
    case C_READY:
      if (m.type == SCREE__PW_OPEN)
        return owner_on_open(c, &m);
      if (m.type == SCREE__PW_CLOSE)
        return owner_on_close(c, &m);
      if (m.type == SCREE__PW_WATCH)
        return owner_on_watch(c, &m);
      if (m.type == SCREE__PW_READ)
        return owner_on_read(c, &m);
      break;
    default:
      break;
    }
    char why[96];
    snprintf(why, sizeof(why), "unexpected %s message", scree__pw_type_name(m.type));
    owner_refuse(c, why);
    return;
  }
  switch (c->state) {
  case C_HELLO_SENT:
    if (m.type == SCREE__PW_CHALLENGE)
      return fetcher_on_challenge(c, &m);
    if (m.type == SCREE__PW_DENIED) {
      /* Before any proof: the owner refused the hello itself, which a
       * screed does for a peer protocol version it does not speak. */
      scree__log(SCREE__LOG_WARN, "peer_denied_us", "peer=%s addr=%s reason=%s",
                 c->peer->spec.name, scree__q(c->addr), scree__q("hello refused"));
      conn_mark_failed(c, SCREE_EPROTO, SCREE__FETCH_FAIL_AUTH,
                       "peer '%s' at %s refused this screed's hello (does it speak peer"
                       " protocol version %d? its log says why)",
                       c->peer->spec.name, c->addr, SCREE__PW_VERSION);
      return;
    }
    break;
  case C_PROOF_SENT:
    if (m.type == SCREE__PW_WELCOME)
      return fetcher_on_welcome(c);
    if (m.type == SCREE__PW_DENIED) {
      scree__log(SCREE__LOG_WARN, "peer_denied_us", "peer=%s addr=%s", c->peer->spec.name,
                 scree__q(c->addr));
      conn_mark_failed(c, SCREE_EACCES, SCREE__FETCH_FAIL_AUTH,
                       "peer '%s' at %s refused this screed's proof of the shared secret (is"
                       " --peer-secret-file the same on both?)",
                       c->peer->spec.name, c->addr);
      return;
    }
    break;
  case C_READY:
    if (m.type == SCREE__PW_OPEN_OK)
      return fetcher_on_open_ok(c, &m, NULL, 0);
    if (m.type == SCREE__PW_OPEN_ERR)
      return fetcher_on_open_err(c, &m);
    if ((m.type == SCREE__PW_EVENT || m.type == SCREE__PW_WATCH_ERR) &&
        scree__mirror_message(c->p->mirror, (size_t)(c->peer - c->p->peers), &m) == 0)
      return;
    break;
  default:
    break;
  }
  conn_mark_failed(c, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID,
                   "peer '%s' at %s sent an unexpected %s message", c->peer->spec.name,
                   c->addr, scree__pw_type_name(m.type));
}

/* Messages on any other id: only a stranger sends them. UCX 1.13 crashes
 * (ucp_am_handler_reply) on a message for an id without a handler that
 * asks for a reply endpoint, so every id gets this handler, which refuses
 * the sender's connection. */
static ucs_status_t am_other_cb(void *arg, const void *header, size_t header_length,
                                void *data, size_t length, const ucp_am_recv_param_t *param) {
  scree__peers *p = arg;
  (void)header, (void)header_length, (void)data, (void)length;
  if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP))
    return UCS_OK;
  conn *c = conn_by_ep(p, param->reply_ep);
  if (c == NULL || c->failed)
    return UCS_OK;
  if (c->owner)
    owner_refuse(c, "message on an unknown active-message id");
  else
    conn_mark_failed(c, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID,
                     "peer '%s' sent a message on an unknown id", c->peer->spec.name);
  return UCS_OK;
}

static ucs_status_t am_cb(void *arg, const void *header, size_t header_length, void *data,
                          size_t length, const ucp_am_recv_param_t *param) {
  scree__peers *p = arg;
  if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP))
    return UCS_OK; /* no endpoint to tell it by: not one of ours */
  conn *c = conn_by_ep(p, param->reply_ep);
  if (c == NULL || c->failed)
    return UCS_OK;
  int rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  if (header_length != 0) {
    /* Only a DATA, or an OPEN_OK that brings a small batch (eager), comes
     * with a header (itself) and bytes, and only from an owner we asked,
     * after the handshake. Its bytes are taken only once the header has
     * been checked; otherwise returning UCS_OK drops them, rendezvous ones
     * unread. */
    scree__pw_msg m;
    char err[256];
    if (c->owner) {
      owner_refuse(c, "a message with data from a fetcher");
      return UCS_OK;
    }
    if (c->state != C_READY || header_length > SCREE__PW_MAX ||
        scree__pw_decode(header, header_length, &m, err, sizeof(err)) != 0 ||
        (m.type != SCREE__PW_DATA && m.type != SCREE__PW_OPEN_OK) ||
        (m.type == SCREE__PW_OPEN_OK && (rndv || length > SCREE__PW_INLINE_MAX))) {
      conn_mark_failed(c, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID,
                       "peer '%s' sent a malformed data message", c->peer->spec.name);
      return UCS_OK;
    }
    if (m.type == SCREE__PW_OPEN_OK)
      fetcher_on_open_ok(c, &m, data, length);
    else
      fetcher_on_data(c, &m, data, length, rndv);
    return UCS_OK;
  }
  if (rndv || length > SCREE__PW_MAX) {
    /* Every other peer message is small and eager; anything else is not
     * from a screed, and its data is never fetched. */
    if (c->owner)
      owner_refuse(c, "malformed active message");
    else
      conn_mark_failed(c, SCREE_EPROTO, SCREE__FETCH_FAIL_INVALID,
                       "peer '%s' sent a malformed message", c->peer->spec.name);
    return UCS_OK;
  }
  on_message(c, data, length);
  return UCS_OK;
}

/* ---- the listener ------------------------------------------------------------ */

static void conn_request_cb(ucp_conn_request_h req, void *arg) {
  scree__peers *p = arg;
  if (p->shutting_down || p->npending + p->nunauth >= MAX_UNAUTH) {
    p->served.refused++;
    ucp_listener_reject(p->listener, req);
    if (refused_log_ok(p))
      scree__log(SCREE__LOG_WARN, "peer_refused", "reason=%s",
                 scree__q(p->shutting_down ? "shutting down"
                                           : "too many connections waiting to authenticate"));
    return;
  }
  p->pending[p->npending++] = req;
  kick(p);
}

static void sockaddr_str(const struct sockaddr_storage *sa, char *out, size_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
  } else if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof(host));
    port = ntohs(in->sin6_port);
  }
  snprintf(out, len, "%s:%u", host, port);
}

static void accept_pending(scree__peers *p) {
  for (uint32_t i = 0; i < p->npending; i++) {
    ucp_conn_request_h req = p->pending[i];
    conn *c = conn_new(p, 1);
    if (c == NULL) {
      ucp_listener_reject(p->listener, req);
      continue;
    }
    c->state = C_AWAIT_HELLO;
    p->nunauth++;
    ucp_conn_request_attr_t ra;
    memset(&ra, 0, sizeof(ra));
    ra.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
    if (ucp_conn_request_query(req, &ra) == UCS_OK)
      sockaddr_str(&ra.client_address, c->addr, sizeof(c->addr));
    else
      snprintf(c->addr, sizeof(c->addr), "?");
    ucp_ep_params_t ep;
    memset(&ep, 0, sizeof(ep));
    ep.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.conn_request = req;
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = ep_err_cb;
    ep.err_handler.arg = c;
    ucs_status_t st = ucp_ep_create(p->worker, &ep, &c->ep);
    if (st != UCS_OK) {
      c->ep = NULL;
      if (refused_log_ok(p))
        scree__log(SCREE__LOG_WARN, "peer_accept_failed", "addr=%s error=%s",
                   scree__q(c->addr), scree__q(ucs_status_string(st)));
      conn_destroy(c);
      continue;
    }
    scree__log(SCREE__LOG_DEBUG, "peer_conn", "conn=%" PRIu64 " addr=%s", c->id,
               scree__q(c->addr));
  }
  p->npending = 0;
}

/* ---- driving the worker -------------------------------------------------------- */

/* What callbacks deferred: new connections, failed connections, reads
 * received, sent or copied, fetches that can ask for more or are done. */
static void reap(scree__peers *p) {
  accept_pending(p);
  uint64_t now = scree__now_ns();
  for (conn *c = p->conns, *next; c != NULL; c = next) {
    next = c->next;
    if (!c->failed && c->state != C_READY && now - c->start_ns > HANDSHAKE_MS * 1000000ull) {
      if (c->owner)
        owner_refuse(c, "no proof of the shared secret within 10 s");
      else
        conn_mark_failed(c, SCREE_ETIMEDOUT, SCREE__FETCH_FAIL_UNREACHABLE,
                         "peer '%s' at %s did not complete the handshake within 10 s",
                         c->peer->spec.name, c->addr);
    }
    if (!c->failed)
      continue;
    if (c->owner && !c->gone && !p->shutting_down) {
      /* Refused (or failed) while the remote still holds its endpoint:
       * mute it, end its leases, and close it when the remote goes. */
      if (!c->muted) {
        c->muted = 1;
        c->muted_ns = now;
        conn_end_served(c);
        continue;
      }
      if (now - c->muted_ns < MUTE_MS * 1000000ull)
        continue;
    }
    if (!c->owner) {
      /* Every fetch on this connection (or waiting for it) fails with its
       * reason; reads in flight end with the close below. */
      for (fetch *f = p->fetches, *fn; f != NULL; f = fn) {
        fn = f->next;
        if (f->conn == c || (f->peer == c->peer && f->state == F_WAIT_CONN &&
                             c->peer->conn == c))
          fetch_fail(f, c->fail_rc, c->fail_cause, "%s", c->fail_msg);
      }
      scree__log(c->was_ready ? SCREE__LOG_WARN : SCREE__LOG_INFO, "peer_down",
                 "peer=%s addr=%s msg=%s", c->peer->spec.name, scree__q(c->addr),
                 scree__q(c->fail_msg));
    } else {
      scree__log(SCREE__LOG_DEBUG, "peer_conn_closed", "conn=%" PRIu64 " addr=%s msg=%s",
                 c->id, scree__q(c->addr), scree__q(c->fail_msg));
    }
    conn_destroy(c);
  }
  reap_answers(p);
  reap_asks(p);
  for (fetch *f = p->fetches, *fn; f != NULL; f = fn) {
    fn = f->next;
    if (f->state == F_READING && f->rc == 0)
      fetch_pump(f);
    if (f->outstanding != 0)
      continue; /* receives end, or are given up with their connection */
    if (f->state == F_SETTLING || (f->state == F_READING && f->rc != 0))
      fetch_settle(f);
    else if (f->state == F_READING && f->next_region >= 2 && f->asked == 0)
      fetch_complete(f);
  }
  /* Watches whose events waited for room in the window. */
  for (conn *c = p->conns; c != NULL; c = c->next)
    if (c->watches != NULL && !c->failed)
      owner_pump_events(c);
  copies_changed(p);
}

static void on_idle(uv_idle_t *h);

static void pump(scree__peers *p) {
  if (p->pumping || p->worker == NULL)
    return;
  p->pumping = 1;
  for (int round = 0; round < PUMP_ROUNDS; round++) {
    int n = 0;
    while (n < PUMP_SPINS && ucp_worker_progress(p->worker) != 0)
      n++;
    if (n > 0)
      p->active_ns = scree__now_ns();
    reap(p);
    /* The time is read after reap, whose sends (a fetch's next asks, a
     * mirror's events) move active_ns on: read before, it could be older
     * than active_ns, and the unsigned difference would wrap to a huge
     * one and arm the worker right after a send. */
    if (scree__now_ns() - p->active_ns < SPIN_NS)
      break; /* busy lately: poll again on the loop's next turn */
    ucs_status_t st = ucp_worker_arm(p->worker);
    if (st == UCS_OK) {
      p->pumping = 0;
      if (p->handles_open)
        uv_idle_stop(&p->idle);
      return;
    }
    if (st != UCS_ERR_BUSY) {
      scree__log(SCREE__LOG_ERROR, "ucx_arm_failed", "error=%s", scree__q(ucs_status_string(st)));
      break;
    }
  }
  p->pumping = 0;
  /* Still busy: come back on the loop's next turn rather than spin. */
  if (p->handles_open)
    uv_idle_start(&p->idle, on_idle);
}

static void kick(scree__peers *p) {
  if (p->handles_open && !p->pumping)
    uv_idle_start(&p->idle, on_idle);
}

static void on_idle(uv_idle_t *h) { pump(h->data); }

static void on_copy_timer(uv_timer_t *t) { pump(t->data); }

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status, (void)events;
  pump(h->data);
}

static void on_tick(uv_timer_t *t) {
  scree__peers *p = t->data;
  pump(p);
  /* The counts of lines held back, once their window has ended, even when
   * nothing more is refused. */
  log_held("peer_refused", scree__ratelimit_roll(&p->refused_log, scree__now_ns()));
  ucx_log_flush(0);
}

/* ---- fetch, the entry point ------------------------------------------------ */

/* Starts a fetch of q->name from pe into as (both checked) for sess; client:
 * sess is a client's connection, whose fetch it becomes (scree__session_fetch).
 * Returns as scree__peers_fetch. */
static int fetch_start(scree__peers *p, peer *pe, scree__session *sess, int client,
                       uint64_t id, const scree__fetch_req *q, const char *as,
                       scree__fetch_done_cb cb, void *cb_arg, char *msg, size_t msg_len) {
  if (p->path == PATH_NONE)
    return scree__fail(SCREE_ENOTSUP, msg, msg_len,
                       "this screed serves GPU memory, which neither its UCX (no CUDA support)"
                       " nor its memory backend (no staging) can fetch into");
  if (scree__store_find(p->store, as) != NULL)
    return scree__fail(SCREE_EEXIST, msg, msg_len, "batch '%s' already exists here", as);
  for (fetch *o = p->fetches; o != NULL; o = o->next)
    if (!o->replied && o->state != F_SETTLING && strcmp(o->as_name, as) == 0)
      return scree__fail(SCREE_EEXIST, msg, msg_len,
                         "a fetch into '%s' is already under way here", as);

  fetch *f = calloc(1, sizeof(*f));
  if (f == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  f->p = p;
  f->peer = pe;
  f->sess = sess;
  f->id = id;
  snprintf(f->name, sizeof(f->name), "%s", q->name);
  snprintf(f->as_name, sizeof(f->as_name), "%s", as);
  f->start_ns = scree__now_ns();
  uint64_t timeout = q->timeout_ms ? q->timeout_ms : DEFAULT_TIMEOUT_MS;
  if (timeout > 86400000ull)
    timeout = 86400000ull;
  f->deadline_ns = f->start_ns + timeout * 1000000ull;
  /* Waiting "until the timeout" asks the owner to wait a little past it,
   * so that the fetch times out (ETIMEDOUT) rather than the wait. */
  if (q->wait_ms > 0 || q->wait_ms == -1) {
    uint64_t w = q->wait_ms == -1 ? timeout + WAIT_GRACE_MS : (uint64_t)q->wait_ms;
    f->wait_until_ns = f->start_ns + w * 1000000ull;
  }
  f->cb = cb;
  f->cb_arg = cb_arg;
  uv_timer_init(p->loop, &f->timer);
  f->timer.data = f;
  f->next = p->fetches;
  if (p->fetches)
    p->fetches->prev = f;
  p->fetches = f;
  if (client)
    scree__session_set_fetch(sess, f);

  if (pe->conn == NULL) {
    char m[256];
    int rc = peer_connect(p, pe, m, sizeof(m));
    if (rc != 0) {
      /* Reported through the callback like any later failure: the caller
       * has already deferred nothing, so fail synchronously instead. */
      if (client)
        scree__session_set_fetch(sess, NULL);
      f->replied = 1;
      pe->counts.failures[SCREE__FETCH_FAIL_UNREACHABLE]++;
      fetch_settle(f);
      return scree__fail(rc, msg, msg_len, "%s", m);
    }
  }
  if (pe->conn->state == C_READY && !pe->conn->failed) {
    f->conn = pe->conn;
    fetch_send_open(f);
  } else {
    f->state = F_WAIT_CONN;
  }
  fetch_arm(f);
  kick(p);
  return 0;
}

int scree__peers_fetch(scree__peers *p, scree__session *sess, uint64_t id,
                       const scree__fetch_req *q, scree__fetch_done_cb cb, void *cb_arg,
                       char *msg, size_t msg_len) {
  if (p->shutting_down)
    return scree__fail(SCREE_EAGAIN, msg, msg_len, "screed is stopping");
  if (q->peer == NULL || q->peer[0] == '\0')
    return scree__fail(SCREE_EINVAL, msg, msg_len, "fetch names no peer");
  size_t i = scree__peers_find(p, q->peer);
  if (i == SIZE_MAX) {
    char known[512] = "";
    size_t n = 0;
    for (size_t k = 0; k < p->npeers && n < sizeof(known); k++)
      n += (size_t)snprintf(known + n, sizeof(known) - n, "%s'%s'", k ? ", " : "",
                            p->peers[k].spec.name);
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "unknown peer '%s'; this screed knows %s (--peer NAME=HOST:PORT)",
                       q->peer, p->npeers ? known : "none");
  }
  char m[256];
  int rc = scree__name_check(q->name, m, sizeof(m));
  if (rc != 0)
    return scree__fail(rc, msg, msg_len, "remote name: %s", m);
  const char *as = q->as_name != NULL && q->as_name[0] != '\0' ? q->as_name : q->name;
  rc = scree__name_check(as, m, sizeof(m));
  if (rc != 0)
    return scree__fail(rc, msg, msg_len, "local name: %s", m);
  return fetch_start(p, &p->peers[i], sess, 1, id, q, as, cb, cb_arg, msg, msg_len);
}

/* ---- what the mirrors use (peers_mirror.h) --------------------------------- */

size_t scree__peers_find(const scree__peers *p, const char *name) {
  for (size_t i = 0; i < p->npeers; i++)
    if (strcmp(p->peers[i].spec.name, name) == 0)
      return i;
  return SIZE_MAX;
}

int scree__peers_link(scree__peers *p, size_t i, char *msg, size_t msg_len) {
  if (p->shutting_down)
    return scree__fail(SCREE_EAGAIN, msg, msg_len, "screed is stopping");
  if (p->peers[i].conn != NULL)
    return 0;
  int rc = peer_connect(p, &p->peers[i], msg, msg_len);
  kick(p);
  return rc;
}

int scree__peers_send_watch(scree__peers *p, size_t i, const char *prefix, int replay,
                            uint64_t *req) {
  conn *c = p->peers[i].conn;
  if (p->shutting_down || c == NULL || c->state != C_READY || c->failed)
    return SCREE_EAGAIN;
  scree__pw_msg m;
  memset(&m, 0, sizeof(m));
  m.type = SCREE__PW_WATCH;
  m.req = ++p->next_wire_req;
  m.flags = replay ? SCREE__PW_WATCH_REPLAY : 0;
  m.name = prefix;
  m.name_len = strlen(prefix);
  if (conn_send(c, &m) != 0) {
    conn_mark_failed(c, SCREE_EIO, SCREE__FETCH_FAIL_LOST, "peer '%s' at %s: cannot send",
                     c->peer->spec.name, c->addr);
    return SCREE_EIO;
  }
  *req = m.req;
  return 0;
}

int scree__peers_fetch_own(scree__peers *p, size_t i, scree__session *sess, const char *name,
                           uint64_t timeout_ms, scree__fetch_done_cb cb, void *cb_arg,
                           char *msg, size_t msg_len) {
  if (p->shutting_down)
    return scree__fail(SCREE_EAGAIN, msg, msg_len, "screed is stopping");
  int rc = scree__name_check(name, msg, msg_len);
  if (rc != 0)
    return rc;
  scree__fetch_req q = {.peer = p->peers[i].spec.name,
                        .name = name,
                        .wait_ms = SCREE__FETCH_NO_WAIT,
                        .timeout_ms = timeout_ms};
  return fetch_start(p, &p->peers[i], sess, 0, 0, &q, name, cb, cb_arg, msg, msg_len);
}

scree__peer_counts *scree__peers_counts_ref(scree__peers *p, size_t i) {
  return &p->peers[i].counts;
}

void scree__peers_detach(void *fetch_ptr) {
  fetch *f = fetch_ptr;
  f->sess = NULL;
}

/* ---- counters ---------------------------------------------------------------- */

size_t scree__peers_count(const scree__peers *p) { return p ? p->npeers : 0; }

void scree__peers_counts(const scree__peers *p, size_t i, scree__peer_counts *out) {
  *out = p->peers[i].counts;
  out->name = p->peers[i].spec.name;
}

void scree__peers_served_get(const scree__peers *p, scree__peers_served *out) {
  *out = p->served;
}

static int appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0)
      return SCREE_ENOMEM;
    if ((size_t)n < *cap - *len) {
      *len += (size_t)n;
      return 0;
    }
    size_t nc = *cap * 2 + (size_t)n + 1;
    char *nb = realloc(*buf, nc);
    if (nb == NULL)
      return SCREE_ENOMEM;
    *buf = nb;
    *cap = nc;
  }
}

/* The per-peer counters of /metrics that are one uint64_t of
 * scree__peer_counts each; the mirrors' only for peers that have one. */
static const struct {
  const char *name, *help;
  size_t at;
  int mirrors_only;
} peer_counters[] = {
    {"scree_peer_batches_fetched_total", "Batches fetched from each peer.",
     offsetof(scree__peer_counts, batches), 0},
    {"scree_peer_bytes_fetched_total", "Bytes fetched from each peer.",
     offsetof(scree__peer_counts, bytes), 0},
    {"scree_peer_mirrored_total", "Batches the mirrors of each peer fetched.",
     offsetof(scree__peer_counts, mirrored), 1},
    {"scree_peer_mirror_deletes_total",
     "Mirrored copies deleted because the peer deleted its batch.",
     offsetof(scree__peer_counts, mirror_deletes), 1},
    {"scree_peer_mirror_resyncs_total",
     "Times the mirrors of each peer watched again with replay.",
     offsetof(scree__peer_counts, mirror_resyncs), 1},
};

int scree__peers_render_metrics(const scree__peers *p, char **buf, size_t *len, size_t *cap) {
  if (p == NULL)
    return 0;
  int rc = 0, mirrors = 0;
  for (size_t i = 0; i < p->npeers; i++)
    mirrors |= p->peers[i].counts.mirrors != 0;
  for (size_t k = 0; k < sizeof(peer_counters) / sizeof(peer_counters[0]); k++) {
    if (peer_counters[k].mirrors_only && !mirrors)
      continue;
    rc |= appendf(buf, len, cap, "# HELP %s %s\n# TYPE %s counter\n", peer_counters[k].name,
                  peer_counters[k].help, peer_counters[k].name);
    for (size_t i = 0; i < p->npeers; i++) {
      uint64_t v;
      memcpy(&v, (const char *)&p->peers[i].counts + peer_counters[k].at, sizeof(v));
      if (!peer_counters[k].mirrors_only || p->peers[i].counts.mirrors != 0)
        rc |= appendf(buf, len, cap, "%s{peer=\"%s\"} %" PRIu64 "\n", peer_counters[k].name,
                      p->peers[i].spec.name, v);
    }
  }
  rc |= appendf(buf, len, cap,
                "# HELP scree_peer_fetch_failures_total Failed fetches, by peer and cause.\n"
                "# TYPE scree_peer_fetch_failures_total counter\n");
  for (size_t i = 0; i < p->npeers; i++)
    for (int k = 0; k < SCREE__FETCH_FAIL_CAUSES; k++)
      if (p->peers[i].counts.failures[k] != 0)
        rc |= appendf(buf, len, cap,
                      "scree_peer_fetch_failures_total{peer=\"%s\",cause=\"%s\"} %" PRIu64 "\n",
                      p->peers[i].spec.name, scree__fetch_fail_name(k),
                      p->peers[i].counts.failures[k]);
  rc |= appendf(buf, len, cap,
                "# HELP scree_peer_connected Whether the connection to each peer is up.\n"
                "# TYPE scree_peer_connected gauge\n");
  for (size_t i = 0; i < p->npeers; i++)
    rc |= appendf(buf, len, cap, "scree_peer_connected{peer=\"%s\"} %d\n",
                  p->peers[i].spec.name, p->peers[i].counts.connected);
  rc |= appendf(buf, len, cap,
                "# HELP scree_peer_conns_served Authenticated peer connections to this"
                " screed.\n# TYPE scree_peer_conns_served gauge\nscree_peer_conns_served %u\n"
                "# HELP scree_peer_conns_refused_total Peer connections refused (failed"
                " authentication, garbage, over the limit).\n"
                "# TYPE scree_peer_conns_refused_total counter\n"
                "scree_peer_conns_refused_total %" PRIu64 "\n"
                "# HELP scree_peer_leases Batches peers hold leases on here.\n"
                "# TYPE scree_peer_leases gauge\nscree_peer_leases %u\n",
                p->served.conns, p->served.refused, p->served.leases);
  return rc != 0 ? SCREE_ENOMEM : 0;
}

/* ---- life ---------------------------------------------------------------------- */

static int resolve(const scree__peer_spec *s, struct sockaddr_storage *sa, socklen_t *len,
                   char *msg, size_t msg_len) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  char port[8];
  snprintf(port, sizeof(port), "%u", s->port);
  int e = getaddrinfo(s->host, port, &hints, &res);
  if (e != 0 || res == NULL)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "cannot resolve '%s': %s", s->host,
                       gai_strerror(e));
  memcpy(sa, res->ai_addr, res->ai_addrlen);
  *len = (socklen_t)res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

int scree__peers_new(const scree__peers_config *cfg, scree__peers **out, char *msg,
                     size_t msg_len) {
  *out = NULL;
  unsigned char *loaded = NULL;
  size_t loaded_len = 0;
  if (cfg->secret_file != NULL) {
    int lrc = scree__peer_secret_load(cfg->secret_file, &loaded, &loaded_len, msg, msg_len);
    if (lrc != 0)
      return lrc;
    scree__peers_config c2 = *cfg;
    c2.secret_file = NULL;
    c2.secret = loaded;
    c2.secret_len = loaded_len;
    lrc = scree__peers_new(&c2, out, msg, msg_len);
    scree__peer_secret_free(loaded, loaded_len);
    return lrc;
  }
  if (cfg->secret == NULL || cfg->secret_len < SCREE__PEER_SECRET_MIN)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "peers need --peer-secret-file: UCX neither authenticates nor"
                       " encrypts, so every peer must prove a shared secret");
  if (cfg->npeers > SCREE__PEERS_MAX)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "%zu peers; at most %d", cfg->npeers,
                       SCREE__PEERS_MAX);
  scree__peers *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  p->refused_log =
      (scree__ratelimit)SCREE__RATELIMIT_INIT(LOG_WINDOW_S * 1000000000ull, REFUSED_LINES);
  ucx_log_take();
  p->loop = cfg->loop;
  p->store = cfg->store;
  p->mem = scree__store_mem(cfg->store);
  p->efd = -1;
  int rc = 0;
  p->secret = malloc(cfg->secret_len);
  p->peers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*p->peers));
  if (p->secret == NULL || p->peers == NULL) {
    rc = scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
    goto err;
  }
  memcpy(p->secret, cfg->secret, cfg->secret_len);
  p->secret_len = cfg->secret_len;
  if (gethostname(p->node, sizeof(p->node)) != 0)
    snprintf(p->node, sizeof(p->node), "unknown");
  p->node[SCREE__PW_NODE_MAX] = '\0';
  for (size_t i = 0; i < cfg->npeers; i++) {
    for (size_t j = 0; j < i; j++)
      if (strcmp(cfg->peers[i].name, cfg->peers[j].name) == 0) {
        rc = scree__fail(SCREE_EINVAL, msg, msg_len, "--peer %s is given twice",
                         cfg->peers[i].name);
        goto err;
      }
    p->peers[i].spec = cfg->peers[i];
    char m[256];
    rc = resolve(&cfg->peers[i], &p->peers[i].sa, &p->peers[i].salen, m, sizeof(m));
    if (rc != 0) {
      rc = scree__fail(rc, msg, msg_len, "--peer %s: %s", cfg->peers[i].name, m);
      goto err;
    }
  }
  p->npeers = cfg->npeers;
  rc = scree__mirror_specs_check(cfg->mirrors, cfg->nmirrors, cfg->peers, cfg->npeers, msg,
                                 msg_len);
  if (rc != 0)
    goto err;
  rc = scree__mirror_new(p, p->loop, p->store, cfg->mirrors, cfg->nmirrors, cfg->mirror_queue,
                         &p->mirror, msg, msg_len);
  if (rc != 0)
    goto err;

  /* A screed that restarts listens on the same port at once, though the
   * connections of the one before may linger there in TIME_WAIT (a peer
   * that a mirror follows is expected back at its address). The option
   * belongs to UCX's tcp connection manager, which reads it from the
   * environment only (ucp_config_modify does not reach it); a value the
   * environment gives already is kept. Nothing else runs yet at start. */
  setenv("UCX_TCP_CM_REUSEADDR", "y", 0);

  /* No UCP_FEATURE_RMA (nor AMO): without it UCX registers no handler
   * that reads or writes memory at an address a remote names. Over tcp
   * those handlers emulate get and put in software without any check of a
   * key, for anyone who connects, before scree's handshake has run. The
   * bytes move as active messages instead (READ and DATA). */
  ucp_config_t *ucfg = NULL;
  ucs_status_t st = ucp_config_read(NULL, NULL, &ucfg);
  if (st != UCS_OK) {
    rc = scree__fail(SCREE_EIO, msg, msg_len, "ucp_config_read: %s", ucs_status_string(st));
    goto err;
  }
  /* UCX's tcp transport has a zero-copy put of its own, whose receiving
   * side (uct_tcp_ep_handle_put_req in UCX 1.13) writes at whatever
   * address the sender names. UCP uses it only for rendezvous without
   * error handling, which screed never asks for, and the receiving side
   * runs whatever this side advertises; not advertising it keeps any UCX
   * that talks to this screed from choosing it. */
  (void)ucp_config_modify(ucfg, "PUT_ENABLE", "n");
  ucp_params_t up;
  memset(&up, 0, sizeof(up));
  up.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  up.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  up.name = "screed";
  st = ucp_init(&up, ucfg, &p->ctx);
  ucp_config_release(ucfg);
  if (st != UCS_OK) {
    p->ctx = NULL;
    rc = scree__fail(SCREE_EIO, msg, msg_len, "ucp_init: %s", ucs_status_string(st));
    goto err;
  }
  /* How batches meet UCX: host memory as it lies; device memory as it
   * lies where UCX supports CUDA, else through pinned host stages. */
  ucp_context_attr_t ca;
  memset(&ca, 0, sizeof(ca));
  ca.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  int ucx_cuda = ucp_context_query(p->ctx, &ca) == UCS_OK &&
                 (ca.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
  int can_stage = p->mem->ops->stage_new != NULL;
  if (p->mem->info.backend == SCREE__BACKEND_HOST)
    p->path = can_stage ? PATH_STAGED : PATH_HOST; /* staged only with a test hook */
  else if (ucx_cuda)
    p->path = PATH_UCX_CUDA;
  else
    p->path = can_stage ? PATH_STAGED : PATH_NONE;
  scree__log(SCREE__LOG_INFO, "peers_path", "path=%s memory=%s ucx_cuda=%s stage_bytes=%u",
             path_name(p->path), scree__q(p->mem->info.device_name), ucx_cuda ? "yes" : "no",
             p->path == PATH_STAGED ? 2u * STAGES * CHUNK : 0u);
  ucp_worker_params_t wp;
  memset(&wp, 0, sizeof(wp));
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  st = ucp_worker_create(p->ctx, &wp, &p->worker);
  if (st != UCS_OK) {
    p->worker = NULL;
    rc = scree__fail(SCREE_EIO, msg, msg_len, "ucp_worker_create: %s", ucs_status_string(st));
    goto err;
  }
  /* A DATA's header is this daemon's message; one that says why a read
   * failed keeps to what UCX can carry as a header. */
  ucp_worker_attr_t wa;
  memset(&wa, 0, sizeof(wa));
  wa.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
  p->data_msg_max = SCREE__PW_MSG_MAX;
  if (ucp_worker_query(p->worker, &wa) == UCS_OK) {
    p->am_header_max = wa.max_am_header;
    size_t fixed = SCREE__PW_HEADER + 64; /* DATA's fields, with room to spare */
    size_t room = wa.max_am_header > fixed ? wa.max_am_header - fixed : 0;
    if (room < p->data_msg_max)
      p->data_msg_max = room;
  }
  st = ucp_worker_get_efd(p->worker, &p->efd);
  if (st != UCS_OK) {
    rc = scree__fail(SCREE_EIO, msg, msg_len, "ucp_worker_get_efd: %s", ucs_status_string(st));
    goto err;
  }
  ucp_am_handler_param_t ap;
  memset(&ap, 0, sizeof(ap));
  ap.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                  UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  ap.id = AM_ID;
  ap.cb = am_cb;
  ap.arg = p;
  ap.flags = UCP_AM_FLAG_WHOLE_MSG;
  st = ucp_worker_set_am_recv_handler(p->worker, &ap);
  /* Every other id (UCX's are 16 bits), highest first so that UCX's table
   * grows once. */
  for (unsigned id = 0xffffu; st == UCS_OK && id != (unsigned)-1; id--) {
    if (id == AM_ID)
      continue;
    ap.id = id;
    ap.cb = am_other_cb;
    st = ucp_worker_set_am_recv_handler(p->worker, &ap);
  }
  if (st != UCS_OK) {
    rc = scree__fail(SCREE_EIO, msg, msg_len, "ucp_worker_set_am_recv_handler: %s",
                     ucs_status_string(st));
    goto err;
  }
  if (cfg->listen != NULL) {
    scree__peer_spec ls;
    memset(&ls, 0, sizeof(ls));
    char m[256];
    rc = scree__peer_addr_parse(cfg->listen, ls.host, sizeof(ls.host), &ls.port, m, sizeof(m));
    if (rc == 0)
      rc = resolve(&ls, &(struct sockaddr_storage){0}, &(socklen_t){0}, m, sizeof(m));
    if (rc != 0) {
      rc = scree__fail(rc, msg, msg_len, "--peer-listen: %s", m);
      goto err;
    }
    struct sockaddr_storage sa;
    socklen_t salen;
    resolve(&ls, &sa, &salen, m, sizeof(m));
    ucp_listener_params_t lp;
    memset(&lp, 0, sizeof(lp));
    lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
    lp.sockaddr.addr = (const struct sockaddr *)&sa;
    lp.sockaddr.addrlen = salen;
    lp.conn_handler.cb = conn_request_cb;
    lp.conn_handler.arg = p;
    st = ucp_listener_create(p->worker, &lp, &p->listener);
    if (st != UCS_OK) {
      p->listener = NULL;
      rc = scree__fail(st == UCS_ERR_BUSY ? SCREE_EBUSY : SCREE_EIO, msg, msg_len,
                       "--peer-listen %s: %s", cfg->listen, ucs_status_string(st));
      goto err;
    }
    ucp_listener_attr_t la;
    memset(&la, 0, sizeof(la));
    la.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
    if (ucp_listener_query(p->listener, &la) == UCS_OK) {
      if (la.sockaddr.ss_family == AF_INET)
        p->listen_port = ntohs(((struct sockaddr_in *)&la.sockaddr)->sin_port);
      else if (la.sockaddr.ss_family == AF_INET6)
        p->listen_port = ntohs(((struct sockaddr_in6 *)&la.sockaddr)->sin6_port);
    }
  }
  uv_poll_init(p->loop, &p->poll, p->efd);
  p->poll.data = p;
  uv_idle_init(p->loop, &p->idle);
  p->idle.data = p;
  uv_timer_init(p->loop, &p->tick);
  p->tick.data = p;
  uv_timer_init(p->loop, &p->waits);
  p->waits.data = p;
  uv_timer_init(p->loop, &p->copy_timer);
  p->copy_timer.data = p;
  p->handles_open = 1;
  uv_poll_start(&p->poll, UV_READABLE, on_poll);
  uv_timer_start(&p->tick, on_tick, TICK_MS, TICK_MS);
  uv_unref((uv_handle_t *)&p->tick);
  scree__mirror_start(p->mirror);
  kick(p);
  *out = p;
  return 0;

err:
  scree__mirror_free(p->mirror);
  if (p->listener)
    ucp_listener_destroy(p->listener);
  if (p->worker)
    ucp_worker_destroy(p->worker);
  if (p->ctx)
    ucp_cleanup(p->ctx);
  ucx_log_give_back();
  scree__peer_secret_free(p->secret, p->secret_len);
  free(p->peers);
  free(p);
  return rc;
}

void scree__peers_shutdown(scree__peers *p) {
  if (p == NULL || p->shutting_down)
    return;
  p->shutting_down = 1;
  /* Requests that arrived but were not accepted yet are turned down. */
  for (uint32_t i = 0; i < p->npending && p->listener != NULL; i++)
    ucp_listener_reject(p->listener, p->pending[i]);
  p->npending = 0;
  if (p->listener != NULL) {
    ucp_listener_destroy(p->listener);
    p->listener = NULL;
  }
  /* Requests that arrived but were not accepted: UCX drops them with the
   * listener. */
  p->npending = 0;
  /* The mirrors start nothing more; their fetches end below. */
  scree__mirror_shutdown(p->mirror);
  for (fetch *f = p->fetches, *fn; f != NULL; f = fn) {
    fn = f->next;
    if (f->state != F_SETTLING)
      fetch_fail(f, SCREE_EAGAIN, SCREE__FETCH_FAIL_OTHER, "screed is stopping");
  }
  while (p->conns != NULL)
    conn_destroy(p->conns);
  /* The forced closes cancel every transfer; their callbacks run here,
   * receives they leave are given up (asks_lost), and copies under way are
   * waited for. Bounded: a close that UCX does not finish in 2 s is left
   * to ucp_worker_destroy. */
  uint64_t until = scree__now_ns() + 2000000000ull;
  while ((p->closing > 0 || p->fetches != NULL || p->answers != NULL || p->asks != NULL) &&
         scree__now_ns() < until) {
    ucp_worker_progress(p->worker);
    reap_answers(p);
    reap_asks(p);
    for (fetch *f = p->fetches, *fn; f != NULL; f = fn) {
      fn = f->next;
      if (f->outstanding == 0)
        fetch_settle(f);
    }
  }
  /* What did not end in time is given up: UCX is not progressed from here
   * on, and nothing is reserved again, so what may still land in these
   * reservations harms nothing before the store goes. The fetches go now
   * (their timers must close with the loop); their reads stay for
   * scree__peers_free. */
  for (ask *r = p->asks; r != NULL; r = r->next)
    if (r->state == R_RECEIVING)
      ask_abandon(r);
  reap_asks(p);
  for (fetch *f = p->fetches, *fn; f != NULL; f = fn) {
    fn = f->next;
    for (ask *r = p->asks; r != NULL; r = r->next)
      if (r->f == f)
        r->f = NULL;
    f->outstanding = 0;
    fetch_settle(f);
  }
  if (p->handles_open) {
    p->handles_open = 0;
    uv_poll_stop(&p->poll);
    uv_close((uv_handle_t *)&p->poll, NULL);
    uv_close((uv_handle_t *)&p->idle, NULL);
    uv_close((uv_handle_t *)&p->tick, NULL);
    uv_close((uv_handle_t *)&p->waits, NULL);
    uv_close((uv_handle_t *)&p->copy_timer, NULL);
  }
}

void scree__peers_free(scree__peers *p) {
  if (p == NULL)
    return;
  scree__mirror_free(p->mirror);
  /* What shutdown could not finish: UCX is not progressed any more, so
   * nothing of it touches these; the leases' batches are unpinned before
   * the store goes. */
  while (p->answers != NULL) {
    answer *o = p->answers;
    if (--o->l->refs == 0 && o->l->ended) {
      SCREE__LIST_REMOVE(p->ended, o->l);
      lease_free(p, o->l);
    }
    SCREE__LIST_REMOVE_TAIL(p->answers, p->answers_tail, o);
    free(o);
  }
  while (p->asks != NULL)
    ask_free(p, p->asks);
  while (p->ended != NULL) {
    lease *l = p->ended;
    SCREE__LIST_REMOVE(p->ended, l);
    lease_free(p, l);
  }
  for (int role = 0; role < 2; role++)
    for (int i = 0; i < STAGES; i++)
      if (p->stages[role][i].st != NULL)
        p->mem->ops->stage_free(p->mem, p->stages[role][i].st);
  if (p->worker != NULL)
    ucp_worker_destroy(p->worker);
  if (p->ctx != NULL)
    ucp_cleanup(p->ctx);
  /* What UCX logs from here on is its own again; the counts of lines held
   * back are logged now rather than lost. */
  ucx_log_give_back();
  log_held("peer_refused", scree__ratelimit_drain(&p->refused_log));
  scree__peer_secret_free(p->secret, p->secret_len);
  free(p->peers);
  free(p);
}
