/* libscreeclient against a real screed: each test starts its own daemon on a
 * unique socket and checks, at teardown, that SIGTERM stops it with status 0. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "scree/client.h"

static harness d;
static int daemon_killed;

static void start(void) {
  static const char *const extra[] = {"--memory-limit", "512M", "--arena-size", "64M", NULL};
  daemon_killed = 0;
  cr_assert_eq(harness_start(&d, extra), 0, "screed did not start (log: %s)", d.log);
}

static void stop(void) {
  if (daemon_killed)
    return;
  int st = harness_stop(&d);
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
}

TestSuite(client, .init = start, .fini = stop, .timeout = 60);

static scree_client *connect_ok(void) {
  scree_client *c;
  int rc = scree_client_connect(d.socket, &c);
  cr_assert_eq(rc, 0, "connect: %s", scree_client_last_error(c));
  return c;
}

/* The permissions and path of the mapping holding p, from /proc/self/maps. */
static int mapping_of(const void *p, char perms[8], char *path, size_t path_len) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL)
    return -1;
  char line[512];
  int found = -1;
  while (fgets(line, sizeof(line), f) != NULL) {
    unsigned long lo, hi;
    char pr[8];
    int off = 0;
    if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, pr, &off) < 3)
      continue;
    if ((uintptr_t)p >= lo && (uintptr_t)p < hi) {
      memcpy(perms, pr, 8);
      snprintf(path, path_len, "%s", off > 0 ? line + off : "");
      path[strcspn(path, "\n")] = '\0';
      found = 0;
      break;
    }
  }
  fclose(f);
  return found;
}

/* 1 when a write of one byte at p kills the writer with SIGSEGV (tried in
 * a child), 0 when the write goes through. */
