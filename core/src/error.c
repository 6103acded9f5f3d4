#include <stddef.h>

#include "scree/version.h"
#include "scree/error.h"

/* One entry for each code; a switch finds it, so that two codes with the
 * same value fail to compile. */
typedef struct {
  const char *name;
  const char *desc;
} err_entry;

static const err_entry *err_find(int code) {
  static const err_entry ok = {"OK", "success"};
  switch (code) {
  case 0:
    return &ok;
#define XX(name, value, desc)                                                  \
  case value: {                                                                \
    static const err_entry e = {#name, desc};                                  \
    return &e;                                                                 \
  }
    SCREE_ERRNO_MAP(XX)
#undef XX
  }
  return NULL;
}

const char *scree_strerror(int code) {
  const err_entry *e = err_find(code);
  return e != NULL ? e->desc : "unknown error";
}

const char *scree_err_name(int code) {
  const err_entry *e = err_find(code);
  return e != NULL ? e->name : "UNKNOWN";
}

int scree_err_known(int code) { return err_find(code) != NULL; }

const char *scree_version(void) { return SCREE_VERSION_STRING; }
