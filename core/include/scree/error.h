/* Error codes shared by every part of scree.
 *
 * Public functions return 0 on success or a negative SCREE_E* code. Codes
 * that have an errno equivalent are the negated errno value, so a failing
 * system call maps to a scree code with SCREE__ERR(errno). Codes without one
 * (a CUDA failure, a lost daemon) live in their own range below -4000. */
#ifndef SCREE_ERROR_H
#define SCREE_ERROR_H

#include <errno.h>

#include "scree/export.h"

SCREE_EXTERN_C_BEGIN

/* XX(name, value, description) */
#define SCREE_ERRNO_MAP(XX)                                                    \
  XX(EINVAL, -EINVAL, "invalid argument")                                      \
  XX(ENOENT, -ENOENT, "no such batch")                                         \
  XX(EEXIST, -EEXIST, "batch already exists")                                  \
  XX(ENOSPC, -ENOSPC, "not enough memory in the store")                        \
  XX(ENOMEM, -ENOMEM, "out of host memory")                                    \
  XX(EACCES, -EACCES, "permission denied")                                     \
  XX(EPERM, -EPERM, "operation not permitted")                                 \
  XX(EBUSY, -EBUSY, "resource busy")                                           \
  XX(EAGAIN, -EAGAIN, "resource temporarily unavailable")                      \
  XX(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                             \
  XX(EOVERFLOW, -EOVERFLOW, "size overflows")                                  \
  XX(EPROTO, -EPROTO, "protocol error")                                        \
  XX(EMSGSIZE, -EMSGSIZE, "message too long")                                  \
  XX(ENOTSUP, -ENOTSUP, "operation not supported")                             \
  XX(EIO, -EIO, "i/o error")                                                   \
  XX(EBADF, -EBADF, "bad file descriptor")                                     \
  XX(ECONNREFUSED, -ECONNREFUSED, "connection refused")                        \
  XX(ETIMEDOUT, -ETIMEDOUT, "timed out")                                       \
  XX(ENODEV, -ENODEV, "no such device")                                        \
  XX(EINTR, -EINTR, "interrupted")                                             \
  XX(ECANCELED, -ECANCELED, "cancelled")                                       \
  XX(ECUDA, -4001, "CUDA error")                                               \
  XX(EDISCONNECTED, -4002, "disconnected from the daemon")                     \
  XX(ESTATE, -4003, "batch is in the wrong state for this request")

typedef enum scree_errno {
  SCREE_OK = 0,
#define XX(name, value, _) SCREE_##name = (value),
  SCREE_ERRNO_MAP(XX)
#undef XX
} scree_errno;

/* Maps a positive errno value to a scree code. */
#define SCREE__ERR(e) (-(e))

/* A static English description of code; "unknown error" for codes that are
 * not in the map. Never NULL. */
SCREE_API const char *scree_strerror(int code);

/* The code's name without the SCREE_ prefix ("EINVAL"); "UNKNOWN" for codes
 * that are not in the map. Never NULL. */
SCREE_API const char *scree_err_name(int code);

/* True when code is one of the codes in SCREE_ERRNO_MAP (or 0). */
SCREE_API int scree_err_known(int code);

SCREE_EXTERN_C_END

#endif /* SCREE_ERROR_H */
