/* Mirrors: see peers_mirror.h for the shape and docs/cluster.md for the
 * rules. Everything here runs on the loop thread, some of it inside UCX's
 * active-message callback (an EVENT): nothing here closes a connection or
 * progresses the worker, it only queues, starts fetches and changes the
 * store.
 *
 * What a mirror knows of each name it handles is one entry in a table by
 * name (for all mirrors together, since the names are this store's):
 * queued for a fetch, being fetched, or mirrored (a local copy exists that
 * the mirror made, told by its creation time here, and the peer's stamp of
 * the batch it copies). A name here that no entry covers was not made by a
 * mirror, and a mirror never replaces or deletes it.
 *
 * Resyncs: the mirror watches again with replay after an overflow, after
 * its queue filled up (once the queue has been fetched: meanwhile the
 * peer is asked to stop replaying, and what comes is not taken), and
 * after its connection came back. Each watch is a generation; every name
 * the peer names in it is marked seen, and when the peer says the replay
 * is complete (EVENT synced) the copies of names it did not name are
 * deleted here, so that deletions missed while events were lost are
 * applied too. */
#include "peers_mirror.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grow.h"
#include "list.h"
#include "log.h"
#include "scree/error.h"
#include "sorted.h"

/* Fetches one mirror runs at once. */
#define INFLIGHT 4
/* Reconnecting to a peer that went away: the first try after this, then
 * doubling up to the maximum. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
/* One mirror fetch, whole. */
#define FETCH_TIMEOUT_MS 300000

typedef struct mirror mirror;
typedef struct entry entry;

typedef enum entry_state {
  E_QUEUED = 1, /* waits in its mirror's queue */
  E_FETCHING,   /* a fetch runs */
  E_MIRRORED,   /* the local copy is the mirror's */
} entry_state;

struct entry {
  mirror *m;
  entry_state state;
  uint64_t stamp;    /* the peer's stamp of the batch queued, fetched or copied */
  uint64_t local_ns; /* E_MIRRORED: the local copy's creation time */
  uint64_t seen;     /* the generation in which the peer last named it */
  /* E_FETCHING: the peer changed the name meanwhile. stale: what comes is
   * not what the peer has now (deleted or replaced); refetch: the peer has
   * a newer batch of the name, stamped want. */
  int stale;
  int refetch;
  uint64_t want;
  entry *prev, *next; /* E_QUEUED: the queue */
  char name[];        /* allocated with the entry */
};

typedef enum mirror_state {
  M_IDLE,     /* no authenticated connection, or not watching yet */
  M_WATCHING, /* taking events */
  M_PAUSED,   /* the queue filled up: fetching it, taking no event */
  M_REFUSED,  /* the peer refused the watch; tried again after a backoff */
} mirror_state;

struct mirror {
  scree__mirror *ms;
  scree__mirror_spec spec;
  size_t peer;
  mirror_state state;
  uint64_t req; /* the current WATCH's request id: EVENTs of others are old */
  uint64_t gen; /* one per watch with replay */
  int watched;  /* watched with replay once: every later one is a resync */
  entry *qhead, *qtail;
  uint32_t nqueued;
  uint32_t ninflight;
};

/* A mirrored peer: its reconnection timer and backoff. */
typedef struct peer_link {
  scree__mirror *ms;
  size_t peer;
  const char *name; /* the peer's, for logs */
  int used;
  uv_timer_t timer;
  uint32_t backoff_ms;
} peer_link;

struct scree__mirror {
  scree__peers *p;
  uv_loop_t *loop;
  scree__store *store;
  scree__session *sess; /* screed's own: the mirrored batches' owner */
  mirror *mirrors;
  size_t n;
  peer_link *links; /* one per peer of p */
  size_t npeers;
  entry **tab; /* by name, sorted */
  size_t ntab;
  size_t captab;
  /* Names one mirror may have waiting for a fetch (--watch-queue). One
   * more pauses it: the queue is fetched, then the mirror resyncs. */
  uint32_t queue_max;
  int started;
  int stopping;
};

static void pump(mirror *m);
static void schedule(peer_link *l);

static const char *peer_name(const mirror *m) { return m->spec.peer; }

