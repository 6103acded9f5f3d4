/* screectl against a real screed: .npy files in and out, byte-identical
 * round trips, and errors that print the daemon's message and exit 1. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attn_ref.h"
#include "harness.h"
#include "npy.h"
#include "scree/client.h"

static harness d;
static char dir[64];

static void start(void) {
  cr_assert_eq(harness_start(&d, NULL), 0, "screed did not start (log: %s)", d.log);
  snprintf(dir, sizeof(dir), "/tmp/scree-ctl-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void stop(void) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
  int st = harness_stop(&d);
  cr_assert_eq(st, 0, "screed exited with %d (log: %s)", st, d.log);
}

TestSuite(screectl, .init = start, .fini = stop, .timeout = 60);

static char out_buf[65536], err_buf[4096];

static void slurp(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, len - 1, f) : 0;
  buf[n] = '\0';
  if (f)
    fclose(f);
}

/* Runs screectl with the daemon's socket and the given arguments (a
 * printf-formatted, shell-quoted string). Returns the exit status; stdout
 * and stderr land in out_buf and err_buf. */
static int ctl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ctl(const char *fmt, ...) {
  char args[1024], cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof(args), fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' %s >'%s/out' 2>'%s/err'", SCREECTL_PATH,
           d.socket, args, dir, dir);
  int st = system(cmd);
  char p[128];
  snprintf(p, sizeof(p), "%s/out", dir);
  slurp(p, out_buf, sizeof(out_buf));
  snprintf(p, sizeof(p), "%s/err", dir);
  slurp(p, err_buf, sizeof(err_buf));
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int same_file(const char *a, const char *b) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
  return system(cmd) == 0;
}

static void write_npy(const char *name, scree_dtype dt, int ndim, const int64_t *shape,
                      const void *data) {
  char path[128], msg[256];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  cr_assert_eq(scree__npy_write(path, dt, ndim, shape, data, msg, sizeof(msg)), 0, "%s", msg);
}

static const char *f(const char *name) {
  static char bufs[4][128];
  static int k;
  char *b = bufs[k++ % 4];
  snprintf(b, 128, "%s/%s", dir, name);
  return b;
}

Test(screectl, put_get_round_trip_is_byte_identical) {
  float v[7 * 2 * 3];
  for (int i = 0; i < 42; i++)
    v[i] = (float)i * 0.5f - 3.0f;
  int64_t vs[] = {7, 2, 3};
  int64_t o[] = {0, 2, 2, 7};
  int64_t os[] = {4};
  write_npy("v.npy", SCREE_FLOAT32, 3, vs, v);
  write_npy("o.npy", SCREE_INT64, 1, os, o);
  cr_assert_eq(ctl("put b1 --values %s --offsets %s", f("v.npy"), f("o.npy")), 0, "%s", err_buf);
  cr_assert_eq(ctl("get b1 --values %s --offsets %s", f("v2.npy"), f("o2.npy")), 0, "%s",
               err_buf);
  cr_assert(same_file(f("v.npy"), f("v2.npy")), "values differ");
  cr_assert(same_file(f("o.npy"), f("o2.npy")), "offsets differ");

  /* int32 offsets, 1-D bool values. */
  uint8_t bv[5] = {1, 0, 1, 1, 0};
  int64_t bs[] = {5};
  int32_t o32[] = {0, 5};
  int64_t o32s[] = {2};
  write_npy("bv.npy", SCREE_BOOL, 1, bs, bv);
  write_npy("o32.npy", SCREE_INT32, 1, o32s, o32);
  cr_assert_eq(ctl("put b2 --values=%s --offsets=%s", f("bv.npy"), f("o32.npy")), 0, "%s",
               err_buf);
  cr_assert_eq(ctl("get b2 --values %s --offsets %s", f("bv2.npy"), f("o322.npy")), 0);
  cr_assert(same_file(f("bv.npy"), f("bv2.npy")));
  cr_assert(same_file(f("o32.npy"), f("o322.npy")));

  cr_assert_eq(ctl("stat b1"), 0);
  cr_assert(strstr(out_buf, "name: b1\n") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "state: sealed\n") != NULL);
  cr_assert(strstr(out_buf, "dtype: float32\n") != NULL);
  cr_assert(strstr(out_buf, "shape: (7, 2, 3)\n") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "batch_size: 3\n") != NULL);
  cr_assert(strstr(out_buf, "max_length: 5\n") != NULL);
  cr_assert(strstr(out_buf, "offsets_dtype: int64\n") != NULL);

  cr_assert_eq(ctl("list"), 0);
  cr_assert(strncmp(out_buf, "NAME", 4) == 0, "%s", out_buf);
  cr_assert(strstr(out_buf, "b1") != NULL && strstr(out_buf, "b2") != NULL);
  cr_assert(strstr(out_buf, "(7, 2, 3)") != NULL);
  cr_assert_eq(ctl("list b2"), 0);
  cr_assert(strstr(out_buf, "b1") == NULL, "%s", out_buf);

  cr_assert_eq(ctl("stats"), 0);
  cr_assert(strstr(out_buf, "batches: 2\n") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "leases: 0\n") != NULL);

  cr_assert_eq(ctl("delete b1"), 0);
  cr_assert_eq(ctl("stat b1"), 1);
}

