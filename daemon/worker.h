/* The attention worker: a child process of screed that runs the kernels.
 *
 * A CUDA fault inside a kernel poisons the CUDA context of the process that
 * launched it, and a host-memory kernel cannot be cancelled mid-call. So
 * screed runs no kernel itself: it starts the same binary in worker mode
 * (`screed --attention-worker ...`, through /proc/self/exe) with one end of
 * a SOCK_SEQPACKET socketpair as fd 3, and sends it jobs. The worker imports
 * the arenas the way a client does (mmap of the memfd on host memory, read
 * only for inputs; cuMemImportFromShareableHandle or cuIpcOpenMemHandle on
 * a GPU), writes each output into the block screed reserved, and answers.
 * A worker that dies, faults or overruns takes its one job with it; screed
 * kills it, answers that job with "attention worker died: ...", frees the
 * output, and starts another for the next job (exec.c).
 *
 * The messages below are this file's own: both ends are the same binary, so
 * they travel as plain structs, one per packet. screed sends:
 *   - worker_arena (with the arena's fd, except for legacy CUDA handles,
 *     whose bytes travel in the message) the first time a job needs an
 *     arena, or needs to write into one the worker holds read-only;
 *   - worker_forget when arenas the worker holds have been freed;
 *   - worker_job with a memfd that holds cu_seqlens_q then cu_seqlens_k
 *     (int32, batch + 1 each), already validated by screed.
 * The worker answers each job with one worker_done. It reads nothing while a
 * job runs, and screed sends nothing then, so the socket never fills.
 *
 * The worker checks every location against the arena sizes it holds, so a
 * message that disagrees with its mappings is an error answer, never a
 * write out of bounds. */
#ifndef SCREE_DAEMON_WORKER_H
#define SCREE_DAEMON_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "mem.h"

/* The argument that selects worker mode; main() checks for it first. */
#define SCREE__WORKER_ARG "--attention-worker"
/* The fd the worker finds its socket on. */
#define SCREE__WORKER_FD 3

enum {
  SCREE__WMSG_ARENA = 1,
  SCREE__WMSG_FORGET = 2,
  SCREE__WMSG_JOB = 3,
  SCREE__WMSG_DONE = 10,
};

typedef struct scree__wmsg_arena {
  uint32_t type; /* SCREE__WMSG_ARENA */
  uint32_t writable;
  uint64_t arena_id;
  uint64_t size;
  uint32_t handle_len; /* legacy CUDA: the IPC handle bytes; else 0 */
  unsigned char handle[SCREE__IPC_HANDLE_MAX];
} scree__wmsg_arena;

#define SCREE__WMSG_FORGET_MAX 64
typedef struct scree__wmsg_forget {
  uint32_t type; /* SCREE__WMSG_FORGET */
  uint32_t n;
  uint64_t ids[SCREE__WMSG_FORGET_MAX];
} scree__wmsg_forget;

/* A tensor: bytes at offset in an arena the worker has been sent. */
typedef struct scree__wmsg_loc {
  uint64_t arena_id;
  uint64_t offset;
  uint64_t bytes;
} scree__wmsg_loc;

#define SCREE__WMSG_NAME_MAX 256
typedef struct scree__wmsg_job {
  uint32_t type; /* SCREE__WMSG_JOB */
  uint32_t dtype;
  uint64_t job_id;
  scree__wmsg_loc q, k, v, out;
  int32_t batch;
  int32_t total_q, total_k;
  int32_t max_seqlen_q, max_seqlen_k;
  int32_t num_heads_q, num_heads_kv, head_dim;
  float softmax_scale;
  int32_t causal;
  int32_t window_left, window_right;
  int32_t num_threads;
  /* The output's name, for the worker's log lines and the test builds'
   * fault switch. */
  char out_name[SCREE__WMSG_NAME_MAX];
} scree__wmsg_job;

typedef struct scree__wmsg_done {
  uint32_t type; /* SCREE__WMSG_DONE */
  int32_t rc;
  uint64_t job_id;
  uint64_t elapsed_ns;
  /* Set when the worker cannot go on (a CUDA error that poisons its
   * context): screed kills it and starts another for the next job. */
  uint32_t fatal;
  char msg[512];
} scree__wmsg_done;

/* The worker process's main (argv: screed --attention-worker BACKEND
 * LOG_LEVEL PARENT_PID; BACKEND is "cpu" or a CUDA ordinal, LOG_LEVEL
 * screed's threshold as a number). Returns the exit status. */
int scree__worker_main(int argc, char **argv);

#endif /* SCREE_DAEMON_WORKER_H */