static scree__peer_counts *counts(mirror *m) {
  return scree__peers_counts_ref(m->ms->p, m->peer);
}

/* ---- the table ------------------------------------------------------------ */

static size_t tab_bound(const scree__mirror *ms, const char *name) {
  size_t at;
  SCREE__LOWER_BOUND(at, ms->ntab, mid, strcmp(ms->tab[mid]->name, name) < 0);
  return at;
}

static entry *tab_find(const scree__mirror *ms, const char *name) {
  size_t i = tab_bound(ms, name);
  return i < ms->ntab && strcmp(ms->tab[i]->name, name) == 0 ? ms->tab[i] : NULL;
}

/* A new entry of m for name (not in the table), or NULL when out of
 * memory. */
static entry *entry_new(mirror *m, const char *name) {
  scree__mirror *ms = m->ms;
  if (SCREE__GROW(&ms->tab, &ms->captab, ms->ntab + 1, 64) != 0)
    return NULL;
  size_t len = strlen(name);
  entry *e = calloc(1, sizeof(*e) + len + 1);
  if (e == NULL)
    return NULL;
  memcpy(e->name, name, len + 1);
  e->m = m;
  e->seen = m->gen;
  size_t i = tab_bound(ms, name);
  SCREE__INSERT_AT(ms->tab, ms->ntab, i);
  ms->tab[i] = e;
  return e;
}

static void queue_unlink(mirror *m, entry *e) {
  SCREE__LIST_REMOVE_TAIL(m->qhead, m->qtail, e);
  e->prev = e->next = NULL;
  m->nqueued--;
}

static void entry_free(scree__mirror *ms, entry *e) {
  if (e->state == E_QUEUED)
    queue_unlink(e->m, e);
  size_t i = tab_bound(ms, e->name);
  if (i < ms->ntab && ms->tab[i] == e)
    SCREE__REMOVE_AT(ms->tab, ms->ntab, i);
  free(e);
}

/* Whether e's local copy is still the batch the mirror made: an admin may
 * have deleted it meanwhile, and someone else may have taken the name. */
static int entry_local(const scree__mirror *ms, const entry *e) {
  if (e->state != E_MIRRORED)
    return 0;
  scree__batch *b = scree__store_find(ms->store, e->name);
  if (b == NULL)
    return 0;
  scree__batch_view v;
  scree__store_view(b, &v);
  return v.sealed && v.created_ns == e->local_ns;
}

static void delete_local(mirror *m, const char *name, const char *why) {
  int deferred = 0;
  char msg[512];
  int rc = scree__store_delete(m->ms->store, m->ms->sess, name, &deferred, msg, sizeof(msg));
  if (rc != 0)
    scree__log(SCREE__LOG_WARN, "mirror_delete_failed", "peer=%s batch=%s error=%s msg=%s",
               peer_name(m), scree__q(name), scree_err_name(rc), scree__q(msg));
  else
    scree__log(SCREE__LOG_INFO, "mirror_deleted", "peer=%s batch=%s reason=%s deferred=%d",
               peer_name(m), scree__q(name), scree__q(why), deferred);
}

/* A local batch of name that no mirror of this peer made stands in the
 * way: a counted failure, said in the log, and the local batch stays. */
static void conflict(mirror *m, const char *name) {
  counts(m)->failures[SCREE__FETCH_FAIL_LOCAL]++;
  scree__log(SCREE__LOG_WARN, "mirror_conflict", "peer=%s prefix=%s batch=%s reason=%s",
             peer_name(m), scree__q(m->spec.prefix), scree__q(name),
             scree__q("a batch here that this mirror did not fetch has the name; it is left"
                      " as it is"));
}

/* ---- watching ------------------------------------------------------------------- */

/* Sends WATCH; with replay, a new generation starts. */
static void watch(mirror *m, int replay) {
  uint64_t req;
  int rc = scree__peers_send_watch(m->ms->p, m->peer, m->spec.prefix, replay, &req);
  if (rc != 0) {
    /* The connection is not there or is failing: its loss (or its
     * readiness) comes through scree__mirror_down (ready). */
    m->state = M_IDLE;
    return;
  }
  m->req = req;
  if (replay) {
    m->gen++;
    m->state = M_WATCHING;
    scree__log(SCREE__LOG_DEBUG, "mirror_watch", "peer=%s prefix=%s gen=%" PRIu64,
               peer_name(m), scree__q(m->spec.prefix), m->gen);
  }
}

