/* libscreeclient: the names of its public enums, as tools and messages show
 * them. Kept apart so that import.c can name a mode without depending on the
 * rest of the client. */
#include "scree/client.h"

const char *scree_batch_state_name(scree_batch_state s) {
  switch (s) {
  case SCREE_BATCH_CREATED: return "created";
  case SCREE_BATCH_SEALED: return "sealed";
  default: return "unspecified";
  }
}

const char *scree_backend_name(scree_backend b) {
  switch (b) {
  case SCREE_BACKEND_HOST: return "host";
  case SCREE_BACKEND_CUDA: return "cuda";
  default: return "unspecified";
  }
}

const char *scree_ipc_mode_name(scree_ipc_mode m) {
  switch (m) {
  case SCREE_IPC_MEMFD: return "memfd";
  case SCREE_IPC_VMM: return "vmm";
  case SCREE_IPC_LEGACY: return "legacy";
  default: return "unspecified";
  }
}

const char *scree_event_kind_name(scree_event_kind k) {
  switch (k) {
  case SCREE_EVENT_SEALED: return "sealed";
  case SCREE_EVENT_DELETED: return "deleted";
  case SCREE_EVENT_OVERFLOW: return "overflow";
  default: return "unspecified";
  }
}

const char *scree_fetch_failure_name(int cause) {
  /* The daemon's labels (PeerFailure.cause), in scree_fetch_failure's
   * order. */
  static const char *const names[SCREE_FETCH_FAIL_COUNT_] = {
      "auth", "unreachable", "lost", "remote", "local", "timeout", "invalid", "other",
  };
  return cause >= 0 && cause < SCREE_FETCH_FAIL_COUNT_ ? names[cause] : "other";
}
