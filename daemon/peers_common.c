/* What every build of peers has, with UCX or without: parsing the options
 * and naming the failure causes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peers.h"
#include "scree/error.h"
#include "sys.h"

const char *scree__fetch_fail_name(int cause) {
  static const char *const names[SCREE__FETCH_FAIL_CAUSES] = {
      "auth", "unreachable", "lost", "remote", "local", "timeout", "invalid", "other",
  };
  return cause >= 0 && cause < SCREE__FETCH_FAIL_CAUSES ? names[cause] : "other";
}

int scree__peer_addr_parse(const char *arg, char *host, size_t host_len, uint16_t *port,
                           char *msg, size_t msg_len) {
  const char *colon;
  const char *h = arg;
  size_t hl;
  if (arg[0] == '[') {
    const char *close = strchr(arg, ']');
    if (close == NULL || close[1] != ':')
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "'%s' is not HOST:PORT ([ADDR]:PORT for IPv6)", arg);
    h = arg + 1;
    hl = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(arg, ':');
    if (colon == NULL)
      return scree__fail(SCREE_EINVAL, msg, msg_len, "'%s' is not HOST:PORT", arg);
    hl = (size_t)(colon - arg);
    if (memchr(arg, ':', hl) != NULL)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "'%s': write an IPv6 address as [ADDR]:PORT", arg);
  }
  if (hl == 0 || hl >= host_len)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "'%s' has %s host", arg,
                       hl == 0 ? "no" : "too long a");
  const char *ps = colon + 1;
  char *end;
  errno = 0;
  unsigned long v = strtoul(ps, &end, 10);
  if (*ps < '0' || *ps > '9' || *end != '\0' || errno != 0 || v > 65535)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "'%s' has no valid port (0 to 65535)",
                       arg);
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = (uint16_t)v;
  return 0;
}

/* The peer name before the first sep in arg (a --peer or --mirror
 * argument), checked and copied into out (room for SCREE__PEER_NAME_MAX
 * bytes and a NUL). Returns what follows sep, or NULL (SCREE_EINVAL) with
 * the reason in msg; form is what arg should look like, for the message
 * when sep is missing. */
static const char *peer_name_split(const char *arg, char sep, const char *form, char *out,
                                   char *msg, size_t msg_len) {
  const char *at = strchr(arg, sep);
  if (at == NULL) {
    scree__fail(SCREE_EINVAL, msg, msg_len, "'%s' is not %s", arg, form);
    return NULL;
  }
  size_t nl = (size_t)(at - arg);
  if (nl == 0 || nl > SCREE__PEER_NAME_MAX) {
    scree__fail(SCREE_EINVAL, msg, msg_len, "peer name in '%s' must be 1 to %d characters", arg,
                SCREE__PEER_NAME_MAX);
    return NULL;
  }
  for (size_t i = 0; i < nl; i++) {
    char c = arg[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '_' || c == '-')) {
      scree__fail(SCREE_EINVAL, msg, msg_len,
                  "peer name in '%s' may hold only letters, digits, '.', '_' and '-'", arg);
      return NULL;
    }
  }
  memcpy(out, arg, nl);
  out[nl] = '\0';
  return at + 1;
}

int scree__peer_spec_parse(const char *arg, scree__peer_spec *out, char *msg,
                           size_t msg_len) {
  memset(out, 0, sizeof(*out));
  const char *hostport = peer_name_split(arg, '=', "NAME=HOST:PORT", out->name, msg, msg_len);
  int rc = hostport != NULL ? scree__peer_addr_parse(hostport, out->host, sizeof(out->host),
                                                     &out->port, msg, msg_len)
                            : SCREE_EINVAL;
  if (rc == 0 && out->port == 0)
    rc = scree__fail(SCREE_EINVAL, msg, msg_len, "peer '%s' needs a port other than 0",
                     out->name);
  return rc;
}

int scree__mirror_spec_parse(const char *arg, scree__mirror_spec *out, char *msg,
                             size_t msg_len) {
  memset(out, 0, sizeof(*out));
  const char *prefix = peer_name_split(arg, ':',
                                       "PEER:PREFIX (a --peer NAME, a colon, then the prefix"
                                       " of the names to mirror)",
                                       out->peer, msg, msg_len);
  if (prefix == NULL)
    return SCREE_EINVAL;
  if (prefix[0] != '\0') {
    /* A prefix is held to what a name may be: it is a name's start. */
    char m[256];
    if (scree__name_check(prefix, m, sizeof(m)) != 0)
      return scree__fail(SCREE_EINVAL, msg, msg_len, "prefix in '%s': %s", arg, m);
  }
  snprintf(out->prefix, sizeof(out->prefix), "%s", prefix);
  return 0;
}

int scree__mirror_specs_check(const scree__mirror_spec *mirrors, size_t nmirrors,
                              const scree__peer_spec *peers, size_t npeers, char *msg,
                              size_t msg_len) {
  if (nmirrors > SCREE__MIRRORS_MAX)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "%zu --mirror options; at most %d",
                       nmirrors, SCREE__MIRRORS_MAX);
  for (size_t i = 0; i < nmirrors; i++) {
    const scree__mirror_spec *a = &mirrors[i];
    size_t k = 0;
    while (k < npeers && strcmp(peers[k].name, a->peer) != 0)
      k++;
    if (k == npeers) {
      char known[512] = "";
      size_t n = 0;
      for (size_t j = 0; j < npeers && n < sizeof(known); j++)
        n += (size_t)snprintf(known + n, sizeof(known) - n, "%s'%s'", j ? ", " : "",
                              peers[j].name);
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "--mirror %s:%s names peer '%s', which no --peer NAME=HOST:PORT"
                         " gives (known: %s)",
                         a->peer, a->prefix, a->peer, npeers ? known : "none");
    }
    for (size_t j = 0; j < i; j++) {
      const scree__mirror_spec *b = &mirrors[j];
      size_t la = strlen(a->prefix), lb = strlen(b->prefix);
      if (strcmp(a->peer, b->peer) == 0 &&
          strncmp(a->prefix, b->prefix, la < lb ? la : lb) == 0)
        return scree__fail(SCREE_EINVAL, msg, msg_len,
                           "--mirror %s:%s overlaps --mirror %s:%s (one prefix starts the"
                           " other, so both would fetch the same names)",
                           a->peer, a->prefix, b->peer, b->prefix);
    }
  }
  return 0;
}
