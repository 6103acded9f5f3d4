/* A SIGSEGV handler that names scree's read-only batches.
 *
 * A batch from get is mapped read-only on a host-memory daemon, and torch
 * has no read-only tensors: a write through a torch view of such a batch
 * faults, which cannot become a Python exception. What this file adds is the
 * last word before the process dies: when the faulting address lies inside a
 * read-only batch this process attached, a message on stderr names scree,
 * the batch and the fact that its views are read-only. Every fault, that one
 * included, then goes on to the handler that was installed before (Python's
 * faulthandler when it was enabled first, else the default action), so the
 * process still dies of SIGSEGV and other faults are untouched.
 *
 * The registry of read-only ranges is written with the GIL held (leases are
 * made and freed under it) plus a mutex, for interpreters without a GIL, and
 * read by the handler with atomic loads only. A full table is replaced by a
 * larger copy; the old one is never freed, because a handler may be reading
 * it at that moment (tables double, so the leak stays below the live size).
 */
#include "native.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Longer names are cut, with "..." in the message: the handler has no room
 * to allocate. */
#define SCREE__FAULT_NAME 128

typedef struct scree__fault_range {
  _Atomic uintptr_t start; /* 0: a free slot */
  uintptr_t end;
  char name[SCREE__FAULT_NAME];
  int truncated;
} scree__fault_range;

typedef struct scree__fault_table {
  size_t cap;
  scree__fault_range slots[];
} scree__fault_table;

static _Atomic(scree__fault_table *) fault_table;
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction fault_prev;
static atomic_int fault_installed;

/* --- the handler: async-signal-safe calls only ---------------------------- */

static void put_str(const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, s, n);
    if (w <= 0)
      return;
    s += w;
    n -= (size_t)w;
  }
}

static void put_cstr(const char *s) {
  put_str(s, strlen(s));
}

