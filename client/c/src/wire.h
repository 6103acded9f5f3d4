/* One packet each way on a SOCK_SEQPACKET socket, with the fds that travel
 * beside it. Independent of protobuf so that tests can drive it over a
 * socketpair. */
#ifndef SCREE_CLIENT_WIRE_H
#define SCREE_CLIENT_WIRE_H

#include <stddef.h>

/* Most fds one reply may carry; more are closed on arrival. */
#define SCREE__WIRE_MAX_FDS 4

/* Sends buf as one packet, without SIGPIPE. Returns 0; SCREE_EDISCONNECTED
 * when the peer is gone; SCREE_EMSGSIZE when the packet is too large for the
 * socket; SCREE_EIO otherwise. Writes a message on failure. */
int scree__wire_send(int fd, const void *buf, size_t len, char *msg, size_t msg_len);

/* Receives one packet with one recvmsg into *buf, which is grown to max_len
 * bytes first (the caller owns it; *cap is its size). A packet larger than
 * max_len is consumed, its fds closed, and SCREE_EMSGSIZE returned. Received fds are close-on-exec; up to max_fds of them are
 * stored in fds and counted in *nfds, the rest closed (and added to
 * *extra_closed, which may be NULL). Returns the packet length (>= 0);
 * SCREE_EDISCONNECTED when the peer closed or the socket failed; SCREE_ENOMEM;
 * SCREE_EMSGSIZE. Retries on EINTR. */
long scree__wire_recv(int fd, unsigned char **buf, size_t *cap, size_t max_len, int *fds,
                      int max_fds, int *nfds, unsigned *extra_closed, char *msg,
                      size_t msg_len);

#endif /* SCREE_CLIENT_WIRE_H */
