/* Bytes held per owner uid, for --quota-per-uid.
 *
 * The store counts a batch's block (the same bytes --memory-limit counts)
 * against its owner from Create until the block is freed, so a pending
 * delete still counts until its last lease goes. Only uids that hold
 * bytes have an entry: the table is as small as the set of active owners,
 * kept sorted for binary search. */
#ifndef SCREE_DAEMON_QUOTA_H
#define SCREE_DAEMON_QUOTA_H

#include <stddef.h>
#include <stdint.h>

typedef struct scree__usage_entry {
  uint32_t uid;
  uint64_t bytes;
} scree__usage_entry;

typedef struct scree__usage {
  scree__usage_entry *e; /* sorted by uid; every entry has bytes > 0 */
  size_t n;
  size_t cap;
} scree__usage;

/* Bytes held by uid (0 when it holds none). */
uint64_t scree__usage_get(const scree__usage *u, uint32_t uid);

/* Makes sure scree__usage_add for one more uid cannot fail. Returns 0 or
 * SCREE_ENOMEM. */
int scree__usage_reserve(scree__usage *u);

/* Counts bytes against uid. Needs a scree__usage_reserve before it when uid
 * may be new; never allocates. */
void scree__usage_add(scree__usage *u, uint32_t uid, uint64_t bytes);

/* Takes bytes back from uid (never below 0); drops the entry at 0. Never
 * fails. */
void scree__usage_sub(scree__usage *u, uint32_t uid, uint64_t bytes);

void scree__usage_free(scree__usage *u);

#endif /* SCREE_DAEMON_QUOTA_H */
