/* bench/load: many concurrent connections and a large mixed request stream
 * against one screed, beside the raw SOCK_SEQPACKET round trip measured in
 * the same run.
 *
 * usage: load (--socket PATH | --spawn SCREED) [--conns 1000] [--requests 1000000]
 *             [--procs 1] [--depth 1] [--batches 256] [--raw-iters 20000]
 *
 * Each driver process (--procs) owns conns/procs connections and drives them
 * from one epoll loop with non-blocking sockets, each connection keeping
 * --depth requests in flight (closed loop: a new request goes out when a
 * reply comes back). Drivers speak the protocol with protobuf-c directly:
 * on 2 cores, a thread per connection would measure the scheduler, and the
 * point is the daemon's cost per request. A connection maps each arena it
 * is given (cached per driver process, as libscreeclient caches per
 * connection) so that puts write real offsets before they seal.
 *
 * The mix, per request: holding a lease, release it half the time; else get
 * a pooled batch (70%), put (create, then seal once the create's reply is
 * in: 8%; each counted as its own request), delete one of the connection's
 * own puts (6%), stat (10%) or a small list (6%). All connections are open
 * and have said Hello before the clock starts. Latency is send to reply for
 * each request; with --depth 1 and N connections, p50 is about N /
 * throughput (Little's law): it measures queueing at that concurrency. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "scree/client.h"
#include "scree/v1/scree.pb-c.h"
#include "sys.h"

/* A C string as a request's bytes field (names travel as bytes; see
 * proto/scree/v1/scree.proto). NULL is empty. */
static inline ProtobufCBinaryData test_bytes(const char *s) {
  ProtobufCBinaryData b = {s != NULL ? strlen(s) : 0, (uint8_t *)s};
  return b;
}

enum { OP_GET, OP_RELEASE, OP_CREATE, OP_SEAL, OP_DELETE, OP_STAT, OP_LIST, OP_N };
static const char *const kOpNames[OP_N] = {"get", "release", "create", "seal",
                                            "delete", "stat", "list"};

