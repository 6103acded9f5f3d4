/* The consumer of a trainer-to-inference pipeline: for each step it waits
 * for `steps/N` with scree_client_get_wait (no polling: screed answers the
 * moment the producer seals the batch, or when the time runs out), reads
 * the batch in place (zero copy), checks it, releases it and deletes it.
 * It may start before or after the producer.
 *
 *   pipeline_consumer [--socket PATH] [--steps N] [--prefix P] [--timeout S] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "scree/client.h"

/* Compares the view got (read in place, in screed's memory) with the
 * batch the producer made for step. Returns 0 when they agree. */
static int check(long step, const scree_array *got, int read_values) {
  scree_array want;
  if (step_batch(step, &want) != 0)
    return -1;
  int bad = got->dtype != want.dtype || got->batch_size != want.batch_size ||
            got->total_rows != want.total_rows || got->inner[0] != PIPELINE_HIDDEN;
  if (!bad && read_values) {
    const int64_t *o = got->offsets;
    const int64_t *wo = want.offsets;
    for (int64_t i = 0; i <= want.batch_size && !bad; i++)
      bad = o[i] != wo[i];
    const float *v = got->values;
    const float *wv = want.values;
    for (int64_t i = 0; i < want.total_rows * PIPELINE_HIDDEN && !bad; i++)
      bad = v[i] != wv[i];
  }
  free(want.values);
  free(want.offsets);
  return bad ? -1 : 0;
}

int main(int argc, char **argv) {
  pipeline_args args;
  if (pipeline_parse(argc, argv, "--timeout", "S", &args) != 0)
    return 2;
  double timeout_s = args.own != NULL ? strtod(args.own, NULL) : 30;

  scree_client *c = pipeline_connect("consumer", args.socket);
  if (c == NULL)
    return 1;
  int rc = 0;
  int64_t timeout_ms = timeout_s < 0 ? -1 : (int64_t)ceil(timeout_s * 1000.0);
  for (long step = 0; step < args.steps && rc == 0; step++) {
    char name[256];
    step_name(name, sizeof(name), args.prefix, step);
    scree_array a;
    scree_lease *lease;
    rc = scree_client_get_wait(c, name, timeout_ms, &a, &lease);
    if (rc != 0) {
      /* On expiry the message names the batch and the wait. */
      fprintf(stderr, "consumer: %s\n", scree_client_last_error(c));
      break;
    }
    /* On a GPU daemon the view is in GPU memory: reading it needs CUDA
     * (cudaMemcpy, or a kernel), so this example checks its shape only. */
    int on_cpu = a.device.type == SCREE_DEVICE_CPU;
    if (check(step, &a, on_cpu) != 0) {
      fprintf(stderr, "consumer: %s does not hold what the producer put\n", name);
      rc = SCREE_EINVAL;
    } else {
      printf("consumer: got %s (%lld sequences, %lld tokens, longest %lld)%s\n", name,
             (long long)a.batch_size, (long long)a.total_rows, (long long)a.max_length,
             on_cpu ? ", values checked" : ", shape checked (GPU memory)");
    }
    /* Done with it: the view goes with the lease, the batch with delete. */
    int rc2 = scree_client_release(c, lease);
    if (rc2 == 0)
      rc2 = scree_client_delete(c, name, NULL);
    if (rc2 != 0 && rc == 0) {
      fprintf(stderr, "consumer: %s: %s\n", name, scree_client_last_error(c));
      rc = rc2;
    }
    fflush(stdout);
  }
  scree_client_close(c);
  return rc == 0 ? 0 : 1;
}
