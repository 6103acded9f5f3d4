/* Chaos: many client processes (chaos_child.c) each do a random sequence of
 * put, create, seal, get, release and delete through libscreeclient and
 * are killed with SIGKILL at a random point, some in the middle of a
 * request. Afterwards the daemon's accounting must be back to the baseline:
 * no connection but ours, no lease, no pending delete, no unsealed batch,
 * bytes used equal to the sealed batches that survive (a producer may exit
 * after sealing), then zero once those are deleted; and screed holds no
 * more fds than before. The counters are polled with a generous deadline
 * (connections close asynchronously): nothing here is a timed assertion.
 *
 * $SCREE_CHAOS_PROCS sets the number of children (default 1000), at most
 * $SCREE_CHAOS_CONCURRENCY (default 50) alive at once. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"
#include "scree/client.h"
#include "sys.h"

static harness d;

static void start(void) {
  /* --release-free-after 0: emptied arenas go back at the next purge (once
   * a second), so that the end can check that none is left. */
  static const char *const extra[] = {"--memory-limit", "512M", "--arena-size", "4M",
                                      "--release-free-after", "0", NULL};
  cr_assert_eq(harness_start(&d, extra), 0, "screed did not start (log: %s)", d.log);
}

static void stop(void) {
  int st = harness_stop(&d);
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
}

TestSuite(chaos, .init = start, .fini = stop, .timeout = 600);

static int env_int(const char *name, int def) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0' ? atoi(v) : def;
}

static int count_fds(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
  DIR *dir = opendir(path);
  if (dir == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL)
    n += e->d_name[0] != '.';
  closedir(dir);
  return n;
}

typedef struct child {
  pid_t pid;
  double kill_at;
} child;

static const char *const kModes[] = {"raw", "ops", "thread", "parent"};

