/* Helpers shared by libscree's translation units; not installed. */
#ifndef SCREE_CORE_INTERNAL_H
#define SCREE_CORE_INTERNAL_H

#include <stddef.h>

/* Formats a message into msg (when not NULL) and returns code, so that an
 * error path reads `return scree__fail(SCREE_EINVAL, msg, len, "...", ...)`. */
int scree__fail(int code, char *msg, size_t msg_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
