/* sets: the pid sets and ref -> pid maps behind links and monitors.
 *
 * Both are one table of slots of w 64-bit words (w = 1: a pid; w = 2: a ref
 * and its pid), the key first, 0 marking an empty slot. Most processes have a
 * few links or monitors, a few have many (a supervisor, a process that
 * monitors on every call), so:
 * - empty: no memory (cap 0);
 * - up to SMALL slots: the keys packed in slots [0, n), the rest zero, scanned
 *   linearly; a delete moves the last key into the hole;
 * - more: a power-of-two table, linear probing from a Fibonacci hash of the
 *   key, load at most 3/4. A delete shifts the following keys of its run back
 *   (no tombstones, so churn never slows probes), and the table shrinks to a
 *   quarter once it is less than 1/8 full.
 * The only allocation is calloc (the C test injects failures there); a failed
 * one leaves the set as it was. */
#include <stdlib.h>
#include <string.h>
#include "sets.h"

#define FIRST 4   /* slots of the first allocation */
#define SMALL 8   /* tables of up to this many slots are packed arrays */
#define HASHED(cap) ((cap) > SMALL)

/* A view of either kind of set. */
typedef struct { uint64_t **v; int *n, *cap; int w; } tab;
#define PIDS(s) ((tab){ &(s)->v, &(s)->n, &(s)->cap, 1 })
#define MONS(s) ((tab){ &(s)->v, &(s)->n, &(s)->cap, 2 })

/* The key's first slot in a hashed table of cap slots: the top bits of a
 * Fibonacci hash, which spread sequential pids and refs. */
static inline int home(uint64_t key, int cap) {
  return (int)((key * 0x9E3779B97F4A7C15ull) >> (64 - __builtin_ctz((unsigned)cap)));
}

/* The slot holding key, or -1. */
static int find(const uint64_t *v, int n, int cap, int w, uint64_t key) {
  if (!key) return -1;
  if (!HASHED(cap)) {
    for (int i = 0; i < n; i++) if (v[i * w] == key) return i;
    return -1;
  }
  for (int i = home(key, cap);; i = (i + 1) & (cap - 1)) {
    if (v[i * w] == key) return i;
    if (!v[i * w]) return -1;
  }
}

/* Put a slot whose key is not in the hashed table v. */
static void place(uint64_t *v, int cap, int w, const uint64_t *slot) {
  int i = home(slot[0], cap);
  while (v[i * w]) i = (i + 1) & (cap - 1);
  memcpy(v + i * w, slot, sizeof *v * (size_t)w);
}

/* Move the keys into a new table of cap slots (packed or hashed). 0, or -1 (no
 * memory; t unchanged). */
static int resize(tab t, int cap) {
  uint64_t *nv = calloc((size_t)cap * (size_t)t.w, sizeof *nv);
  if (!nv) return -1;
  uint64_t *ov = *t.v;
  for (int i = 0, k = 0; i < *t.cap; i++) {
    const uint64_t *slot = ov + i * t.w;
    if (!slot[0]) continue;
    if (HASHED(cap)) place(nv, cap, t.w, slot);
    else memcpy(nv + k++ * t.w, slot, sizeof *nv * (size_t)t.w);
  }
  free(ov);
  *t.v = nv;
  *t.cap = cap;
  return 0;
}

static int add(tab t, const uint64_t *slot) {
  int n = *t.n, cap = *t.cap;
  if (!slot[0] || find(*t.v, n, cap, t.w, slot[0]) >= 0) return 0;
  if (HASHED(cap) ? (n + 1) * 4 > cap * 3 : n == cap) {
    if (resize(t, cap ? cap * 2 : FIRST) != 0) return -1;
    cap = *t.cap;
  }
  if (HASHED(cap)) place(*t.v, cap, t.w, slot);
  else memcpy(*t.v + n * t.w, slot, sizeof **t.v * (size_t)t.w);
  *t.n = n + 1;
  return 1;
}

static int del(tab t, uint64_t key, uint64_t *val) {
  int cap = *t.cap, w = t.w;
  uint64_t *v = *t.v;
  int i = find(v, *t.n, cap, w, key);
  if (i < 0) return 0;
  if (val) *val = v[i * w + 1];
  int n = --*t.n;
  size_t size = sizeof *v * (size_t)w;
  if (!HASHED(cap)) {
    memmove(v + i * w, v + n * w, size);
    memset(v + n * w, 0, size);
    return 1;
  }
  /* Backward shift: a later key of the run moves into the hole unless its home
   * lies after the hole (it would no longer be found), until an empty slot. */
  int mask = cap - 1;
  for (int j = (i + 1) & mask; v[j * w]; j = (j + 1) & mask) {
    int h = home(v[j * w], cap);
    if (((j - h) & mask) >= ((j - i) & mask)) {
      memcpy(v + i * w, v + j * w, size);
      i = j;
    }
  }
  memset(v + i * w, 0, size);
  if (n < cap / 8) resize(t, cap / 4 > SMALL ? cap / 4 : SMALL);   /* no memory: stay big */
  return 1;
}

/* Writes the keys' last words (the pids) to out; returns how many. */
static int pids(const uint64_t *v, int cap, int w, mb_pid *out) {
  int k = 0;
  for (int i = 0; i < cap; i++) if (v[i * w]) out[k++] = v[i * w + w - 1];
  return k;
}

static void tab_free(tab t) {
  free(*t.v);
  *t.v = NULL;
  *t.n = *t.cap = 0;
}

int mb_pidset_add(mb_pidset *s, mb_pid pid) { return add(PIDS(s), &pid); }
int mb_pidset_del(mb_pidset *s, mb_pid pid) { return del(PIDS(s), pid, NULL); }
int mb_pidset_has(const mb_pidset *s, mb_pid pid) { return find(s->v, s->n, s->cap, 1, pid) >= 0; }
int mb_pidset_copy(const mb_pidset *s, mb_pid *out) { return pids(s->v, s->cap, 1, out); }
void mb_pidset_free(mb_pidset *s) { tab_free(PIDS(s)); }

int mb_monset_add(mb_monset *s, uint64_t ref, mb_pid pid) {
  uint64_t slot[2] = { ref, pid };
  return add(MONS(s), slot);
}
int mb_monset_del(mb_monset *s, uint64_t ref, mb_pid *pid) { return del(MONS(s), ref, pid); }
int mb_monset_has(const mb_monset *s, uint64_t ref) { return find(s->v, s->n, s->cap, 2, ref) >= 0; }
mb_pid mb_monset_get(const mb_monset *s, uint64_t ref) {
  int i = find(s->v, s->n, s->cap, 2, ref);
  return i >= 0 ? s->v[2 * i + 1] : 0;
}
int mb_monset_pids(const mb_monset *s, mb_pid *out) { return pids(s->v, s->cap, 2, out); }
void mb_monset_free(mb_monset *s) { tab_free(MONS(s)); }
