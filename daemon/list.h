/* Intrusive linked lists: screed keeps connections, sessions, leases,
 * waiters, fetches, arenas and queued packets on lists threaded through
 * their own prev and next fields, so that taking one out costs nothing and
 * cannot fail. These macros are the one copy of the link updates; every
 * argument is a plain lvalue and may be evaluated more than once. */
#ifndef SCREE_DAEMON_LIST_H
#define SCREE_DAEMON_LIST_H

/* Puts node first in the doubly linked list whose first node is head.
 * node->prev is left as it is: NULL in a node on no list. */
#define SCREE__LIST_PUSH(head, node) \
  do {                               \
    (node)->next = (head);           \
    if (head)                        \
      (head)->prev = (node);         \
    (head) = (node);                 \
  } while (0)

/* Takes node out of the doubly linked list whose first node is head.
 * node's own prev and next are left as they were. */
#define SCREE__LIST_REMOVE(head, node)       \
  do {                                       \
    if ((node)->prev)                        \
      (node)->prev->next = (node)->next;     \
    else                                     \
      (head) = (node)->next;                 \
    if ((node)->next)                        \
      (node)->next->prev = (node)->prev;     \
  } while (0)

/* SCREE__LIST_REMOVE for a list that also keeps its last node, tail. */
#define SCREE__LIST_REMOVE_TAIL(head, tail, node) \
  do {                                            \
    if (!(node)->next)                            \
      (tail) = (node)->prev;                      \
    SCREE__LIST_REMOVE(head, node);               \
  } while (0)

/* Puts node after tail, the last node of the list that starts at head (a
 * singly linked queue, or a doubly linked list whose caller has set
 * node->prev to tail). node->next is left as it is: the caller makes it
 * NULL. */
#define SCREE__LIST_APPEND(head, tail, node) \
  do {                                       \
    if (tail)                                \
      (tail)->next = (node);                 \
    else                                     \
      (head) = (node);                       \
    (tail) = (node);                         \
  } while (0)

#endif
