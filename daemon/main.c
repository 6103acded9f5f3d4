/* screed: options, logging, signals, and the assembly of the layers:
 * backend and store, then the executor, the handler and the server above
 * them (docs/architecture.md). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "authz.h"
#include "drain.h"
#include "exec.h"
#include "handler.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "notify.h"
#include "peers.h"
#include "server.h"
#include "sockpath.h"
#include "store.h"
#include "worker.h"
#include "scree/error.h"
#include "scree/version.h"

#define DEFAULT_MEMORY_LIMIT (8ull << 30)
/* On a GPU the default limit is this share of the device memory free at
 * start (in percent): the card's size decides what fits, and the rest is
 * left for the CUDA contexts of screed and of its clients, and for memory
 * other programs take later. */
#define GPU_MEMORY_LIMIT_PERCENT 80u
#define DEFAULT_ARENA_SIZE (256ull << 20)
/* The largest valid request is about 1 KB (an Attention with four names
 * of 255 bytes), so 64 KiB leaves room for fields to come while bounding
 * what one packet costs to read, scan and decode (docs/security.md). */
#define DEFAULT_MAX_PACKET (64ull << 10)
#define MIN_MAX_PACKET 1024ull
#define MAX_MAX_PACKET (1ull << 30)

typedef struct options {
  int device; /* -1: host memory */
  int ipc_mode;
  int ipc_given;
  const char *socket;
  char socket_buf[108]; /* the default socket, when no --socket */
  uint64_t memory_limit;
  int memory_limit_given;
  uint64_t arena_size;
  int arena_size_given;
  uint64_t max_packet;
  /* Access control (authz.h, docs/security.md). */
  scree__authz authz;
  uint64_t quota_per_uid;
  int shared_arenas;
  /* Operations: see ops_option() below. */
  const char *metrics_listen; /* NULL: no metrics endpoint */
  uint32_t max_connections;
  uint32_t max_leases;
  uint32_t watch_queue;
  uint64_t drain_timeout_ms;
  uint64_t release_free_ms;
  uint64_t attention_timeout_ms;
  /* Peers (peers.h, docs/cluster.md). */
  const char *peer_listen;
  const char *peer_secret_file;
  scree__peer_spec peers[SCREE__PEERS_MAX];
  size_t npeers;
  scree__mirror_spec mirrors[SCREE__MIRRORS_MAX];
  size_t nmirrors;
} options;

#define DEFAULT_MAX_CONNECTIONS 1024u
#define DEFAULT_MAX_LEASES 65536u
#define DEFAULT_DRAIN_TIMEOUT_MS 30000u
/* How long host memory that deleted batches left free stays resident for
 * reuse: long enough that a producer replacing its batch every few seconds
 * keeps reusing resident pages instead of faulting in zeroed ones, and
 * short enough that a burst's peak does not stay. */
#define DEFAULT_RELEASE_FREE_MS 10000u
enum {
  OPT_METRICS_LISTEN = 1000,
  OPT_MAX_CONNECTIONS,
  OPT_MAX_LEASES,
  OPT_DRAIN_TIMEOUT,
  OPT_RELEASE_FREE,
  OPT_ATTENTION_TIMEOUT,
  OPT_WATCH_QUEUE,
};

/* Option codes of the access-control block; outside the char range so that
 * they never meet a short option. */
enum {
  OPT_ALLOW_UID = 0x5301,
  OPT_ALLOW_GID,
  OPT_ADMIN_UID,
  OPT_QUOTA_PER_UID,
  OPT_SHARED_ARENAS,
};

/* Option codes of peers. */
enum {
  OPT_PEER_LISTEN = 0x5401,
  OPT_PEER,
  OPT_PEER_SECRET_FILE,
  OPT_MIRROR,
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: screed [options]\n"
          "  --device cpu|N        host memory (default) or CUDA device N\n"
          "  --ipc vmm|legacy      how CUDA arenas are shared (default vmm)\n"
          "  --socket PATH         default $SCREE_SOCKET, else " SCREE_DEFAULT_SOCKET "\n"
          "                        when screed may serve it (root, or its directory\n"
          "                        writable), else $XDG_RUNTIME_DIR/scree-UID/screed.sock\n"
          "                        (/tmp/scree-UID/screed.sock without XDG_RUNTIME_DIR)\n"
          "  --memory-limit SIZE   bytes the stored batches may take (default 8G on host\n"
          "                        memory; on a GPU 80%% of its memory free at start)\n"
          "  --arena-size SIZE     size of one arena (default 256M, or the memory limit\n"
          "                        when that is smaller)\n"
          "  --max-packet SIZE     largest request accepted (default 64K)\n"
          "  --log-level LEVEL     error, warn, info (default) or debug\n"
          "  --allow-uid U[,U...]  users that may connect (names or numbers; repeatable);\n"
          "                        root, screed's own uid and the socket's group always may\n"
          "  --allow-gid G[,G...]  groups whose members (primary or supplementary) may connect\n"
          "  --admin-uid U[,U...]  users that may delete anyone's batches (root and screed's\n"
          "                        own uid always may)\n"
          "  --quota-per-uid SIZE  bytes of batches one uid may own (default 0: no quota)\n"
          "  --shared-arenas       let batches of different owners share arenas\n"
          "  --metrics-listen ADDR serve Prometheus metrics at http://ADDR/metrics\n"
          "                        (e.g. 127.0.0.1:9464; off by default)\n"
          "  --max-connections N   connections served at once (default 1024; 0: as many as the\n"
          "                        fd limit allows; lowered to fit the fd limit)\n"
          "  --max-leases-per-connection N\n"
          "                        leases one connection may hold (default 65536; 0: no limit)\n"
          "  --watch-queue N       events a watcher that does not read may have waiting before\n"
          "                        it gets an overflow event (default 1024)\n"
          "  --drain-timeout SECS  at SIGTERM, how long running attention jobs may finish\n"
          "                        (default 30; also 500ms, 2s)\n"
          "  --attention-timeout SECS\n"
          "                        how long one attention job may run before its worker is\n"
          "                        killed (default 600; also 500ms)\n"
          "  --release-free-after SECS\n"
          "                        memory that deleted batches left unused this long goes\n"
          "                        back: host pages to the system, arenas left empty (kept\n"
          "                        until then for their owner's next batch) to the system\n"
          "                        or the driver (default 10; also 500ms, 0)\n"
          "  --peer-listen HOST:PORT\n"
          "                        accept peer screeds there (UCX; off by default)\n"
          "  --peer NAME=HOST:PORT a peer screed this one may fetch from (repeatable)\n"
          "  --peer-secret-file PATH\n"
          "                        the secret every peer proves (needed with the two above)\n"
          "  --mirror PEER:PREFIX  keep every sealed batch under PREFIX on peer PEER (a --peer\n"
          "                        NAME) fetched here as it appears, under the same names\n"
          "                        (repeatable)\n"
          "  --version, --help\n"
          "SIZE is a number of bytes with an optional K, M, G or T suffix (powers of 1024).\n");
}