/* The arena_id line of `screectl stat NAME`. */
static unsigned long long stat_arena(const char *name) {
  cr_assert_eq(ctl("stat %s", name), 0, "%s", err_buf);
  const char *p = strstr(out_buf, "arena_id: ");
  cr_assert_not_null(p, "%s", out_buf);
  return strtoull(p + strlen("arena_id: "), NULL, 10);
}

Test(screectl, put_shared_lands_in_the_shared_pool) {
  float v[3] = {1, 2, 3};
  int64_t vs[] = {3};
  int64_t o[] = {0, 1, 3};
  int64_t os[] = {3};
  write_npy("v.npy", SCREE_FLOAT32, 1, vs, v);
  write_npy("o.npy", SCREE_INT64, 1, os, o);
  cr_assert_eq(ctl("put mine --values %s --offsets %s", f("v.npy"), f("o.npy")), 0, "%s",
               err_buf);
  cr_assert_eq(ctl("put pub --shared --values %s --offsets %s", f("v.npy"), f("o.npy")), 0,
               "%s", err_buf);
  cr_assert_eq(ctl("put pub2 --values %s --offsets %s --shared", f("v.npy"), f("o.npy")), 0,
               "%s", err_buf);
  unsigned long long mine = stat_arena("mine"), pub = stat_arena("pub");
  cr_assert_neq(pub, mine, "a shared batch landed in the private arena %llu", mine);
  cr_assert_eq(stat_arena("pub2"), pub);
  cr_assert_eq(ctl("get pub --values %s --offsets %s", f("v2.npy"), f("o2.npy")), 0, "%s",
               err_buf);
  cr_assert(same_file(f("v.npy"), f("v2.npy")), "values differ");
  cr_assert_eq(ctl("stat mine --shared"), 1);
  cr_assert(strstr(err_buf, "--shared belongs to put") != NULL, "%s", err_buf);
}

/* A batch whose offsets a writer of its arena changed after the seal (the
 * creator's own create view stays writable; so does any creator's in a
 * shared arena): screectl get checks the offsets before writing anything,
 * and says what is wrong, instead of writing offsets that point past the
 * values. */