static void resync(mirror *m, const char *why) {
  counts(m)->mirror_resyncs++;
  scree__log(SCREE__LOG_INFO, "mirror_resync", "peer=%s prefix=%s reason=%s", peer_name(m),
             scree__q(m->spec.prefix), scree__q(why));
  watch(m, 1);
}

/* The queue is full: fetch what it holds, take no event meanwhile, then
 * resync (pump does, once the queue is empty). A watch without replay
 * replaces the current one so that the peer stops sending the rest of a
 * replay that would only be dropped. */
static void pause_mirror(mirror *m) {
  m->state = M_PAUSED;
  scree__log(SCREE__LOG_INFO, "mirror_paused", "peer=%s prefix=%s queued=%" PRIu32,
             peer_name(m), scree__q(m->spec.prefix), m->nqueued);
  uint64_t req;
  if (scree__peers_send_watch(m->ms->p, m->peer, m->spec.prefix, 0, &req) == 0)
    m->req = req;
}

/* Puts e (new, or taken off its old state) in m's queue for the batch
 * stamped stamp; a full queue pauses the mirror and drops e. */
static void enqueue(mirror *m, entry *e, uint64_t stamp) {
  if (m->nqueued >= m->ms->queue_max) {
    entry_free(m->ms, e);
    if (m->state == M_WATCHING)
      pause_mirror(m);
    return;
  }
  e->state = E_QUEUED;
  e->stamp = stamp;
  e->stale = e->refetch = 0;
  e->prev = m->qtail;
  e->next = NULL;
  SCREE__LIST_APPEND(m->qhead, m->qtail, e);
  m->nqueued++;
}

static void on_sealed(mirror *m, const char *name, uint64_t stamp) {
  scree__mirror *ms = m->ms;
  entry *e = tab_find(ms, name);
  if (e != NULL && e->m != m) {
    conflict(m, name); /* another peer's mirror holds the name */
    return;
  }
  if (e != NULL) {
    e->seen = m->gen;
    switch (e->state) {
    case E_QUEUED:
      if (stamp != 0)
        e->stamp = stamp;
      return;
    case E_FETCHING:
      if (stamp != 0 && stamp != e->stamp) {
        e->stale = 1;
        e->refetch = 1;
        e->want = stamp;
      }
      return;
    case E_MIRRORED:
      if (!entry_local(ms, e)) {
        entry_free(ms, e); /* the copy went; the name is looked at afresh */
        e = NULL;
        break;
      }
      if (stamp == 0 || stamp == e->stamp)
        return; /* the copy is of this very batch */
      /* The peer has another batch of the name now: the copy goes, the
       * new one comes. */
      delete_local(m, name, "replaced on the peer");
      enqueue(m, e, stamp);
      return;
    }
  }
  if (stamp == 0)
    return; /* gone on the peer already: its deleted event follows */
  if (scree__store_find(ms->store, name) != NULL) {
    conflict(m, name);
    return;
  }
  e = entry_new(m, name);
  if (e == NULL) {
    scree__log(SCREE__LOG_ERROR, "mirror_out_of_memory", "peer=%s batch=%s", peer_name(m),
               scree__q(name));
    return;
  }
  enqueue(m, e, stamp);
}

static void on_deleted(mirror *m, const char *name) {
  scree__mirror *ms = m->ms;
  entry *e = tab_find(ms, name);
  if (e == NULL || e->m != m)
    return;
  switch (e->state) {
  case E_QUEUED:
    entry_free(ms, e);
    return;
  case E_FETCHING:
    e->stale = 1;
    e->refetch = 0;
    return;
  case E_MIRRORED:
    if (entry_local(ms, e)) {
      delete_local(m, name, "deleted on the peer");
      counts(m)->mirror_deletes++;
    }
    entry_free(ms, e);
    return;
  }
}

/* The replay of the current generation is complete: whatever the mirror
 * holds that the peer did not name in it is gone from the peer. */