static int writes_fault(void *p) {
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    /* The default action, not a sanitizer's handler, and no core file. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(SIGSEGV, &sa, NULL);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    *(volatile unsigned char *)p = 0x5a;
    _exit(0);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV)
    return 1;
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
  return 0;
}

static int count_open_fds(void) {
  DIR *dir = opendir("/proc/self/fd");
  int n = 0;
  while (readdir(dir) != NULL)
    n++;
  closedir(dir);
  return n;
}

Test(client, hello_facts) {
  scree_client *c = connect_ok();
  scree_client_info i = SCREE_CLIENT_INFO_INIT;
  cr_assert_eq(scree_client_info_get(c, &i), 0);
  cr_assert_eq(i.protocol_version, SCREE_CLIENT_PROTOCOL_VERSION);
  cr_assert_eq(i.backend, SCREE_BACKEND_HOST);
  cr_assert_eq(i.ipc_mode, SCREE_IPC_MEMFD);
  cr_assert_eq(i.device_index, -1);
  cr_assert_eq(i.memory_limit, 512ull << 20);
  cr_assert_eq(i.arena_size, 64ull << 20);
  cr_assert(i.max_name_len > 0);
  cr_assert(i.daemon_version[0] != '\0');
  cr_assert_eq(i.arenas_mapped, 0);
  cr_assert_str_eq(scree_client_last_error(c), "");
  scree_client_close(c);
}

Test(client, put_then_get_same_process) {
  scree_client *c = connect_ok();
  scree_array a;
  cr_assert_eq(testdata_make(7, 9, 40, 4, 16, &a), 0);
  cr_assert_eq(scree_client_put(c, "same", &a, NULL), 0, "%s", scree_client_last_error(c));
  scree_array g;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, "same", &g, &l), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(g.dtype, SCREE_FLOAT32);
  cr_assert_eq(g.batch_size, 9);
  cr_assert_eq(g.total_rows, a.total_rows);
  cr_assert_eq(g.ndim_inner, 2);
  cr_assert_eq(g.inner[1], 16);
  cr_assert_eq(g.device.type, SCREE_DEVICE_CPU);
  int64_t maxlen;
  cr_assert_eq(scree_offsets_validate(a.offsets, SCREE_INT64, 9, a.total_rows, &maxlen, NULL, 0),
               0);
  cr_assert_eq(g.max_length, maxlen, "max_length comes from the daemon");
  uint64_t vb, ob;
  scree_array_check_desc(&a, &vb, &ob, NULL, 0);
  cr_assert_eq(memcmp(g.values, a.values, vb), 0);
  cr_assert_eq(memcmp(g.offsets, a.offsets, ob), 0);
  cr_assert(g.values != a.values);
  cr_assert_eq(scree_client_release(c, l), 0);
  free(a.values);
  free(a.offsets);
  scree_client_close(c);
}

/* A lease says which batch it holds: the same id for every lease of one
 * batch, a new one for a batch put again under the name with the same
 * shape, into the same (kept) arena and offset. */
Test(client, a_lease_names_its_batch_by_an_id_never_reused) {
  scree_client *c = connect_ok();
  scree_array a;
  cr_assert_eq(testdata_make(3, 4, 8, 2, 4, &a), 0);
  cr_assert_eq(scree_client_put(c, "ids", &a, NULL), 0, "%s", scree_client_last_error(c));
  scree_array g1, g2, g3;
  scree_lease *l1, *l2, *l3;
  cr_assert_eq(scree_client_get(c, "ids", &g1, &l1), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_get(c, "ids", &g2, &l2), 0, "%s", scree_client_last_error(c));
  const uint64_t id = scree_lease_batch_id(l1);
  cr_assert_gt(id, 0);
  cr_assert_eq(scree_lease_batch_id(l2), id, "two leases of one batch");
  cr_assert_eq(scree_client_release(c, l1), 0);
  cr_assert_eq(scree_client_release(c, l2), 0);
  cr_assert_eq(scree_client_delete(c, "ids", NULL), 0);
  cr_assert_eq(scree_client_put(c, "ids", &a, NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_get(c, "ids", &g3, &l3), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(g3.values, g1.values, "the same memory, from the kept arena");
  cr_assert_neq(scree_lease_batch_id(l3), id, "the batch put again has an id of its own");
  cr_assert_eq(scree_lease_batch_id(NULL), 0);
  /* A created batch has its id from Create's reply on, kept through its
   * seal; an options struct of the size before batch_id still works. */
  scree_array desc = a, made, got;
  uint64_t created_id = 0;
  scree_create_options co = SCREE_CREATE_OPTIONS_INIT;
  co.batch_id = &created_id;
  cr_assert_eq(scree_client_create(c, "made", &desc, &made, &co), 0, "%s",
               scree_client_last_error(c));
  cr_assert_gt(created_id, scree_lease_batch_id(l3));
  memcpy(made.offsets, a.offsets, sizeof(int64_t) * (size_t)(a.batch_size + 1));
  cr_assert_eq(scree_client_seal(c, "made", NULL), 0, "%s", scree_client_last_error(c));
  scree_lease *lm;
  cr_assert_eq(scree_client_get(c, "made", &got, &lm), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_lease_batch_id(lm), created_id);
  cr_assert_eq(scree_client_release(c, lm), 0);
  scree_create_options old = {.struct_size = offsetof(scree_create_options, batch_id)};
  cr_assert_eq(scree_client_create(c, "made-old", &desc, &made, &old), 0, "%s",
               scree_client_last_error(c));
  cr_assert_eq(scree_client_release(c, l3), 0);
  free(a.values);
  free(a.offsets);
  scree_client_close(c);
}

/* A stream orders copies from GPU memory. A host-memory daemon takes host
 * arrays only, so a put with a stream there is SCREE_ENOTSUP, even for a
 * host array, with a message that says to pass none, and nothing is
 * created; without a stream the same put succeeds. The stream is never
 * used (the refusal comes first), so any non-NULL value stands for one. */
Test(client, a_stream_with_a_host_array_on_a_host_daemon_is_enotsup) {
  scree_client *c = connect_ok();
  scree_array a;
  cr_assert_eq(testdata_make(3, 4, 10, 2, 8, &a), 0);
  scree_put_options o = SCREE_PUT_OPTIONS_INIT;
  o.stream = (void *)(uintptr_t)0x1;
  cr_assert_eq(scree_client_put(c, "streamed", &a, &o), SCREE_ENOTSUP, "%s",
               scree_client_last_error(c));
  const char *e = scree_client_last_error(c);
  cr_assert(strstr(e, "host memory") != NULL && strstr(e, "pass no stream") != NULL, "%s", e);
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "streamed", &bi), SCREE_ENOENT, "nothing was created");
  o.stream = NULL;
  cr_assert_eq(scree_client_put(c, "streamed", &a, &o), 0, "%s", scree_client_last_error(c));
  free(a.values);
  free(a.offsets);
  scree_client_close(c);
}

/* Runs a helper program and returns its exit status; its first stdout line
 * goes to out. */
static int run_helper(const char *exe, const char *name, const char *seed, char *out,
                      size_t out_len) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "%s %s %s %s 33 100", exe, d.socket, name, seed);
  FILE *p = popen(cmd, "r");
  cr_assert(p != NULL);
  out[0] = '\0';
  if (fgets(out, (int)out_len, p) == NULL)
    out[0] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

Test(client, producer_exits_then_consumer_reads_identical_bytes) {
  char ph[128], ch[128];
  cr_assert_eq(run_helper(PRODUCER_PATH, "xproc", "42", ph, sizeof(ph)), 0);
  /* The producer has exited: the batch lives on in the daemon. */
  scree_client *c = connect_ok();
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "xproc", &bi), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(bi.state, SCREE_BATCH_SEALED);
  scree_client_close(c);
  cr_assert_eq(run_helper(CONSUMER_PATH, "xproc", "42", ch, sizeof(ch)), 0,
               "the consumer found different bytes");
  cr_assert_str_eq(ph, ch, "checksums differ: producer %s consumer %s", ph, ch);
  /* Another seed's data would differ: the check is real. */
  cr_assert_eq(run_helper(CONSUMER_PATH, "xproc", "43", ch, sizeof(ch)), 1);
}

