/* A second process for the GPU tests: it imports an arena the way
 * libscreeclient does and checks or writes bytes through that mapping on the
 * GPU. The test starts it with posix_spawn (a fresh process, since CUDA does
 * not survive fork) and drives it over a SOCK_SEQPACKET socketpair, one job
 * per packet; an import job carries the arena's fd as SCM_RIGHTS. */
#ifndef SCREE_TESTS_GPU_CHILD_H
#define SCREE_TESTS_GPU_CHILD_H

#include <stddef.h>
#include <stdint.h>

enum {
  GPU_JOB_IMPORT = 1, /* import the arena (fd attached, or handle bytes) */
  GPU_JOB_CHECK = 2,  /* compare [off, off+len) with pattern(seed) on the GPU */
  GPU_JOB_WRITE = 3,  /* write pattern(seed) into [off, off+len) */
  GPU_JOB_EXIT = 4,   /* unmap and exit */
};

typedef struct gpu_job {
  int32_t kind;
  int32_t ipc_mode; /* SCREE__CUDA_IPC_* */
  uint64_t arena_size;
  unsigned char uuid[16];
  unsigned char handle[64];
  uint64_t off;
  uint64_t len;
  uint32_t seed;
} gpu_job;

typedef struct gpu_reply {
  int32_t rc;        /* 0 or a SCREE_E* code */
  uint64_t imports;  /* scree__cuda_import_count() after the job */
  char msg[512];
} gpu_reply;

/* The test pattern: byte i of a region seeded with seed. */
static inline unsigned char gpu_pattern(uint64_t i, uint32_t seed) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
  return (unsigned char)(x >> 29);
}

#endif /* SCREE_TESTS_GPU_CHILD_H */