/* Parses "123", "4K", "256M", "8G", "1T" (also "8GiB", "8GB"; powers of
 * 1024). Returns 0 or -1. */
static int parse_size(const char *s, uint64_t *out) {
  if (*s == '\0' || *s == '-' || *s == '+')
    return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s)
    return -1;
  unsigned shift = 0;
  switch (*end) {
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  default: break;
  }
  if (shift != 0 && (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0))
    end += strlen(end);
  else if (shift == 0 && strcasecmp(end, "B") == 0)
    end++;
  if (*end != '\0')
    return -1;
  if (shift != 0 && v > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t)v << shift;
  return 0;
}

/* Reads the decimal number s starts with (a digit first: no sign, no
 * space) into *v, which must be at most max; *end is what follows it.
 * Returns 0 or -1. */
static int parse_leading(const char *s, unsigned long long max, unsigned long long *v,
                         char **end) {
  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  *v = strtoull(s, end, 10);
  return errno != 0 || *v > max ? -1 : 0;
}

/* Parses a count for --max-connections and --max-leases-per-connection. */
static int parse_count(const char *s, uint32_t *out) {
  unsigned long long v;
  char *end;
  if (parse_leading(s, UINT32_MAX, &v, &end) != 0 || *end != '\0')
    return -1;
  *out = (uint32_t)v;
  return 0;
}

/* Parses "30", "30s" or "500ms" into milliseconds (at most a day). */
static int parse_duration_ms(const char *s, uint64_t *out) {
  unsigned long long v;
  char *end;
  if (parse_leading(s, 86400000ull, &v, &end) != 0)
    return -1;
  if (strcmp(end, "ms") == 0)
    *out = v;
  else if (*end == '\0' || strcmp(end, "s") == 0)
    *out = v * 1000;
  else
    return -1;
  return *out <= 86400000ull ? 0 : -1;
}

static int peer_option(int c, const char *arg, options *o);

/* The options of operations (metrics, limits, shutdown) and, through
 * peer_option, of peers, kept apart from the others. Returns 0, or 2 after
 * printing what is wrong. */
static int ops_option(int c, const char *arg, options *o) {
  switch (c) {
  case OPT_METRICS_LISTEN:
    o->metrics_listen = arg;
    return 0;
  case OPT_MAX_CONNECTIONS:
  case OPT_MAX_LEASES: {
    uint32_t v;
    const char *name =
        c == OPT_MAX_CONNECTIONS ? "--max-connections" : "--max-leases-per-connection";
    if (parse_count(arg, &v) != 0) {
      fprintf(stderr, "screed: %s takes a count (0 for no limit), not '%s'\n", name, arg);
      return 2;
    }
    if (c == OPT_MAX_CONNECTIONS)
      o->max_connections = v;
    else
      o->max_leases = v;
    return 0;
  }
  case OPT_WATCH_QUEUE:
    if (parse_count(arg, &o->watch_queue) != 0 || o->watch_queue == 0 ||
        o->watch_queue > 1000000) {
      fprintf(stderr, "screed: --watch-queue takes a count from 1 to 1000000, not '%s'\n", arg);
      return 2;
    }
    return 0;
  case OPT_DRAIN_TIMEOUT:
    if (parse_duration_ms(arg, &o->drain_timeout_ms) != 0) {
      fprintf(stderr, "screed: --drain-timeout takes seconds (30, 30s) or 500ms, not '%s'\n",
              arg);
      return 2;
    }
    return 0;
  case OPT_ATTENTION_TIMEOUT:
    if (parse_duration_ms(arg, &o->attention_timeout_ms) != 0 || o->attention_timeout_ms == 0) {
      fprintf(stderr,
              "screed: --attention-timeout takes seconds (600, 600s) or 500ms, more than 0, "
              "not '%s'\n",
              arg);
      return 2;
    }
    return 0;
  case OPT_RELEASE_FREE:
    if (parse_duration_ms(arg, &o->release_free_ms) != 0) {
      fprintf(stderr,
              "screed: --release-free-after takes seconds (10, 10s) or 500ms, not '%s'\n", arg);
      return 2;
    }
    return 0;
  default:
    return peer_option(c, arg, o);
  }
}

/* --peer-listen, --peer, --peer-secret-file and --mirror; --peer and
 * --mirror add to bounded arrays. Returns 0, or 2 after printing what is
 * wrong. */
