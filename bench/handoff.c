/* bench/handoff: how long publishing (put) and attaching (get) take through
 * screed on host memory, beside the floor for any request on this machine:
 * a 64-byte SOCK_SEQPACKET round trip between two processes, measured in the
 * same run.
 *
 * usage: handoff (--socket PATH | --spawn SCREED) [--sizes 1M,1G] [--iters N]
 *                [--put-iters N] [--big-put-iters N] [--raw-iters N]
 * Prints a markdown table. The target: get p50 within 1.5x of the raw round
 * trip, whatever the batch size. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "scree/client.h"

static void format_size(uint64_t b, char *out, size_t len) {
  if (b >= (1ull << 30) && b % (1ull << 30) == 0)
    snprintf(out, len, "%" PRIu64 " GiB", b >> 30);
  else if (b >= (1ull << 20) && b % (1ull << 20) == 0)
    snprintf(out, len, "%" PRIu64 " MiB", b >> 20);
  else
    snprintf(out, len, "%" PRIu64 " B", b);
}

typedef struct row {
  uint64_t bytes;
  bench_stat2 raw, put, get, get_release;
  double first_get, first_put;
  int put_iters, get_iters;
} row;

static row bench_size(const char *sock, uint64_t bytes, int put_iters, int get_iters) {
  row r;
  memset(&r, 0, sizeof(r));
  r.bytes = bytes;
  r.put_iters = put_iters;
  r.get_iters = get_iters;
  /* One batch of 64 rows of bf16, 1024 wide: the shape of a small activation
   * batch; total_rows grows with the size. */
  scree_array a;
  bench_bf16_desc(&a, 1024, 64, (int64_t)(bytes / 2048));
  int64_t *off = malloc(sizeof(int64_t) * 65);
  for (int i = 0; i <= 64; i++)
    off[i] = a.total_rows * i / 64;
  a.offsets = off;
  a.values = malloc(bytes);
  memset(a.values, 0x3c, bytes);

  /* put, as a producer that publishes a batch a step and deletes the last
   * one does, on one connection. The first put of a size is timed apart: a
   * batch larger than the arena size gets an arena of its own, created
   * then, whose pages all fault in at the copy, and the connection imports
   * it. The ones after land in the arena the delete emptied, which screed
   * keeps (with its pages, for --release-free-after), as the client keeps
   * its mapping. Two untimed puts come between. */
  double *t = malloc(sizeof(double) * (size_t)(get_iters > put_iters ? get_iters : put_iters));
  scree_client *pc = bench_connect(sock);
  for (int i = -3; i < put_iters; i++) {
    double t0 = bench_now_us();
    bench_must(pc, scree_client_put(pc, "bench/put", &a, NULL), "put");
    if (i == -3)
      r.first_put = bench_now_us() - t0;
    if (i >= 0)
      t[i] = bench_now_us() - t0;
    bench_must(pc, scree_client_delete(pc, "bench/put", NULL), "delete");
  }
  scree_client_close(pc);
  r.put = bench_summarize(t, put_iters);

  scree_client *p = bench_connect(sock);
  bench_must(p, scree_client_put(p, "bench/get", &a, NULL), "put");
  scree_client_close(p);
  free(a.values);

  scree_client *c = bench_connect(sock);
  scree_array g;
  scree_lease *l;
  double t0 = bench_now_us();
  bench_must(c, scree_client_get(c, "bench/get", &g, &l), "get");
  r.first_get = bench_now_us() - t0;
  bench_must(c, scree_client_release(c, l), "release");
  /* Gets in chunks of 100, each followed by 100 raw round trips. */
  double *raw = malloc(sizeof(double) * (size_t)get_iters);
  for (int i = 0; i < get_iters; i++) {
    t0 = bench_now_us();
    bench_must(c, scree_client_get(c, "bench/get", &g, &l), "get");
    t[i] = bench_now_us() - t0;
    bench_must(c, scree_client_release(c, l), "release");
    if (i % 100 == 99 || i == get_iters - 1) {
      int from = i - i % 100;
      bench_raw_sample(raw + from, i - from + 1);
    }
  }
  r.get = bench_summarize(t, get_iters);
  r.raw = bench_summarize(raw, get_iters);
  free(raw);
  for (int i = 0; i < get_iters; i++) {
    t0 = bench_now_us();
    bench_must(c, scree_client_get(c, "bench/get", &g, &l), "get");
    bench_must(c, scree_client_release(c, l), "release");
    t[i] = bench_now_us() - t0;
  }
  r.get_release = bench_summarize(t, get_iters);
  /* Touch the view so the attach is shown to be usable. */
  volatile unsigned char sink = ((unsigned char *)g.values)[0];
  (void)sink;
  bench_must(c, scree_client_delete(c, "bench/get", NULL), "delete");
  scree_client_close(c);
  free(t);
  free(off);
  return r;
}

static pid_t spawn(const char *screed, char *sock, size_t len) {
  snprintf(sock, len, "/tmp/scree-bench-%ld.sock", (long)getpid());
  char *argv[] = {(char *)screed, "--socket", sock, "--memory-limit", "4G", "--log-level", "warn",
                  NULL};
  return bench_spawn_screed(argv, sock, 1000);
}