Test(client, create_write_in_place_seal) {
  scree_client *c = connect_ok();
  scree_array desc;
  memset(&desc, 0, sizeof(desc));
  desc.dtype = SCREE_INT32;
  desc.offsets_dtype = SCREE_INT32;
  desc.batch_size = 3;
  desc.total_rows = 10;
  scree_array w;
  cr_assert_eq(scree_client_create(c, "inplace", &desc, &w, NULL), 0, "%s",
               scree_client_last_error(c));
  cr_assert_eq(w.device.type, SCREE_DEVICE_CPU);
  char perms[8], path[256];
  cr_assert_eq(mapping_of(w.values, perms, path, sizeof(path)), 0);
  cr_assert_eq(perms[1], 'w', "create maps the arena writable (%s)", perms);

  /* Not visible before seal. */
  scree_array g;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, "inplace", &g, &l), SCREE_ESTATE);
  cr_assert(strstr(scree_client_last_error(c), "inplace") != NULL);

  int32_t *v = w.values, *o = w.offsets;
  for (int i = 0; i < 10; i++)
    v[i] = i * i;
  o[0] = 0;
  o[1] = 4;
  o[2] = 3; /* bad: decreasing */
  o[3] = 10;
  cr_assert_eq(scree_client_seal(c, "inplace", NULL), SCREE_EINVAL);
  cr_assert(strstr(scree_client_last_error(c), "offsets[2]") != NULL, "%s",
            scree_client_last_error(c));
  o[2] = 4;
  cr_assert_eq(scree_client_seal(c, "inplace", NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_seal(c, "inplace", NULL), SCREE_ESTATE);

  cr_assert_eq(scree_client_get(c, "inplace", &g, &l), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(g.max_length, 6);
  /* The same memory, no copy, but through a read-only mapping of its own:
   * the creator's writable one must not leak into views from Get. */
  cr_assert_neq(g.values, w.values);
  cr_assert_eq(((int32_t *)g.values)[9], 81);
  cr_assert_eq(mapping_of(g.values, perms, path, sizeof(path)), 0);
  cr_assert_eq(perms[1], '-', "a Get view is mapped read-only (%s)", perms);
  cr_assert_eq(scree_client_release(c, l), 0);
  scree_client_close(c);

  /* Another process sees what was written in place. */
  c = connect_ok();
  cr_assert_eq(scree_client_get(c, "inplace", &g, NULL), 0);
  cr_assert_eq(((int32_t *)g.values)[7], 49);
  scree_client_close(c);
}

/* Writes one byte at p in a child process; returns the signal that ended
 * it, or 0 when the write went through. */
static int write_in_child(void *p) {
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    /* The default action, not a sanitizer's handler, which would exit. */
    signal(SIGSEGV, SIG_DFL);
    *(volatile unsigned char *)p = 0x5a;
    _exit(0);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

/* A producer that put a batch and then gets it on the same connection gets
 * a read-only view (issue 12: through the put's writable mapping it could
 * rewrite the sealed batch for every reader); its own create view of an
 * unsealed batch in the same arena stays writable until it seals. */
Test(client, a_get_view_is_read_only_on_the_producers_own_connection) {
  scree_client *c = connect_ok();
  scree_array a, w, desc;
  cr_assert_eq(testdata_make(4, 3, 10, 2, 8, &a), 0);
  cr_assert_eq(scree_client_put(c, "ro/put", &a, NULL), 0, "%s", scree_client_last_error(c));
  free(a.values);
  free(a.offsets);
  memset(&desc, 0, sizeof(desc));
  desc.dtype = SCREE_INT32;
  desc.offsets_dtype = SCREE_INT32;
  desc.batch_size = 1;
  desc.total_rows = 4;
  cr_assert_eq(scree_client_create(c, "ro/created", &desc, &w, NULL), 0, "%s",
               scree_client_last_error(c));

  scree_array g;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, "ro/put", &g, &l), 0, "%s", scree_client_last_error(c));
  char perms[8], path[256];
  cr_assert_eq(mapping_of(g.values, perms, path, sizeof(path)), 0);
  cr_assert_eq(perms[1], '-', "the get view is writable (%s)", perms);
  cr_assert_eq(write_in_child(g.values), SIGSEGV, "a write through a get view went through");
  cr_assert_eq(write_in_child(g.offsets), SIGSEGV);

  /* The created batch, in the same arena, is still written in place. */
  cr_assert_eq(mapping_of(w.values, perms, path, sizeof(path)), 0);
  cr_assert_eq(perms[1], 'w', "the create view lost its write access (%s)", perms);
  int32_t *v = w.values, *o = w.offsets;
  for (int i = 0; i < 4; i++)
    v[i] = 7 * i;
  o[0] = 0;
  o[1] = 4;
  cr_assert_eq(scree_client_seal(c, "ro/created", NULL), 0, "%s", scree_client_last_error(c));
  scree_array g2;
  scree_lease *l2;
  cr_assert_eq(scree_client_get(c, "ro/created", &g2, &l2), 0);
  cr_assert_eq(((int32_t *)g2.values)[3], 21);
  cr_assert_eq(write_in_child(g2.values), SIGSEGV);
  cr_assert_eq(scree_client_release(c, l2), 0);
  cr_assert_eq(scree_client_release(c, l), 0);
  scree_client_close(c);
}

