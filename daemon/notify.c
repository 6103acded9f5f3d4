#include "notify.h"

#ifdef SCREE_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

#include "log.h"

void scree__notify(const char *state) {
  /* sd_notify returns 0 when NOTIFY_SOCKET is unset, and a negative errno
   * when the socket is set but unusable; only the latter is worth a line. */
  int rc = sd_notify(0, state);
  if (rc < 0)
    scree__log(SCREE__LOG_WARN, "notify_failed", "state=%s errno=%d", scree__q(state), -rc);
}
#else
void scree__notify(const char *state) { (void)state; }
#endif
