/* The CUDA side of attention jobs (exec_cuda.c, built with SCREE_HAVE_CUDA):
 * one stream on the daemon's device, kernels launched on it from the loop
 * thread, and completion brought back to the loop with cudaLaunchHostFunc
 * and a uv_async_t. Kept apart from exec.c so that CUDA headers stay out of
 * the rest of screed. */
#ifndef SCREE_DAEMON_EXEC_CUDA_H
#define SCREE_DAEMON_EXEC_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "scree/attention.h"

typedef struct scree__gpu scree__gpu;

/* Called on the loop thread when a launched job is done: rc 0, or
 * SCREE_ECUDA with CUDA's message; elapsed_ns from launch to completion. */
typedef void (*scree__gpu_done_fn)(void *job, int rc, const char *msg, uint64_t elapsed_ns);

/* Makes the stream on device (the backend's ordinal) and the async handle
 * on loop. Returns 0, SCREE_ENOMEM or SCREE_ECUDA with a message. */
int scree__gpu_new(uv_loop_t *loop, int device, scree__gpu_done_fn done, scree__gpu **out,
                   char *msg, size_t msg_len);

/* Copies the host int32 cu_seqlens (batch + 1 entries each) to the device,
 * and launches args (device pointers, stream set here) on the stream.
 * cu_q and cu_k must stay valid until done() is called for job. Returns 0
 * (done() follows), or the kernel's or CUDA's code with a message (nothing
 * is in flight then). */
int scree__gpu_launch(scree__gpu *g, scree_attention_args *args, const int32_t *cu_q,
                      const int32_t *cu_k, void *job, char *msg, size_t msg_len);

/* Closes the async handle once nothing is in flight (at once or after the
 * last completion). */
void scree__gpu_close(scree__gpu *g);

/* Frees g after the loop has run out. */
void scree__gpu_free(scree__gpu *g);

#endif /* SCREE_DAEMON_EXEC_CUDA_H */
