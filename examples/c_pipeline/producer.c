/* The producer of a trainer-to-inference pipeline: each step, it makes a
 * packed ragged batch and publishes it as `steps/N` with one call,
 * scree_client_put (Create, copy, Seal). It may exit as soon as its last
 * batch is sealed: screed owns the memory, and the consumer need not be
 * running yet.
 *
 *   pipeline_producer [--socket PATH] [--steps N] [--prefix P] [--interval-ms MS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline.h"
#include "scree/client.h"

int main(int argc, char **argv) {
  const char *socket = NULL; /* NULL: $SCREE_SOCKET, else screed's default */
  const char *prefix = "steps/";
  long steps = 10, interval_ms = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
      socket = argv[++i];
    else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
      steps = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc)
      prefix = argv[++i];
    else if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc)
      interval_ms = strtol(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "usage: %s [--socket PATH] [--steps N] [--prefix P] [--interval-ms MS]\n",
              argv[0]);
      return 2;
    }
  }

  scree_client *c;
  int rc = scree_client_connect(socket, &c);
  if (rc != 0) {
    fprintf(stderr, "producer: %s\n", scree_client_last_error(c));
    scree_client_close(c);
    return 1;
  }
  for (long step = 0; step < steps; step++) {
    scree_array a;
    if (step_batch(step, &a) != 0) {
      fprintf(stderr, "producer: out of memory\n");
      rc = SCREE_ENOMEM;
      break;
    }
    char name[256];
    step_name(name, sizeof(name), prefix, step);
    rc = scree_client_put(c, name, &a, NULL);
    if (rc == 0)
      printf("producer: put %s (%lld sequences, %lld tokens)\n", name,
             (long long)a.batch_size, (long long)a.total_rows);
    else
      fprintf(stderr, "producer: put %s: %s\n", name, scree_client_last_error(c));
    /* put copied the data into screed's memory: ours can go now. */
    free(a.values);
    free(a.offsets);
    if (rc != 0)
      break;
    fflush(stdout);
    if (interval_ms > 0) {
      struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  scree_client_close(c);
  return rc == 0 ? 0 : 1;
}