static void fatal(const char *what) {
  fprintf(stderr, "load: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

static float pct(float *v, size_t n, double p) {
  if (n == 0)
    return 0;
  size_t k = (size_t)((double)n * p);
  return v[k >= n ? n - 1 : k];
}

/* ---- raw round trip ---------------------------------------------------- */

/* The raw round trip: iters samples against a fresh echo child. */
static void raw_rtt(int iters, float *p50, float *p99) {
  double *t = malloc(sizeof(double) * (size_t)iters);
  bench_raw_start();
  bench_raw_sample(t, iters);
  bench_raw_stop();
  bench_stat2 s = bench_summarize(t, iters);
  *p50 = (float)s.p50;
  *p99 = (float)s.p99;
  free(t);
}

/* ---- a driver process --------------------------------------------------- */

#define MAX_DEPTH 16
#define MAX_HELD 4
#define MAX_OWN 4
#define MAX_MAPS 64

typedef struct pending {
  double t0;
  int op;
  int own; /* create: the index of the name in own[] */
} pending;

typedef struct conn {
  int fd;
  pending q[MAX_DEPTH];
  int qhead, qlen;
  uint64_t held[MAX_HELD];
  int nheld;
  char own[MAX_OWN][48];
  int nown;     /* sealed puts, deletable */
  int creating; /* a create is in flight or waits for its seal */
  int seal_due; /* the create's reply is in: seal next */
  char seal_name[48];
  unsigned puts;
} conn;

typedef struct arena_map {
  uint64_t id;
  uint8_t *p;
  size_t size;
  int writable; /* mapped from a Create's (writable) fd */
} arena_map;

/* What a driver hands back to the parent, in shared memory. */
typedef struct result {
  uint64_t done;
  uint64_t errors[OP_N];
  uint64_t count[OP_N];
  double t_start, t_end;
  float lat[]; /* done entries, then as many op codes as floats */
} result;

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

static int nbatches;
static arena_map maps[MAX_MAPS];
static int nmaps;

static int connect_to(const char *path) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fatal("socket");
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  for (int tries = 0; connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0; tries++) {
    if (errno != EAGAIN || tries > 1000)
      fatal("connect");
    usleep(1000);
  }
  return fd;
}

static void send_req(int fd, Scree__V1__Request *req) {
  uint8_t buf[512];
  size_t len = scree__v1__request__get_packed_size(req);
  scree__v1__request__pack(req, buf);
  if (send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
    fatal("send");
}

/* Receives one reply (waiting when blocking is set); maps an attached arena
 * fd. Returns the unpacked reply or NULL when none is ready. */
static Scree__V1__Response *recv_reply(int fd, int blocking) {
  uint8_t buf[128 * 1024];
  int afd = -1, nfds = 0;
  ssize_t n = scree__recv_fds(fd, buf, sizeof(buf), blocking ? 0 : MSG_DONTWAIT, &afd, 1,
                              &nfds, NULL, NULL);
  if (n == -EAGAIN || n == -EWOULDBLOCK)
    return NULL;
  if (n <= 0) {
    errno = n < 0 ? (int)-n : 0;
    fatal("recvmsg (did screed die?)");
  }
  if (nfds == 0)
    afd = -1;
  Scree__V1__Response *r = scree__v1__response__unpack(NULL, (size_t)n, buf);
  if (r == NULL) {
    fprintf(stderr, "load: a reply does not decode\n");
    exit(1);
  }
  if (afd >= 0) {
    const Scree__V1__Location *loc = r->body_case == SCREE__V1__RESPONSE__BODY_CREATE
                                         ? r->create->location
                                     : r->body_case == SCREE__V1__RESPONSE__BODY_GET
                                         ? r->get->location
                                         : NULL;
    /* A Get's fd is read-only; a Create's writable fd for an arena mapped
     * read-only replaces that mapping. */
    arena_map *m = NULL;
    for (int i = 0; loc && i < nmaps; i++)
      if (maps[i].id == loc->arena_id)
        m = &maps[i];
    if (loc && (m == NULL ? nmaps < MAX_MAPS : (!m->writable && loc->writable))) {
      int prot = PROT_READ | (loc->writable ? PROT_WRITE : 0);
      void *p = mmap(NULL, loc->arena_size, prot, MAP_SHARED, afd, 0);
      if (p == MAP_FAILED)
        fatal("mmap of an arena");
      if (m != NULL)
        munmap(m->p, m->size);
      else
        m = &maps[nmaps++];
      m->id = loc->arena_id;
      m->p = p;
      m->size = loc->arena_size;
      m->writable = loc->writable;
    }
    close(afd);
  }
  return r;
}

static void hello(int fd) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  Scree__V1__Hello h = SCREE__V1__HELLO__INIT;
  h.protocol_version = 1;
  h.client_name = "load";
  req.body_case = SCREE__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  send_req(fd, &req);
  Scree__V1__Response *r = recv_reply(fd, 1);
  if (r->status != 0) {
    fprintf(stderr, "load: hello: %s\n", r->message);
    exit(1);
  }
  scree__v1__response__free_unpacked(r, NULL);
}

/* A random batch of the pool every get and stat reads, named into buf. */
static ProtobufCBinaryData pooled_name(char *buf, size_t len) {
  snprintf(buf, len, "load/%d", (int)(rnd() % (uint32_t)nbatches));
  return test_bytes(buf);
}

static void issue(conn *c, int ci, int pid_tag) {
  Scree__V1__Request req = SCREE__V1__REQUEST__INIT;
  char name[48];
  int op;
  Scree__V1__Get g = SCREE__V1__GET__INIT;
  Scree__V1__Release rl = SCREE__V1__RELEASE__INIT;
  Scree__V1__Create cr = SCREE__V1__CREATE__INIT;
  Scree__V1__ArrayDesc d = SCREE__V1__ARRAY_DESC__INIT;
  int64_t inner[1] = {64};
  Scree__V1__Seal se = SCREE__V1__SEAL__INIT;
  Scree__V1__Delete de = SCREE__V1__DELETE__INIT;
  Scree__V1__Stat st = SCREE__V1__STAT__INIT;
  Scree__V1__List li = SCREE__V1__LIST__INIT;
  int own = -1;
  uint32_t r = rnd() % 100;
  if (c->seal_due) {
    op = OP_SEAL;
  } else if (c->nheld > 0 && (rnd() & 1)) {
    op = OP_RELEASE;
  } else if (r < 70 || (r < 78 && (c->creating || c->nown == MAX_OWN)) ||
             (r >= 78 && r < 84 && c->nown == 0)) {
    op = OP_GET;
    if (c->nheld == MAX_HELD)
      op = OP_RELEASE;
  } else if (r < 78) {
    op = OP_CREATE;
  } else if (r < 84) {
    op = OP_DELETE;
  } else if (r < 94) {
    op = OP_STAT;
  } else {
    op = OP_LIST;
  }
  switch (op) {
  case OP_GET:
    g.name = pooled_name(name, sizeof(name));
    req.body_case = SCREE__V1__REQUEST__BODY_GET;
    req.get = &g;
    break;
  case OP_RELEASE:
    rl.lease_id = c->held[--c->nheld];
    req.body_case = SCREE__V1__REQUEST__BODY_RELEASE;
    req.release = &rl;
    break;
  case OP_CREATE:
    snprintf(c->seal_name, sizeof(c->seal_name), "put/%d/%d/%u", pid_tag, ci, c->puts++);
    d.dtype = SCREE_BFLOAT16;
    d.offsets_dtype = SCREE_INT64;
    d.inner = inner;
    d.n_inner = 1;
    d.batch_size = 4;
    d.total_rows = 64;
    cr.name = test_bytes(c->seal_name);
    cr.desc = &d;
    req.body_case = SCREE__V1__REQUEST__BODY_CREATE;
    req.create = &cr;
    c->creating = 1;
    break;
  case OP_SEAL:
    se.name = test_bytes(c->seal_name);
    req.body_case = SCREE__V1__REQUEST__BODY_SEAL;
    req.seal = &se;
    c->seal_due = 0;
    break;
  case OP_DELETE:
    own = --c->nown;
    de.name = test_bytes(c->own[own]);
    req.body_case = SCREE__V1__REQUEST__BODY_DELETE;
    req.delete_ = &de;
    break;
  case OP_STAT:
    st.name = pooled_name(name, sizeof(name));
    req.body_case = SCREE__V1__REQUEST__BODY_STAT;
    req.stat = &st;
    break;
  default:
    snprintf(name, sizeof(name), "load/%d", (int)(rnd() % 10));
    li.prefix = test_bytes(name);
    li.page_size = 10;
    req.body_case = SCREE__V1__REQUEST__BODY_LIST;
    req.list = &li;
    break;
  }
  int slot = (c->qhead + c->qlen) % MAX_DEPTH;
  c->q[slot].op = op;
  c->q[slot].own = own;
  c->qlen++;
  c->q[slot].t0 = bench_now_us();
  send_req(c->fd, &req);
}

static void write_offsets(const Scree__V1__Location *loc) {
  for (int i = 0; i < nmaps; i++) {
    if (maps[i].id != loc->arena_id || !maps[i].writable)
      continue;
    int64_t off[5] = {0, 10, 30, 31, 64};
    if (loc->offsets_offset + sizeof(off) <= maps[i].size)
      memcpy(maps[i].p + loc->offsets_offset, off, sizeof(off));
    return;
  }
}

static void driver(const char *path, int nconns, int depth, uint64_t quota, int tag, int go_fd,
                   int ready_fd, result *res) {
  rng ^= (uint64_t)(tag + 1) * 0x9E3779B97F4A7C15ull;
  conn *cs = calloc((size_t)nconns, sizeof(*cs));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < nconns; i++) {
    cs[i].fd = connect_to(path);
    hello(cs[i].fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0)
      fatal("epoll_ctl");
  }
  char b = 1;
  if (write(ready_fd, &b, 1) != 1 || read(go_fd, &b, 1) != 1)
    fatal("start barrier");
  float *ops = res->lat + quota;
  uint64_t sent = 0, done = 0;
  res->t_start = bench_now_us();
  for (int i = 0; i < nconns && sent < quota; i++)
    for (int k = 0; k < depth && sent < quota; k++, sent++)
      issue(&cs[i], i, tag);
  struct epoll_event evs[256];
  while (done < quota) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fatal("epoll_wait");
    for (int e = 0; e < n; e++) {
      conn *c = &cs[evs[e].data.u32];
      Scree__V1__Response *r;
      while (c->qlen > 0 && (r = recv_reply(c->fd, 0)) != NULL) {
        pending *p = &c->q[c->qhead];
        c->qhead = (c->qhead + 1) % MAX_DEPTH;
        c->qlen--;
        res->lat[done] = (float)(bench_now_us() - p->t0);
        ops[done] = (float)p->op;
        done++;
        res->count[p->op]++;
        if (r->status != 0) {
          res->errors[p->op]++;
          if (res->errors[p->op] <= 3)
            fprintf(stderr, "load: %s failed: %s\n", kOpNames[p->op], r->message);
          if (p->op == OP_CREATE || p->op == OP_SEAL)
            c->creating = c->seal_due = 0;
        } else if (p->op == OP_GET && c->nheld < MAX_HELD) {
          c->held[c->nheld++] = r->get->lease_id;
        } else if (p->op == OP_CREATE) {
          write_offsets(r->create->location);
          c->seal_due = 1;
        } else if (p->op == OP_SEAL) {
          c->creating = 0;
          snprintf(c->own[c->nown++], sizeof(c->own[0]), "%s", c->seal_name);
        }
        scree__v1__response__free_unpacked(r, NULL);
        if (sent < quota) {
          issue(c, (int)evs[e].data.u32, tag);
          sent++;
        }
      }
    }
  }
  res->t_end = bench_now_us();
  res->done = done;
  _exit(0);
}