Test(screectl, get_refuses_a_batch_whose_offsets_were_corrupted) {
  scree_client *c;
  cr_assert_eq(scree_client_connect(d.socket, &c), 0);
  scree_array desc, w;
  memset(&desc, 0, sizeof(desc));
  desc.dtype = SCREE_FLOAT32;
  desc.offsets_dtype = SCREE_INT64;
  desc.batch_size = 4;
  desc.total_rows = 8;
  cr_assert_eq(scree_client_create(c, "corrupt", &desc, &w, NULL), 0, "%s",
               scree_client_last_error(c));
  int64_t *o = w.offsets;
  for (int i = 0; i <= 4; i++)
    o[i] = 2 * i;
  memset(w.values, 0, 8 * sizeof(float));
  cr_assert_eq(scree_client_seal(c, "corrupt", NULL), 0, "%s", scree_client_last_error(c));
  o[1] = 999999; /* after the seal, through the creator's writable view */
  unlink(f("cv.npy"));
  unlink(f("co.npy"));
  cr_assert_eq(ctl("get corrupt --values %s --offsets %s", f("cv.npy"), f("co.npy")), 1,
               "screectl get wrote a corrupted batch: %s", err_buf);
  cr_assert(strstr(err_buf, "offsets") != NULL && strstr(err_buf, "999999") != NULL, "%s",
            err_buf);
  struct stat st;
  cr_assert_neq(stat(f("co.npy"), &st), 0, "offsets were written");
  cr_assert_neq(stat(f("cv.npy"), &st), 0, "values were written");
  scree_client_close(c);
}

Test(screectl, bfloat16_and_float8_travel_as_raw_bits) {
  uint16_t bits[6] = {0x3f80, 0x4000, 0xbf80, 0x0000, 0x7f80, 0x4049};
  int64_t s[] = {3, 2};
  int64_t o[] = {0, 3};
  int64_t os[] = {2};
  write_npy("bf.npy", SCREE_BFLOAT16, 2, s, bits); /* written as <u2 */
  write_npy("o.npy", SCREE_INT64, 1, os, o);
  cr_assert_eq(ctl("put bf --values %s --offsets %s", f("bf.npy"), f("o.npy")), 1);
  cr_assert(strstr(err_buf, "screectl: ") == err_buf, "%s", err_buf);
  cr_assert(strstr(err_buf, "--dtype bfloat16") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("put bf --values %s --offsets %s --dtype bfloat16", f("bf.npy"), f("o.npy")),
               0, "%s", err_buf);
  cr_assert_eq(ctl("stat bf"), 0);
  cr_assert(strstr(out_buf, "dtype: bfloat16\n") != NULL, "%s", out_buf);
  cr_assert_eq(ctl("get bf --values %s --offsets %s", f("bf2.npy"), f("o2.npy")), 0);
  cr_assert(strstr(err_buf, "note: bfloat16") != NULL, "%s", err_buf);
  cr_assert(same_file(f("bf.npy"), f("bf2.npy")));

  uint8_t e4[3] = {0x38, 0x40, 0xb8};
  int64_t s8[] = {3};
  write_npy("f8.npy", SCREE_FLOAT8_E4M3, 1, s8, e4); /* written as |u1 */
  cr_assert_eq(ctl("put f8 --values %s --offsets %s --dtype float8_e4m3", f("f8.npy"),
                   f("o.npy")),
               0, "%s", err_buf);
  cr_assert_eq(ctl("stat f8"), 0);
  cr_assert(strstr(out_buf, "dtype: float8_e4m3\n") != NULL, "%s", out_buf);
  cr_assert_eq(ctl("get f8 --values %s --offsets %s", f("f82.npy"), f("o3.npy")), 0);
  cr_assert(same_file(f("f8.npy"), f("f82.npy")));

  /* A float32 file cannot be called bfloat16. */
  float fv[3] = {1, 2, 3};
  write_npy("f4.npy", SCREE_FLOAT32, 1, s8, fv);
  cr_assert_eq(ctl("put x --values %s --offsets %s --dtype bfloat16", f("f4.npy"), f("o.npy")),
               1);
  cr_assert(strstr(err_buf, "bfloat16") != NULL, "%s", err_buf);
}

