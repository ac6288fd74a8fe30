/* ptab: the process table — pid -> process, pids with a generation so a stale pid
 * never reaches a reused slot, and the pool of process structs. */
#ifndef MB_PTAB_H
#define MB_PTAB_H

#include "proc.h"

typedef struct mb_ptab mb_ptab;

mb_ptab *mb_ptab_new(uint32_t cap);
void mb_ptab_free(mb_ptab *t, struct mb_node *n);   /* n: whose arena the pooled structs are in */
/* Give p a fresh pid and publish it. MB_ELIMIT when the table is full. */
int mb_ptab_insert(mb_ptab *t, mb_proc *p);
/* Unpublish p: lookups of its pid fail from now on. */
void mb_ptab_remove(mb_ptab *t, mb_proc *p);
/* The slot's process (no ref taken) or NULL: callers check the pid under a ref. */
mb_proc *mb_ptab_peek(mb_ptab *t, mb_pid pid);
/* Copy up to max live pids into out; returns how many are live (may exceed max). */
size_t mb_ptab_list(mb_ptab *t, mb_pid *out, size_t max);
/* Every live pid, into a buffer room(ud, cap) gives (NULL: give up, 0 returned);
 * room is asked again, bigger, while processes come faster than the copy. */
size_t mb_ptab_snapshot(mb_ptab *t, mb_pid *(*room)(void *ud, size_t cap), void *ud, mb_pid **out);

/* The pool of process structs (type-stable memory; proc.c builds and destroys them). */
mb_proc *mb_ptab_pool_get(mb_ptab *t);   /* NULL when the pool is empty */
void mb_ptab_pool_put(mb_ptab *t, mb_proc *p);

#endif
