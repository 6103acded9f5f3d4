/* screectl: the command-line client of screed.
 *
 * Every failure prints one line, "screectl: <message>" (the daemon's own
 * message when the daemon refused), to stderr and exits 1. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "npy.h"
#include "scree/client.h"
#ifdef SCREECTL_HAVE_CUDA
#include "cudadrv.h"
#endif

static const char usage[] =
    "usage: screectl [--socket PATH] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  info [--json]                 the daemon's socket, backend, device and limits\n"
    "  list [PREFIX] [--json]        batches whose names start with PREFIX\n"
    "  stat NAME [--json]            one batch, as key: value lines\n"
    "  stats [--json]                the daemon's counters, as key: value lines, and\n"
    "                                each peer's (peers.NAME.*: fetches, failures by\n"
    "                                cause, its mirrors' counts)\n"
    "  delete NAME                   remove a batch (its memory goes with its last lease)\n"
    "  put NAME --values V.npy --offsets O.npy [--dtype DTYPE] [--shared]\n"
    "                                publish values of shape (total_rows, *inner) and\n"
    "                                1-D int32 or int64 offsets of batch_size + 1 entries\n"
    "  get NAME --values V.npy --offsets O.npy [--force]\n"
    "                                write a batch's values and offsets as .npy files\n"
    "                                (a batch in GPU memory is copied to the host first)\n"
    "  attention --q NAME --k NAME --v NAME --out NAME [--causal] [--scale S]\n"
    "            [--window L,R]      varlen attention in the daemon; stores batch --out\n"
    "  help                          this text\n"
    "  wait NAME [--timeout S]       wait until a batch NAME is sealed (S seconds, 0.5 too;\n"
    "                                default: no limit); exit 1 with a message on expiry\n"
    "  watch [PREFIX] [--no-replay] [--json] [--count N]\n"
    "                                print one line per event under PREFIX: \"SEQ KIND\n"
    "                                NAME\" (--json: one JSON object); the batches sealed\n"
    "                                now come first unless --no-replay; runs until\n"
    "                                interrupted, or N events; after an overflow it\n"
    "                                starts again (seq 1) and says so on stderr\n"
    "  fetch PEER NAME [--as LOCAL] [--wait S] [--timeout S]\n"
    "                                copy batch NAME from peer screed PEER (one of the\n"
    "                                daemon's --peer) into this daemon, as LOCAL; --wait:\n"
    "                                seconds NAME may take to be sealed on the peer\n"
    "\n"
    "options:\n"
    "  --socket PATH   the daemon's socket (default: $SCREE_SOCKET, else the first\n"
    "                  of " SCREE_CLIENT_DEFAULT_SOCKET " and\n"
    "                  $XDG_RUNTIME_DIR/scree-UID/screed.sock where a daemon answers)\n"
    "  --json          info, list, stat, stats: one line of JSON, for scripts (sizes\n"
    "                  in bytes; the plain output shows them as KiB, MiB, GiB too)\n"
    "  --dtype DTYPE   put: the element type, for files whose numpy dtype cannot say\n"
    "                  it: bfloat16 travels as <u2 and float8_e4m3/float8_e5m2 as |u1\n"
    "                  (raw bits); also accepted for |V2 and |V1 files\n"
    "  --shared        put: into the daemon's shared pool of arenas, beside other\n"
    "                  owners' shared batches, rather than into your own arenas\n"
    "  --force         get: overwrite files that exist (refused otherwise)\n"
    "  -h, --help      this text\n"
    "  --version       screectl's version and the library's\n"
    "\n"
    "get writes bfloat16 values as <u2 and float8 values as |u1 (raw bits); with\n"
    "ml_dtypes, numpy.load(f).view(ml_dtypes.bfloat16) gives them their type back.\n"
    "Exit status: 0 on success, 1 on any error.\n";

typedef struct opts {
  const char *socket;
  const char *cmd;
  const char *name;   /* list: the prefix */
  const char *values;
  const char *offsets;
  const char *dtype;
  const char *q, *k, *v, *out;
  scree_attention_params att;
  const char *peer;    /* fetch */
  const char *as_name; /* fetch --as */
  double wait_s;       /* fetch --wait; < 0: not given */
  double timeout_s;    /* fetch --timeout; 0: the daemon's default */
  int json;   /* info, list, stat, stats --json, watch --json */
  int shared; /* put --shared */
  int force;  /* get --force */
  const char *timeout; /* wait --timeout */
  int no_replay;       /* watch --no-replay */
  const char *count;   /* watch --count */
} opts;

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("screectl: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

/* Takes the value of option argv[*i] (either "--opt VALUE" or
 * "--opt=VALUE"). Returns NULL, after complaining, when it is missing. */
static const char *opt_value(int argc, char **argv, int *i, const char *opt) {
  const char *a = argv[*i];
  size_t n = strlen(opt);
  if (a[n] == '=')
    return a + n + 1;
  if (*i + 1 >= argc) {
    die("%s needs a value (see --help)", opt);
    return NULL;
  }
  return argv[++*i];
}

static int is_opt(const char *a, const char *opt) {
  size_t n = strlen(opt);
  return strncmp(a, opt, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

static int parse_window(const char *s, scree_attention_params *p) {
  char *end;
  long l = strtol(s, &end, 10);
  if (end == s || *end != ',')
    return -1;
  const char *r = end + 1;
  long rr = strtol(r, &end, 10);
  if (end == r || *end != '\0' || l < -1 || rr < -1 || l > INT32_MAX || rr > INT32_MAX)
    return -1;
  p->window_left = (int32_t)l;
  p->window_right = (int32_t)rr;
  return 0;
}

/* The options that take a value and the flags without one, each with where
 * in opts it goes: one row an option rather than one branch each. A value
 * comes as "--opt VALUE" or "--opt=VALUE"; a flag must be given alone. */
typedef struct {
  const char *name;
  size_t off;
} opt_slot;

static const opt_slot str_opts[] = {
    {"--socket", offsetof(opts, socket)},   {"--values", offsetof(opts, values)},
    {"--offsets", offsetof(opts, offsets)}, {"--dtype", offsetof(opts, dtype)},
    {"--q", offsetof(opts, q)},             {"--k", offsetof(opts, k)},
    {"--v", offsetof(opts, v)},             {"--out", offsetof(opts, out)},
    {"--timeout", offsetof(opts, timeout)}, {"--count", offsetof(opts, count)},
    {"--as", offsetof(opts, as_name)},
};

static const opt_slot flag_opts[] = {
    {"--json", offsetof(opts, json)},           {"--shared", offsetof(opts, shared)},
    {"--force", offsetof(opts, force)},         {"--no-replay", offsetof(opts, no_replay)},
    {"--causal", offsetof(opts, att.causal)},
};

/* The row of table t (n rows) that names option a; NULL when none does.
 * A flag matches only alone, a value option also as "--opt=VALUE". */
static const opt_slot *opt_find(const char *a, const opt_slot *t, size_t n, int is_flag) {
  for (size_t k = 0; k < n; k++)
    if (is_flag ? strcmp(a, t[k].name) == 0 : is_opt(a, t[k].name))
      return &t[k];
  return NULL;
}

/* Returns 0, 1 for an error (already printed), or 2 after printing help. */
static int parse_args(int argc, char **argv, opts *o) {
  static const scree_attention_params init = SCREE_ATTENTION_PARAMS_INIT;
  memset(o, 0, sizeof(*o));
  o->att = init;
  o->wait_s = -1;
  int npos = 0;
  const char *pos[2] = {NULL, NULL};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 ||
        (o->cmd == NULL && strcmp(a, "help") == 0)) {
      fputs(usage, stdout);
      return 2;
    } else if (strcmp(a, "--version") == 0) {
      printf("screectl %s (libscree %s)\n", SCREE_VERSION_STRING, scree_version());
      return 2;
    }
    const opt_slot *str = opt_find(a, str_opts, sizeof(str_opts) / sizeof(str_opts[0]), 0);
    if (str != NULL) {
      const char **dst = (const char **)((char *)o + str->off);
      *dst = opt_value(argc, argv, &i, str->name);
      if (*dst == NULL)
        return 1;
      continue;
    }
    const opt_slot *flag = opt_find(a, flag_opts, sizeof(flag_opts) / sizeof(flag_opts[0]), 1);
    if (flag != NULL) {
      *(int *)((char *)o + flag->off) = 1;
      continue;
    }
    if (is_opt(a, "--scale")) {
      const char *s = opt_value(argc, argv, &i, "--scale");
      if (s == NULL)
        return 1;
      char *end;
      float f = strtof(s, &end);
      if (end == s || *end != '\0' || !(f > 0.0f))
        return die("--scale wants a positive number, not '%s'", s);
      o->att.has_scale = 1;
      o->att.scale = f;
      continue;
    } else if (is_opt(a, "--wait")) {
      const char *s = opt_value(argc, argv, &i, "--wait");
      if (s == NULL)
        return 1;
      char *end;
      double v = strtod(s, &end);
      if (end == s || *end != '\0' || !(v >= 0) || v > 86400)
        return die("--wait wants seconds (0 to 86400), not '%s'", s);
      o->wait_s = v;
      continue;
    } else if (is_opt(a, "--window")) {
      const char *s = opt_value(argc, argv, &i, "--window");
      if (s == NULL)
        return 1;
      if (parse_window(s, &o->att) != 0)
        return die("--window wants L,R (integers >= -1, -1 for unbounded), not '%s'", s);
      continue;
    } else if (a[0] == '-' && a[1] != '\0') {
      return die("unknown option '%s' (see --help)", a);
    } else {
      if (o->cmd == NULL) {
        o->cmd = a;
      } else if (npos < 2) {
        pos[npos++] = a;
      } else {
        return die("unexpected argument '%s' (see --help)", a);
      }
      continue;
    }
  }
  if (o->cmd == NULL)
    return die("no command given (see --help)");

  static const struct {
    const char *cmd;
    int min_pos, max_pos;
  } cmds[] = {{"info", 0, 0},   {"list", 0, 1}, {"stat", 1, 1},      {"stats", 0, 0},
              {"delete", 1, 1}, {"put", 1, 1},  {"get", 1, 1},       {"attention", 0, 0},
              {"wait", 1, 1},   {"watch", 0, 1}, {"fetch", 2, 2}};
  size_t c;
  for (c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++)
    if (strcmp(o->cmd, cmds[c].cmd) == 0)
      break;
  if (c == sizeof(cmds) / sizeof(cmds[0]))
    return die("unknown command '%s' (see --help)", o->cmd);
  if (npos < cmds[c].min_pos)
    return die(strcmp(o->cmd, "fetch") == 0 ? "%s needs PEER and NAME (see --help)"
                                            : "%s needs a batch name (see --help)",
               o->cmd);
  if (npos > cmds[c].max_pos)
    return die("%s: unexpected argument '%s' (see --help)", o->cmd, pos[cmds[c].max_pos]);
  o->name = pos[0];
  int is_fetch = strcmp(o->cmd, "fetch") == 0;
  if (is_fetch) {
    o->peer = pos[0];
    o->name = pos[1];
    if (o->timeout != NULL) {
      /* fetch's --timeout bounds the whole fetch, in seconds as wait's. */
      char *end;
      double v = strtod(o->timeout, &end);
      if (end == o->timeout || *end != '\0' || !(v >= 0) || v > 86400)
        return die("--timeout wants seconds (0 to 86400), not '%s'", o->timeout);
      o->timeout_s = v;
    }
  } else if (o->as_name != NULL || o->wait_s >= 0) {
    return die("--as and --wait belong to fetch");
  }

  int is_put = strcmp(o->cmd, "put") == 0, is_get = strcmp(o->cmd, "get") == 0;
  int is_att = strcmp(o->cmd, "attention") == 0;
  if ((is_put || is_get) && (o->values == NULL || o->offsets == NULL))
    return die("%s needs --values FILE and --offsets FILE", o->cmd);
  if (!is_put && !is_get && (o->values != NULL || o->offsets != NULL))
    return die("--values and --offsets belong to put and get");
  if (!is_put && o->dtype != NULL)
    return die("--dtype belongs to put");
  if (!is_put && o->shared)
    return die("--shared belongs to put");
  int is_watch = strcmp(o->cmd, "watch") == 0;
  if (o->json && strcmp(o->cmd, "stats") != 0 && strcmp(o->cmd, "info") != 0 &&
      strcmp(o->cmd, "list") != 0 && strcmp(o->cmd, "stat") != 0 && !is_watch)
    return die("--json belongs to info, list, stat, stats and watch");
  if (o->force && !is_get)
    return die("--force belongs to get");
  if (o->timeout != NULL && strcmp(o->cmd, "wait") != 0 && !is_fetch)
    return die("--timeout belongs to wait and fetch");
  if ((o->no_replay || o->count != NULL) && !is_watch)
    return die("--no-replay and --count belong to watch");
  if (is_att && (o->q == NULL || o->k == NULL || o->v == NULL || o->out == NULL))
    return die("attention needs --q, --k, --v and --out");
  if (!is_att && (o->q || o->k || o->v || o->out || o->att.causal || o->att.has_scale ||
                  o->att.window_left != -1 || o->att.window_right != -1))
    return die("--q, --k, --v, --out, --causal, --scale and --window belong to attention");
  return 0;
}

static void format_shape(const scree_array *d, char *buf, size_t len) {
  int n = snprintf(buf, len, "(%" PRId64, d->total_rows);
  for (int32_t i = 0; i < d->ndim_inner && n > 0 && (size_t)n < len; i++)
    n += snprintf(buf + n, len - (size_t)n, ", %" PRId64, d->inner[i]);
  if (n > 0 && (size_t)n < len)
    snprintf(buf + n, len - (size_t)n, "%s)", d->ndim_inner == 0 ? "," : "");
}

/* A size for people. The long form, "168 bytes" or "1.5 MiB (1572864
 * bytes)", keeps the exact count so that nothing is lost to rounding (and
 * drops the decimal for a whole number of units); the short form, for
 * table columns, is "168 B" or "1.5 MiB". */
static const char *human_size(uint64_t v, int brief, char *buf, size_t len) {
  if (v < 1024) {
    snprintf(buf, len, "%" PRIu64 " %s", v, brief ? "B" : "bytes");
    return buf;
  }
  static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  uint64_t unit = 1024;
  while (u < 4 && v / unit >= 1024)
    unit *= 1024, u++;
  const char *name = units[u];
  if (brief)
    snprintf(buf, len, "%.1f %s", (double)v / (double)unit, name);
  else if (v % unit == 0)
    snprintf(buf, len, "%" PRIu64 " %s (%" PRIu64 " bytes)", v / unit, name, v);
  else
    snprintf(buf, len, "%.1f %s (%" PRIu64 " bytes)", (double)v / (double)unit, name, v);
  return buf;
}

static const char *human(uint64_t v, char *buf, size_t len) { return human_size(v, 0, buf, len); }

static const char *human_short(uint64_t v, char *buf, size_t len) {
  return human_size(v, 1, buf, len);
}

/* Writes s as a JSON string: quotes, and escapes for what JSON requires
 * (batch names and device names may hold any byte but NUL). */
static void json_str(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    if (*p == '"' || *p == '\\')
      printf("\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f)
      printf("\\u%04x", *p);
    else
      putchar(*p);
  }
  putchar('"');
}

static void print_uuid(const uint8_t *u) {
  for (int k = 0; k < 16; k++)
    printf("%02x%s", u[k], (k == 3 || k == 5 || k == 7 || k == 9) ? "-" : "");
}

static int client_fail(scree_client *c, int rc) {
  return die("%s", c != NULL && scree_client_last_error(c)[0] != '\0'
                       ? scree_client_last_error(c)
                       : scree_strerror(rc));
}

static int cmd_info(scree_client *c, int json) {
  scree_client_info i = SCREE_CLIENT_INFO_INIT;
  scree_client_info_get(c, &i);
  if (json) {
    printf("{\"socket\":");
    json_str(scree_client_socket(c));
    printf(",\"protocol_version\":%" PRIu32 ",\"daemon_version\":", i.protocol_version);
    json_str(i.daemon_version);
    printf(",\"backend\":\"%s\",\"ipc_mode\":\"%s\",\"device_index\":%" PRId32
           ",\"device_name\":",
           scree_backend_name(i.backend), scree_ipc_mode_name(i.ipc_mode), i.device_index);
    json_str(i.device_name);
    printf(",\"device_uuid\":");
    if (i.has_device_uuid) {
      putchar('"');
      print_uuid(i.device_uuid);
      putchar('"');
    } else {
      printf("null");
    }
    printf(",\"granularity\":%" PRIu64 ",\"memory_limit\":%" PRIu64 ",\"arena_size\":%" PRIu64
           ",\"max_packet\":%" PRIu64 ",\"max_name_len\":%" PRIu32 "}\n",
           i.granularity, i.memory_limit, i.arena_size, i.max_packet, i.max_name_len);
    return 0;
  }
  char h[64];
  printf("socket: %s\n", scree_client_socket(c));
  printf("protocol_version: %" PRIu32 "\n", i.protocol_version);
  printf("daemon_version: %s\n", i.daemon_version);
  printf("backend: %s\n", scree_backend_name(i.backend));
  printf("ipc_mode: %s\n", scree_ipc_mode_name(i.ipc_mode));
  printf("device_index: %" PRId32 "\n", i.device_index);
  printf("device_name: %s\n", i.device_name);
  if (i.has_device_uuid) {
    printf("device_uuid: ");
    print_uuid(i.device_uuid);
    printf("\n");
  }
  printf("granularity: %s\n", human(i.granularity, h, sizeof(h)));
  printf("memory_limit: %s\n", human(i.memory_limit, h, sizeof(h)));
  printf("arena_size: %s\n", human(i.arena_size, h, sizeof(h)));
  printf("max_packet: %s\n", human(i.max_packet, h, sizeof(h)));
  printf("max_name_len: %" PRIu32 "\n", i.max_name_len);
  return 0;
}

/* One batch as a JSON object (list --json and stat --json). */
static void print_batch_json(const scree_batch_info *b) {
  printf("{\"name\":");
  json_str(b->name);
  printf(",\"state\":\"%s\",\"dtype\":\"%s\",\"shape\":[%" PRId64,
         scree_batch_state_name(b->state), scree_dtype_name(b->desc.dtype), b->desc.total_rows);
  for (int32_t i = 0; i < b->desc.ndim_inner; i++)
    printf(",%" PRId64, b->desc.inner[i]);
  printf("],\"batch_size\":%" PRId64 ",\"total_rows\":%" PRId64 ",\"max_length\":%" PRId64
         ",\"offsets_dtype\":\"%s\",\"values_bytes\":%" PRIu64 ",\"offsets_bytes\":%" PRIu64
         ",\"leases\":%" PRIu32 ",\"owner_uid\":%" PRIu32 ",\"owner_pid\":%" PRId32
         ",\"age_s\":%.3f,\"arena_id\":%" PRIu64 ",\"delete_pending\":%s}",
         b->desc.batch_size, b->desc.total_rows, b->desc.max_length,
         scree_dtype_name(b->desc.offsets_dtype), b->values_bytes, b->offsets_bytes, b->leases,
         b->owner_uid, b->owner_pid, (double)b->age_ns / 1e9, b->arena_id,
         b->delete_pending ? "true" : "false");
}

static int cmd_list(scree_client *c, const char *prefix, int json) {
  scree_batch_info *items;
  size_t n;
  int rc = scree_client_list(c, prefix, &items, &n);
  if (rc != 0)
    return client_fail(c, rc);
  if (json) {
    putchar('[');
    for (size_t i = 0; i < n; i++) {
      if (i > 0)
        putchar(',');
      print_batch_json(&items[i]);
    }
    printf("]\n");
    scree_client_free_list(items);
    return 0;
  }
  int w = 4;
  for (size_t i = 0; i < n; i++)
    if ((int)strlen(items[i].name) > w)
      w = (int)strlen(items[i].name);
  printf("%-*s  %-7s  %-11s  %-22s  %8s  %10s  %6s\n", w, "NAME", "STATE", "DTYPE", "SHAPE",
         "BATCH", "SIZE", "LEASES");
  for (size_t i = 0; i < n; i++) {
    const scree_batch_info *b = &items[i];
    char shape[160], size[32];
    format_shape(&b->desc, shape, sizeof(shape));
    printf("%-*s  %-7s  %-11s  %-22s  %8" PRId64 "  %10s  %6" PRIu32 "%s\n", w, b->name,
           scree_batch_state_name(b->state), scree_dtype_name(b->desc.dtype), shape,
           b->desc.batch_size,
           human_short(b->values_bytes + b->offsets_bytes, size, sizeof(size)), b->leases,
           b->delete_pending ? "  (deleted)" : "");
  }
  scree_client_free_list(items);
  return 0;
}

static int cmd_stat(scree_client *c, const char *name, int json) {
  scree_batch_info b;
  int rc = scree_client_stat(c, name, &b);
  if (rc != 0)
    return client_fail(c, rc);
  if (json) {
    print_batch_json(&b);
    putchar('\n');
    return 0;
  }
  char shape[160], h[64];
  format_shape(&b.desc, shape, sizeof(shape));
  printf("name: %s\n", b.name);
  printf("state: %s\n", scree_batch_state_name(b.state));
  printf("dtype: %s\n", scree_dtype_name(b.desc.dtype));
  printf("shape: %s\n", shape);
  printf("batch_size: %" PRId64 "\n", b.desc.batch_size);
  printf("total_rows: %" PRId64 "\n", b.desc.total_rows);
  printf("max_length: %" PRId64 "\n", b.desc.max_length);
  printf("offsets_dtype: %s\n", scree_dtype_name(b.desc.offsets_dtype));
  printf("values_bytes: %s\n", human(b.values_bytes, h, sizeof(h)));
  printf("offsets_bytes: %s\n", human(b.offsets_bytes, h, sizeof(h)));
  printf("leases: %" PRIu32 "\n", b.leases);
  printf("owner_uid: %" PRIu32 "\n", b.owner_uid);
  printf("owner_pid: %" PRId32 "\n", b.owner_pid);
  printf("age_s: %.3f\n", (double)b.age_ns / 1e9);
  printf("arena_id: %" PRIu64 "\n", b.arena_id);
  printf("delete_pending: %s\n", b.delete_pending ? "yes" : "no");
  return 0;
}

/* The most peers a daemon has (screed's --peer limit). */
#define MAX_PEERS 64

/* stats --json: the same counters as one JSON object on one line. Every
 * value is a number and every key a fixed identifier or a peer name
 * (letters, digits, '.', '_', '-'), so nothing needs escaping. */
static void print_stats_json(const scree_stats *s, const scree_peer_stats *peers,
                             size_t npeers) {
  printf("{\"bytes_used\":%" PRIu64 ",\"bytes_limit\":%" PRIu64 ",\"bytes_arenas\":%" PRIu64
         ",\"arenas\":%" PRIu32 ",\"batches\":%" PRIu32 ",\"pending_deletes\":%" PRIu32
         ",\"leases\":%" PRIu32 ",\"connections\":%" PRIu32 ",\"requests\":%" PRIu64
         ",\"uptime_s\":%.3f,\"waiters\":%" PRIu32 ",\"watchers\":%" PRIu32
         ",\"watch_overflows\":%" PRIu64 ",\"errors\":{",
         s->bytes_used, s->bytes_limit, s->bytes_arenas, s->arenas, s->batches,
         s->pending_deletes, s->leases, s->connections, s->requests,
         (double)s->uptime_ns / 1e9, s->waiters, s->watchers, s->watch_overflows);
  for (uint32_t i = 0; i < s->n_errors; i++)
    printf("%s\"%s\":%" PRIu64, i ? "," : "", scree_err_name(s->errors[i].code),
           s->errors[i].count);
  printf("},\"peers\":[");
  for (size_t i = 0; i < npeers; i++) {
    const scree_peer_stats *p = &peers[i];
    printf("%s{\"name\":\"%s\",\"connected\":%s,\"batches_fetched\":%" PRIu64
           ",\"bytes_fetched\":%" PRIu64 ",\"failures\":{",
           i ? "," : "", p->name, p->connected ? "true" : "false", p->batches_fetched,
           p->bytes_fetched);
    int first = 1;
    for (int k = 0; k < SCREE_FETCH_FAIL_COUNT_; k++)
      if (p->failures[k] != 0) {
        printf("%s\"%s\":%" PRIu64, first ? "" : ",", scree_fetch_failure_name(k),
               p->failures[k]);
        first = 0;
      }
    printf("},\"mirrors\":%" PRIu32 ",\"batches_mirrored\":%" PRIu64
           ",\"mirror_deletes\":%" PRIu64 ",\"mirror_resyncs\":%" PRIu64 "}",
           p->mirrors, p->batches_mirrored, p->mirror_deletes, p->mirror_resyncs);
  }
  printf("]}\n");
}

static int cmd_stats(scree_client *c, int json) {
  scree_stats s = SCREE_STATS_INIT;
  int rc = scree_client_stats(c, &s);
  if (rc != 0)
    return client_fail(c, rc);
  static scree_peer_stats peers[MAX_PEERS];
  for (size_t i = 0; i < MAX_PEERS; i++)
    peers[i] = (scree_peer_stats)SCREE_PEER_STATS_INIT;
  size_t npeers = 0;
  rc = scree_client_peer_stats(c, peers, MAX_PEERS, &npeers);
  if (rc != 0)
    return client_fail(c, rc);
  if (npeers > MAX_PEERS)
    npeers = MAX_PEERS;
  if (json) {
    print_stats_json(&s, peers, npeers);
    return 0;
  }
  char h[64];
  printf("bytes_used: %s\n", human(s.bytes_used, h, sizeof(h)));
  printf("bytes_limit: %s\n", human(s.bytes_limit, h, sizeof(h)));
  printf("bytes_arenas: %s\n", human(s.bytes_arenas, h, sizeof(h)));
  printf("arenas: %" PRIu32 "\n", s.arenas);
  printf("batches: %" PRIu32 "\n", s.batches);
  printf("pending_deletes: %" PRIu32 "\n", s.pending_deletes);
  printf("leases: %" PRIu32 "\n", s.leases);
  printf("connections: %" PRIu32 "\n", s.connections);
  printf("requests: %" PRIu64 "\n", s.requests);
  printf("uptime_s: %.3f\n", (double)s.uptime_ns / 1e9);
  printf("waiters: %" PRIu32 "\n", s.waiters);
  printf("watchers: %" PRIu32 "\n", s.watchers);
  printf("watch_overflows: %" PRIu64 "\n", s.watch_overflows);
  for (uint32_t i = 0; i < s.n_errors; i++)
    printf("errors.%s: %" PRIu64 "\n", scree_err_name(s.errors[i].code), s.errors[i].count);
  for (size_t i = 0; i < npeers; i++) {
    const scree_peer_stats *p = &peers[i];
    printf("peers.%s.connected: %s\n", p->name, p->connected ? "yes" : "no");
    printf("peers.%s.batches_fetched: %" PRIu64 "\n", p->name, p->batches_fetched);
    printf("peers.%s.bytes_fetched: %s\n", p->name, human(p->bytes_fetched, h, sizeof(h)));
    for (int k = 0; k < SCREE_FETCH_FAIL_COUNT_; k++)
      if (p->failures[k] != 0)
        printf("peers.%s.failures.%s: %" PRIu64 "\n", p->name, scree_fetch_failure_name(k),
               p->failures[k]);
    if (p->mirrors == 0)
      continue;
    printf("peers.%s.mirrors: %" PRIu32 "\n", p->name, p->mirrors);
    printf("peers.%s.batches_mirrored: %" PRIu64 "\n", p->name, p->batches_mirrored);
    printf("peers.%s.mirror_deletes: %" PRIu64 "\n", p->name, p->mirror_deletes);
    printf("peers.%s.mirror_resyncs: %" PRIu64 "\n", p->name, p->mirror_resyncs);
  }
  return 0;
}

static int cmd_delete(scree_client *c, const char *name) {
  int deferred = 0;
  int rc = scree_client_delete(c, name, &deferred);
  if (rc != 0)
    return client_fail(c, rc);
  if (deferred)
    printf("deleted %s (its memory goes with its last lease)\n", name);
  else
    printf("deleted %s\n", name);
  return 0;
}

/* "bool, int8, ..., float8_e5m2 (or bf16, fp16, half, float, fp32,
 * double, float8_e4m3fn)": what --dtype accepts, from libscree's own list
 * so that it never goes stale. */
static void dtype_names(char *buf, size_t len) {
  static const char *aliases[] = {"bf16", "fp16", "half", "float", "fp32", "double",
                                  "float8_e4m3fn"};
  size_t n = 0;
  buf[0] = '\0';
  for (int d = SCREE_BOOL; d < SCREE_DTYPE_COUNT_ && n < len; d++)
    n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "",
                          scree_dtype_name((scree_dtype)d));
  for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]) && n < len; i++)
    if (scree_dtype_from_name(aliases[i]) != SCREE_DTYPE_INVALID)
      n += (size_t)snprintf(buf + n, len - n, "%s%s", i == 0 ? " (or " : ", ", aliases[i]);
  if (n < len)
    snprintf(buf + n, len - n, ")");
}