static void on_synced(mirror *m) {
  scree__mirror *ms = m->ms;
  uint32_t deleted = 0;
  for (size_t i = ms->ntab; i-- > 0;) {
    entry *e = ms->tab[i];
    if (e->m != m || e->seen == m->gen)
      continue;
    if (e->state == E_FETCHING) {
      e->stale = 1;
      e->refetch = 0;
      continue;
    }
    if (entry_local(ms, e)) {
      delete_local(m, e->name, "gone from the peer");
      counts(m)->mirror_deletes++;
      deleted++;
    }
    entry_free(ms, e);
  }
  scree__log(SCREE__LOG_INFO, "mirror_synced",
             "peer=%s prefix=%s gen=%" PRIu64 " queued=%" PRIu32 " deleted=%" PRIu32,
             peer_name(m), scree__q(m->spec.prefix), m->gen, m->nqueued, deleted);
}

/* ---- fetching --------------------------------------------------------------- */

static void fetch_done(void *arg, scree__session *sess, uint64_t id,
                       const scree__fetch_result *res) {
  (void)sess, (void)id;
  entry *e = arg;
  mirror *m = e->m;
  scree__mirror *ms = m->ms;
  m->ninflight--;
  int live = !ms->stopping && (m->state == M_WATCHING || m->state == M_PAUSED);
  if (res->rc == 0) {
    e->state = E_MIRRORED;
    e->local_ns = res->out->created_ns;
    counts(m)->mirrored++;
    scree__log(SCREE__LOG_INFO, "mirrored", "peer=%s batch=%s bytes=%" PRIu64, peer_name(m),
               scree__q(e->name), res->bytes);
    if (e->stale) {
      delete_local(m, e->name, e->refetch ? "replaced on the peer" : "deleted on the peer");
      if (!e->refetch)
        counts(m)->mirror_deletes++;
    }
  } else if (res->rc == SCREE_EEXIST) {
    /* Taken here while the fetch ran: counted by the fetch (cause local). */
    scree__log(SCREE__LOG_WARN, "mirror_conflict", "peer=%s prefix=%s batch=%s reason=%s",
               peer_name(m), scree__q(m->spec.prefix), scree__q(e->name),
               scree__q(res->msg));
  }
  if (e->refetch && live)
    enqueue(m, e, e->want);
  else if (res->rc != 0 || e->stale)
    entry_free(ms, e);
  if (live)
    pump(m);
}

/* Starts fetches from the queue while fewer than INFLIGHT run; a paused
 * mirror whose queue has gone resyncs. */
static void pump(mirror *m) {
  scree__mirror *ms = m->ms;
  while ((m->state == M_WATCHING || m->state == M_PAUSED) && m->ninflight < INFLIGHT &&
         m->qhead != NULL) {
    entry *e = m->qhead;
    queue_unlink(m, e);
    e->state = E_FETCHING;
    if (scree__store_find(ms->store, e->name) != NULL) {
      conflict(m, e->name);
      entry_free(ms, e);
      continue;
    }
    char msg[512];
    int rc = scree__peers_fetch_own(ms->p, m->peer, ms->sess, e->name, FETCH_TIMEOUT_MS,
                                    fetch_done, e, msg, sizeof(msg));
    if (rc != 0) {
      if (rc == SCREE_EEXIST)
        conflict(m, e->name);
      else
        scree__log(SCREE__LOG_WARN, "mirror_fetch_failed", "peer=%s batch=%s error=%s msg=%s",
                   peer_name(m), scree__q(e->name), scree_err_name(rc), scree__q(msg));
      entry_free(ms, e);
      continue;
    }
    m->ninflight++;
  }
  if (m->state == M_PAUSED && m->nqueued == 0)
    resync(m, "the queue filled up");
}

/* ---- messages ----------------------------------------------------------------- */