Test(client, unsealed_create_goes_with_its_connection) {
  scree_client *c = connect_ok();
  scree_array desc, w;
  memset(&desc, 0, sizeof(desc));
  desc.dtype = SCREE_UINT8;
  desc.offsets_dtype = SCREE_INT64;
  desc.batch_size = 1;
  desc.total_rows = 100;
  cr_assert_eq(scree_client_create(c, "orphan", &desc, &w, NULL), 0);
  scree_client_close(c);
  c = connect_ok();
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "orphan", &bi), SCREE_ENOENT);
  scree_client_close(c);
}

Test(client, get_is_zero_copy_and_read_only) {
  scree_client *c = connect_ok();
  scree_array a;
  cr_assert_eq(testdata_make(3, 4, 20, 4, 16, &a), 0);
  cr_assert_eq(scree_client_put(c, "zc", &a, NULL), 0);
  scree_client_close(c);

  c = connect_ok();
  scree_array g1, g2;
  scree_lease *l1, *l2;
  cr_assert_eq(scree_client_get(c, "zc", &g1, &l1), 0);
  cr_assert_eq(scree_client_get(c, "zc", &g2, &l2), 0);
  cr_assert_eq(g1.values, g2.values, "two gets give the same pointer");
  cr_assert_eq(g1.offsets, g2.offsets);
  char perms[8], path[256];
  cr_assert_eq(mapping_of(g1.values, perms, path, sizeof(path)), 0);
  cr_assert(strstr(path, "memfd:") != NULL, "values lie in the mapped arena, not '%s'", path);
  cr_assert_eq(perms[0], 'r');
  cr_assert_eq(perms[1], '-', "get maps the arena read-only (%s)", perms);
  cr_assert_eq(perms[3], 's', "the mapping is shared (%s)", perms);
  cr_assert_eq(writes_fault(g1.values), 1, "a reader's view cannot be written");
  /* Nor made writable: the daemon sent a read-only fd. */
  long page = sysconf(_SC_PAGESIZE);
  void *pg = (void *)((uintptr_t)g1.values & ~(uintptr_t)(page - 1));
  cr_assert_eq(mprotect(pg, (size_t)page, PROT_READ | PROT_WRITE), -1);
  cr_assert_eq(errno, EACCES, "%s", strerror(errno));
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "zc", &bi), 0);
  cr_assert_eq(bi.leases, 2);
  cr_assert_eq(scree_client_release(c, l1), 0);
  cr_assert_eq(scree_client_release(c, l2), 0);
  cr_assert_eq(scree_client_stat(c, "zc", &bi), 0);
  cr_assert_eq(bi.leases, 0);
  free(a.values);
  free(a.offsets);
  scree_client_close(c);
}

/* A connection that reads an arena (read-only fd) and then creates a batch
 * in it (writable fd, mapped at a second address) writes its batch, and the
 * views of its earlier Gets stay valid, read-only, and correct. */
