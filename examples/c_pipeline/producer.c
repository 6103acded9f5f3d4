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
  pipeline_args args;
  if (pipeline_parse(argc, argv, "--interval-ms", "MS", &args) != 0)
    return 2;
  long interval_ms = args.own != NULL ? strtol(args.own, NULL, 10) : 0;

  scree_client *c = pipeline_connect("producer", args.socket);
  if (c == NULL)
    return 1;
  int rc = 0;
  for (long step = 0; step < args.steps; step++) {
    scree_array a;
    if (step_batch(step, &a) != 0) {
      fprintf(stderr, "producer: out of memory\n");
      rc = SCREE_ENOMEM;
      break;
    }
    char name[256];
    step_name(name, sizeof(name), args.prefix, step);
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