static int peer_option(int c, const char *arg, options *o) {
  if (c == OPT_PEER_SECRET_FILE) {
    o->peer_secret_file = arg;
    return 0;
  }
  const char *name = c == OPT_PEER ? "--peer" : c == OPT_MIRROR ? "--mirror" : "--peer-listen";
  size_t *n = c == OPT_PEER ? &o->npeers : c == OPT_MIRROR ? &o->nmirrors : NULL;
  int max = c == OPT_PEER ? SCREE__PEERS_MAX : SCREE__MIRRORS_MAX;
  if (n != NULL && *n == (size_t)max) {
    fprintf(stderr, "screed: at most %d %s options\n", max, name);
    return 2;
  }
  char m[512];
  int rc;
  if (c == OPT_PEER) {
    rc = scree__peer_spec_parse(arg, &o->peers[*n], m, sizeof(m));
  } else if (c == OPT_MIRROR) {
    rc = scree__mirror_spec_parse(arg, &o->mirrors[*n], m, sizeof(m));
  } else {
    /* --peer-listen is kept as given; parsing it here only checks it. */
    char host[256];
    uint16_t port;
    rc = scree__peer_addr_parse(arg, host, sizeof(host), &port, m, sizeof(m));
  }
  if (rc != 0) {
    fprintf(stderr, "screed: %s: %s\n", name, m);
    return 2;
  }
  if (n != NULL)
    (*n)++;
  else
    o->peer_listen = arg;
  return 0;
}

/* An arena larger than the memory limit could never be filled, and the
 * first one would take more than the limit allows: an --arena-size given
 * beside a smaller --memory-limit is refused; the default arena size is
 * brought down to the limit, and the log says so. Returns 0 or 2. */
static int check_arena_size(options *o) {
  if (o->arena_size <= o->memory_limit)
    return 0;
  if (o->arena_size_given) {
    fprintf(stderr,
            "screed: --arena-size (%" PRIu64 " bytes) is larger than --memory-limit (%" PRIu64
            " bytes); make the arena at most the limit\n",
            o->arena_size, o->memory_limit);
    return 2;
  }
  scree__log(SCREE__LOG_WARN, "arena_size_reduced",
             "arena_size=%" PRIu64 " default_arena_size=%" PRIu64
             " reason=\"the memory limit is smaller than the default arena size\"",
             o->memory_limit, o->arena_size);
  o->arena_size = o->memory_limit;
  return 0;
}

/* Where screed serves when no --socket was given: sockpath.c's
 * scree__sockpath_default, logged with the reason. Returns 0 or prints
 * why not. */
static int default_socket(options *o) {
  if (o->socket != NULL)
    return 0;
  char msg[512];
  const char *why = "";
  int rc = scree__sockpath_default(o->socket_buf, sizeof(o->socket_buf), &why, msg,
                                   sizeof(msg));
  if (rc != 0) {
    fprintf(stderr, "screed: %s (%s)\n", msg, scree_err_name(rc));
    return rc;
  }
  o->socket = o->socket_buf;
  if (strcmp(why, "per-user") == 0)
    scree__log(SCREE__LOG_INFO, "socket_default",
               "socket=%s chosen=per-user reason=%s", scree__q(o->socket),
               scree__q("not root, and " SCREE_DEFAULT_SOCKET "'s directory is not writable; "
                        "clients find this path too"));
  else
    scree__log(SCREE__LOG_INFO, "socket_default", "socket=%s chosen=%s",
               scree__q(o->socket), why);
  return 0;
}