Test(screectl, errors_print_the_daemons_message_and_exit_1) {
  cr_assert_eq(ctl("get nope --values %s --offsets %s", f("a.npy"), f("b.npy")), 1);
  cr_assert_str_eq(err_buf, "screectl: no batch named 'nope'\n");
  cr_assert_eq(ctl("stat nope"), 1);
  cr_assert_str_eq(err_buf, "screectl: no batch named 'nope'\n");
  cr_assert_eq(ctl("delete nope"), 1);
  cr_assert(strstr(err_buf, "nope") != NULL);

  int64_t s[] = {2};
  int64_t o[] = {0, 2};
  int64_t bad[] = {0, 3};
  float v[2] = {1, 2};
  write_npy("v.npy", SCREE_FLOAT32, 1, s, v);
  write_npy("o.npy", SCREE_INT64, 1, s, o);
  write_npy("bad.npy", SCREE_INT64, 1, s, bad);
  write_npy("fo.npy", SCREE_FLOAT32, 1, s, v);
  cr_assert_eq(ctl("put dup --values %s --offsets %s", f("v.npy"), f("o.npy")), 0);
  cr_assert_eq(ctl("put dup --values %s --offsets %s", f("v.npy"), f("o.npy")), 1);
  cr_assert(strstr(err_buf, "dup") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("put b --values %s --offsets %s", f("v.npy"), f("bad.npy")), 1);
  cr_assert(strstr(err_buf, "offsets[1]") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("put b --values %s --offsets %s", f("v.npy"), f("fo.npy")), 1);
  cr_assert(strstr(err_buf, "int32 or int64") != NULL, "%s", err_buf);

  FILE *g = fopen(f("garbage.npy"), "w");
  fputs("this is not numpy", g);
  fclose(g);
  cr_assert_eq(ctl("put b --values %s --offsets %s", f("garbage.npy"), f("o.npy")), 1);
  cr_assert(strstr(err_buf, "bad magic") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("put b --values %s/missing.npy --offsets %s", dir, f("o.npy")), 1);
  cr_assert(strstr(err_buf, "missing.npy") != NULL, "%s", err_buf);

  cr_assert_eq(ctl("frobnicate"), 1);
  cr_assert(strstr(err_buf, "unknown command") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("put onlyname"), 1);
  cr_assert(strstr(err_buf, "--values") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("stat"), 1);
  cr_assert_eq(ctl("attention --q a --k a"), 1);
  cr_assert_eq(ctl("attention --q a --k a --v a --out o --window 1"), 1);
  cr_assert(strstr(err_buf, "--window") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("attention --q dup --k dup --v dup --out o --causal --window -1,0"), 1);
  cr_assert(strncmp(err_buf, "screectl: ", 10) == 0 && strlen(err_buf) > 11, "%s", err_buf);
  cr_assert_eq(ctl("--help"), 0);
  cr_assert(strstr(out_buf, "usage: screectl") != NULL);

  char cmd[512];
  snprintf(cmd, sizeof(cmd), "'%s' --socket /tmp/scree-nowhere.sock list 2>'%s/err'",
           SCREECTL_PATH, dir);
  int st = system(cmd);
  cr_assert_eq(WEXITSTATUS(st), 1);
  slurp(f("err"), err_buf, sizeof(err_buf));
  cr_assert(strstr(err_buf, "screectl: no daemon at /tmp/scree-nowhere.sock") == err_buf, "%s",
            err_buf);
}

Test(screectl, numpy_reads_what_get_writes) {
  if (system("python3 -c 'import numpy' >/dev/null 2>&1") != 0)
    cr_skip_test("SKIP: python3 with numpy is not available");
  char cmd[2048];
  snprintf(cmd, sizeof(cmd),
           "python3 -c \"import numpy as np; "
           "np.save('%s', np.arange(60, dtype=np.float16).reshape(10, 3, 2)); "
           "np.save('%s', np.array([0, 4, 4, 10], dtype=np.int32))\"",
           f("nv.npy"), f("no.npy"));
  cr_assert_eq(system(cmd), 0);
  cr_assert_eq(ctl("put np --values %s --offsets %s", f("nv.npy"), f("no.npy")), 0, "%s",
               err_buf);
  cr_assert_eq(ctl("get np --values %s --offsets %s", f("nv2.npy"), f("no2.npy")), 0);
  snprintf(cmd, sizeof(cmd),
           "python3 -c \"import numpy as np, sys; "
           "a = np.load('%s'); b = np.load('%s'); o = np.load('%s'); "
           "sys.exit(0 if a.dtype == b.dtype and a.shape == b.shape and (a == b).all() "
           "and o.dtype == np.int32 and list(o) == [0, 4, 4, 10] else 1)\"",
           f("nv.npy"), f("nv2.npy"), f("no2.npy"));
  cr_assert_eq(system(cmd), 0, "numpy disagrees with the files get wrote");
}

