/* screed: options, logging, signals; the rest is in server.c and store.c. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "log.h"
#include "mem.h"
#include "notify.h"
#include "server.h"
#include "store.h"
#include "scree/error.h"

#define DEFAULT_SOCKET "/run/scree/screed.sock"
#define DEFAULT_MEMORY_LIMIT (8ull << 30)
#define DEFAULT_ARENA_SIZE (256ull << 20)
#define DEFAULT_MAX_PACKET (1ull << 20)
#define MIN_MAX_PACKET 1024ull
#define MAX_MAX_PACKET (1ull << 30)

typedef struct options {
  int device; /* -1: host memory */
  int ipc_mode;
  int ipc_given;
  const char *socket;
  uint64_t memory_limit;
  uint64_t arena_size;
  uint64_t max_packet;
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: screed [options]\n"
          "  --device cpu|N        host memory (default) or CUDA device N\n"
          "  --ipc vmm|legacy      how CUDA arenas are shared (default vmm)\n"
          "  --socket PATH         default $SCREE_SOCKET, else " DEFAULT_SOCKET "\n"
          "  --memory-limit SIZE   bytes the stored batches may take (default 8G)\n"
          "  --arena-size SIZE     size of one arena (default 256M)\n"
          "  --max-packet SIZE     largest request accepted (default 1M)\n"
          "  --log-level LEVEL     error, warn, info (default) or debug\n"
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

static int parse_options(int argc, char **argv, options *o) {
  static const struct option longopts[] = {
      {"device", required_argument, NULL, 'd'},
      {"ipc", required_argument, NULL, 'i'},
      {"socket", required_argument, NULL, 's'},
      {"memory-limit", required_argument, NULL, 'm'},
      {"arena-size", required_argument, NULL, 'a'},
      {"max-packet", required_argument, NULL, 'p'},
      {"log-level", required_argument, NULL, 'l'},
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
  const char *env = getenv("SCREE_SOCKET");
  o->socket = env != NULL && env[0] != '\0' ? env : DEFAULT_SOCKET;

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
      if (c == 'm')
        o->memory_limit = v;
      else if (c == 'a')
        o->arena_size = v;
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
  if (o->max_packet < MIN_MAX_PACKET || o->max_packet > MAX_MAX_PACKET) {
    fprintf(stderr, "screed: --max-packet must be between %llu and %llu bytes\n",
            MIN_MAX_PACKET, MAX_MAX_PACKET);
    return 2;
  }
  return 0;
}

typedef struct daemon_state {
  scree__server *srv;
  uv_signal_t sigint;
  uv_signal_t sigterm;
} daemon_state;

static void on_signal(uv_signal_t *h, int signum) {
  daemon_state *d = h->data;
  scree__log(SCREE__LOG_INFO, "stopping", "signal=%s", signum == SIGINT ? "SIGINT" : "SIGTERM");
  scree__notify("STOPPING=1");
  scree__server_shutdown(d->srv);
  uv_close((uv_handle_t *)&d->sigint, NULL);
  uv_close((uv_handle_t *)&d->sigterm, NULL);
}

static const char *ipc_name(int mode) {
  switch (mode) {
  case SCREE__IPC_MEMFD: return "memfd";
  case SCREE__IPC_VMM_FD: return "vmm";
  case SCREE__IPC_LEGACY: return "legacy";
  default: return "unknown";
  }
}

int main(int argc, char **argv) {
  options o;
  int prc = parse_options(argc, argv, &o);
  if (prc == 1)
    return 0;
  if (prc != 0)
    return prc;
  /* A client that goes away mid-send must not kill screed; sends also pass
   * MSG_NOSIGNAL, this covers everything else. */
  signal(SIGPIPE, SIG_IGN);

  char msg[1024];
  int rc;
  int status = 1;
  scree__mem *mem = NULL;
  if (o.device < 0) {
    if (o.ipc_given && o.ipc_mode != SCREE__IPC_VMM_FD)
      scree__log(SCREE__LOG_WARN, "option_ignored",
                 "option=--ipc reason=\"host memory is always shared as memfd\"");
    rc = scree__mem_host_create(&mem, msg, sizeof(msg));
  } else {
    rc = scree__mem_cuda_create(o.device, o.ipc_mode, &mem, msg, sizeof(msg));
  }
  if (rc != 0) {
    fprintf(stderr, "screed: %s (%s)\n", msg, scree_err_name(rc));
    return 1;
  }

  scree__store_config cfg = {
      .memory_limit = o.memory_limit,
      .arena_size = o.arena_size,
      .max_packet = o.max_packet,
      .version = SCREE_VERSION_STRING,
  };
  scree__store *store = NULL;
  rc = scree__store_new(mem, &cfg, &store, msg, sizeof(msg));
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
  daemon_state d;
  memset(&d, 0, sizeof(d));
  rc = scree__server_new(&loop, store, o.socket, o.max_packet, &d.srv, msg, sizeof(msg));
  if (rc != 0) {
    fprintf(stderr, "screed: %s\n", msg);
    goto err_loop;
  }
  uv_signal_init(&loop, &d.sigint);
  uv_signal_init(&loop, &d.sigterm);
  d.sigint.data = d.sigterm.data = &d;
  uv_signal_start(&d.sigint, on_signal, SIGINT);
  uv_signal_start(&d.sigterm, on_signal, SIGTERM);

  const scree__mem_info *mi = &mem->info;
  scree__log(SCREE__LOG_INFO, "start",
             "version=%s socket=%s backend=%s device=%s device_index=%d ipc=%s"
             " memory_limit=%" PRIu64 " arena_size=%" PRIu64 " max_packet=%" PRIu64
             " pid=%d",
             SCREE_VERSION_STRING, scree__q(o.socket),
             mi->backend == SCREE__BACKEND_CUDA ? "cuda" : "host", scree__q(mi->device_name),
             mi->device_index, ipc_name(mi->ipc_mode), o.memory_limit, o.arena_size,
             o.max_packet, (int)getpid());
  scree__notify("READY=1\nSTATUS=serving");

  uv_run(&loop, UV_RUN_DEFAULT);

  scree__server_free(d.srv);
  rc = uv_loop_close(&loop);
  if (rc != 0) {
    scree__log(SCREE__LOG_ERROR, "loop_close_failed", "error=%s", scree__q(uv_strerror(rc)));
    uv_print_all_handles(&loop, stderr);
    goto err_store;
  }
  status = 0;
  scree__log(SCREE__LOG_INFO, "stopped", NULL);
  goto err_store;

err_loop:
  uv_loop_close(&loop);
err_store:
  scree__store_free(store);
err_mem:
  mem->ops->destroy(mem);
  return status;
}