/* ---- the parent ---------------------------------------------------------- */

static pid_t daemon_pid = -1;

static double proc_cpu_s(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                          &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void spawn_daemon(const char *exe, const char *sock) {
  char *argv[] = {(char *)exe, "--socket", (char *)sock, "--memory-limit", "4G", "--arena-size",
                  "64M", "--log-level", "warn", NULL};
  daemon_pid = bench_spawn_screed(argv, sock, 1000);
}

int main(int argc, char **argv) {
  bench_prog = "load";
  const char *sock = NULL, *spawn = NULL;
  int conns = 1000, procs = 1, depth = 1, raw_iters = 20000;
  uint64_t requests = 1000000;
  nbatches = 256;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) {
      fprintf(stderr, "load: %s needs a value\n", a);
      return 2;
    }
    if (strcmp(a, "--socket") == 0) sock = v;
    else if (strcmp(a, "--spawn") == 0) spawn = v;
    else if (strcmp(a, "--conns") == 0) conns = atoi(v);
    else if (strcmp(a, "--requests") == 0) requests = strtoull(v, NULL, 10);
    else if (strcmp(a, "--procs") == 0) procs = atoi(v);
    else if (strcmp(a, "--depth") == 0) depth = atoi(v);
    else if (strcmp(a, "--batches") == 0) nbatches = atoi(v);
    else if (strcmp(a, "--raw-iters") == 0) raw_iters = atoi(v);
    else {
      fprintf(stderr, "load: unknown option %s\n", a);
      return 2;
    }
    i++;
  }
  if ((sock == NULL) == (spawn == NULL) || conns < procs || procs < 1 || depth < 1 ||
      depth > MAX_DEPTH || nbatches < 10 || requests < (uint64_t)procs) {
    fprintf(stderr, "usage: load (--socket PATH | --spawn SCREED) [--conns N] [--requests N]"
                    " [--procs N] [--depth 1-16] [--batches N>=10] [--raw-iters N]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  /* Every connection is an fd here and in screed (which inherits this). */
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < (rlim_t)conns * 2 + 256) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < (rlim_t)conns + 256) {
      fprintf(stderr, "load: RLIMIT_NOFILE is %llu; %d connections need more\n",
              (unsigned long long)rl.rlim_cur, conns);
      return 1;
    }
  }
  char sockbuf[108];
  if (spawn != NULL) {
    snprintf(sockbuf, sizeof(sockbuf), "/tmp/scree-load-%ld.sock", (long)getpid());
    sock = sockbuf;
    spawn_daemon(spawn, sock);
  }

  float raw50, raw99;
  raw_rtt(raw_iters, &raw50, &raw99);

  /* The pool of batches every get reads: bf16, 4 rows of up to 64 tokens,
   * 64 wide. */
  scree_client *c = bench_connect(sock);
  uint16_t values[64 * 64];
  memset(values, 0, sizeof(values));
  int64_t offs[5] = {0, 16, 17, 40, 64};
  scree_array a;
  bench_bf16_desc(&a, 64, 4, 64);
  a.values = values;
  a.offsets = offs;
  for (int i = 0; i < nbatches; i++) {
    char name[32];
    snprintf(name, sizeof(name), "load/%d", i);
    if (scree_client_put(c, name, &a, NULL) != 0 && scree_client_last_error(c)[0] != '\0' &&
        strstr(scree_client_last_error(c), "already exists") == NULL) {
      fprintf(stderr, "load: put %s: %s\n", name, scree_client_last_error(c));
      return 1;
    }
  }

  uint64_t quota = requests / (uint64_t)procs;
  size_t res_bytes = sizeof(result) + sizeof(float) * 2 * quota;
  result **res = calloc((size_t)procs, sizeof(*res));
  int go[2], ready[2];
  if (pipe(go) != 0 || pipe(ready) != 0)
    fatal("pipe");
  pid_t *kids = calloc((size_t)procs, sizeof(*kids));
  for (int p = 0; p < procs; p++) {
    res[p] = mmap(NULL, res_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res[p] == MAP_FAILED)
      fatal("mmap");
    int n = conns / procs + (p < conns % procs);
    kids[p] = fork();
    if (kids[p] == 0)
      driver(sock, n, depth, quota, p, go[0], ready[1], res[p]);
  }
  for (int p = 0; p < procs; p++) {
    char b;
    if (read(ready[0], &b, 1) != 1)
      fatal("a driver did not get ready");
  }
  scree_stats s0 = SCREE_STATS_INIT, s1 = SCREE_STATS_INIT;
  scree_client_stats(c, &s0);
  double cpu0 = daemon_pid > 0 ? proc_cpu_s(daemon_pid) : -1;
  char gob[64];
  memset(gob, 1, sizeof(gob));
  if (write(go[1], gob, (size_t)procs) != procs)
    fatal("go");
  for (int p = 0; p < procs; p++) {
    int st;
    waitpid(kids[p], &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "load: driver %d failed\n", p);
      return 1;
    }
  }
  double cpu1 = daemon_pid > 0 ? proc_cpu_s(daemon_pid) : -1;
  scree_client_stats(c, &s1);

  /* Merge. */
  uint64_t total = 0, count[OP_N] = {0}, errors[OP_N] = {0};
  double t_start = 1e300, t_end = 0;
  for (int p = 0; p < procs; p++) {
    total += res[p]->done;
    if (res[p]->t_start < t_start) t_start = res[p]->t_start;
    if (res[p]->t_end > t_end) t_end = res[p]->t_end;
    for (int o = 0; o < OP_N; o++) {
      count[o] += res[p]->count[o];
      errors[o] += res[p]->errors[o];
    }
  }
  float *all = malloc(sizeof(float) * total);
  float *per[OP_N];
  size_t nper[OP_N] = {0};
  for (int o = 0; o < OP_N; o++)
    per[o] = malloc(sizeof(float) * (count[o] ? count[o] : 1));
  size_t k = 0;
  for (int p = 0; p < procs; p++) {
    const float *ops = res[p]->lat + quota;
    for (uint64_t i = 0; i < res[p]->done; i++) {
      all[k++] = res[p]->lat[i];
      int o = (int)ops[i];
      per[o][nper[o]++] = res[p]->lat[i];
    }
  }
  qsort(all, total, sizeof(float), cmp_float);
  double secs = (t_end - t_start) / 1e6;

  float raw50b, raw99b;
  raw_rtt(raw_iters, &raw50b, &raw99b);

  printf("| what | requests | throughput (req/s) | p50 (us) | p99 (us) |\n");
  printf("| --- | ---: | ---: | ---: | ---: |\n");
  printf("| raw SOCK_SEQPACKET round trip, 64 B, one pair, before the load | %d | %.0f | %.1f | %.1f |\n",
         raw_iters, 1e6 / raw50, raw50, raw99);
  printf("| raw round trip, after the load | %d | %.0f | %.1f | %.1f |\n", raw_iters,
         1e6 / raw50b, raw50b, raw99b);
  printf("| **all requests, %d connections, depth %d, %d driver process(es)** | %" PRIu64
         " | **%.0f** | %.0f | %.0f |\n",
         conns, depth, procs, total, (double)total / secs, pct(all, total, 0.5),
         pct(all, total, 0.99));
  for (int o = 0; o < OP_N; o++) {
    qsort(per[o], nper[o], sizeof(float), cmp_float);
    printf("| %s | %" PRIu64 " (%.1f%%) | - | %.0f | %.0f |\n", kOpNames[o], count[o],
           100.0 * (double)count[o] / (double)total, pct(per[o], nper[o], 0.5),
           pct(per[o], nper[o], 0.99));
  }
  printf("\nwall %.2f s; screed served %" PRIu64 " requests in the window",
         secs, s1.requests - s0.requests - 1);
  if (cpu0 >= 0 && cpu1 >= 0)
    printf("; screed CPU %.2f s = %.1f us per request", cpu1 - cpu0,
           (cpu1 - cpu0) * 1e6 / (double)total);
  uint64_t errs = 0;
  for (int o = 0; o < OP_N; o++)
    errs += errors[o];
  printf("; %" PRIu64 " error replies; connections during the run: %u\n", errs,
         s0.connections);

  scree_client_close(c);
  if (daemon_pid > 0 && bench_stop_screed(daemon_pid) != 0)
    return 1;
  return errs == 0 ? 0 : 1;
}