int scree__mirror_message(scree__mirror *ms, size_t i, const scree__pw_msg *msg) {
  if (ms == NULL || i >= ms->npeers || !ms->links[i].used)
    return -1;
  mirror *m = NULL;
  for (size_t k = 0; k < ms->n && m == NULL; k++)
    if (ms->mirrors[k].peer == i && ms->mirrors[k].req == msg->req)
      m = &ms->mirrors[k];
  if (m == NULL || ms->stopping)
    return 0; /* of a watch replaced since: dropped */
  if (msg->type == SCREE__PW_WATCH_ERR) {
    char text[SCREE__PW_MSG_MAX + 1];
    size_t n = 0;
    for (size_t k = 0; k < msg->msg_len; k++) /* printable bytes only into the log */
      text[n++] = (unsigned char)msg->msg[k] >= 0x20 && msg->msg[k] != 0x7f ? msg->msg[k] : '?';
    text[n] = '\0';
    scree__log(SCREE__LOG_WARN, "mirror_refused", "peer=%s prefix=%s code=%s msg=%s",
               peer_name(m), scree__q(m->spec.prefix), scree_err_name(msg->code),
               scree__q(text));
    m->state = M_REFUSED;
    schedule(&ms->links[i]);
    return 0;
  }
  if (m->state != M_WATCHING)
    return 0;
  char name[SCREE__PW_NAME_MAX + 1] = "";
  if (msg->name_len > 0)
    memcpy(name, msg->name, msg->name_len);
  name[msg->name_len] = '\0';
  int named = msg->kind == SCREE__PW_EV_SEALED || msg->kind == SCREE__PW_EV_DELETED;
  if (named && (strlen(name) != msg->name_len ||
                strncmp(name, m->spec.prefix, strlen(m->spec.prefix)) != 0)) {
    scree__log(SCREE__LOG_DEBUG, "mirror_event_ignored", "peer=%s batch=%s", peer_name(m),
               scree__q(name));
    return 0;
  }
  switch (msg->kind) {
  case SCREE__PW_EV_SEALED:
    on_sealed(m, name, msg->stamp);
    break;
  case SCREE__PW_EV_DELETED:
    on_deleted(m, name);
    break;
  case SCREE__PW_EV_OVERFLOW:
    resync(m, "the peer's queue for this watch overflowed");
    break;
  case SCREE__PW_EV_SYNCED:
    on_synced(m);
    break;
  default:
    break;
  }
  pump(m);
  return 0;
}

/* ---- connections ---------------------------------------------------------------- */

static void on_link_timer(uv_timer_t *t) {
  peer_link *l = t->data;
  scree__mirror *ms = l->ms;
  if (ms->stopping)
    return;
  char msg[512];
  int rc = scree__peers_link(ms->p, l->peer, msg, sizeof(msg));
  if (rc != 0) {
    scree__log(SCREE__LOG_INFO, "mirror_connect_failed", "peer=%s error=%s msg=%s", l->name,
               scree_err_name(rc), scree__q(msg));
    schedule(l);
    return;
  }
  /* The connection is there or on its way (its readiness makes every
   * mirror of the peer watch); a mirror the peer refused asks again now. */
  for (size_t k = 0; k < ms->n; k++) {
    mirror *m = &ms->mirrors[k];
    if (m->peer == l->peer && m->state == M_REFUSED)
      resync(m, "asking again after a refusal");
  }
}

/* Tries l's peer again after the backoff, which doubles for the next
 * time; scree__mirror_ready resets it. */
