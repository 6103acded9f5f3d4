/* The attention worker's CUDA side (worker_cuda.c, built with
 * SCREE_HAVE_CUDA): the device's primary context, one stream, arena imports
 * through libscreeclient's import code (client/c/src/import_cuda.c), and
 * jobs run to completion on the stream. Kept apart from worker.c so that
 * CUDA headers stay out of the rest of screed. Functions return 0 or a
 * SCREE_E* code with a message. */
#ifndef SCREE_DAEMON_WORKER_CUDA_H
#define SCREE_DAEMON_WORKER_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "scree/attention.h"

/* Makes device current and creates the stream. */
int scree__wcuda_init(int device, char *msg, size_t msg_len);

/* Drops the stream (the process is about to exit). */
void scree__wcuda_close(void);

/* Imports an arena of size bytes: from fd (VMM), or from legacy IPC handle
 * bytes when handle is not NULL. *state is for scree__wcuda_unmap; *dev the
 * arena's device address in this process. fd stays the caller's. */
int scree__wcuda_import(int device, int fd, const void *handle, size_t handle_len, size_t size,
                        void **state, uint64_t *dev, char *msg, size_t msg_len);
void scree__wcuda_unmap(void *state);

/* Runs args (device pointers) with the host int32 cu_seqlens copied to the
 * device, and waits for it. *fatal is set when the error poisons the
 * context (a fault in the kernel): the process must then exit. With trap
 * set (test builds only), a kernel that traps runs first. */
int scree__wcuda_run(scree_attention_args *args, const int32_t *cu_q, const int32_t *cu_k,
                     int trap, int *fatal, char *msg, size_t msg_len);

#ifdef SCREE_TEST_HOOKS
/* Test builds: launches a kernel that executes a trap instruction on
 * stream (worker_fault.cu). */
int scree__wcuda_launch_trap(void *stream);
#endif

#endif /* SCREE_DAEMON_WORKER_CUDA_H */