static int cmd_put(scree_client *c, const opts *o) {
  char m[512];
  int ret = 1;
  scree__npy v, off;
  scree_dtype want = SCREE_DTYPE_INVALID;
  if (o->dtype != NULL) {
    want = scree_dtype_from_name(o->dtype);
    if (want == SCREE_DTYPE_INVALID) {
      char names[512];
      dtype_names(names, sizeof(names));
      return die("unknown dtype '%s'; --dtype takes %s", o->dtype, names);
    }
  }
  if (scree__npy_read(o->values, &v, m, sizeof(m)) != 0)
    return die("%s", m);
  if (scree__npy_read(o->offsets, &off, m, sizeof(m)) != 0) {
    die("%s", m);
    goto err_values;
  }
  scree_array a;
  memset(&a, 0, sizeof(a));
  if (scree__npy_resolve_dtype(&v, want, &a.dtype, m, sizeof(m)) != 0) {
    die("%s: %s", o->values, m);
    goto err_offsets;
  }
  if (v.ndim < 1 || v.ndim - 1 > SCREE_MAX_INNER_DIMS) {
    die("%s: values must have 1 to %d dimensions (total_rows, *inner), not %d", o->values,
        SCREE_MAX_INNER_DIMS + 1, v.ndim);
    goto err_offsets;
  }
  if (off.ndim != 1 || off.kind != SCREE_NPY_INT || (off.itemsize != 4 && off.itemsize != 8) ||
      off.shape[0] < 1) {
    die("%s: offsets must be a 1-D int32 or int64 array of batch_size + 1 entries "
        "(it is '%s' with %d dimension%s)",
        o->offsets, off.descr, off.ndim, off.ndim == 1 ? "" : "s");
    goto err_offsets;
  }
  a.total_rows = v.shape[0];
  a.ndim_inner = v.ndim - 1;
  for (int i = 1; i < v.ndim; i++)
    a.inner[i - 1] = v.shape[i];
  a.batch_size = off.shape[0] - 1;
  a.offsets_dtype = off.itemsize == 4 ? SCREE_INT32 : SCREE_INT64;
  a.values = v.data;
  a.offsets = off.data;
  scree_put_options po = SCREE_PUT_OPTIONS_INIT;
  po.flags = o->shared ? SCREE_CREATE_SHARED : 0;
  int rc = scree_client_put(c, o->name, &a, &po);
  if (rc != 0) {
    client_fail(c, rc);
    goto err_offsets;
  }
  /* Says what the daemon now holds, as stat would show it. */
  char shape[160], h[64];
  format_shape(&a, shape, sizeof(shape));
  printf("stored %s: %s %s, batch_size %" PRId64 ", %s offsets, %s%s\n", o->name,
         scree_dtype_name(a.dtype), shape, a.batch_size, scree_dtype_name(a.offsets_dtype),
         human(v.nbytes + off.nbytes, h, sizeof(h)), o->shared ? ", shared" : "");
  ret = 0;
err_offsets:
  scree__npy_free(&off);
err_values:
  scree__npy_free(&v);
  return ret;
}