static void schedule(peer_link *l) {
  if (l->ms->stopping || !l->ms->started)
    return;
  uv_timer_start(&l->timer, on_link_timer, l->backoff_ms, 0);
  l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

void scree__mirror_ready(scree__mirror *ms, size_t i) {
  if (ms == NULL || ms->stopping || i >= ms->npeers || !ms->links[i].used)
    return;
  peer_link *l = &ms->links[i];
  uv_timer_stop(&l->timer);
  l->backoff_ms = BACKOFF_MIN_MS;
  for (size_t k = 0; k < ms->n; k++) {
    mirror *m = &ms->mirrors[k];
    if (m->peer != i)
      continue;
    if (m->watched)
      resync(m, "connected again");
    else
      watch(m, 1);
    m->watched = 1;
  }
}

void scree__mirror_down(scree__mirror *ms, size_t i) {
  if (ms == NULL || ms->stopping || i >= ms->npeers || !ms->links[i].used)
    return;
  for (size_t k = 0; k < ms->n; k++) {
    mirror *m = &ms->mirrors[k];
    if (m->peer != i)
      continue;
    /* What was queued is asked for again by the replay after the
     * reconnection; fetches under way fail with the connection. */
    m->state = M_IDLE;
    while (m->qhead != NULL)
      entry_free(ms, m->qhead);
  }
  schedule(&ms->links[i]);
}

/* ---- life ---------------------------------------------------------------------- */

int scree__mirror_new(scree__peers *p, uv_loop_t *loop, scree__store *store,
                      const scree__mirror_spec *specs, size_t n, uint32_t queue_max,
                      scree__mirror **out, char *msg, size_t msg_len) {
  *out = NULL;
  if (n == 0)
    return 0;
  scree__mirror *ms = malloc(sizeof(*ms));
  if (ms == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  *ms = (scree__mirror){
      .p = p,
      .loop = loop,
      .store = store,
      .n = n,
      .npeers = scree__peers_count(p),
      .queue_max = queue_max != 0 ? queue_max : SCREE__WATCH_QUEUE_DEFAULT,
  };
  ms->mirrors = calloc(n, sizeof(*ms->mirrors));
  ms->links = calloc(ms->npeers ? ms->npeers : 1, sizeof(*ms->links));
  int rc = 0;
  if (ms->mirrors == NULL || ms->links == NULL) {
    rc = scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
    goto err;
  }
  for (size_t k = 0; k < n; k++) {
    mirror *m = &ms->mirrors[k];
    m->ms = ms;
    m->spec = specs[k];
    m->peer = scree__peers_find(p, specs[k].peer);
    if (m->peer == SIZE_MAX) {
      rc = scree__fail(SCREE_EINVAL, msg, msg_len, "--mirror %s:%s names no --peer",
                       specs[k].peer, specs[k].prefix);
      goto err;
    }
    ms->links[m->peer].used = 1;
    ms->links[m->peer].name = m->spec.peer;
    scree__peers_counts_ref(p, m->peer)->mirrors++;
  }
  for (size_t i = 0; i < ms->npeers; i++) {
    ms->links[i].ms = ms;
    ms->links[i].peer = i;
    ms->links[i].backoff_ms = BACKOFF_MIN_MS;
  }
  /* The mirrored batches' owner: screed's own uid. */
  ms->sess = scree__session_open_own(store, (uint32_t)getuid(), (int32_t)getpid(), NULL);
  if (ms->sess == NULL) {
    rc = scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
    goto err;
  }
  *out = ms;
  return 0;
err:
  free(ms->mirrors);
  free(ms->links);
  free(ms);
  return rc;
}

void scree__mirror_start(scree__mirror *ms) {
  if (ms == NULL)
    return;
  for (size_t i = 0; i < ms->npeers; i++) {
    if (!ms->links[i].used)
      continue;
    uv_timer_init(ms->loop, &ms->links[i].timer);
    ms->links[i].timer.data = &ms->links[i];
  }
  ms->started = 1;
  for (size_t k = 0; k < ms->n; k++)
    scree__log(SCREE__LOG_INFO, "mirror", "peer=%s prefix=%s", ms->mirrors[k].spec.peer,
               scree__q(ms->mirrors[k].spec.prefix));
  for (size_t i = 0; i < ms->npeers; i++) {
    if (!ms->links[i].used)
      continue;
    char msg[512];
    int rc = scree__peers_link(ms->p, i, msg, sizeof(msg));
    if (rc != 0) {
      scree__log(SCREE__LOG_WARN, "mirror_connect_failed", "peer=%s error=%s msg=%s",
                 ms->links[i].name, scree_err_name(rc), scree__q(msg));
      schedule(&ms->links[i]);
    }
  }
}

void scree__mirror_shutdown(scree__mirror *ms) {
  if (ms == NULL || ms->stopping)
    return;
  ms->stopping = 1;
  if (!ms->started)
    return;
  for (size_t i = 0; i < ms->npeers; i++)
    if (ms->links[i].used)
      uv_close((uv_handle_t *)&ms->links[i].timer, NULL);
}

void scree__mirror_free(scree__mirror *ms) {
  if (ms == NULL)
    return;
  while (ms->ntab > 0)
    entry_free(ms, ms->tab[ms->ntab - 1]);
  free(ms->tab);
  scree__session_close(ms->store, ms->sess);
  free(ms->mirrors);
  free(ms->links);
  free(ms);
}
