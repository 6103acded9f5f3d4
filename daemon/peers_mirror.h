/* Mirrors (--mirror PEER:PREFIX): keep every sealed batch under PREFIX on
 * a peer fetched into this screed as it appears, under the same names.
 *
 * Internal to peers: peers.c owns the connections and the fetches, and
 * peers_mirror.c decides what to fetch and what to delete. The two meet
 * only through the calls below, so that the mirror knows nothing of UCX
 * and the connection code nothing of what a mirror keeps.
 *
 *   fetcher screed (mirror)                   owner screed
 *   connect, WATCH prefix (replay) -------->  the store's watch of prefix
 *                       <------------------  EVENT sealed name stamp ...
 *   queue a fetch of name (bounded)           EVENT synced (replay done)
 *   fetch name into name (own session) ---->  OPEN / reads / CLOSE as for
 *                       <------------------  any fetch
 *                       <------------------  EVENT deleted name
 *   delete the local copy if the mirror made it
 *
 * Who owns mirrored batches here: screed's own uid (and pid), through a
 * session screed holds for itself; so their bytes count against that
 * uid's --quota-per-uid, they live in that uid's arenas, and a client may
 * delete one only as an admin (or as screed's uid). */
#ifndef SCREE_DAEMON_PEERS_MIRROR_H
#define SCREE_DAEMON_PEERS_MIRROR_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "peers.h"
#include "peers_wire.h"
#include "store.h"

typedef struct scree__mirror scree__mirror;

/* ---- what peers.c offers the mirror ---------------------------------- */

/* The index of peer name among p's peers, or SIZE_MAX. */
size_t scree__peers_find(const scree__peers *p, const char *name);

/* Makes sure peer i has a connection, or one being made: its readiness
 * comes through scree__mirror_ready, its loss through scree__mirror_down.
 * Returns 0, or an error with msg when none could be started. */
int scree__peers_link(scree__peers *p, size_t i, char *msg, size_t msg_len);

/* Sends WATCH prefix (replay or not) on peer i's authenticated
 * connection, under a fresh request id, returned in *req: the EVENTs of
 * that watch carry it. Returns 0, SCREE_EAGAIN when the connection is
 * not ready, or SCREE_EIO (the connection is then failing). */
int scree__peers_send_watch(scree__peers *p, size_t i, const char *prefix, int replay,
                            uint64_t *req);

/* Starts a fetch of name from peer i into the same name here, for sess
 * (screed's own session) with no client waiting: its end comes to cb with
 * id 0. Returns 0 or an error as scree__peers_fetch does. */
int scree__peers_fetch_own(scree__peers *p, size_t i, scree__session *sess, const char *name,
                           uint64_t timeout_ms, scree__fetch_done_cb cb, void *cb_arg,
                           char *msg, size_t msg_len);

/* The counters of peer i, which the mirror adds to. */
scree__peer_counts *scree__peers_counts_ref(scree__peers *p, size_t i);

/* ---- what the mirror offers peers.c ------------------------------------ */

/* Makes the mirrors of specs (already checked against p's peers) over
 * store, each queueing at most queue_max names for fetching (0: the
 * store's default watch queue); nothing is started and no loop handle
 * made. NULL *out when n is 0. Returns 0, SCREE_EINVAL (a peer p does not
 * know) or SCREE_ENOMEM. */
int scree__mirror_new(scree__peers *p, uv_loop_t *loop, scree__store *store,
                      const scree__mirror_spec *specs, size_t n, uint32_t queue_max,
                      scree__mirror **out, char *msg, size_t msg_len);

/* Starts connecting to every mirrored peer. NULL is allowed. */
void scree__mirror_start(scree__mirror *m);

/* Peer i's connection has been authenticated (WELCOME): its mirrors
 * watch. */
void scree__mirror_ready(scree__mirror *m, size_t i);

/* Peer i's connection is gone: its mirrors stop and connect again after a
 * backoff. */
void scree__mirror_down(scree__mirror *m, size_t i);

/* An EVENT or WATCH_ERR from peer i. Returns 0, or -1 when no mirror ever
 * watched that peer (the message is then unexpected). */
int scree__mirror_message(scree__mirror *m, size_t i, const scree__pw_msg *msg);

/* Stops the timers and starts nothing more (the fetches still under way
 * end through their callbacks). NULL is allowed. */
void scree__mirror_shutdown(scree__mirror *m);

/* Frees everything once the loop has run out and every fetch has ended;
 * closes the mirrors' session. NULL is allowed. */
void scree__mirror_free(scree__mirror *m);

#endif /* SCREE_DAEMON_PEERS_MIRROR_H */