/* get writes nothing over an existing file unless --force: a typo in a path
 * should not cost a file. Both are checked before the batch is fetched. */
static int check_outputs(const opts *o) {
  const char *files[2] = {o->values, o->offsets};
  if (strcmp(o->values, o->offsets) == 0)
    return die("--values and --offsets are the same file, %s", o->values);
  if (o->force)
    return 0;
  for (int i = 0; i < 2; i++) {
    struct stat st;
    if (lstat(files[i], &st) == 0)
      return die("%s exists; screectl get does not overwrite files unless --force is given",
                 files[i]);
    if (errno != ENOENT)
      return die("cannot check %s: %s", files[i], strerror(errno));
  }
  return 0;
}

/* Copies a batch in GPU memory (a view from scree_client_get) into host
 * buffers of vbytes and obytes, in the primary context of its GPU.
 * Returns 0, or 1 after printing why. */
static int gpu_to_host(const scree_array *a, uint64_t vbytes, uint64_t obytes, void **values,
                       void **offsets) {
#ifdef SCREECTL_HAVE_CUDA
  char msg[512];
  const size_t msg_len = sizeof(msg);
  const scree__cu *cu;
  CUcontext ctx, prev = NULL;
  CUdevice dev;
  int rc = scree__cu_load(&cu, msg, msg_len);
  if (rc != 0)
    return die("%s", msg);
  *values = malloc(vbytes > 0 ? (size_t)vbytes : 1);
  *offsets = malloc((size_t)obytes);
  if (*values == NULL || *offsets == NULL)
    return die("out of memory for %" PRIu64 " bytes of the batch", vbytes + obytes);
  SCREE_CUDA_GOTO(cu->cuDeviceGet(&dev, a->device.index), rc, err);
  SCREE_CUDA_GOTO(cu->cuDevicePrimaryCtxRetain(&ctx, dev), rc, err);
  (void)cu->cuCtxGetCurrent(&prev);
  SCREE_CUDA_GOTO(cu->cuCtxSetCurrent(ctx), rc, err_release);
  if (vbytes > 0)
    SCREE_CUDA_GOTO(cu->cuMemcpyDtoH(*values, (CUdeviceptr)(uintptr_t)a->values, (size_t)vbytes),
                    rc, err_restore);
  SCREE_CUDA_GOTO(cu->cuMemcpyDtoH(*offsets, (CUdeviceptr)(uintptr_t)a->offsets, (size_t)obytes),
                  rc, err_restore);
  (void)cu->cuCtxSetCurrent(prev);
  (void)cu->cuDevicePrimaryCtxRelease(dev);
  return 0;

err_restore:
  (void)cu->cuCtxSetCurrent(prev);
err_release:
  (void)cu->cuDevicePrimaryCtxRelease(dev);
err:
  return die("copying the batch from GPU %d to the host: %s", a->device.index, msg);
#else
  (void)a;
  (void)vbytes;
  (void)obytes;
  (void)values;
  (void)offsets;
  return die("this screectl was built without CUDA: it cannot copy a GPU batch to the host");
#endif
}

