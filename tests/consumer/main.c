/* Uses each installed library once, as a program outside scree's tree would,
 * with no daemon running: libscree (version, error names), libscreekernels
 * (whether it was built with CUDA) and libscreeclient (a connection that
 * fails cleanly, and the struct_size rule of its info struct). Exits 0 when
 * every answer is the documented one, 1 otherwise, saying which. */
#include <stdio.h>
#include <string.h>

#include <scree/attention.h>
#include <scree/client.h>
#include <scree/scree.h>

static int failures;

static void expect(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "scree_consumer: FAILED: %s\n", what);
    failures++;
  }
}

int main(int argc, char **argv) {
  /* A socket path that nothing listens on (run.sh passes one in its
   * temporary folder). */
  const char *sock = argc > 1 ? argv[1] : "/nonexistent/scree-consumer.sock";

  printf("scree %s (headers %s)\n", scree_version(), SCREE_VERSION_STRING);
  expect(strcmp(scree_version(), SCREE_VERSION_STRING) == 0,
         "scree_version() is the version of the headers");
  printf("SCREE_ENOENT: %s\n", scree_strerror(SCREE_ENOENT));
  expect(strlen(scree_strerror(SCREE_ENOENT)) > 0, "scree_strerror names SCREE_ENOENT");
  printf("kernels built with CUDA: %d\n", scree_attention_have_cuda());

  scree_client *c = NULL;
  int rc = scree_client_connect(sock, &c);
  printf("connect %s: %d (%s): %s\n", sock, rc, scree_strerror(rc),
         scree_client_last_error(c));
  expect(rc == SCREE_ECONNREFUSED, "connect without a daemon gives SCREE_ECONNREFUSED");
  expect(c != NULL, "connect hands out a handle even when it fails");

  scree_client_info info = SCREE_CLIENT_INFO_INIT;
  expect(scree_client_info_get(c, &info) == 0, "info of a disconnected handle");
  scree_client_info zero;
  memset(&zero, 0, sizeof(zero));
  rc = scree_client_info_get(c, &zero);
  printf("info with struct_size 0: %d: %s\n", rc, scree_client_last_error(c));
  expect(rc == SCREE_EINVAL, "struct_size 0 gives SCREE_EINVAL");
  expect(strstr(scree_client_last_error(c), "struct_size") != NULL,
         "the message names struct_size");

  scree_stats st = SCREE_STATS_INIT;
  expect(scree_client_stats(c, &st) == SCREE_EDISCONNECTED,
         "a call on the failed handle gives SCREE_EDISCONNECTED");
  scree_client_close(c);

  if (failures == 0)
    printf("scree_consumer: ok\n");
  return failures == 0 ? 0 : 1;
}
