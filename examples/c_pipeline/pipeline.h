/* What the producer and the consumer of this example agree on: their
 * common options, the names of the steps, and the batch of each step,
 * made from its number alone so that the consumer can check every value it
 * reads without any other channel between the two. */
#ifndef PIPELINE_H
#define PIPELINE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scree/client.h"

/* Features per token (the inner dimension of the batch). */
#define PIPELINE_HIDDEN 8

/* The options both programs take, and the text of the one option each has
 * of its own. */
typedef struct pipeline_args {
  const char *socket; /* NULL: $SCREE_SOCKET, else screed's default */
  const char *prefix;
  long steps;
  const char *own; /* NULL when the program's own option was not given */
} pipeline_args;

/* Reads [--socket PATH] [--steps N] [--prefix P] [OWN_FLAG OWN_ARG] from
 * argv into *a. Returns 0, or 2 (the exit status) after printing the usage
 * for anything else. */
static inline int pipeline_parse(int argc, char **argv, const char *own_flag,
                                 const char *own_arg, pipeline_args *a) {
  a->socket = NULL;
  a->prefix = "steps/";
  a->steps = 10;
  a->own = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
      a->socket = argv[++i];
    else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
      a->steps = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc)
      a->prefix = argv[++i];
    else if (strcmp(argv[i], own_flag) == 0 && i + 1 < argc)
      a->own = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--socket PATH] [--steps N] [--prefix P] [%s %s]\n", argv[0],
              own_flag, own_arg);
      return 2;
    }
  }
  return 0;
}

/* Connects to screed at socket, or says why on stderr after "who: " and
 * returns NULL. */
static inline scree_client *pipeline_connect(const char *who, const char *socket) {
  scree_client *c;
  if (scree_client_connect(socket, &c) != 0) {
    fprintf(stderr, "%s: %s\n", who, scree_client_last_error(c));
    scree_client_close(c);
    return NULL;
  }
  return c;
}

static inline void step_name(char *buf, size_t len, const char *prefix, long step) {
  snprintf(buf, len, "%s%ld", prefix, step);
}

/* The batch of a step: 1 + step % 7 sequences whose lengths follow a
 * small recurrence, float32 values (tokens x PIPELINE_HIDDEN) with int64
 * offsets, as a trainer would produce packed hidden states. The caller
 * frees a->values and a->offsets. Returns 0 or -1 when out of memory. */
static inline int step_batch(long step, scree_array *a) {
  int64_t batch = 1 + step % 7;
  int64_t *offsets = malloc((size_t)(batch + 1) * sizeof(int64_t));
  if (offsets == NULL)
    return -1;
  offsets[0] = 0;
  for (int64_t i = 0; i < batch; i++)
    offsets[i + 1] = offsets[i] + 1 + (step * 5 + i * 3) % 11;
  int64_t rows = offsets[batch];
  float *values = malloc((size_t)rows * PIPELINE_HIDDEN * sizeof(float));
  if (values == NULL) {
    free(offsets);
    return -1;
  }
  for (int64_t r = 0; r < rows; r++)
    for (int j = 0; j < PIPELINE_HIDDEN; j++)
      values[r * PIPELINE_HIDDEN + j] = (float)step + 0.5f * (float)r - 0.25f * (float)j;
  memset(a, 0, sizeof(*a));
  a->dtype = SCREE_FLOAT32;
  a->offsets_dtype = SCREE_INT64;
  a->ndim_inner = 1;
  a->inner[0] = PIPELINE_HIDDEN;
  a->batch_size = batch;
  a->total_rows = rows;
  a->values = values;
  a->offsets = offsets;
  a->device.type = SCREE_DEVICE_CPU;
  return 0;
}

#endif /* PIPELINE_H */