static int parse_options(int argc, char **argv, options *o) {
  static const struct option longopts[] = {
      {"device", required_argument, NULL, 'd'},
      {"ipc", required_argument, NULL, 'i'},
      {"socket", required_argument, NULL, 's'},
      {"memory-limit", required_argument, NULL, 'm'},
      {"arena-size", required_argument, NULL, 'a'},
      {"max-packet", required_argument, NULL, 'p'},
      {"log-level", required_argument, NULL, 'l'},
      {"allow-uid", required_argument, NULL, OPT_ALLOW_UID},
      {"allow-gid", required_argument, NULL, OPT_ALLOW_GID},
      {"admin-uid", required_argument, NULL, OPT_ADMIN_UID},
      {"quota-per-uid", required_argument, NULL, OPT_QUOTA_PER_UID},
      {"shared-arenas", no_argument, NULL, OPT_SHARED_ARENAS},
      {"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
      {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
      {"max-leases-per-connection", required_argument, NULL, OPT_MAX_LEASES},
      {"watch-queue", required_argument, NULL, OPT_WATCH_QUEUE},
      {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
      {"release-free-after", required_argument, NULL, OPT_RELEASE_FREE},
      {"attention-timeout", required_argument, NULL, OPT_ATTENTION_TIMEOUT},
      {"peer-listen", required_argument, NULL, OPT_PEER_LISTEN},
      {"peer", required_argument, NULL, OPT_PEER},
      {"peer-secret-file", required_argument, NULL, OPT_PEER_SECRET_FILE},
      {"mirror", required_argument, NULL, OPT_MIRROR},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  memset(o, 0, sizeof(*o));
  o->device = -1;
  o->ipc_mode = SCREE__IPC_VMM_FD;
  o->memory_limit = DEFAULT_MEMORY_LIMIT;
  o->arena_size = DEFAULT_ARENA_SIZE;
  o->max_packet = DEFAULT_MAX_PACKET;
  o->max_connections = DEFAULT_MAX_CONNECTIONS;
  o->max_leases = DEFAULT_MAX_LEASES;
  o->watch_queue = SCREE__WATCH_QUEUE_DEFAULT;
  o->drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS;
  o->release_free_ms = DEFAULT_RELEASE_FREE_MS;
  o->attention_timeout_ms = SCREE__EXEC_DEFAULT_TIMEOUT_MS;
  o->socket = NULL; /* default_socket() below, once the options are good */

  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'd':
      if (strcmp(optarg, "cpu") == 0) {
        o->device = -1;
      } else {
        char *end;
        errno = 0;
        long v = strtol(optarg, &end, 10);
        if (errno != 0 || end == optarg || *end != '\0' || v < 0 || v > 1024) {
          fprintf(stderr, "screed: --device takes cpu or a CUDA ordinal, not '%s'\n", optarg);
          return 2;
        }
        o->device = (int)v;
      }
      break;
    case 'i':
      if (strcmp(optarg, "vmm") == 0) {
        o->ipc_mode = SCREE__IPC_VMM_FD;
      } else if (strcmp(optarg, "legacy") == 0) {
        o->ipc_mode = SCREE__IPC_LEGACY;
      } else {
        fprintf(stderr, "screed: --ipc takes vmm or legacy, not '%s'\n", optarg);
        return 2;
      }
      o->ipc_given = 1;
      break;
    case 's':
      o->socket = optarg;
      break;
    case 'm':
    case 'a':
    case 'p': {
      uint64_t v;
      const char *name = c == 'm' ? "--memory-limit" : c == 'a' ? "--arena-size" : "--max-packet";
      if (parse_size(optarg, &v) != 0 || v == 0) {
        fprintf(stderr, "screed: %s takes a size such as 8G, not '%s'\n", name, optarg);
        return 2;
      }
      if (c == 'm') {
        o->memory_limit = v;
        o->memory_limit_given = 1;
      }
      else if (c == 'a')
        o->arena_size = v, o->arena_size_given = 1;
      else
        o->max_packet = v;
      break;
    }
    case 'l': {
      int lvl = scree__log_parse_level(optarg);
      if (lvl < 0) {
        fprintf(stderr, "screed: --log-level takes error, warn, info or debug, not '%s'\n",
                optarg);
        return 2;
      }
      scree__log_threshold = lvl;
      break;
    }
    case OPT_ALLOW_UID:
    case OPT_ALLOW_GID:
    case OPT_ADMIN_UID: {
      scree__authz_list list = c == OPT_ALLOW_UID   ? SCREE__AUTHZ_UID
                               : c == OPT_ALLOW_GID ? SCREE__AUTHZ_GID
                                                    : SCREE__AUTHZ_ADMIN;
      const char *name = c == OPT_ALLOW_UID   ? "--allow-uid"
                         : c == OPT_ALLOW_GID ? "--allow-gid"
                                              : "--admin-uid";
      char m[256];
      if (scree__authz_parse(&o->authz, list, optarg, m, sizeof(m)) != 0) {
        fprintf(stderr, "screed: %s '%s': %s\n", name, optarg, m);
        return 2;
      }
      break;
    }
    case OPT_QUOTA_PER_UID:
      if (parse_size(optarg, &o->quota_per_uid) != 0) {
        fprintf(stderr, "screed: --quota-per-uid takes a size such as 1G (0: none), not '%s'\n",
                optarg);
        return 2;
      }
      break;
    case OPT_SHARED_ARENAS:
      o->shared_arenas = 1;
      break;
    case OPT_METRICS_LISTEN:
    case OPT_MAX_CONNECTIONS:
    case OPT_MAX_LEASES:
    case OPT_DRAIN_TIMEOUT:
    case OPT_RELEASE_FREE:
    case OPT_ATTENTION_TIMEOUT:
    case OPT_WATCH_QUEUE:
    case OPT_PEER_LISTEN:
    case OPT_PEER:
    case OPT_PEER_SECRET_FILE:
    case OPT_MIRROR:
      if (ops_option(c, optarg, o) != 0)
        return 2;
      break;
    case 'V':
      printf("screed %s\n", SCREE_VERSION_STRING);
      return 1;
    case 'h':
      usage(stdout);
      return 1;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "screed: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (o->peer_secret_file != NULL && o->peer_listen == NULL && o->npeers == 0) {
    fprintf(stderr, "screed: --peer-secret-file is for peers: give --peer-listen or --peer too\n");
    return 2;
  }
  /* Mirrors name peers, which may come later on the command line. */
  char mm[1024];
  if (scree__mirror_specs_check(o->mirrors, o->nmirrors, o->peers, o->npeers, mm,
                                sizeof(mm)) != 0) {
    fprintf(stderr, "screed: %s\n", mm);
    return 2;
  }
  if ((o->peer_listen != NULL || o->npeers > 0) && o->peer_secret_file == NULL) {
    fprintf(stderr, "screed: peers need --peer-secret-file PATH: UCX neither authenticates"
                    " nor encrypts, so every peer must prove a shared secret\n");
    return 2;
  }
  if (o->max_packet < MIN_MAX_PACKET || o->max_packet > MAX_MAX_PACKET) {
    fprintf(stderr, "screed: --max-packet must be between %llu and %llu bytes\n",
            MIN_MAX_PACKET, MAX_MAX_PACKET);
    return 2;
  }
  return check_arena_size(o);
}

typedef struct daemon_state {
  scree__store *store;
  scree__exec *exec;
  scree__handler *handler;
  scree__peers *peers;
  scree__server *srv;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  uv_signal_t sigquit;
  /* SIGHUP, SIGUSR1, SIGUSR2: logged and otherwise ignored (see
   * on_other_signal). */
  uv_signal_t sigother[3];
  /* Host memory that deleted batches left free goes back to the system, and
   * arenas left empty (host or GPU) go back, once they have stayed unused
   * for release_free_ms (scree__store_purge, checked every second). */
  uv_timer_t purge_timer;
  uint64_t release_free_ms;
  /* Operations. */
  scree__metrics metrics;
  scree__metrics_http *http;
  scree__watchdog watchdog;
  scree__drain drain;
  int second_signal;
} daemon_state;

#define PURGE_EVERY_MS 1000

static void on_purge(uv_timer_t *t) {
  daemon_state *d = t->data;
  const uint64_t bytes = scree__store_purge(d->store, d->release_free_ms);
  if (bytes > 0)
    scree__log(SCREE__LOG_DEBUG, "free_memory_released", "bytes=%" PRIu64, bytes);
}

static const int other_signals[3] = {SIGHUP, SIGUSR1, SIGUSR2};

/* Fills set with every signal screed handles on its loop: the three that
 * stop it and the others. */
static void handled_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGQUIT);
  for (int i = 0; i < 3; i++)
    sigaddset(set, other_signals[i]);
}

/* Closes the signal handles. The signals stay blocked from here on: libuv
 * puts back the default action as the last handle of a signal closes, and
 * one arriving between then and exit would end screed by that default. */
static void close_signals(daemon_state *d) {
  sigset_t set;
  handled_signals(&set);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  uv_close((uv_handle_t *)&d->sigint, NULL);
  uv_close((uv_handle_t *)&d->sigterm, NULL);
  uv_close((uv_handle_t *)&d->sigquit, NULL);
  for (int i = 0; i < 3; i++)
    uv_close((uv_handle_t *)&d->sigother[i], NULL);
}

/* Closes every loop handle of the daemon's own, after the server's
 * connections: their jobs are detached by then; queued jobs are dropped,
 * running ones finish and keep the loop alive until they end. */
static void close_all(daemon_state *d) {
  /* The signal handles close below, which gives SIGINT and SIGTERM their
   * default action back: blocked instead, a late signal cannot cut short
   * the few loop turns left (the worker's exit, the handles' closes). */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
  scree__server_shutdown(d->srv);
  scree__exec_shutdown(d->exec);
  scree__peers_shutdown(d->peers);
  if (!uv_is_closing((uv_handle_t *)&d->purge_timer))
    uv_close((uv_handle_t *)&d->purge_timer, NULL);
  close_signals(d);
  scree__metrics_http_close(d->http);
  d->http = NULL;
  scree__watchdog_close(&d->watchdog);
  scree__drain_close(&d->drain);
}

/* The end of a graceful shutdown: running jobs are done (or the drain
 * timeout passed), so the connections close and every handle goes; the
 * loop then runs out. */
static void on_jobs_stopped(void *arg) {
  daemon_state *d = arg;
  scree__notifyf("STATUS=closing %" PRIu32 " connections", scree__server_connections(d->srv));
  close_all(d);
}

static void on_drained(scree__drain *dr, int timed_out, uint32_t running) {
  daemon_state *d = dr->data;
  if (!timed_out) {
    on_jobs_stopped(d);
    return;
  }
  /* Jobs still run: their worker is killed, and the connections close only
   * once the jobs have been answered with why. */
  scree__log(SCREE__LOG_WARN, "drain_timeout", "jobs_killed=%" PRIu32 " timeout_ms=%" PRIu64,
             running, dr->timeout_ms);
  char why[160];
  if (d->second_signal)
    snprintf(why, sizeof(why), "screed was told to stop now (a second signal)");
  else
    snprintf(why, sizeof(why), "screed is shutting down and the drain timeout (%" PRIu64
             " ms) passed", dr->timeout_ms);
  scree__exec_stop(d->exec, why, on_jobs_stopped, d);
}

static void on_signal(uv_signal_t *h, int signum) {
  daemon_state *d = h->data;
  const char *name = signum == SIGINT ? "SIGINT" : signum == SIGQUIT ? "SIGQUIT" : "SIGTERM";
  if (scree__drain_active(&d->drain)) {
    /* A second signal: stop waiting for jobs (their worker is killed),
     * then clean up as after the drain. */
    scree__log(SCREE__LOG_WARN, "stopping_now", "signal=%s jobs_running=%" PRIu32, name,
               d->drain.running);
    d->second_signal = 1;
    scree__drain_now(&d->drain);
    return;
  }
  scree__log(SCREE__LOG_INFO, "stopping",
             "signal=%s connections=%" PRIu32 " jobs_running=%" PRIu32
             " drain_timeout_ms=%" PRIu64,
             name, scree__server_connections(d->srv), d->drain.running,
             d->drain.timeout_ms);
  scree__notifyf("STOPPING=1\nSTATUS=draining %" PRIu32 " connections, %" PRIu32
                 " attention jobs running",
                 scree__server_connections(d->srv), d->drain.running);
  /* New clients are turned away at once; those connected keep being served
   * until the running jobs are done, so that their results reach them. */
  scree__server_stop_listening(d->srv);
  uv_close((uv_handle_t *)&d->purge_timer, NULL);
  scree__drain_start(&d->drain, on_drained);
}

/* SIGHUP (a terminal hanging up, or an operator used to "reload"), SIGUSR1
 * and SIGUSR2 would end screed with the default action: no log line, the
 * socket file left behind, every client cut off. screed has nothing to
 * reload (its log is stderr, which the service manager holds), so they are
 * logged and ignored. */
static void on_other_signal(uv_signal_t *h, int signum) {
  (void)h;
  scree__log(SCREE__LOG_INFO, "signal_ignored", "signal=%s",
             signum == SIGHUP ? "SIGHUP" : signum == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
}

static const char *ipc_name(int mode) {
  switch (mode) {
  case SCREE__IPC_MEMFD: return "memfd";
  case SCREE__IPC_VMM_FD: return "vmm";
  case SCREE__IPC_LEGACY: return "legacy";
  default: return "unknown";
  }
}

/* Completes the allow lists, which the server already holds, once the
 * socket file exists (its group is a default) and before the loop accepts
 * anyone. When the file cannot be stat'ed its group is left out: access
 * fails closed. */
static void start_access_control(options *o) {
  char msg[512];
  if (scree__authz_add_defaults(&o->authz, o->socket, msg, sizeof(msg)) != 0)
    scree__log(SCREE__LOG_WARN, "socket_group_unknown", "msg=%s", scree__q(msg));
  char uids[256], gids[256], admins[256];
  scree__authz_format(&o->authz, SCREE__AUTHZ_UID, uids, sizeof(uids));
  scree__authz_format(&o->authz, SCREE__AUTHZ_GID, gids, sizeof(gids));
  scree__authz_format(&o->authz, SCREE__AUTHZ_ADMIN, admins, sizeof(admins));
  scree__log(SCREE__LOG_INFO, "access",
             "allow_uids=%s allow_gids=%s admin_uids=%s quota_per_uid=%" PRIu64
             " shared_arenas=%d",
             scree__q(uids), scree__q(gids), scree__q(admins), o->quota_per_uid,
             o->shared_arenas);
}

/* fds screed keeps for itself whatever the connections: the listener, the
 * loop's own, the log, metrics, the spare fd, refused connections waiting
 * to be answered (server.h), and two per arena (the read-write and the
 * read-only memfd on host memory). */
#define FD_RESERVE_BASE 32u

/* Raises the soft RLIMIT_NOFILE to the hard limit (the usual soft limit of
 * 1024 cannot hold the default 1024 connections and the arenas), then sizes
 * --max-connections against it: what the fds allow after screed's own
 * reserve. A limit asked for that the fds cannot hold (or 0, no limit) is
 * lowered, and the log says so; past it clients get EAGAIN instead of
 * waiting in the backlog for an fd. */
static void size_for_fds(options *o) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    scree__log(SCREE__LOG_WARN, "fd_limit_unknown", "error=%s", scree__q(strerror(errno)));
    return;
  }
  rlim_t was = rl.rlim_cur;
  if (rl.rlim_cur != rl.rlim_max) {
    rlim_t want = rl.rlim_max;
    /* RLIM_INFINITY is refused for RLIMIT_NOFILE; the kernel's ceiling is
     * fs.nr_open, at least a million. */
    if (want == RLIM_INFINITY)
      want = 1u << 20;
    struct rlimit nl = {.rlim_cur = want, .rlim_max = rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
      rl.rlim_cur = want;
  }
  uint64_t nofile = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : (uint64_t)rl.rlim_cur;
  /* Arenas: at most the limit's worth of full ones plus as many of their own
   * (a batch larger than --arena-size), with room for one or two more; the
   * empty ones kept for reuse go back before the arenas pass the limit. */
  uint64_t arenas = o->arena_size ? 2 * (o->memory_limit / o->arena_size) + 2 : 2;
  uint64_t reserve = FD_RESERVE_BASE + SCREE__SERVER_REFUSALS_MAX + 2 * arenas;
  if (reserve > nofile / 2)
    reserve = nofile / 2;
  uint64_t room = nofile - reserve;
  uint32_t asked = o->max_connections;
  if (asked == 0 || asked > room)
    o->max_connections = room > UINT32_MAX ? UINT32_MAX : (uint32_t)room;
  scree__log(asked != 0 && o->max_connections < asked ? SCREE__LOG_WARN : SCREE__LOG_INFO,
             "fd_limit",
             "nofile=%" PRIu64 " was=%" PRIu64 " reserved=%" PRIu64 " max_connections=%" PRIu32
             " asked=%" PRIu32 "%s",
             nofile, was == RLIM_INFINITY ? UINT64_MAX : (uint64_t)was, reserve,
             o->max_connections, asked,
             o->max_connections != asked ? " note=\"max_connections lowered to fit the fd limit\""
                                         : "");
}

/* Opens the backend --device asks for. Returns 0 or prints why not. */
static int open_backend(const options *o, scree__mem **mem) {
  char msg[1024];
  int rc;
  scree__notifyf("STATUS=opening %s", o->device < 0 ? "host memory" : "CUDA device");
  if (o->device < 0) {
    if (o->ipc_given && o->ipc_mode != SCREE__IPC_VMM_FD)
      scree__log(SCREE__LOG_WARN, "option_ignored",
                 "option=--ipc reason=\"host memory is always shared as memfd\"");
    rc = scree__mem_host_create(mem, msg, sizeof(msg));
  } else {
    rc = scree__mem_cuda_create(o->device, o->ipc_mode, mem, msg, sizeof(msg));
  }
  if (rc != 0)
    fprintf(stderr, "screed: %s (%s)\n", msg, scree_err_name(rc));
  return rc;
}

/* Without --memory-limit, a GPU's limit follows the card: a share of the
 * device memory free now (logged, with what it came from). Where the driver
 * cannot say, the host default stays. */
static void default_memory_limit(options *o, scree__mem *mem) {
  uint64_t used = 0, total = 0;
  if (o->memory_limit_given || mem->info.backend != SCREE__BACKEND_CUDA ||
      mem->ops->memory_info == NULL)
    return;
  if (mem->ops->memory_info(mem, &used, &total) != 0 || total <= used) {
    scree__log(SCREE__LOG_WARN, "memory_limit_default",
               "reason=\"the driver did not report free device memory\" memory_limit=%" PRIu64,
               o->memory_limit);
    return;
  }
  const uint64_t free_b = total - used;
  if (free_b / 100u * GPU_MEMORY_LIMIT_PERCENT == 0)
    return;
  o->memory_limit = free_b / 100u * GPU_MEMORY_LIMIT_PERCENT;
  scree__log(SCREE__LOG_INFO, "memory_limit_default",
             "memory_limit=%" PRIu64 " percent=%u device_free=%" PRIu64
             " device_total=%" PRIu64,
             o->memory_limit, GPU_MEMORY_LIMIT_PERCENT, free_b, total);
}

static int render_peers(const void *arg, char **buf, size_t *len, size_t *cap) {
  return scree__peers_render_metrics(arg, buf, len, cap);
}

/* Opens UCX and the peer listener when the options ask for peers. */
static int start_peers(const options *o, uv_loop_t *loop, daemon_state *d, char *msg,
                       size_t msg_len) {
  if (o->peer_listen == NULL && o->npeers == 0)
    return 0;
  scree__peers_config pc = {
      .loop = loop,
      .store = d->store,
      .listen = o->peer_listen,
      .peers = o->peers,
      .npeers = o->npeers,
      .secret_file = o->peer_secret_file,
      .mirrors = o->mirrors,
      .nmirrors = o->nmirrors,
      .mirror_queue = o->watch_queue,
  };
  int rc = scree__peers_new(&pc, &d->peers, msg, msg_len);
  if (rc != 0)
    return rc;
  d->metrics.render_extra = render_peers;
  d->metrics.render_extra_arg = d->peers;
  char names[512] = "";
  size_t n = 0;
  for (size_t i = 0; i < o->npeers && n < sizeof(names); i++)
    n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s=%s:%u", i ? "," : "",
                          o->peers[i].name, o->peers[i].host, o->peers[i].port);
  scree__log(SCREE__LOG_INFO, "peers", "listen=%s port=%u peers=%s",
             scree__q(o->peer_listen ? o->peer_listen : ""),
             scree__peers_listen_port(d->peers), scree__q(names));
  /* docs/security.md (not protected, 9): UCX accepts whoever reaches the
   * listener and runs its own protocol for them before screed's handshake
   * is consulted, and nothing on the wire is encrypted. */
  if (o->peer_listen != NULL)
    scree__log(SCREE__LOG_WARN, "peer_listen_untrusted_network",
               "listen=%s reason=%s", scree__q(o->peer_listen),
               scree__q("UCX accepts anyone who connects and nothing is encrypted; keep this "
                        "address reachable by trusted hosts only"));
  return 0;
}