Test(client, a_reader_that_creates_keeps_its_views) {
  scree_client *p = connect_ok();
  scree_array a;
  cr_assert_eq(testdata_make(11, 3, 12, 2, 8, &a), 0);
  cr_assert_eq(scree_client_put(p, "mix/first", &a, NULL), 0, "%s", scree_client_last_error(p));
  scree_client_close(p);
  uint64_t vb, ob;
  scree_array_check_desc(&a, &vb, &ob, NULL, 0);

  scree_client *c = connect_ok();
  int fds = count_open_fds();
  scree_array g;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, "mix/first", &g, &l), 0, "%s", scree_client_last_error(c));
  char perms[8], path[256];
  cr_assert_eq(mapping_of(g.values, perms, path, sizeof(path)), 0);
  cr_assert_eq(perms[1], '-', "get maps read-only (%s)", perms);

  /* Same uid, so the same arena. */
  scree_array desc, w;
  memset(&desc, 0, sizeof(desc));
  desc.dtype = SCREE_INT32;
  desc.offsets_dtype = SCREE_INT64;
  desc.batch_size = 2;
  desc.total_rows = 6;
  cr_assert_eq(scree_client_create(c, "mix/second", &desc, &w, NULL), 0, "%s",
               scree_client_last_error(c));
  cr_assert_eq(mapping_of(w.values, perms, path, sizeof(path)), 0);
  cr_assert_eq(perms[1], 'w', "create maps writable (%s)", perms);
  int32_t *v = w.values;
  int64_t *o = w.offsets;
  for (int i = 0; i < 6; i++)
    v[i] = 100 + i;
  o[0] = 0;
  o[1] = 2;
  o[2] = 6;
  cr_assert_eq(scree_client_seal(c, "mix/second", NULL), 0, "%s", scree_client_last_error(c));
  scree_batch_info b1, b2;
  cr_assert_eq(scree_client_stat(c, "mix/first", &b1), 0);
  cr_assert_eq(scree_client_stat(c, "mix/second", &b2), 0);
  cr_assert_eq(b1.arena_id, b2.arena_id, "both batches in one arena");

  /* The earlier view: still mapped, still read-only, still right. */
  cr_assert_eq(memcmp(g.values, a.values, vb), 0);
  cr_assert_eq(memcmp(g.offsets, a.offsets, ob), 0);
  cr_assert_eq(mapping_of(g.values, perms, path, sizeof(path)), 0);
  cr_assert_eq(perms[1], '-', "the get view stays read-only (%s)", perms);
  cr_assert_eq(writes_fault(g.values), 1);
  cr_assert_eq(writes_fault(w.values), 0, "the create view is writable");

  /* A later Get in the arena reads through the read-only mapping too. */
  scree_array g2;
  scree_lease *l2;
  cr_assert_eq(scree_client_get(c, "mix/second", &g2, &l2), 0, "%s",
               scree_client_last_error(c));
  cr_assert_neq(g2.values, w.values, "gets use the read-only mapping");
  cr_assert_eq(memcmp(g2.values, w.values, 6 * sizeof(int32_t)), 0);
  cr_assert_eq(((int32_t *)g2.values)[5], 105);
  cr_assert_eq(mapping_of(g2.values, perms, path, sizeof(path)), 0);
  cr_assert_eq(perms[1], '-', "(%s)", perms);

  scree_client_info i = SCREE_CLIENT_INFO_INIT;
  scree_client_info_get(c, &i);
  cr_assert_eq(i.arenas_mapped, 1);
  cr_assert_eq(i.arena_imports, 2, "read-only, then writable");
  cr_assert_eq(i.stray_fds_closed, 0);
  cr_assert_eq(count_open_fds(), fds, "no fd kept");
  cr_assert_eq(scree_client_release(c, l), 0);
  cr_assert_eq(scree_client_release(c, l2), 0);
  scree_client_close(c);

  /* Others see what was written. */
  c = connect_ok();
  cr_assert_eq(scree_client_get(c, "mix/second", &g2, NULL), 0);
  cr_assert_eq(((int32_t *)g2.values)[3], 103);
  cr_assert_eq(((int64_t *)g2.offsets)[1], 2);
  scree_client_close(c);
  free(a.values);
  free(a.offsets);
}

Test(client, arena_imported_once) {
  scree_client *c = connect_ok();
  scree_array a;
  cr_assert_eq(testdata_make(5, 2, 10, 4, 16, &a), 0);
  cr_assert_eq(scree_client_put(c, "cached", &a, NULL), 0);
  scree_client_close(c);

  c = connect_ok();
  scree_array g;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, "cached", &g, &l), 0);
  cr_assert_eq(scree_client_release(c, l), 0);
  int fds = count_open_fds();
  void *first = g.values;
  for (int i = 0; i < 500; i++) {
    cr_assert_eq(scree_client_get(c, "cached", &g, &l), 0, "%s", scree_client_last_error(c));
    cr_assert_eq(g.values, first);
    cr_assert_eq(scree_client_release(c, l), 0);
  }
  scree_client_info i = SCREE_CLIENT_INFO_INIT;
  scree_client_info_get(c, &i);
  cr_assert_eq(i.arena_imports, 1, "one mapping for 501 gets, not %" PRIu64, i.arena_imports);
  cr_assert_eq(i.arenas_mapped, 1);
  cr_assert_eq(i.stray_fds_closed, 0, "the daemon sent the fd only once");
  cr_assert_eq(count_open_fds(), fds, "no fd leaks");
  free(a.values);
  free(a.offsets);
  scree_client_close(c);
}

