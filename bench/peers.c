/* Peer fetch bandwidth and latency beside ucx_perftest, in one run.
 *
 * usage: peers SCREED [--host ADDR] [--reps N] [--sizes 1M,64M,1G]
 *              [--perftest PATH] [--json FILE]
 *
 * Starts two screeds joined as peers on ADDR (default 127.0.0.1; a
 * loopback address or one inside a namespace you made), puts a batch of
 * each size on the owner and, in three rounds, fetches it N times through
 * the other (deleting the local copy between fetches, outside the timing)
 * and runs ucx_perftest's ucp_am_bw once, reporting the first fetch, the
 * best fetch and the best perftest run; then fetches a 4 KiB batch N*20
 * times for the latency. ucx_perftest (Debian's ucx-utils) runs between
 * the same address and a port of its own with the same UCX_TLS, at each
 * size and at 4 KiB: ucp_am_bw and ucp_am_lat,
 * the engine a fetch now runs on (active messages, rendezvous for large
 * ones), so the like-for-like floor; and ucp_get, the one-sided read that
 * fetches used before peer protocol version 2, for comparison. Prints one
 * table, and JSON with --json. UCX_TLS is left as the caller set it
 * (default here: tcp). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "scree/client.h"

static double now_s(void) { return bench_now_us() / 1e6; }

static unsigned free_port(const char *host) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  inet_pton(AF_INET, host, &a.sin_addr);
  socklen_t len = sizeof(a);
  unsigned port = 0;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static pid_t spawn(char *const *argv, const char *log) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execvp(argv[0], argv);
    _exit(127);
  }
  return pid;
}

static pid_t start_screed(const char *exe, const char *sock, const char *log, const char *a1,
                          const char *a2, const char *secret) {
  unlink(sock);
  char *argv[] = {(char *)exe, "--socket", (char *)sock, "--log-level", "warn",
                  "--memory-limit", "4G", (char *)a1, (char *)a2, "--peer-secret-file",
                  (char *)secret, NULL};
  pid_t pid = spawn(argv, log);
  return bench_await_socket(sock, 1000) ? pid : -1;
}

/* A batch of exactly bytes of uint8 values (rows of 4 KiB, or one row). */
static int put_batch(scree_client *c, const char *name, uint64_t bytes) {
  scree_array d;
  memset(&d, 0, sizeof(d));
  d.dtype = SCREE_UINT8;
  d.offsets_dtype = SCREE_INT64;
  d.ndim_inner = 1;
  d.inner[0] = bytes >= 4096 ? 4096 : (int64_t)bytes;
  d.batch_size = 1;
  d.total_rows = (int64_t)(bytes / (uint64_t)d.inner[0]);
  scree_array w;
  int rc = scree_client_create(c, name, &d, &w, NULL);
  if (rc != 0)
    return rc;
  memset(w.values, 0x5a, bytes);
  ((int64_t *)w.offsets)[0] = 0;
  ((int64_t *)w.offsets)[1] = d.total_rows;
  return scree_client_seal(c, name, NULL);
}

/* Runs ucx_perftest test (ucp_get, ucp_am_bw, ucp_am_lat) of size bytes
 * between host and a port of its own; stores overall bandwidth (MB/s,
 * MB = 2^20) and latency (us). */
static int perftest(const char *exe, const char *host, const char *test, uint64_t size,
                    int iters, double *mbs, double *lat_us) {
  unsigned port = free_port(host);
  char ps[16], ss[32], ns[16];
  snprintf(ps, sizeof(ps), "%u", port);
  snprintf(ss, sizeof(ss), "%" PRIu64, size);
  snprintf(ns, sizeof(ns), "%d", iters);
  char *srv[] = {(char *)exe, "-p", ps, NULL};
  pid_t s = spawn(srv, "/tmp/scree-bench-perftest-server.log");
  bench_sleep_ms(500);
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "%s %s -p %s -t %s -s %s -n %s -w 2 2>&1", exe, host, ps, test, ss,
           ns);
  FILE *f = popen(cmd, "r");
  int found = -1;
  char line[512];
  while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
    double it, typ, avg, overall, bw_avg, bw_overall;
    if (sscanf(line, "Final: %lf %lf %lf %lf %lf %lf", &it, &typ, &avg, &overall, &bw_avg,
               &bw_overall) == 6) {
      *mbs = bw_overall;
      *lat_us = overall;
      found = 0;
    }
  }
  if (f != NULL)
    pclose(f);
  kill(s, SIGTERM);
  waitpid(s, NULL, 0);
  return found;
}