static int cmd_get(scree_client *c, const opts *o) {
  scree_array a;
  scree_lease *lease;
  char m[512];
  if (check_outputs(o) != 0)
    return 1;
  void *hv = NULL, *ho = NULL;
  int rc = scree_client_get(c, o->name, &a, &lease);
  if (rc != 0)
    return client_fail(c, rc);
  int ret = 1;
  void *offs = NULL;
  if (a.device.type == SCREE_DEVICE_CUDA) {
    uint64_t vbytes, obytes;
    if (scree_array_check_desc(&a, &vbytes, &obytes, m, sizeof(m)) != 0) {
      die("%s: %s", o->name, m);
      goto out;
    }
    if (gpu_to_host(&a, vbytes, obytes, &hv, &ho) != 0)
      goto out;
    a.values = hv;
    a.offsets = ho;
  } else if (a.device.type != SCREE_DEVICE_CPU) {
    die("%s lives on a device this screectl cannot read (type %d)", o->name,
        (int)a.device.type);
    goto out;
  }
  /* The offsets are copied out and checked before anything is written: a
   * writer of the same arena can change a sealed batch's offsets after the
   * daemon validated them (docs/security.md), and a file of offsets that
   * point past the values would mislead whoever reads it. The copy is what
   * gets written, so they cannot change between the check and the write. */
  size_t osize = (size_t)(a.batch_size + 1) * scree_dtype_size(a.offsets_dtype);
  offs = malloc(osize ? osize : 1);
  if (offs == NULL) {
    die("out of memory for %zu bytes of offsets", osize);
    goto out;
  }
  memcpy(offs, a.offsets, osize);
  if (scree_offsets_validate(offs, a.offsets_dtype, a.batch_size, a.total_rows, NULL, m,
                             sizeof(m)) != 0) {
    die("%s: the stored offsets are invalid, nothing written: %s", o->name, m);
    goto out;
  }
  int64_t shape[SCREE_MAX_INNER_DIMS + 1];
  shape[0] = a.total_rows;
  for (int32_t i = 0; i < a.ndim_inner; i++)
    shape[i + 1] = a.inner[i];
  if (scree__npy_write(o->values, a.dtype, a.ndim_inner + 1, shape, a.values, m,
                       sizeof(m)) != 0) {
    die("%s", m);
    goto out;
  }
  int64_t oshape[1] = {a.batch_size + 1};
  if (scree__npy_write(o->offsets, a.offsets_dtype, 1, oshape, offs, m, sizeof(m)) != 0) {
    die("%s", m);
    goto out;
  }
  if (a.dtype == SCREE_BFLOAT16 || a.dtype == SCREE_FLOAT8_E4M3 ||
      a.dtype == SCREE_FLOAT8_E5M2)
    fprintf(stderr,
            "screectl: note: %s values written as their raw bits (%s); with ml_dtypes, "
            "numpy.load(f).view(ml_dtypes.%s) restores the type\n",
            scree_dtype_name(a.dtype), scree__npy_descr(a.dtype),
            a.dtype == SCREE_BFLOAT16 ? "bfloat16"
            : a.dtype == SCREE_FLOAT8_E4M3 ? "float8_e4m3fn"
                                            : "float8_e5m2");
  ret = 0;
out:
  free(offs);
  free(hv);
  free(ho);
  rc = scree_client_release(c, lease);
  if (rc != 0 && ret == 0)
    ret = client_fail(c, rc);
  return ret;
}