static pid_t spawn_child(unsigned seed, const char *mode) {
  char seed_s[32];
  snprintf(seed_s, sizeof(seed_s), "%u", seed);
  pid_t pid = fork();
  if (pid == 0) {
    execl(CHAOS_CHILD_PATH, CHAOS_CHILD_PATH, d.socket, seed_s, mode, (char *)NULL);
    _exit(127);
  }
  return pid;
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

Test(chaos, killed_clients_leave_nothing_behind) {
  const int procs = env_int("SCREE_CHAOS_PROCS", 1000);
  const int conc = env_int("SCREE_CHAOS_CONCURRENCY", 50);
  cr_assert(procs > 0 && conc > 0 && conc <= 1024);

  scree_client *c;
  cr_assert_eq(scree_client_connect(d.socket, &c), 0, "%s", scree_client_last_error(c));
  scree_stats base = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &base), 0);
  cr_assert_eq(base.connections, 1);
  cr_assert_eq(base.bytes_used, 0);
  const int fds_base = count_fds(d.pid);
  cr_assert(fds_base > 0);

  child *kids = calloc((size_t)conc, sizeof(*kids));
  int alive = 0, spawned = 0;
  int by_mode[4] = {0, 0, 0, 0};
  int killed = 0, bad_exit = 0, corrupt = 0;
  srand(12345);
  double t0 = scree__now_s();
  while (spawned < procs || alive > 0) {
    while (spawned < procs && alive < conc) {
      int m = rand() % 10;
      int mode = m == 0 ? 0 : m < 3 ? 1 : m < 6 ? 2 : 3;
      pid_t pid = spawn_child((unsigned)spawned + 1, kModes[mode]);
      cr_assert(pid > 0, "fork failed");
      by_mode[mode]++;
      /* Whatever the mode, the parent kills at 0-30 ms (plus exec time)
       * at the latest. */
      kids[alive].pid = pid;
      kids[alive].kill_at = scree__now_s() + 0.005 + (double)(rand() % 30000) / 1e6;
      alive++;
      spawned++;
    }
    sleep_us(500);
    double now = scree__now_s();
    for (int i = 0; i < alive;) {
      int st;
      pid_t r = waitpid(kids[i].pid, &st, WNOHANG);
      if (r == kids[i].pid) {
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
          killed++;
        } else {
          bad_exit++;
          if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
            corrupt++;
        }
        kids[i] = kids[--alive];
        continue;
      }
      if (now >= kids[i].kill_at) {
        kill(kids[i].pid, SIGKILL);
        kids[i].kill_at = 1e300;
      }
      i++;
    }
  }
  double t_chaos = scree__now_s() - t0;
  free(kids);
  cr_assert_eq(corrupt, 0, "%d clients attached a batch whose offsets did not validate",
               corrupt);
  cr_assert_eq(bad_exit, 0, "%d clients exited on their own (exec or connect failed?)",
               bad_exit);
  cr_assert_eq(killed, procs);

  /* Every connection of a dead client closes, with what it held. */
  scree_stats s = SCREE_STATS_INIT;
  double deadline = scree__now_s() + 120;
  for (;;) {
    cr_assert_eq(scree_client_stats(c, &s), 0, "%s", scree_client_last_error(c));
    if ((s.connections == 1 && s.leases == 0 && s.pending_deletes == 0) || scree__now_s() > deadline)
      break;
    sleep_us(20000);
  }
  cr_assert_eq(s.connections, 1, "%u connections left", s.connections);
  cr_assert_eq(s.leases, 0, "%u leases left", s.leases);
  cr_assert_eq(s.pending_deletes, 0, "%u deletes still pending", s.pending_deletes);

  /* What is left is sealed batches only, and they account for every byte. */
  scree_batch_info *list;
  size_t n;
  cr_assert_eq(scree_client_list(c, NULL, &list, &n), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(n, s.batches);
  uint64_t sum = 0;
  size_t unsealed = 0, leased = 0;
  for (size_t i = 0; i < n; i++) {
    unsealed += list[i].state != SCREE_BATCH_SEALED;
    leased += list[i].leases != 0;
    sum += ((list[i].values_bytes + 255) / 256 + (list[i].offsets_bytes + 255) / 256) * 256;
  }
  cr_assert_eq(unsealed, 0, "%zu unsealed batches outlived their creators", unsealed);
  cr_assert_eq(leased, 0);
  cr_assert_eq(sum, s.bytes_used, "surviving batches hold %" PRIu64 " bytes, the daemon counts %" PRIu64,
               sum, s.bytes_used);

  for (size_t i = 0; i < n; i++) {
    int deferred = -1;
    cr_assert_eq(scree_client_delete(c, list[i].name, &deferred), 0, "delete %s: %s",
                 list[i].name, scree_client_last_error(c));
    cr_assert_eq(deferred, 0);
  }
  scree_client_free_list(list);
  cr_assert_eq(scree_client_stats(c, &s), 0);
  cr_assert_eq(s.bytes_used, 0);
  cr_assert_eq(s.batches, 0);
  /* Emptied arenas are kept until the next purge gives them back. */
  for (int i = 0; i < 250 && s.arenas != 0; i++) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cr_assert_eq(scree_client_stats(c, &s), 0);
  }
  cr_assert_eq(s.arenas, 0, "%u arenas left 5 s after the last delete", s.arenas);
  /* Arenas are memfds in screed, two fds each (read-write, and read-only
   * for readers): with those discounted, screed holds at most the fds it
   * held before the chaos (its listener, our connection, ...). */
  /* No more than before: a leak adds fds. (Fewer is possible: the harness's
   * readiness probe may still have been open when the baseline was read.) */
  int fds = count_fds(d.pid);
  cr_assert_leq(fds - 2 * (int)s.arenas, fds_base - 2 * (int)base.arenas,
                "screed holds %d fds with %u arenas, %d with %u before", fds, s.arenas, fds_base,
                base.arenas);

  cr_log_info("chaos: %d clients (raw %d, ops %d, thread %d, parent %d), %d at once, in %.1f s; "
              "%" PRIu64 " requests served; %zu sealed batches survived their producers",
              procs, by_mode[0], by_mode[1], by_mode[2], by_mode[3], conc, t_chaos, s.requests, n);
  fprintf(stderr,
          "chaos: %d clients (raw %d, ops %d, thread %d, parent %d), %d at once, in %.1f s; "
          "%" PRIu64 " requests served; %zu sealed batches survived their producers\n",
          procs, by_mode[0], by_mode[1], by_mode[2], by_mode[3], conc, t_chaos, s.requests, n);
  scree_client_close(c);
}