int main(int argc, char **argv) {
  bench_prog = "peers";
  if (argc < 2) {
    fprintf(stderr, "usage: peers SCREED [--host ADDR] [--reps N] [--sizes 1M,64M,1G]"
                    " [--perftest PATH] [--json FILE]\n");
    return 2;
  }
  const char *exe = argv[1], *host = "127.0.0.1", *pt = "ucx_perftest", *json = NULL;
  const char *sizes_arg = "1M,64M,1G";
  int reps = 5;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--host") == 0)
      host = argv[i + 1];
    else if (strcmp(argv[i], "--reps") == 0)
      reps = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--sizes") == 0)
      sizes_arg = argv[i + 1];
    else if (strcmp(argv[i], "--perftest") == 0)
      pt = argv[i + 1];
    else if (strcmp(argv[i], "--json") == 0)
      json = argv[i + 1];
  }
  if (reps < 1) {
    fprintf(stderr, "peers: --reps must be at least 1\n");
    return 2;
  }
  if (getenv("UCX_TLS") == NULL)
    setenv("UCX_TLS", "tcp", 1);
  signal(SIGPIPE, SIG_IGN);
  char secret[64], so[64], sf[64], listen[64], peer[80];
  snprintf(secret, sizeof(secret), "/tmp/scree-bench-%d.secret", (int)getpid());
  FILE *sfp = fopen(secret, "w");
  fprintf(sfp, "bench secret, long enough to use\n");
  fclose(sfp);
  chmod(secret, 0600);
  snprintf(so, sizeof(so), "/tmp/scree-bench-%d-o.sock", (int)getpid());
  snprintf(sf, sizeof(sf), "/tmp/scree-bench-%d-f.sock", (int)getpid());
  unsigned port = free_port(host);
  snprintf(listen, sizeof(listen), "%s:%u", host, port);
  snprintf(peer, sizeof(peer), "o=%s:%u", host, port);
  pid_t po = start_screed(exe, so, "/tmp/scree-bench-owner.log", "--peer-listen", listen, secret);
  pid_t pf = start_screed(exe, sf, "/tmp/scree-bench-fetcher.log", "--peer", peer, secret);
  if (po < 0 || pf < 0) {
    fprintf(stderr, "peers: screed did not start (see /tmp/scree-bench-*.log)\n");
    return 1;
  }
  scree_client *co, *cf;
  if (scree_client_connect(so, &co) != 0 || scree_client_connect(sf, &cf) != 0) {
    fprintf(stderr, "peers: cannot connect\n");
    return 1;
  }
  FILE *js = json ? fopen(json, "w") : NULL;
  if (js)
    fprintf(js, "{\"ucx_tls\": \"%s\", \"host\": \"%s\", \"reps\": %d, \"rows\": [\n",
            getenv("UCX_TLS"), host, reps);
  printf("UCX_TLS=%s host=%s reps=%d\n", getenv("UCX_TLS"), host, reps);
  printf("%-10s %12s %12s %12s %8s %12s\n", "size", "first MiB/s", "fetch MiB/s", "am_bw MiB/s",
         "ratio", "get MiB/s");
  char list[128];
  snprintf(list, sizeof(list), "%s", sizes_arg);
  int first = 1;
  for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
    uint64_t size = bench_parse_size(tok);
    if (size == 0)
      continue;
    char name[32];
    snprintf(name, sizeof(name), "bw-%s", tok);
    if (put_batch(co, name, size) != 0) {
      fprintf(stderr, "peers: put %s: %s\n", name, scree_client_last_error(co));
      return 1;
    }
    /* ROUNDS rounds, each reps fetches and then one ucp_am_bw run, so that
     * both sides see the same load on a shared machine; each side's best
     * is reported. A fetch goes into a fresh local copy, deleted before the
     * next: the first of the run into memory new to this screed (a block
     * that large may get an arena of its own), the others into the arena
     * the previous copy emptied, which screed keeps for reuse. */
    enum { ROUNDS = 3 };
    double best = 1e30, first_t = 0, amb = 0, gmb = 0, plat = 0;
    int iters = size >= (1u << 30) ? 3 : size >= (64u << 20) ? 10 : 100;
    for (int round = 0; round < ROUNDS; round++) {
      for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (scree_client_fetch(cf, "o", name, NULL, 600000) != 0) {
          fprintf(stderr, "peers: fetch %s: %s\n", name, scree_client_last_error(cf));
          return 1;
        }
        double t = now_s() - t0;
        if (round == 0 && r == 0)
          first_t = t;
        if (t < best)
          best = t;
        scree_client_delete(cf, name, NULL);
      }
      double b = 0;
      if (perftest(pt, host, "ucp_am_bw", size, iters, &b, &plat) == 0 && b > amb)
        amb = b;
    }
    scree_client_delete(co, name, NULL);
    double mib = (double)size / (1 << 20) / best;
    double first_mib = (double)size / (1 << 20) / first_t;
    if (perftest(pt, host, "ucp_get", size, iters, &gmb, &plat) != 0)
      gmb = 0;
    printf("%-10s %12.1f %12.1f %12.1f %8.2f %12.1f\n", tok, first_mib, mib, amb,
           amb > 0 ? mib / amb : 0.0, gmb);
    if (js)
      fprintf(js,
              "%s  {\"bytes\": %" PRIu64 ", \"first_fetch_mib_s\": %.1f, \"fetch_mib_s\": %.1f,"
              " \"perftest_am_bw_mib_s\": %.1f, \"perftest_get_mib_s\": %.1f}",
              first ? "" : ",\n", size, first_mib, mib, amb, gmb);
    first = 0;
  }
  /* 4 KiB latency. */
  if (put_batch(co, "lat", 4096) != 0)
    return 1;
  int n = reps * 20;
  double *ts = malloc(sizeof(double) * (size_t)n);
  for (int r = 0; r < n; r++) {
    double t0 = now_s();
    if (scree_client_fetch(cf, "o", "lat", NULL, 60000) != 0) {
      fprintf(stderr, "peers: fetch lat: %s\n", scree_client_last_error(cf));
      return 1;
    }
    ts[r] = now_s() - t0;
    scree_client_delete(cf, "lat", NULL);
  }
  for (int i = 1; i < n; i++) /* insertion sort: n is small */
    for (int j = i; j > 0 && ts[j] < ts[j - 1]; j--) {
      double t = ts[j];
      ts[j] = ts[j - 1];
      ts[j - 1] = t;
    }
  double med = ts[n / 2] * 1e6;
  double pmb = 0, amlat = 0, glat = 0;
  if (perftest(pt, host, "ucp_am_lat", 4096, 1000, &pmb, &amlat) != 0)
    amlat = 0;
  if (perftest(pt, host, "ucp_get", 4096, 1000, &pmb, &glat) != 0)
    glat = 0;
  printf("4 KiB fetch latency: median %.1f us (client -> screed -> peer and back, seal"
         " included); ucx_perftest 4 KiB: ucp_am_lat %.1f us, ucp_get %.1f us\n",
         med, amlat, glat);
  if (js) {
    fprintf(js,
            "\n], \"fetch_4k_median_us\": %.1f, \"perftest_am_lat_4k_us\": %.1f,"
            " \"perftest_get_4k_us\": %.1f}\n",
            med, amlat, glat);
    fclose(js);
  }
  free(ts);
  scree_client_close(co);
  scree_client_close(cf);
  kill(po, SIGTERM);
  kill(pf, SIGTERM);
  waitpid(po, NULL, 0);
  waitpid(pf, NULL, 0);
  unlink(secret);
  return 0;
}