Test(client, delete_while_leased_then_release) {
  scree_client *c = connect_ok();
  scree_array a;
  cr_assert_eq(testdata_make(11, 3, 30, 4, 16, &a), 0);
  cr_assert_eq(scree_client_put(c, "leased", &a, NULL), 0);
  scree_client *r = connect_ok();
  scree_array g;
  scree_lease *l;
  cr_assert_eq(scree_client_get(r, "leased", &g, &l), 0);
  int deferred = -1;
  cr_assert_eq(scree_client_delete(c, "leased", &deferred), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(deferred, 1);
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "leased", &bi), SCREE_ENOENT, "the name goes at once");
  scree_stats s = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &s), 0);
  cr_assert_eq(s.pending_deletes, 1);
  /* The lease holder still reads the data. */
  uint64_t vb;
  scree_array_check_desc(&a, &vb, NULL, NULL, 0);
  cr_assert_eq(memcmp(g.values, a.values, vb), 0);
  /* The name can be reused at once. */
  cr_assert_eq(scree_client_put(c, "leased", &a, NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(scree_client_release(r, l), 0);
  cr_assert_eq(scree_client_stats(c, &s), 0);
  cr_assert_eq(s.pending_deletes, 0);
  cr_assert_eq(s.batches, 1);
  cr_assert_eq(scree_client_delete(c, "leased", &deferred), 0);
  cr_assert_eq(deferred, 0);
  cr_assert_eq(scree_client_stats(c, &s), 0);
  cr_assert_eq(s.bytes_used, 0);
  free(a.values);
  free(a.offsets);
  scree_client_close(r);
  scree_client_close(c);
}

Test(client, list_pages_through_a_prefix) {
  scree_client *c = connect_ok();
  scree_array a;
  memset(&a, 0, sizeof(a));
  int64_t off[2] = {0, 1};
  uint8_t val[1] = {7};
  a.dtype = SCREE_UINT8;
  a.offsets_dtype = SCREE_INT64;
  a.batch_size = 1;
  a.total_rows = 1;
  a.values = val;
  a.offsets = off;
  char name[64];
  for (int i = 0; i < 257; i++) {
    snprintf(name, sizeof(name), "run/%04d", i);
    cr_assert_eq(scree_client_put(c, name, &a, NULL), 0, "%s", scree_client_last_error(c));
  }
  for (int i = 0; i < 5; i++) {
    snprintf(name, sizeof(name), "other/%d", i);
    cr_assert_eq(scree_client_put(c, name, &a, NULL), 0);
  }
  cr_assert_eq(scree_client_put(c, "run", &a, NULL), 0);
  scree_batch_info *items;
  size_t n;
  cr_assert_eq(scree_client_list(c, "run/", &items, &n), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(n, 257, "more than two pages of 100");
  for (size_t i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "run/%04zu", i);
    cr_assert_str_eq(items[i].name, name);
    cr_assert_eq(items[i].state, SCREE_BATCH_SEALED);
    cr_assert_eq(items[i].desc.dtype, SCREE_UINT8);
  }
  scree_client_free_list(items);
  cr_assert_eq(scree_client_list(c, NULL, &items, &n), 0);
  cr_assert_eq(n, 263);
  scree_client_free_list(items);
  cr_assert_eq(scree_client_list(c, "nothing-here", &items, &n), 0);
  cr_assert_eq(n, 0);
  cr_assert_null(items);
  scree_client_close(c);
}

Test(client, stat_and_stats_fields) {
  scree_client *c = connect_ok();
  scree_array a;
  cr_assert_eq(testdata_make(13, 5, 50, 4, 16, &a), 0);
  cr_assert_eq(scree_client_put(c, "st", &a, NULL), 0);
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "st", &bi), 0);
  uint64_t vb, ob;
  scree_array_check_desc(&a, &vb, &ob, NULL, 0);
  cr_assert_str_eq(bi.name, "st");
  cr_assert_eq(bi.state, SCREE_BATCH_SEALED);
  cr_assert_eq(bi.desc.dtype, SCREE_FLOAT32);
  cr_assert_eq(bi.desc.batch_size, 5);
  cr_assert_eq(bi.desc.total_rows, a.total_rows);
  cr_assert_eq(bi.desc.ndim_inner, 2);
  cr_assert_eq(bi.desc.inner[0], 4);
  cr_assert_eq(bi.desc.offsets_dtype, SCREE_INT64);
  cr_assert_null(bi.desc.values);
  cr_assert_eq(bi.values_bytes, vb);
  cr_assert_eq(bi.offsets_bytes, ob);
  cr_assert_eq(bi.owner_pid, getpid());
  cr_assert_eq(bi.owner_uid, getuid());
  cr_assert_eq(bi.leases, 0);
  cr_assert_eq(bi.delete_pending, 0);
  cr_assert(bi.arena_id != 0);

  scree_array g;
  cr_assert_eq(scree_client_get(c, "nope", &g, NULL), SCREE_ENOENT);
  scree_stats s = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &s), 0);
  cr_assert_eq(s.batches, 1);
  cr_assert(s.bytes_used >= vb + ob);
  cr_assert_eq(s.bytes_limit, 512ull << 20);
  cr_assert_eq(s.arenas, 1);
  cr_assert_eq(s.bytes_arenas, 64ull << 20);
  cr_assert_eq(s.connections, 1);
  cr_assert(s.requests >= 4);
  cr_assert(s.uptime_ns > 0);
  int found = 0;
  for (uint32_t i = 0; i < s.n_errors; i++)
    if (s.errors[i].code == SCREE_ENOENT && s.errors[i].count == 1)
      found = 1;
  cr_assert(found, "the ENOENT is counted");
  free(a.values);
  free(a.offsets);
  scree_client_close(c);
}

