/* sets: a process's link set (pids) and monitor maps (ref -> pid). Small sets
 * are packed arrays scanned linearly, bigger ones open-addressed hash tables;
 * see sets.c. A set is not locked here: proc.c changes a process's sets under
 * its `meta` lock. */
#ifndef MB_SETS_H
#define MB_SETS_H

#include <stdint.h>
#include "moonbeam.h"

/* A set of pids. Slot i holds v[i], 0 = empty (pid 0 never occurs). An empty
 * set is all zero and holds no memory. */
typedef struct mb_pidset { mb_pid *v; int n, cap; } mb_pidset;

/* A map ref -> pid. Slot i holds the ref v[2i] (0 = empty; refs are never 0)
 * and its pid v[2i+1]. An empty map is all zero and holds no memory. */
typedef struct mb_monset { uint64_t *v; int n, cap; } mb_monset;

/* 1 added, 0 already there (or pid 0), -1 no memory (the set is unchanged). */
int mb_pidset_add(mb_pidset *s, mb_pid pid);
int mb_pidset_del(mb_pidset *s, mb_pid pid);   /* 1 removed, 0 absent */
int mb_pidset_has(const mb_pidset *s, mb_pid pid);
int mb_pidset_copy(const mb_pidset *s, mb_pid *out);   /* writes the n pids; returns n */
void mb_pidset_free(mb_pidset *s);   /* empties it and lets its memory go */

/* 1 added, 0 ref already there (or ref 0), -1 no memory (the map is unchanged). */
int mb_monset_add(mb_monset *s, uint64_t ref, mb_pid pid);
/* 1 removed (its pid in *pid unless pid is NULL), 0 absent. */
int mb_monset_del(mb_monset *s, uint64_t ref, mb_pid *pid);
int mb_monset_has(const mb_monset *s, uint64_t ref);
mb_pid mb_monset_get(const mb_monset *s, uint64_t ref);   /* its pid, or 0 */
int mb_monset_pids(const mb_monset *s, mb_pid *out);   /* writes the n pids; returns n */
void mb_monset_free(mb_monset *s);

/* Iteration over a set that does not change meanwhile: the next used slot
 * after slot i, or -1; start with i = -1.
 *   for (int i = mb_pidset_next(s, -1); i >= 0; i = mb_pidset_next(s, i)) use(s->v[i]);
 *   for (int i = mb_monset_next(m, -1); i >= 0; i = mb_monset_next(m, i))
 *     use(mb_monset_ref(m, i), mb_monset_pid(m, i)); */
static inline int mb_pidset_next(const mb_pidset *s, int i) {
  while (++i < s->cap) if (s->v[i]) return i;
  return -1;
}
static inline int mb_monset_next(const mb_monset *s, int i) {
  while (++i < s->cap) if (s->v[2 * i]) return i;
  return -1;
}
static inline uint64_t mb_monset_ref(const mb_monset *s, int i) { return s->v[2 * i]; }
static inline mb_pid mb_monset_pid(const mb_monset *s, int i) { return s->v[2 * i + 1]; }

#endif
