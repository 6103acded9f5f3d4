#include "peers_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scree/error.h"
#include "sys.h"

void scree__peer_secret_free(unsigned char *secret, size_t len) {
  if (secret == NULL)
    return;
  OPENSSL_cleanse(secret, len);
  free(secret);
}

int scree__peer_secret_load(const char *path, unsigned char **out, size_t *len, char *msg,
                            size_t msg_len) {
  *out = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return scree__fail(errno == ENOENT ? SCREE_ENOENT : SCREE_EACCES, msg, msg_len,
                       "--peer-secret-file %s: %s", path, strerror(errno));
  struct stat st;
  int rc = 0;
  unsigned char *buf = NULL;
  if (fstat(fd, &st) != 0) {
    rc = scree__fail(SCREE_EACCES, msg, msg_len, "--peer-secret-file %s: %s", path,
                     strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = scree__fail(SCREE_EINVAL, msg, msg_len, "--peer-secret-file %s is not a regular file",
                     path);
    goto out;
  }
  /* A secret others can read is no secret: refuse it as ssh refuses a
   * private key with open permissions. */
  if ((st.st_mode & 077) != 0) {
    rc = scree__fail(SCREE_EACCES, msg, msg_len,
                     "--peer-secret-file %s has mode %03o; it must not be readable by group or"
                     " others (chmod 600)",
                     path, (unsigned)(st.st_mode & 0777));
    goto out;
  }
  if (st.st_size > SCREE__PEER_SECRET_MAX + 1) {
    rc = scree__fail(SCREE_EINVAL, msg, msg_len,
                     "--peer-secret-file %s holds %lld bytes; at most %d", path,
                     (long long)st.st_size, SCREE__PEER_SECRET_MAX);
    goto out;
  }
  buf = malloc(SCREE__PEER_SECRET_MAX + 2);
  if (buf == NULL) {
    rc = scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
    goto out;
  }
  size_t n = 0;
  while (n < SCREE__PEER_SECRET_MAX + 2) {
    ssize_t r = read(fd, buf + n, SCREE__PEER_SECRET_MAX + 2 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = scree__fail(SCREE_EIO, msg, msg_len, "--peer-secret-file %s: %s", path,
                       strerror(errno));
      goto out;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (n > 0 && buf[n - 1] == '\n')
    n--;
  if (n > 0 && buf[n - 1] == '\r')
    n--;
  if (n < SCREE__PEER_SECRET_MIN || n > SCREE__PEER_SECRET_MAX) {
    rc = scree__fail(SCREE_EINVAL, msg, msg_len,
                     "--peer-secret-file %s holds %zu bytes; a secret is %d to %d bytes"
                     " (e.g. head -c 32 /dev/urandom | base64 > FILE)",
                     path, n, SCREE__PEER_SECRET_MIN, SCREE__PEER_SECRET_MAX);
    goto out;
  }
  *out = buf;
  *len = n;
  buf = NULL;
out:
  if (buf != NULL)
    scree__peer_secret_free(buf, SCREE__PEER_SECRET_MAX + 2);
  close(fd);
  return rc;
}

int scree__hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       unsigned char out[32]) {
  unsigned int n = 0;
  if (key_len > (size_t)INT32_MAX)
    return SCREE_EIO;
  if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n) == NULL || n != 32)
    return SCREE_EIO;
  return 0;
}

static const char label_owner[] = "scree-peer-v1 owner";
static const char label_fetcher[] = "scree-peer-v1 fetcher";

int scree__peer_proof(const unsigned char *secret, size_t secret_len, int side,
                      const unsigned char fetcher_nonce[32],
                      const unsigned char owner_nonce[32], unsigned char out[32]) {
  unsigned char data[sizeof(label_fetcher) + 64];
  const char *label = side == SCREE__PROOF_OWNER ? label_owner : label_fetcher;
  size_t ll = strlen(label) + 1; /* the NUL separates the label from the nonces */
  memcpy(data, label, ll);
  const unsigned char *first = side == SCREE__PROOF_OWNER ? fetcher_nonce : owner_nonce;
  const unsigned char *second = side == SCREE__PROOF_OWNER ? owner_nonce : fetcher_nonce;
  memcpy(data + ll, first, 32);
  memcpy(data + ll + 32, second, 32);
  return scree__hmac_sha256(secret, secret_len, data, ll + 64, out);
}

int scree__peer_proof_equal(const unsigned char a[32], const unsigned char b[32]) {
  return CRYPTO_memcmp(a, b, 32) == 0;
}

int scree__peer_random(void *buf, size_t n) {
  if (n > (size_t)INT32_MAX || RAND_bytes(buf, (int)n) != 1)
    return SCREE_EIO;
  return 0;
}