static void put_hex(uintptr_t v) {
  char buf[2 + 2 * sizeof(v)];
  size_t i = sizeof(buf);
  do {
    buf[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  buf[--i] = 'x';
  buf[--i] = '0';
  put_str(buf + i, sizeof(buf) - i);
}

static void put_dec(uintptr_t v) {
  char buf[24];
  size_t i = sizeof(buf);
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  put_str(buf + i, sizeof(buf) - i);
}

/* Copies the slot that holds addr into *out; returns 0 when none does. */
static int find_range(uintptr_t addr, scree__fault_range *out) {
  scree__fault_table *t = atomic_load_explicit(&fault_table, memory_order_acquire);
  if (t == NULL)
    return 0;
  for (size_t i = 0; i < t->cap; i++) {
    uintptr_t start = atomic_load_explicit(&t->slots[i].start, memory_order_acquire);
    if (start != 0 && addr >= start && addr < t->slots[i].end) {
      out->end = t->slots[i].end;
      memcpy(out->name, t->slots[i].name, sizeof(out->name));
      out->name[sizeof(out->name) - 1] = '\0';
      out->truncated = t->slots[i].truncated;
      atomic_store_explicit(&out->start, start, memory_order_relaxed);
      return 1;
    }
  }
  return 0;
}

static void fault_handler(int sig, siginfo_t *info, void *ctx) {
  int saved_errno = errno;
  scree__fault_range r;
  /* si_code > 0: the kernel raised it for a real access, so si_addr is the
   * faulting address (raise() and kill() carry none). */
  if (info != NULL && info->si_code > 0 && find_range((uintptr_t)info->si_addr, &r)) {
    uintptr_t addr = (uintptr_t)info->si_addr;
    uintptr_t start = atomic_load_explicit(&r.start, memory_order_relaxed);
    put_cstr("\nscree: fatal: write to read-only batch '");
    put_cstr(r.name);
    if (r.truncated)
      put_cstr("...");
    put_cstr("' at ");
    put_hex(addr);
    put_cstr(" (byte ");
    put_dec(addr - start);
    put_cstr(" of ");
    put_dec(r.end - start);
    put_cstr(").\nscree: views of a batch from Client.get are read-only: the daemon maps its "
             "memory read-only, and torch tensors cannot refuse the write, so the process "
             "dies of SIGSEGV. Copy first (batch.values.clone()), or build a new batch with "
             "Client.create.\n");
  }
  /* On to the handler installed before this one. */
  const struct sigaction *p = &fault_prev;
  if ((p->sa_flags & SA_SIGINFO) && p->sa_sigaction != NULL) {
    errno = saved_errno;
    p->sa_sigaction(sig, info, ctx);
    return;
  }
  if (!(p->sa_flags & SA_SIGINFO) && p->sa_handler != SIG_DFL && p->sa_handler != SIG_IGN) {
    errno = saved_errno;
    p->sa_handler(sig);
    return;
  }
  /* The default action: put it back. A fault from an access repeats when
   * the handler returns and then takes the default action with the real
   * siginfo (and the real state for a core dump); a signal sent by raise()
   * or kill() is sent again. */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
  if (info == NULL || info->si_code <= 0)
    raise(sig);
  errno = saved_errno;
}

/* --- the registry, called with the GIL held ------------------------------- */

int scree__fault_install(void) {
  if (atomic_exchange(&fault_installed, 1))
    return 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = fault_handler;
  sigemptyset(&sa.sa_mask);
  /* SA_ONSTACK: a fault from a stack overflow runs on the alternate stack
   * where one is set (faulthandler sets one). */
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  if (sigaction(SIGSEGV, &sa, &fault_prev) != 0) {
    atomic_store(&fault_installed, 0);
    return -1;
  }
  return 0;
}

int scree__fault_register(const void *start, size_t len, const char *name) {
  if (start == NULL || len == 0)
    return -1;
  pthread_mutex_lock(&fault_lock);
  scree__fault_table *t = atomic_load_explicit(&fault_table, memory_order_relaxed);
  int slot = -1;
  if (t != NULL) {
    for (size_t i = 0; i < t->cap; i++) {
      if (atomic_load_explicit(&t->slots[i].start, memory_order_relaxed) == 0) {
        slot = (int)i;
        break;
      }
    }
  }
  if (slot < 0) {
    size_t cap = t == NULL ? 64 : t->cap * 2;
    if (cap > INT32_MAX)
      goto err_unlock;
    scree__fault_table *n = calloc(1, sizeof(*n) + cap * sizeof(n->slots[0]));
    if (n == NULL)
      goto err_unlock;
    n->cap = cap;
    if (t != NULL) {
      for (size_t i = 0; i < t->cap; i++) {
        n->slots[i].end = t->slots[i].end;
        memcpy(n->slots[i].name, t->slots[i].name, sizeof(n->slots[i].name));
        n->slots[i].truncated = t->slots[i].truncated;
        atomic_store_explicit(&n->slots[i].start,
                              atomic_load_explicit(&t->slots[i].start, memory_order_relaxed),
                              memory_order_relaxed);
      }
      slot = (int)t->cap;
    } else {
      slot = 0;
    }
    /* The old table stays allocated: see the comment at the top. */
    atomic_store_explicit(&fault_table, n, memory_order_release);
    t = n;
  }
  scree__fault_range *r = &t->slots[slot];
  size_t n = strlen(name);
  r->truncated = n >= sizeof(r->name);
  memcpy(r->name, name, r->truncated ? sizeof(r->name) - 1 : n);
  r->name[r->truncated ? sizeof(r->name) - 1 : n] = '\0';
  r->end = (uintptr_t)start + len;
  atomic_store_explicit(&r->start, (uintptr_t)start, memory_order_release);
  pthread_mutex_unlock(&fault_lock);
  return slot;

err_unlock:
  pthread_mutex_unlock(&fault_lock);
  return -1;
}

void scree__fault_unregister(int slot) {
  if (slot < 0)
    return;
  pthread_mutex_lock(&fault_lock);
  scree__fault_table *t = atomic_load_explicit(&fault_table, memory_order_relaxed);
  if (t != NULL && (size_t)slot < t->cap)
    atomic_store_explicit(&t->slots[slot].start, 0, memory_order_release);
  pthread_mutex_unlock(&fault_lock);
}
