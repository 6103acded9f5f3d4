/* The peers' shared secret and the proofs made with it.
 *
 * Both screeds hold the same secret (--peer-secret-file). Before anything
 * else crosses, each proves it holds the secret without sending it: the
 * fetcher sends a fresh nonce, the owner answers with its own nonce and
 * HMAC-SHA256(secret, "scree-peer-v1 owner" | fetcher nonce | owner nonce),
 * and the fetcher, once it has checked that, answers with
 * HMAC-SHA256(secret, "scree-peer-v1 fetcher" | owner nonce | fetcher
 * nonce). The labels keep one side's proof from being replayed as the
 * other's; the fresh nonces keep an old proof from being replayed at all.
 *
 * HMAC-SHA256 comes from OpenSSL's libcrypto rather than a SHA-256 of our
 * own: it is a maintained, widely reviewed implementation with
 * constant-time comparison (CRYPTO_memcmp) and a strong random source
 * (RAND_bytes), and the peers build already depends on a system library
 * (UCX). tests/unit/test_peers_auth.c checks it against RFC 4231. */
#ifndef SCREE_DAEMON_PEERS_AUTH_H
#define SCREE_DAEMON_PEERS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define SCREE__PEER_SECRET_MIN 16
#define SCREE__PEER_SECRET_MAX 4096

/* Which side a proof speaks for. */
enum { SCREE__PROOF_OWNER = 0, SCREE__PROOF_FETCHER = 1 };

/* Reads the secret from path: a regular file readable by its owner only
 * (no group or other permission bits), 16 to 4096 bytes once one trailing
 * newline is dropped. *out (malloc'd) and *len are the caller's; wipe and
 * free them with scree__peer_secret_free. Returns 0 or SCREE_EINVAL,
 * SCREE_EACCES, SCREE_ENOENT with a message naming the file. */
int scree__peer_secret_load(const char *path, unsigned char **out, size_t *len, char *msg,
                            size_t msg_len);
void scree__peer_secret_free(unsigned char *secret, size_t len);

/* HMAC-SHA256 of data under key into out[32]. Returns 0 or SCREE_EIO. */
int scree__hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       unsigned char out[32]);

/* The proof of side (SCREE__PROOF_*) for the two nonces (each 32 bytes):
 * the owner's covers fetcher nonce then owner nonce, the fetcher's the
 * reverse. Returns 0 or SCREE_EIO. */
int scree__peer_proof(const unsigned char *secret, size_t secret_len, int side,
                      const unsigned char fetcher_nonce[32],
                      const unsigned char owner_nonce[32], unsigned char out[32]);

/* Compares two 32-byte proofs in constant time: 1 when equal. */
int scree__peer_proof_equal(const unsigned char a[32], const unsigned char b[32]);

/* Fills buf with n bytes from the system's random source. Returns 0 or
 * SCREE_EIO. */
int scree__peer_random(void *buf, size_t n);

#endif /* SCREE_DAEMON_PEERS_AUTH_H */
