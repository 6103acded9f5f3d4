/* Create.shared through libscreeclient: scree_client_put and
 * scree_client_create with SCREE_CREATE_SHARED in their options put a batch into the
 * daemon's shared pool of arenas, never into the arenas of its owner's
 * private pool, and unknown flags are refused before anything is sent. */
#include <criterion/criterion.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "raw_client.h"
#include "scree/client.h"
#include "scree/error.h"

static rc_daemon d;

static int put_flags(scree_client *c, const char *name, const scree_array *a, unsigned flags) {
  scree_put_options o = SCREE_PUT_OPTIONS_INIT;
  o.flags = flags;
  return scree_client_put(c, name, a, &o);
}

static int create_flags(scree_client *c, const char *name, const scree_array *desc,
                        scree_array *out, unsigned flags) {
  scree_create_options o = SCREE_CREATE_OPTIONS_INIT;
  o.flags = flags;
  return scree_client_create(c, name, desc, out, &o);
}

static void fini(void) {
  if (d.pid > 0)
    rc_daemon_stop(&d);
  char copy[108];
  snprintf(copy, sizeof(copy), "%s", d.sock);
  unlink(d.sock);
  rmdir(dirname(copy));
}

TestSuite(client_shared, .fini = fini, .timeout = 60);

static scree_client *start_and_connect(const char *tag) {
  memset(&d, 0, sizeof(d));
  d.err_fd = -1;
  rc_socket_path(d.sock, sizeof(d.sock), tag);
  cr_assert_eq(rc_daemon_start(&d, NULL), 0, "screed did not start on %s", d.sock);
  scree_client *c = NULL;
  cr_assert_eq(scree_client_connect(d.sock, &c), 0, "%s", scree_client_last_error(c));
  return c;
}

static void stop(scree_client *c) {
  scree_client_close(c);
  int st = rc_daemon_stop(&d);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "wait status 0x%x", st);
}

/* A 4-row float32 batch of one sequence over caller-owned storage. */
static scree_array small(float *values, int64_t *offsets) {
  scree_array a;
  memset(&a, 0, sizeof(a));
  for (int i = 0; i < 4; i++)
    values[i] = (float)i;
  offsets[0] = 0;
  offsets[1] = 4;
  a.dtype = SCREE_FLOAT32;
  a.offsets_dtype = SCREE_INT64;
  a.batch_size = 1;
  a.total_rows = 4;
  a.values = values;
  a.offsets = offsets;
  return a;
}

static uint64_t arena_of(scree_client *c, const char *name) {
  scree_batch_info b;
  cr_assert_eq(scree_client_stat(c, name, &b), 0, "%s", scree_client_last_error(c));
  return b.arena_id;
}

Test(client_shared, a_shared_put_lands_in_the_shared_pool) {
  scree_client *c = start_and_connect("shared-put");
  float v[4];
  int64_t o[2];
  scree_array a = small(v, o);
  cr_assert_eq(scree_client_put(c, "p1", &a, NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(put_flags(c, "p2", &a, 0), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(put_flags(c, "s1", &a, SCREE_CREATE_SHARED), 0, "%s",
               scree_client_last_error(c));
  cr_assert_eq(put_flags(c, "s2", &a, SCREE_CREATE_SHARED), 0, "%s",
               scree_client_last_error(c));
  uint64_t p1 = arena_of(c, "p1"), p2 = arena_of(c, "p2");
  uint64_t s1 = arena_of(c, "s1"), s2 = arena_of(c, "s2");
  /* Small batches of one pool share its first arena; the two pools never
   * share one. */
  cr_assert_eq(p1, p2);
  cr_assert_eq(s1, s2);
  cr_assert_neq(s1, p1, "a shared batch landed in the owner's private arena %llu",
                (unsigned long long)p1);

  /* The shared batch reads back like any other. */
  scree_array got;
  scree_lease *l = NULL;
  cr_assert_eq(scree_client_get(c, "s1", &got, &l), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(got.total_rows, 4);
  cr_assert_eq(memcmp(got.values, v, sizeof(v)), 0);
  cr_assert_eq(scree_client_release(c, l), 0);
  stop(c);
}

Test(client_shared, a_shared_create_lands_in_the_shared_pool) {
  scree_client *c = start_and_connect("shared-create");
  float v[4];
  int64_t o[2];
  scree_array a = small(v, o);
  cr_assert_eq(scree_client_put(c, "private", &a, NULL), 0, "%s", scree_client_last_error(c));
  scree_array out;
  cr_assert_eq(create_flags(c, "shared", &a, &out, SCREE_CREATE_SHARED), 0, "%s",
               scree_client_last_error(c));
  memcpy(out.values, v, sizeof(v));
  memcpy(out.offsets, o, sizeof(o));
  cr_assert_eq(scree_client_seal(c, "shared", NULL), 0, "%s", scree_client_last_error(c));
  cr_assert_eq(create_flags(c, "private2", &a, &out, 0), 0, "%s",
               scree_client_last_error(c));
  cr_assert_neq(arena_of(c, "shared"), arena_of(c, "private"));
  cr_assert_eq(arena_of(c, "private2"), arena_of(c, "private"));
  stop(c);
}

Test(client_shared, unknown_flags_are_einval_naming_them_and_send_nothing) {
  scree_client *c = start_and_connect("shared-flags");
  float v[4];
  int64_t o[2];
  scree_array a = small(v, o);
  scree_stats before = SCREE_STATS_INIT, after = SCREE_STATS_INIT;
  cr_assert_eq(scree_client_stats(c, &before), 0);
  int rc = put_flags(c, "x", &a, 0x6u | SCREE_CREATE_SHARED);
  cr_assert_eq(rc, SCREE_EINVAL, "got %s", scree_err_name(rc));
  cr_assert_str_eq(scree_client_last_error(c), "flags=0x7 has unknown bits 0x6");
  scree_array out;
  rc = create_flags(c, "x", &a, &out, 1u << 31);
  cr_assert_eq(rc, SCREE_EINVAL, "got %s", scree_err_name(rc));
  cr_assert(strstr(scree_client_last_error(c), "unknown bits 0x80000000") != NULL, "%s",
            scree_client_last_error(c));
  cr_assert_eq(scree_client_stats(c, &after), 0);
  /* Only the second stats request reached the daemon. */
  cr_assert_eq(after.requests, before.requests + 1, "%llu then %llu",
               (unsigned long long)before.requests, (unsigned long long)after.requests);
  cr_assert_eq(after.batches, 0);
  stop(c);
}