Test(screectl, stats_json_is_one_object_with_every_counter) {
  int64_t s[] = {2};
  int64_t o[] = {0, 2};
  float v[2] = {1, 2};
  write_npy("jv.npy", SCREE_FLOAT32, 1, s, v);
  write_npy("jo.npy", SCREE_INT64, 1, s, o);
  cr_assert_eq(ctl("put j --values %s --offsets %s", f("jv.npy"), f("jo.npy")), 0);
  cr_assert_eq(ctl("stat nope"), 1);
  cr_assert_eq(ctl("stats --json"), 0, "%s", err_buf);
  size_t n = strlen(out_buf);
  cr_assert(n > 2 && out_buf[0] == '{' && strcmp(out_buf + n - 3, "]}\n") == 0, "%s", out_buf);
  cr_assert_null(strchr(out_buf, '\n') == out_buf + n - 1 ? NULL : out_buf, "one line");
  cr_assert(strstr(out_buf, "\"batches\":1,") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "\"bytes_used\":") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "\"uptime_s\":") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "\"errors\":{") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "\"ENOENT\":1") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "\"peers\":[]") != NULL, "a daemon without peers: %s", out_buf);
  /* Plain stats is unchanged; --json elsewhere is refused. */
  cr_assert_eq(ctl("stats"), 0);
  cr_assert(strstr(out_buf, "batches: 1\n") != NULL, "%s", out_buf);
  cr_assert_eq(ctl("delete --json j"), 1);
  cr_assert_str_eq(err_buf, "screectl: --json belongs to info, list, stat, stats and watch\n");
}

/* list, stat and info --json: one line each, sizes in exact bytes, names
 * escaped as JSON strings. */
Test(screectl, list_stat_and_info_json) {
  float v[2 * 3] = {1, 2, 3, 4, 5, 6};
  int64_t vs[] = {2, 3};
  int64_t o[] = {0, 1, 2};
  int64_t os[] = {3};
  write_npy("v.npy", SCREE_FLOAT32, 2, vs, v);
  write_npy("o.npy", SCREE_INT64, 1, os, o);
  cr_assert_eq(ctl("put 'odd\"name' --values %s --offsets %s", f("v.npy"), f("o.npy")), 0,
               "%s", err_buf);
  cr_assert_eq(ctl("put plain --values %s --offsets %s", f("v.npy"), f("o.npy")), 0);

  cr_assert_eq(ctl("stat plain --json"), 0, "%s", err_buf);
  cr_assert_str_eq(strchr(out_buf, '\n'), "\n", "one line: %s", out_buf);
  cr_assert(strncmp(out_buf, "{\"name\":\"plain\",\"state\":\"sealed\",\"dtype\":\"float32\","
                    "\"shape\":[2,3],\"batch_size\":2,",
                    80) == 0,
            "%s", out_buf);
  cr_assert(strstr(out_buf, "\"values_bytes\":24,\"offsets_bytes\":24,") != NULL, "%s",
            out_buf);
  cr_assert(strstr(out_buf, "\"delete_pending\":false}") != NULL, "%s", out_buf);

  cr_assert_eq(ctl("list --json"), 0, "%s", err_buf);
  cr_assert(out_buf[0] == '[' && strstr(out_buf, "]\n") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "{\"name\":\"odd\\\"name\"") != NULL, "escaped: %s", out_buf);
  cr_assert(strstr(out_buf, "{\"name\":\"plain\"") != NULL, "%s", out_buf);
  cr_assert_eq(ctl("list nothing-here --json"), 0);
  cr_assert_str_eq(out_buf, "[]\n");

  cr_assert_eq(ctl("info --json"), 0, "%s", err_buf);
  char want[200];
  snprintf(want, sizeof(want), "{\"socket\":\"%s\",\"protocol_version\":1,", d.socket);
  cr_assert(strncmp(out_buf, want, strlen(want)) == 0, "%s", out_buf);
  cr_assert(strstr(out_buf, "\"backend\":\"host\"") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "\"memory_limit\":8589934592,") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "\"device_uuid\":null") != NULL, "%s", out_buf);
}