/* Makes the layers above the store, bottom up: the executor (with the
 * drain and metrics it reports to), the handler over store and executor,
 * and the server, which listens on the socket (or takes systemd's). On
 * failure, prints why; what was made is left in d for the caller to tear
 * down. */
static int start_layers(options *o, uv_loop_t *loop, daemon_state *d) {
  char msg[1024];
  scree__exec_config ecfg = {.drain = &d->drain,
                             .metrics = &d->metrics,
                             .job_timeout_ms = o->attention_timeout_ms};
  int rc = scree__exec_new(loop, d->store, &ecfg, &d->exec, msg, sizeof(msg));
  if (rc != 0)
    goto err;
  rc = start_peers(o, loop, d, msg, sizeof(msg));
  if (rc != 0)
    goto err;
  scree__handler_config hcfg = {.max_packet = o->max_packet,
                                .version = SCREE_VERSION_STRING,
                                .exec = d->exec,
                                .peers = d->peers};
  rc = scree__handler_new(d->store, &hcfg, &d->handler, msg, sizeof(msg));
  if (rc != 0)
    goto err;
  /* Socket activation: a socket from systemd is served as it is; else
   * screed binds its own. */
  int lfd;
  rc = scree__notify_listen_fd(o->socket, &lfd, msg, sizeof(msg));
  if (rc != 0)
    goto err;
  scree__server_config scfg = {
      .loop = loop,
      .handler = d->handler,
      .path = o->socket,
      .listen_fd = lfd,
      .max_packet = o->max_packet,
      .authz = &o->authz,
      .metrics = &d->metrics,
      .max_connections = o->max_connections,
  };
  rc = scree__server_new(&scfg, &d->srv, msg, sizeof(msg));
  if (rc != 0) {
    if (lfd >= 0)
      close(lfd);
    goto err;
  }
  if (o->metrics_listen != NULL) {
    rc = scree__metrics_http_start(loop, &d->metrics, o->metrics_listen, &d->http, msg,
                                   sizeof(msg));
    if (rc != 0)
      goto err;
  }
  return 0;

err:
  fprintf(stderr, "screed: %s\n", msg);
  return rc;
}

