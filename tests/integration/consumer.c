/* Attaches to a batch published by another process and checks every byte:
 * the second half of the cross-process test. Uses only <scree/client.h>.
 *
 * usage: consumer SOCKET NAME SEED BATCH MAX_LEN
 * Prints the FNV-1a checksum of the attached values then offsets; exits 0
 * when they equal the bytes the producer generated from the same seed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scree/client.h"
#include "testdata.h"

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: consumer SOCKET NAME SEED BATCH MAX_LEN\n");
    return 2;
  }
  unsigned seed = (unsigned)strtoul(argv[3], NULL, 10);
  scree_array want;
  if (testdata_make(seed, strtoll(argv[4], NULL, 10), strtoll(argv[5], NULL, 10), 4, 16,
                    &want) != 0)
    return 3;
  scree_client *c;
  scree_array got;
  scree_lease *lease;
  int rc = scree_client_connect(argv[1], &c);
  if (rc == 0)
    rc = scree_client_get(c, argv[2], &got, &lease);
  if (rc != 0) {
    fprintf(stderr, "consumer: %s\n", scree_client_last_error(c));
    scree_client_close(c);
    return 1;
  }
  int bad = 0;
  uint64_t vbytes, obytes;
  scree_array_check_desc(&want, &vbytes, &obytes, NULL, 0);
  if (got.dtype != want.dtype || got.batch_size != want.batch_size ||
      got.total_rows != want.total_rows || got.ndim_inner != 2 || got.inner[0] != 4 ||
      got.inner[1] != 16 || got.offsets_dtype != SCREE_INT64 ||
      got.device.type != SCREE_DEVICE_CPU) {
    fprintf(stderr, "consumer: descriptor differs\n");
    bad = 1;
  } else if (memcmp(got.values, want.values, vbytes) != 0 ||
             memcmp(got.offsets, want.offsets, obytes) != 0) {
    fprintf(stderr, "consumer: bytes differ\n");
    bad = 1;
  }
  uint64_t h = 0;
  if (!bad) {
    h = testdata_fnv(14695981039346656037ull, got.values, vbytes);
    h = testdata_fnv(h, got.offsets, obytes);
  }
  printf("%016" PRIx64 " %" PRId64 "\n", h, got.total_rows);
  rc = scree_client_release(c, lease);
  if (rc != 0) {
    fprintf(stderr, "consumer: release: %s\n", scree_client_last_error(c));
    bad = 1;
  }
  scree_client_close(c);
  free(want.values);
  free(want.offsets);
  return bad;
}