/* The plain output shows sizes for people, with the exact count beside. */
Test(screectl, sizes_are_readable_and_exact) {
  cr_assert_eq(ctl("info"), 0, "%s", err_buf);
  cr_assert(strstr(out_buf, "memory_limit: 8 GiB (8589934592 bytes)\n") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "arena_size: 256 MiB (268435456 bytes)\n") != NULL, "%s", out_buf);
  char want[160];
  snprintf(want, sizeof(want), "socket: %s\n", d.socket);
  cr_assert(strstr(out_buf, want) != NULL, "%s", out_buf);

  static float v[1536];
  int64_t vs[] = {1536};
  int64_t o[] = {0, 1536};
  int64_t os[] = {2};
  write_npy("v.npy", SCREE_FLOAT32, 1, vs, v);
  write_npy("o.npy", SCREE_INT64, 1, os, o);
  cr_assert_eq(ctl("put big --values %s --offsets %s", f("v.npy"), f("o.npy")), 0, "%s",
               err_buf);
  cr_assert_eq(ctl("stat big"), 0);
  cr_assert(strstr(out_buf, "values_bytes: 6 KiB (6144 bytes)\n") != NULL, "%s", out_buf);
  cr_assert(strstr(out_buf, "offsets_bytes: 16 bytes\n") != NULL, "%s", out_buf);
  cr_assert_eq(ctl("list"), 0);
  cr_assert(strstr(out_buf, "SIZE") != NULL && strstr(out_buf, "6.0 KiB") != NULL, "%s",
            out_buf);
  cr_assert_eq(ctl("stats"), 0);
  cr_assert(strstr(out_buf, "bytes_limit: 8 GiB (8589934592 bytes)\n") != NULL, "%s", out_buf);
}

Test(screectl, put_says_what_it_stored) {
  float v[7 * 2] = {0};
  int64_t vs[] = {7, 2};
  int32_t o[] = {0, 3, 7};
  int64_t os[] = {3};
  write_npy("v.npy", SCREE_FLOAT32, 2, vs, v);
  write_npy("o.npy", SCREE_INT32, 1, os, o);
  cr_assert_eq(ctl("put p1 --values %s --offsets %s --shared", f("v.npy"), f("o.npy")), 0, "%s",
               err_buf);
  cr_assert_str_eq(out_buf,
                   "stored p1: float32 (7, 2), batch_size 2, int32 offsets, 68 bytes, shared\n");
}

Test(screectl, unknown_dtype_lists_the_accepted_ones) {
  cr_assert_eq(ctl("put x --values %s --offsets %s --dtype bfloat17", f("v.npy"), f("o.npy")),
               1);
  cr_assert(strstr(err_buf, "unknown dtype 'bfloat17'; --dtype takes bool, int8,") == err_buf +
                                                                                   10,
            "%s", err_buf);
  cr_assert(strstr(err_buf, "bfloat16") != NULL && strstr(err_buf, "float8_e5m2") != NULL &&
                strstr(err_buf, "bf16") != NULL,
            "%s", err_buf);
}