int main(int argc, char **argv) {
  bench_prog = "handoff";
  const char *sock = NULL, *screed = NULL, *sizes = "1M,1G";
  int iters = 2000, put_iters = 100, big_put_iters = 5, raw_iters = 20000;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--socket") == 0 && v) {
      sock = v;
    } else if (strcmp(argv[i], "--spawn") == 0 && v) {
      screed = v;
    } else if (strcmp(argv[i], "--sizes") == 0 && v) {
      sizes = v;
    } else if (strcmp(argv[i], "--iters") == 0 && v) {
      iters = atoi(v);
    } else if (strcmp(argv[i], "--put-iters") == 0 && v) {
      put_iters = atoi(v);
    } else if (strcmp(argv[i], "--big-put-iters") == 0 && v) {
      big_put_iters = atoi(v);
    } else if (strcmp(argv[i], "--raw-iters") == 0 && v) {
      raw_iters = atoi(v);
    } else {
      fprintf(stderr,
              "usage: handoff (--socket PATH | --spawn SCREED) [--sizes 1M,1G] [--iters N]\n"
              "               [--put-iters N] [--big-put-iters N] [--raw-iters N]\n"
              "--big-put-iters applies to sizes of 256 MiB and more.\n");
      return strcmp(argv[i], "--help") == 0 ? 0 : 1;
    }
    i++;
  }
  if ((sock == NULL) == (screed == NULL) || iters < 1 || put_iters < 1 || big_put_iters < 1 ||
      raw_iters < 1) {
    fprintf(stderr, "handoff: give exactly one of --socket and --spawn (see --help)\n");
    return 1;
  }
  char spawned[108];
  pid_t pid = -1;
  if (screed != NULL) {
    pid = spawn(screed, spawned, sizeof(spawned));
    sock = spawned;
  }

  bench_raw_start();
  /* The warm-up's 1,000 samples are thrown away; the buffer holds whichever
   * of the two runs is longer. */
  int warm = 1000;
  double *rt = malloc(sizeof(double) * (size_t)(raw_iters > warm ? raw_iters : warm));
  if (rt == NULL) {
    fprintf(stderr, "handoff: out of memory for %d round-trip samples\n", raw_iters);
    return 1;
  }
  bench_raw_sample(rt, warm);
  bench_raw_sample(rt, raw_iters);
  bench_stat2 raw = bench_summarize(rt, raw_iters);
  free(rt);
  row rows[8];
  int n = 0;
  char *list = strdup(sizes);
  for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
    if (n == 8) {
      fprintf(stderr, "handoff: at most 8 sizes (--sizes has more)\n");
      return 1;
    }
    uint64_t b = bench_parse_size(tok);
    if (b < 2048) {
      fprintf(stderr, "handoff: size %s is below 2 KiB\n", tok);
      return 1;
    }
    rows[n] = bench_size(sock, b, b >= (256ull << 20) ? big_put_iters : put_iters, iters);
    n++;
  }
  free(list);
  bench_raw_stop();

  printf("| what | size | iterations | p50 (us) | p99 (us) | p50 / raw RTT p50 |\n");
  printf("| --- | --- | ---: | ---: | ---: | ---: |\n");
  printf("| raw SOCK_SEQPACKET round trip, 64 B, two processes, at start | - | %d | %.1f | %.1f | 1.00 |\n",
         raw_iters, raw.p50, raw.p99);
  for (int i = 0; i < n; i++) {
    char sz[32];
    format_size(rows[i].bytes, sz, sizeof(sz));
    printf("| raw round trip, interleaved with the gets below | %s | %d | %.1f | %.1f | 1.00 |\n",
           sz, rows[i].get_iters, rows[i].raw.p50, rows[i].raw.p99);
    printf("| get (attach, warm) | %s | %d | %.1f | %.1f | **%.2f** |\n", sz,
           rows[i].get_iters, rows[i].get.p50, rows[i].get.p99,
           rows[i].get.p50 / rows[i].raw.p50);
    printf("| get + release | %s | %d | %.1f | %.1f | %.2f |\n", sz, rows[i].get_iters,
           rows[i].get_release.p50, rows[i].get_release.p99,
           rows[i].get_release.p50 / rows[i].raw.p50);
    printf("| first get (imports the arena) | %s | 1 | %.1f | - | %.2f |\n", sz,
           rows[i].first_get, rows[i].first_get / rows[i].raw.p50);
    printf("| first put (create + copy + seal; a new arena above the arena size) | %s | 1 | "
           "%.1f | - | %.2f |\n",
           sz, rows[i].first_put, rows[i].first_put / rows[i].raw.p50);
    printf("| put, steady state (put then delete, repeated) | %s | %d | %.1f | %.1f | %.2f |\n",
           sz, rows[i].put_iters, rows[i].put.p50, rows[i].put.p99,
           rows[i].put.p50 / rows[i].raw.p50);
  }
  /* A bad exit is reported but does not fail the run: the table is out. */
  if (pid > 0)
    (void)bench_stop_screed(pid);
  return 0;
}