Test(client, errors_carry_the_daemons_message) {
  scree_client *c = connect_ok();
  scree_array g;
  scree_lease *l = (scree_lease *)&g;
  cr_assert_eq(scree_client_get(c, "missing-batch", &g, &l), SCREE_ENOENT);
  cr_assert(strstr(scree_client_last_error(c), "missing-batch") != NULL, "%s",
            scree_client_last_error(c));
  cr_assert_null(l, "no lease on failure");
  cr_assert_eq(scree_client_delete(c, "gone", NULL), SCREE_ENOENT);
  cr_assert(strstr(scree_client_last_error(c), "gone") != NULL);

  scree_array a;
  cr_assert_eq(testdata_make(1, 2, 10, 4, 16, &a), 0);
  cr_assert_eq(scree_client_put(c, "dup", &a, NULL), 0);
  cr_assert_eq(scree_client_put(c, "dup", &a, NULL), SCREE_EEXIST);
  cr_assert(strstr(scree_client_last_error(c), "dup") != NULL);

  /* Larger than the store: ENOSPC with the sizes. */
  scree_array big;
  memset(&big, 0, sizeof(big));
  big.dtype = SCREE_FLOAT64;
  big.offsets_dtype = SCREE_INT64;
  big.batch_size = 1;
  big.total_rows = 1ll << 27; /* 1 GiB */
  scree_array w;
  cr_assert_eq(scree_client_create(c, "big", &big, &w, NULL), SCREE_ENOSPC);
  cr_assert(strstr(scree_client_last_error(c), "big") != NULL &&
                strstr(scree_client_last_error(c), "free") != NULL,
            "%s", scree_client_last_error(c));

  /* Bad offsets are refused before anything is created. */
  ((int64_t *)a.offsets)[1] = a.total_rows + 1;
  cr_assert_eq(scree_client_put(c, "badoff", &a, NULL), SCREE_EINVAL);
  cr_assert(strstr(scree_client_last_error(c), "offsets[1]") != NULL, "%s",
            scree_client_last_error(c));
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "badoff", &bi), SCREE_ENOENT);

  /* Names the daemon refuses. */
  char longname[400];
  memset(longname, 'n', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  cr_assert_eq(scree_client_stat(c, longname, &bi), SCREE_ENAMETOOLONG);
  cr_assert_eq(scree_client_stat(c, "", &bi), SCREE_EINVAL);
  cr_assert_eq(scree_client_stat(c, NULL, &bi), SCREE_EINVAL);

  /* Attention is reserved: the daemon answers ENOTSUP until it lands. */
  scree_attention_params p = SCREE_ATTENTION_PARAMS_INIT;
  p.causal = 1;
  int rc = scree_client_attention(c, "dup", "dup", "dup", "out", &p, NULL, NULL);
  cr_assert(rc == SCREE_ENOTSUP || rc == 0 || rc == SCREE_EINVAL, "attention gave %d", rc);
  if (rc != 0)
    cr_assert(scree_client_last_error(c)[0] != '\0');

  /* The connection is still good after all that. */
  cr_assert_eq(scree_client_stat(c, "dup", &bi), 0);
  free(a.values);
  free(a.offsets);
  scree_client_close(c);
}

Test(client, connect_failures_explain_themselves) {
  scree_client *c;
  cr_assert_eq(scree_client_connect("/tmp/scree-no-such-daemon.sock", &c), SCREE_ECONNREFUSED);
  cr_assert_not_null(c);
  cr_assert(strstr(scree_client_last_error(c), "/tmp/scree-no-such-daemon.sock") != NULL);
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "x", &bi), SCREE_EDISCONNECTED);
  scree_client_close(c);

  char longpath[200];
  memset(longpath, 'p', sizeof(longpath) - 1);
  longpath[0] = '/';
  longpath[sizeof(longpath) - 1] = '\0';
  cr_assert_eq(scree_client_connect(longpath, &c), SCREE_ENAMETOOLONG);
  scree_client_close(c);

  /* No path: $SCREE_SOCKET. */
  setenv("SCREE_SOCKET", d.socket, 1);
  cr_assert_eq(scree_client_connect(NULL, &c), 0, "%s", scree_client_last_error(c));
  scree_client_close(c);
  unsetenv("SCREE_SOCKET");
}

