#include "cudadrv.h"

#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "scree/error.h"

static scree__cu scree__cu_table;
static pthread_once_t scree__cu_once = PTHREAD_ONCE_INIT;
static int scree__cu_status;
static char scree__cu_status_msg[256];

/* The symbol name a call to `name` binds to after the header's macros. */
#define SCREE__CU_XSTR(name) SCREE__CU_STR(name)
#define SCREE__CU_STR(name) #name

static void scree__cu_load_once(void) {
  scree__cu *cu = &scree__cu_table;
  CUresult r;
  void *lib;
  int count;

  /* RTLD_NODELETE: the table outlives any dlclose a caller might do, and the
   * driver is never unloaded while CUDA memory is mapped. */
  lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (lib == NULL) {
    scree__cu_status = scree__fail(SCREE_ENODEV, scree__cu_status_msg,
                                   sizeof(scree__cu_status_msg),
                                   "no CUDA driver: %s", dlerror());
    return;
  }
#define SCREE__CU_RESOLVE(name)                                                \
  cu->name = (__typeof__(cu->name))dlsym(lib, SCREE__CU_XSTR(name));           \
  if (cu->name == NULL) {                                                      \
    scree__cu_status = scree__fail(SCREE_ENODEV, scree__cu_status_msg,      \
                                   sizeof(scree__cu_status_msg),             \
                                   "the CUDA driver lacks %s (too old?)",    \
                                   SCREE__CU_XSTR(name));                    \
    return;                                                                    \
  }
  SCREE__CU_FUNCS(SCREE__CU_RESOLVE)
#undef SCREE__CU_RESOLVE

  r = cu->cuInit(0);
  if (r == CUDA_ERROR_NO_DEVICE) {
    scree__cu_status = scree__fail(SCREE_ENODEV, scree__cu_status_msg,
                                   sizeof(scree__cu_status_msg),
                                   "no CUDA device (cuInit: CUDA_ERROR_NO_DEVICE)");
    return;
  }
  if (r != CUDA_SUCCESS) {
    scree__cu_status = scree__cu_fail(cu, r, "cuInit", scree__cu_status_msg,
                                      sizeof(scree__cu_status_msg));
    return;
  }
  if (cu->cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0) {
    scree__cu_status = scree__fail(SCREE_ENODEV, scree__cu_status_msg,
                                   sizeof(scree__cu_status_msg), "no CUDA device");
    return;
  }
  cu->cuDriverGetVersion(&cu->driver_version);
  scree__cu_status = 0;
}

int scree__cu_load(const scree__cu **out, char *msg, size_t msg_len) {
  pthread_once(&scree__cu_once, scree__cu_load_once);
  if (scree__cu_status != 0) {
    *out = NULL;
    return scree__fail(scree__cu_status, msg, msg_len, "%s", scree__cu_status_msg);
  }
  *out = &scree__cu_table;
  return 0;
}

int scree__cu_fail(const scree__cu *cu, CUresult r, const char *what, char *msg,
                   size_t msg_len) {
  const char *name = NULL;
  const char *desc = NULL;
  size_t n;
  int code;

  code = r == CUDA_ERROR_OUT_OF_MEMORY ? SCREE_ENOSPC : SCREE_ECUDA;
  if (msg == NULL || msg_len == 0)
    return code;
  if (cu != NULL && cu->cuGetErrorName != NULL)
    cu->cuGetErrorName(r, &name);
  if (cu != NULL && cu->cuGetErrorString != NULL)
    cu->cuGetErrorString(r, &desc);

  /* SCREE_CUDA_GOTO passes the call's text ("cu->cuMemCreate(&h, ...)"):
   * keep only the function's name. */
  if (strncmp(what, "cu->", 4) == 0)
    what += 4;
  for (n = 0; what[n] != '\0' && (isalnum((unsigned char)what[n]) || what[n] == '_'); n++)
    ;
  if (name != NULL)
    snprintf(msg, msg_len, "%.*s: %s (%s)", (int)n, what, name,
             desc != NULL ? desc : "no description");
  else
    snprintf(msg, msg_len, "%.*s: CUDA error %d", (int)n, what, (int)r);
  return code;
}

char *scree__cu_uuid_str(const unsigned char u[16], char *buf, size_t len) {
  snprintf(buf, len,
           "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
           u[12], u[13], u[14], u[15]);
  return buf;
}
