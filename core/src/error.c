#include "scree/version.h"
#include "scree/error.h"

const char *scree_strerror(int code) {
  switch (code) {
  case 0:
    return "success";
#define XX(name, value, desc)                                                  \
  case value:                                                                  \
    return desc;
    SCREE_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown error";
}

const char *scree_err_name(int code) {
  switch (code) {
  case 0:
    return "OK";
#define XX(name, value, desc)                                                  \
  case value:                                                                  \
    return #name;
    SCREE_ERRNO_MAP(XX)
#undef XX
  }
  return "UNKNOWN";
}

int scree_err_known(int code) {
  switch (code) {
  case 0:
#define XX(name, value, desc) case value:
    SCREE_ERRNO_MAP(XX)
#undef XX
    return 1;
  }
  return 0;
}

const char *scree_version(void) { return SCREE_VERSION_STRING; }