static int cmd_attention(scree_client *c, const opts *o) {
  int rc = scree_client_attention(c, o->q, o->k, o->v, o->out, &o->att, NULL, NULL);
  if (rc != 0)
    return client_fail(c, rc);
  printf("stored %s\n", o->out);
  return 0;
}

/* SIGINT and SIGTERM while waiting: the handler only notes it (installed
 * without SA_RESTART, so that poll() returns EINTR), and the library's
 * interrupt callback reads the note. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

static int interrupted(void *arg) {
  (void)arg;
  return stop_signal != 0;
}

static void catch_stop_signals(scree_client *c) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  scree_client_set_interrupt(c, interrupted, NULL);
}

static int cmd_wait(scree_client *c, const opts *o) {
  int64_t ms = -1;
  if (o->timeout != NULL) {
    char *end;
    double secs = strtod(o->timeout, &end);
    if (end == o->timeout || *end != '\0' || !(secs >= 0) || secs > 1e9)
      return die("--timeout wants seconds (a number >= 0, such as 2 or 0.5), not '%s'",
                 o->timeout);
    ms = (int64_t)ceil(secs * 1000.0);
  }
  catch_stop_signals(c);
  scree_array a;
  scree_lease *lease = NULL;
  int rc = scree_client_get_wait(c, o->name, ms, &a, &lease);
  if (rc == SCREE_EINTR)
    return die("interrupted while waiting for batch '%s'", o->name);
  if (rc != 0)
    return client_fail(c, rc);
  char shape[256];
  format_shape(&a, shape, sizeof(shape));
  printf("sealed %s %s %s\n", o->name, scree_dtype_name(a.dtype), shape);
  rc = scree_client_release(c, lease);
  return rc != 0 ? client_fail(c, rc) : 0;
}

/* A JSON string: names are UTF-8 without control characters, so only the
 * quote and the backslash need escaping. */
