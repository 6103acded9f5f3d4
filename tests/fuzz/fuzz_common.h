/* Pieces shared by the libFuzzer harnesses of screed's request handler.
 *
 * The harnesses drive the handler and the store through the same
 * socket-free entry points the server uses (handler.h), on the host-memory
 * backend, so a crash here is
 * a crash of screed on the same bytes. Checks that fail abort with a
 * message: libFuzzer then saves the input as a crash. */
#ifndef SCREE_TESTS_FUZZ_COMMON_H
#define SCREE_TESTS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "handler.h"
#include "store.h"
#include "sys.h"

#define FUZZ_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                             \
      fputc('\n', stderr);                                                      \
      abort();                                                                  \
    }                                                                           \
  } while (0)

/* Small limits, so that ENOSPC, arenas of their own for large blocks and
 * the spare arena are all reached by short inputs. */
#define FUZZ_MEMORY_LIMIT (1u << 20)
#define FUZZ_ARENA_SIZE (64u << 10)

/* The host backend, made once per process (it holds no per-input state). */
scree__mem *fuzz_mem(void);

/* A fresh store over fuzz_mem(); aborts when it cannot be made. */
scree__store *fuzz_store_new(void);

/* A handler over s, without an executor (Attention is ENOTSUP); aborts
 * when it cannot be made. Free it with scree__handler_free. */
scree__handler *fuzz_handler_new(scree__store *s);

/* Packs r's response the way the server does and decodes it the way a
 * client does: a reply that does not survive this would break clients.
 * Aborts on failure; checks that the decoded id and status match. */
void fuzz_check_reply(const scree__reply *r);

/* True when $SCREE_FUZZ_TRACE is set: harnesses then print each reply's
 * status (for reading what a seed or a crash input does). */
int fuzz_trace(void);

/* Records that one request took ns to decode and handle (what: the
 * request type or "packet"; bytes: its size when known). At exit the
 * slowest one seen is printed ("fuzz: slowest request: ..."), the figure
 * docs/testing.md gives; the run's per-input time limit (make fuzz's
 * -timeout) is what fails a slow input. */
void fuzz_note_time(uint64_t ns, const char *what, size_t bytes);

/* Number of open fds of this process (to catch fds the store leaks). */
int fuzz_count_fds(void);

#endif /* SCREE_TESTS_FUZZ_COMMON_H */
