#include "exec_cuda.h"

#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scree/error.h"

/* One launched job: what must live until its completion comes back. */
typedef struct launch {
  void *job;
  void *d_cu; /* cu_seqlens_q then cu_seqlens_k on the device */
  uint64_t t0;
  uint64_t t1; /* set by the host function */
  struct launch *next;
  struct scree__gpu *g;
} launch;

struct scree__gpu {
  int device;
  cudaStream_t stream;
  uv_async_t async;
  scree__gpu_done_fn done;
  /* Completions pushed by CUDA's callback thread, drained by the loop. */
  pthread_mutex_t mu;
  launch *dhead;
  launch *dtail;
  int inflight; /* loop thread only */
  int closing;
  int closed;
};

static int cuda_fail(cudaError_t err, const char *what, char *msg, size_t msg_len) {
  /* Clears a non-sticky error so that it does not surface in a later,
   * unrelated call. */
  cudaGetLastError();
  return scree__fail(SCREE_ECUDA, msg, msg_len, "%s: %s (%s)", what, cudaGetErrorName(err),
                     cudaGetErrorString(err));
}

/* Runs on a CUDA driver thread once the stream's work before it is done.
 * It may not call CUDA; it only queues the launch and wakes the loop. */
static void CUDART_CB host_done(void *arg) {
  launch *l = arg;
  scree__gpu *g = l->g;
  l->t1 = scree__now_ns();
  pthread_mutex_lock(&g->mu);
  if (g->dtail)
    g->dtail->next = l;
  else
    g->dhead = l;
  g->dtail = l;
  pthread_mutex_unlock(&g->mu);
  uv_async_send(&g->async);
}

static void on_async(uv_async_t *h) {
  scree__gpu *g = h->data;
  pthread_mutex_lock(&g->mu);
  launch *l = g->dhead;
  g->dhead = g->dtail = NULL;
  pthread_mutex_unlock(&g->mu);
  while (l != NULL) {
    launch *next = l->next;
    /* A fault in the kernel is reported by the next call that looks. */
    cudaError_t err = cudaGetLastError();
    char msg[256] = "";
    int rc = 0;
    if (err != cudaSuccess)
      rc = cuda_fail(err, "attention kernel", msg, sizeof(msg));
    g->inflight--;
    void *job = l->job;
    uint64_t elapsed = l->t1 - l->t0;
    free(l);
    g->done(job, rc, msg, elapsed);
    l = next;
  }
  if (g->closing && g->inflight == 0 && !g->closed) {
    g->closed = 1;
    uv_close((uv_handle_t *)&g->async, NULL);
  }
}

int scree__gpu_new(uv_loop_t *loop, int device, scree__gpu_done_fn done, scree__gpu **out,
                   char *msg, size_t msg_len) {
  scree__gpu *g = calloc(1, sizeof(*g));
  if (g == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  int rc;
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) {
    rc = cuda_fail(err, "cudaSetDevice", msg, msg_len);
    goto err_free;
  }
  err = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking);
  if (err != cudaSuccess) {
    rc = cuda_fail(err, "cudaStreamCreateWithFlags", msg, msg_len);
    goto err_free;
  }
  int uvrc = uv_async_init(loop, &g->async, on_async);
  if (uvrc != 0) {
    rc = scree__fail(SCREE_EIO, msg, msg_len, "uv_async_init: %s", uv_strerror(uvrc));
    goto err_stream;
  }
  pthread_mutex_init(&g->mu, NULL);
  g->async.data = g;
  g->device = device;
  g->done = done;
  *out = g;
  return 0;

err_stream:
  cudaStreamDestroy(g->stream);
err_free:
  free(g);
  return rc;
}

int scree__gpu_launch(scree__gpu *g, scree_attention_args *args, const int32_t *cu_q,
                      const int32_t *cu_k, void *job, char *msg, size_t msg_len) {
  if (g->closing)
    return scree__fail(SCREE_EAGAIN, msg, msg_len, "screed is shutting down");
  launch *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of host memory");
  l->g = g;
  l->job = job;
  size_t n = (size_t)args->batch + 1;
  int rc;
  cudaError_t err = cudaSetDevice(g->device);
  if (err != cudaSuccess) {
    rc = cuda_fail(err, "cudaSetDevice", msg, msg_len);
    goto err_free;
  }
  /* Stream-ordered, so that the buffer is freed after the kernel without a
   * host wait. */
  err = cudaMallocAsync(&l->d_cu, 2 * n * sizeof(int32_t), g->stream);
  if (err != cudaSuccess) {
    rc = cuda_fail(err, "cudaMallocAsync", msg, msg_len);
    goto err_free;
  }
  int32_t *d_q = l->d_cu;
  int32_t *d_k = d_q + n;
  err = cudaMemcpyAsync(d_q, cu_q, n * sizeof(int32_t), cudaMemcpyHostToDevice, g->stream);
  if (err == cudaSuccess)
    err = cudaMemcpyAsync(d_k, cu_k, n * sizeof(int32_t), cudaMemcpyHostToDevice, g->stream);
  if (err != cudaSuccess) {
    rc = cuda_fail(err, "cudaMemcpyAsync", msg, msg_len);
    goto err_mem;
  }
  args->cu_seqlens_q = d_q;
  args->cu_seqlens_k = d_k;
  args->stream = g->stream;
  l->t0 = scree__now_ns();
  rc = scree_attention_fwd(args);
  if (rc != 0) {
    snprintf(msg, msg_len, "%s", args->msg != NULL ? args->msg : scree_strerror(rc));
    goto err_mem;
  }
  err = cudaFreeAsync(l->d_cu, g->stream);
  l->d_cu = NULL;
  if (err == cudaSuccess)
    err = cudaLaunchHostFunc(g->stream, host_done, l);
  if (err != cudaSuccess) {
    /* The kernel is queued and reads the inputs: wait for it rather than
     * let the caller free them under it. */
    rc = cuda_fail(err, "cudaLaunchHostFunc", msg, msg_len);
    cudaStreamSynchronize(g->stream);
    free(l);
    return rc;
  }
  g->inflight++;
  return 0;

err_mem:
  if (l->d_cu != NULL)
    cudaFreeAsync(l->d_cu, g->stream);
  /* The copies may still read cu_q and cu_k, which the caller frees now. */
  cudaStreamSynchronize(g->stream);
err_free:
  free(l);
  return rc;
}

void scree__gpu_close(scree__gpu *g) {
  if (g == NULL || g->closing)
    return;
  g->closing = 1;
  if (g->inflight == 0) {
    g->closed = 1;
    uv_close((uv_handle_t *)&g->async, NULL);
  }
}

void scree__gpu_free(scree__gpu *g) {
  if (g == NULL)
    return;
  cudaSetDevice(g->device);
  cudaStreamDestroy(g->stream);
  pthread_mutex_destroy(&g->mu);
  free(g);
}