static void print_json_string(const char *s, size_t n) {
  putchar('"');
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\')
      putchar('\\');
    putchar(s[i]);
  }
  putchar('"');
}

static int cmd_watch(scree_client *c, const opts *o) {
  uint64_t limit = 0;
  if (o->count != NULL) {
    char *end;
    unsigned long long v = strtoull(o->count, &end, 10);
    if (end == o->count || *end != '\0' || v == 0 || o->count[0] == '-')
      return die("--count wants a number of events > 0, not '%s'", o->count);
    limit = v;
  }
  catch_stop_signals(c);
  unsigned flags = o->no_replay ? SCREE_WATCH_NO_REPLAY : 0;
  scree_watch *w;
  int rc = scree_client_watch(c, o->name, flags, &w);
  if (rc != 0)
    return client_fail(c, rc);
  /* Whoever reads the lines (a pipe, a script) sees each as it comes. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ret = 0;
  for (uint64_t n = 0; limit == 0 || n < limit; n++) {
    scree_event ev = SCREE_EVENT_INIT;
    rc = scree_watch_next(w, -1, &ev);
    if (rc == SCREE_EINTR)
      break;
    if (rc != 0) {
      ret = die("%s", scree_watch_last_error(w));
      break;
    }
    const char *kind = scree_event_kind_name(ev.kind);
    if (o->json) {
      printf("{\"seq\":%" PRIu64 ",\"kind\":\"%s\",\"name\":", ev.seq, kind);
      print_json_string(ev.name, ev.name_len);
      printf("}\n");
    } else {
      printf("%" PRIu64 " %s%s%s\n", ev.seq, kind, ev.name_len ? " " : "", ev.name);
    }
    if (ev.kind == SCREE_EVENT_OVERFLOW) {
      fprintf(stderr, "screectl: events were lost (this watcher read too slowly); "
                      "starting again\n");
      rc = scree_watch_resync(w, flags);
      if (rc != 0) {
        ret = die("%s", scree_watch_last_error(w));
        break;
      }
    }
  }
  scree_watch_close(w);
  return ret;
}

static int cmd_fetch(scree_client *c, const opts *o) {
  scree_fetch_options fo = SCREE_FETCH_OPTIONS_INIT;
  if (o->wait_s >= 0)
    fo.wait_ms = (int64_t)(o->wait_s * 1000.0);
  fo.timeout_ms = (uint64_t)(o->timeout_s * 1000.0);
  scree_batch_info info;
  uint64_t bytes = 0;
  int rc = scree_client_fetch_ex(c, o->peer, o->name, o->as_name, &fo, &info, &bytes);
  if (rc != 0)
    return client_fail(c, rc);
  printf("fetched %s from %s as %s (%" PRIu64 " bytes)\n", o->name, o->peer, info.name, bytes);
  return 0;
}

int main(int argc, char **argv) {
  opts o;
  int rc = parse_args(argc, argv, &o);
  if (rc != 0)
    return rc == 2 ? 0 : 1;
  scree_client *c;
  rc = scree_client_connect(o.socket, &c);
  if (rc != 0) {
    client_fail(c, rc);
    scree_client_close(c);
    return 1;
  }
  int ret;
  if (strcmp(o.cmd, "info") == 0)
    ret = cmd_info(c, o.json);
  else if (strcmp(o.cmd, "list") == 0)
    ret = cmd_list(c, o.name, o.json);
  else if (strcmp(o.cmd, "stat") == 0)
    ret = cmd_stat(c, o.name, o.json);
  else if (strcmp(o.cmd, "stats") == 0)
    ret = cmd_stats(c, o.json);
  else if (strcmp(o.cmd, "delete") == 0)
    ret = cmd_delete(c, o.name);
  else if (strcmp(o.cmd, "put") == 0)
    ret = cmd_put(c, &o);
  else if (strcmp(o.cmd, "get") == 0)
    ret = cmd_get(c, &o);
  else if (strcmp(o.cmd, "wait") == 0)
    ret = cmd_wait(c, &o);
  else if (strcmp(o.cmd, "watch") == 0)
    ret = cmd_watch(c, &o);
  else if (strcmp(o.cmd, "fetch") == 0)
    ret = cmd_fetch(c, &o);
  else
    ret = cmd_attention(c, &o);
  scree_client_close(c);
  if (fflush(stdout) != 0)
    ret = die("cannot write the output");
  return ret;
}