/* Frees what start_layers made, once the loop has run out. */
static void free_layers(daemon_state *d) {
  scree__server_free(d->srv);
  scree__handler_free(d->handler);
  scree__peers_free(d->peers);
  scree__exec_free(d->exec);
}

int main(int argc, char **argv) {
  /* The attention worker is this binary too (worker.h). */
  if (argc > 1 && strcmp(argv[1], SCREE__WORKER_ARG) == 0)
    return scree__worker_main(argc, argv);
  options o;
  int prc = parse_options(argc, argv, &o);
  if (prc != 0)
    scree__authz_free(&o.authz);
  if (prc == 1)
    return 0;
  if (prc != 0)
    return prc;
  if (default_socket(&o) != 0) {
    scree__authz_free(&o.authz);
    return 1;
  }
  /* A client that goes away mid-send must not kill screed; sends also pass
   * MSG_NOSIGNAL, this covers everything else. */
  signal(SIGPIPE, SIG_IGN);
  /* SIGINT and SIGTERM stay blocked until the loop's handlers are in place:
   * one arriving once the socket exists but before then would otherwise
   * kill screed with the default action instead of a clean stop. Threads
   * started meanwhile (the CUDA driver's) inherit the mask, so the signal
   * reaches this thread. */
  sigset_t stop_signals;
  handled_signals(&stop_signals);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  char msg[1024];
  int rc;
  int status = 1;
  scree__mem *mem = NULL;
  size_for_fds(&o);
  if (open_backend(&o, &mem) != 0) {
    scree__authz_free(&o.authz);
    return 1;
  }
  default_memory_limit(&o, mem);

  daemon_state d;
  memset(&d, 0, sizeof(d));
  scree__store_config cfg = {
      .memory_limit = o.memory_limit,
      .arena_size = o.arena_size,
      .authz = &o.authz,
      .quota_per_uid = o.quota_per_uid,
      .shared_arenas = o.shared_arenas,
      .max_leases_per_session = o.max_leases,
      .watch_queue = o.watch_queue,
  };
  rc = scree__store_new(mem, &cfg, &d.store, msg, sizeof(msg));
  if (rc != 0) {
    fprintf(stderr, "screed: %s (%s)\n", msg, scree_err_name(rc));
    goto err_mem;
  }

  uv_loop_t loop;
  rc = uv_loop_init(&loop);
  if (rc != 0) {
    fprintf(stderr, "screed: uv_loop_init: %s\n", uv_strerror(rc));
    goto err_store;
  }
  scree__metrics_init(&d.metrics);
  d.metrics.store = d.store;
  d.metrics.mem = mem;
  d.metrics.bytes_limit = o.memory_limit;
  d.metrics.max_connections = o.max_connections;
  scree__drain_init(&d.drain, &loop, o.drain_timeout_ms);
  d.drain.data = &d;
  uv_signal_init(&loop, &d.sigint);
  uv_signal_init(&loop, &d.sigterm);
  uv_signal_init(&loop, &d.sigquit);
  d.sigint.data = d.sigterm.data = d.sigquit.data = &d;
  for (int i = 0; i < 3; i++)
    uv_signal_init(&loop, &d.sigother[i]);
  uv_timer_init(&loop, &d.purge_timer);
  d.purge_timer.data = &d;
  d.release_free_ms = o.release_free_ms;
  if (start_layers(&o, &loop, &d) != 0)
    goto err_layers;
  uv_timer_start(&d.purge_timer, on_purge, PURGE_EVERY_MS, PURGE_EVERY_MS);
  uv_unref((uv_handle_t *)&d.purge_timer); /* never what keeps the loop alive */
  scree__watchdog_start(&loop, &d.watchdog);
  start_access_control(&o);
  uv_signal_start(&d.sigint, on_signal, SIGINT);
  uv_signal_start(&d.sigterm, on_signal, SIGTERM);
  /* SIGQUIT's default is a core dump; here it stops screed as SIGTERM does. */
  uv_signal_start(&d.sigquit, on_signal, SIGQUIT);
  for (int i = 0; i < 3; i++) {
    uv_signal_start(&d.sigother[i], on_other_signal, other_signals[i]);
    /* Never what keeps the loop alive once everything else is closed. */
    uv_unref((uv_handle_t *)&d.sigother[i]);
  }
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);

  const scree__mem_info *mi = &mem->info;
  scree__log(SCREE__LOG_INFO, "start",
             "version=%s socket=%s backend=%s device=%s device_index=%d ipc=%s"
             " memory_limit=%" PRIu64 " arena_size=%" PRIu64 " max_packet=%" PRIu64
             " pid=%d activated=%s metrics=%s max_connections=%" PRIu32
             " max_leases_per_connection=%" PRIu32 " drain_timeout_ms=%" PRIu64
             " release_free_ms=%" PRIu64 " attention_timeout_ms=%" PRIu64,
             SCREE_VERSION_STRING, scree__q(o.socket),
             mi->backend == SCREE__BACKEND_CUDA ? "cuda" : "host", scree__q(mi->device_name),
             mi->device_index, ipc_name(mi->ipc_mode), o.memory_limit, o.arena_size,
             o.max_packet, (int)getpid(), scree__server_activated(d.srv) ? "yes" : "no",
             scree__q(o.metrics_listen ? o.metrics_listen : ""), o.max_connections,
             o.max_leases, o.drain_timeout_ms, o.release_free_ms, o.attention_timeout_ms);