Test(screectl, get_does_not_overwrite_unless_forced) {
  float v[2] = {1, 2};
  int64_t vs[] = {2};
  int64_t o[] = {0, 2};
  int64_t os[] = {2};
  write_npy("v.npy", SCREE_FLOAT32, 1, vs, v);
  write_npy("o.npy", SCREE_INT64, 1, os, o);
  cr_assert_eq(ctl("put g --values %s --offsets %s", f("v.npy"), f("o.npy")), 0, "%s", err_buf);
  FILE *k = fopen(f("keep.npy"), "w");
  fputs("precious", k);
  fclose(k);
  cr_assert_eq(ctl("get g --values %s --offsets %s", f("keep.npy"), f("go.npy")), 1);
  cr_assert(strstr(err_buf, "keep.npy exists") != NULL && strstr(err_buf, "--force") != NULL,
            "%s", err_buf);
  char buf[64];
  slurp(f("keep.npy"), buf, sizeof(buf));
  cr_assert_str_eq(buf, "precious");
  cr_assert_eq(access(f("go.npy"), F_OK), -1, "nothing written when one file exists");
  cr_assert_eq(ctl("get g --values %s --offsets %s", f("gv.npy"), f("keep.npy")), 1);
  cr_assert_eq(access(f("gv.npy"), F_OK), -1, "nothing written when one file exists");
  cr_assert_eq(ctl("get g --values %s --offsets %s --force", f("keep.npy"), f("go.npy")), 0,
               "%s", err_buf);
  cr_assert(same_file(f("v.npy"), f("keep.npy")));
  cr_assert_eq(ctl("get g --values %s --offsets %s", f("a.npy"), f("a.npy")), 1);
  cr_assert(strstr(err_buf, "same file") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("stat g --force"), 1);
  cr_assert_str_eq(err_buf, "screectl: --force belongs to get\n");
}

Test(screectl, version_and_help) {
  cr_assert_eq(ctl("--version"), 0);
  cr_assert(strncmp(out_buf, "screectl ", 9) == 0 && strstr(out_buf, "libscree") != NULL, "%s",
            out_buf);
  cr_assert_eq(ctl("help"), 0);
  cr_assert(strstr(out_buf, "usage: screectl") == out_buf, "%s", out_buf);
  /* Neither needs a daemon. */
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "'%s' --socket /tmp/scree-nowhere.sock help >/dev/null",
           SCREECTL_PATH);
  cr_assert_eq(system(cmd), 0);
}

/* Runs `screectl put NAME` after delay_s seconds, in the background. */
static void put_later(const char *name, const char *delay_s) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "(sleep %s; '%s' --socket '%s' put '%s' --values '%s' --offsets '%s') &",
           delay_s, SCREECTL_PATH, d.socket, name, f("wv.npy"), f("wo.npy"));
  cr_assert_eq(system(cmd), 0);
}

Test(screectl, wait_and_watch) {
  int64_t s[] = {2};
  int64_t o[] = {0, 2};
  float v[2] = {1, 2};
  write_npy("wv.npy", SCREE_FLOAT32, 1, s, v);
  write_npy("wo.npy", SCREE_INT64, 1, s, o);
  cr_assert_eq(ctl("wait nope --timeout 0.2"), 1);
  cr_assert_str_eq(err_buf, "screectl: batch 'nope' was not sealed within 200 ms (Get's wait)\n");
  cr_assert_eq(ctl("wait nope --timeout soon"), 1);
  cr_assert(strstr(err_buf, "--timeout wants seconds") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("wait"), 1);
  cr_assert_eq(ctl("list --timeout 1"), 1);

  put_later("w/later", "0.3");
  cr_assert_eq(ctl("wait w/later --timeout 30"), 0, "%s", err_buf);
  cr_assert_str_eq(out_buf, "sealed w/later float32 (2,)\n");
  cr_assert_eq(ctl("wait w/later"), 0, "a sealed batch answers at once");

  cr_assert_eq(ctl("put w/a --values %s --offsets %s", f("wv.npy"), f("wo.npy")), 0);
  cr_assert_eq(ctl("watch w/ --count 2"), 0, "%s", err_buf);
  cr_assert_str_eq(out_buf, "1 sealed w/a\n2 sealed w/later\n");
  put_later("w/\"q\"", "0.3");
  cr_assert_eq(ctl("watch w/ --no-replay --json --count 1"), 0, "%s", err_buf);
  cr_assert_str_eq(out_buf, "{\"seq\":1,\"kind\":\"sealed\",\"name\":\"w/\\\"q\\\"\"}\n");
  cr_assert_eq(ctl("stats"), 0);
  cr_assert(strstr(out_buf, "waiters: 0\nwatchers: 0\nwatch_overflows: 0\n") != NULL, "%s",
            out_buf);
}