Test(client, daemon_killed_gives_disconnected) {
  scree_client *c = connect_ok();
  scree_array a;
  cr_assert_eq(testdata_make(2, 2, 10, 4, 16, &a), 0);
  cr_assert_eq(scree_client_put(c, "k", &a, NULL), 0);
  scree_array g;
  scree_lease *l;
  cr_assert_eq(scree_client_get(c, "k", &g, &l), 0);
  kill(d.pid, SIGKILL);
  waitpid(d.pid, NULL, 0);
  daemon_killed = 1;
  unlink(d.socket);
  scree_batch_info bi;
  cr_assert_eq(scree_client_stat(c, "k", &bi), SCREE_EDISCONNECTED);
  cr_assert(strstr(scree_client_last_error(c), "lost the daemon") != NULL, "%s",
            scree_client_last_error(c));
  cr_assert_eq(scree_client_put(c, "k2", &a, NULL), SCREE_EDISCONNECTED);
  cr_assert_eq(scree_client_release(c, l), SCREE_EDISCONNECTED);
  /* The mapping outlives the daemon: the memfd pages are ours too. */
  uint64_t vb;
  scree_array_check_desc(&a, &vb, NULL, NULL, 0);
  cr_assert_eq(memcmp(g.values, a.values, vb), 0);
  free(a.values);
  free(a.offsets);
  scree_client_close(c);
}

#define NTHREADS 200

static void *worker(void *arg) {
  intptr_t id = (intptr_t)arg;
  scree_client *c;
  intptr_t bad = 0;
  if (scree_client_connect(d.socket, &c) != 0) {
    scree_client_close(c);
    return (void *)1;
  }
  scree_array a;
  if (testdata_make((unsigned)id, 3, 8, 4, 16, &a) != 0)
    return (void *)2;
  char name[32];
  snprintf(name, sizeof(name), "t/%03d", (int)id);
  if (scree_client_put(c, name, &a, NULL) != 0) {
    bad = 3;
  } else {
    /* Read a neighbour's batch if it is there yet, then our own. */
    scree_array g;
    scree_lease *l;
    if (scree_client_get(c, name, &g, &l) != 0)
      bad = 4;
    else {
      uint64_t vb;
      scree_array_check_desc(&a, &vb, NULL, NULL, 0);
      if (memcmp(g.values, a.values, vb) != 0)
        bad = 5;
      if (scree_client_release(c, l) != 0)
        bad = 6;
    }
  }
  free(a.values);
  free(a.offsets);
  scree_client_close(c);
  return (void *)bad;
}

Test(client, two_hundred_concurrent_connections) {
  pthread_t t[NTHREADS];
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  for (intptr_t i = 0; i < NTHREADS; i++)
    cr_assert_eq(pthread_create(&t[i], &attr, worker, (void *)i), 0);
  int failures = 0;
  for (int i = 0; i < NTHREADS; i++) {
    void *r;
    pthread_join(t[i], &r);
    if (r != NULL) {
      failures++;
      cr_log_error("thread %d failed with %ld", i, (long)(intptr_t)r);
    }
  }
  cr_assert_eq(failures, 0);
  scree_client *c = connect_ok();
  scree_batch_info *items;
  size_t n;
  cr_assert_eq(scree_client_list(c, "t/", &items, &n), 0);
  cr_assert_eq(n, NTHREADS);
  scree_client_free_list(items);
  scree_stats s = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &s), 0);
  cr_assert_eq(s.leases, 0);
  scree_client_close(c);
}

static scree_client *shared_c;
static scree_array shared_a;

static void *shared_worker(void *arg) {
  intptr_t bad = 0;
  uint64_t vb;
  scree_array_check_desc(&shared_a, &vb, NULL, NULL, 0);
  for (int i = 0; i < 200 && !bad; i++) {
    scree_array g;
    scree_lease *l;
    if (scree_client_get(shared_c, "shared", &g, &l) != 0)
      bad = 1;
    else if (memcmp(g.values, shared_a.values, vb) != 0)
      bad = 2;
    else if (scree_client_release(shared_c, l) != 0)
      bad = 3;
  }
  return (void *)bad;
}

Test(client, one_handle_shared_by_threads) {
  /* The handle's mutex serialises calls: eight threads on one handle. */
  shared_c = connect_ok();
  cr_assert_eq(testdata_make(9, 4, 16, 4, 16, &shared_a), 0);
  cr_assert_eq(scree_client_put(shared_c, "shared", &shared_a, NULL), 0);
  pthread_t t[8];
  for (int i = 0; i < 8; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, shared_worker, NULL), 0);
  for (int i = 0; i < 8; i++) {
    void *r;
    pthread_join(t[i], &r);
    cr_assert_null(r, "thread %d failed with %ld", i, (long)(intptr_t)r);
  }
  scree_client_info info = SCREE_CLIENT_INFO_INIT;
  scree_client_info_get(shared_c, &info);
  cr_assert_eq(info.arena_imports, 1);
  scree_client_close(shared_c);
  free(shared_a.values);
  free(shared_a.offsets);
}
