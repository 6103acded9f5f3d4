/* Publishes a deterministic batch and exits: the first half of the
 * cross-process test. Uses only <scree/client.h>.
 *
 * usage: producer SOCKET NAME SEED BATCH MAX_LEN
 * Prints the FNV-1a checksum of values then offsets, and exits 0 once the
 * batch is sealed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "scree/client.h"
#include "testdata.h"

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: producer SOCKET NAME SEED BATCH MAX_LEN\n");
    return 2;
  }
  unsigned seed = (unsigned)strtoul(argv[3], NULL, 10);
  scree_array a;
  if (testdata_make(seed, strtoll(argv[4], NULL, 10), strtoll(argv[5], NULL, 10), 4, 16, &a) != 0)
    return 3;
  scree_client *c;
  int rc = scree_client_connect(argv[1], &c);
  if (rc == 0)
    rc = scree_client_put(c, argv[2], &a, NULL);
  if (rc != 0) {
    fprintf(stderr, "producer: %s\n", scree_client_last_error(c));
    scree_client_close(c);
    return 1;
  }
  uint64_t vbytes, obytes;
  scree_array_check_desc(&a, &vbytes, &obytes, NULL, 0);
  uint64_t h = testdata_fnv(14695981039346656037ull, a.values, vbytes);
  h = testdata_fnv(h, a.offsets, obytes);
  printf("%016" PRIx64 " %" PRId64 "\n", h, a.total_rows);
  scree_client_close(c);
  free(a.values);
  free(a.offsets);
  return 0;
}