/* screectl attention: q, k, v put from .npy files, the output read back with
 * get and checked against the float64 reference. */
Test(screectl, attention_end_to_end) {
  static const int64_t lens[4] = {0, 1, 17, 100};
  static const int64_t klens[4] = {3, 0, 20, 100};
  scree_array q, k, v;
  attn_make(&q, SCREE_FLOAT32, SCREE_INT64, 4, lens, 4, 8, 41);
  attn_make(&k, SCREE_FLOAT32, SCREE_INT64, 4, klens, 2, 8, 42);
  attn_make(&v, SCREE_FLOAT32, SCREE_INT64, 4, klens, 2, 8, 43);
  const scree_array *arr[3] = {&q, &k, &v};
  const char *names[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; i++) {
    char vn[16], on[16];
    snprintf(vn, sizeof(vn), "%sv.npy", names[i]);
    snprintf(on, sizeof(on), "%so.npy", names[i]);
    int64_t vs[3] = {arr[i]->total_rows, arr[i]->inner[0], arr[i]->inner[1]};
    int64_t os[1] = {arr[i]->batch_size + 1};
    write_npy(vn, SCREE_FLOAT32, 3, vs, arr[i]->values);
    write_npy(on, SCREE_INT64, 1, os, arr[i]->offsets);
    cr_assert_eq(ctl("put %s --values %s --offsets %s", names[i], f(vn), f(on)), 0, "%s",
                 err_buf);
  }
  cr_assert_eq(ctl("attention --q q --k k --v v --out o --causal --window 6,0 --scale 0.5"), 0,
               "%s", err_buf);
  cr_assert_str_eq(out_buf, "stored o\n");
  cr_assert_eq(ctl("get o --values %s --offsets %s", f("ov.npy"), f("oo.npy")), 0, "%s",
               err_buf);
  cr_assert(same_file(f("qo.npy"), f("oo.npy")), "the output's offsets are q's");
  scree__npy out;
  char msg[256];
  cr_assert_eq(scree__npy_read(f("ov.npy"), &out, msg, sizeof(msg)), 0, "%s", msg);
  cr_assert_eq(out.ndim, 3);
  cr_assert_eq(out.shape[0], q.total_rows);
  cr_assert_eq(out.shape[1], 4);
  cr_assert_eq(out.shape[2], 8);
  scree_array got = q;
  got.values = out.data;
  size_t n = (size_t)(q.total_rows * 4 * 8);
  double *want = malloc(n * sizeof(double));
  attn_reference(&q, &k, &v, 1, 0.5, 6, -1, want);
  double err = attn_max_err(&got, want, n);
  cr_assert(err <= 1e-4, "max |out - reference| = %g", err);
  free(want);
  scree__npy_free(&out);

  /* Refusals print the daemon's reason. */
  cr_assert_eq(ctl("attention --q q --k k --v q --out o2"), 1);
  cr_assert(strstr(err_buf, "k has 2 heads, v has 4") != NULL, "%s", err_buf);
  cr_assert_eq(ctl("attention --q q --k k --v v --out o"), 1);
  cr_assert(strstr(err_buf, "already exists") != NULL, "%s", err_buf);
  attn_free(&q);
  attn_free(&k);
  attn_free(&v);
}