#ifdef SCREE_TEST_HOOKS
  scree__log(SCREE__LOG_INFO, "test_hooks",
             "msg=\"built with SCREE_TEST_HOOKS: the attention worker obeys "
             "SCREE_TEST_WORKER_FAULT; not for production\"");
#endif
  /* READY only now: the socket accepts and the backend is up. */
  scree__notifyf("READY=1\nSTATUS=listening on %s", o.socket);

  uv_run(&loop, UV_RUN_DEFAULT);

  free_layers(&d);
  rc = uv_loop_close(&loop);
  if (rc != 0) {
    scree__log(SCREE__LOG_ERROR, "loop_close_failed", "error=%s", scree__q(uv_strerror(rc)));
    uv_print_all_handles(&loop, stderr);
    goto err_store;
  }
  status = 0;
  scree__log(SCREE__LOG_INFO, "stopped", NULL);
  goto err_store;

err_layers:
  /* Startup failed part way: close what is open and let the loop finish
   * the closes before it is closed. */
  if (d.srv != NULL) {
    close_all(&d);
  } else {
    scree__exec_shutdown(d.exec);
    scree__peers_shutdown(d.peers);
    uv_close((uv_handle_t *)&d.purge_timer, NULL);
    close_signals(&d);
    scree__drain_close(&d.drain);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  free_layers(&d);
  uv_loop_close(&loop);
err_store:
  scree__store_free(d.store);
err_mem:
  mem->ops->destroy(mem);
  scree__authz_free(&o.authz);
  return status;
}
