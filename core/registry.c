/* registry: a chained hash of names under one mutex. A process's own `name` field
 * mirrors its entry (under its meta lock) so the name is freed when it ends. Names
 * are byte strings with a length, like Erlang atoms: "a\0b" is not "a". */
#include <stdlib.h>
#include <string.h>
#include "registry.h"
#include "testhook.h"
#include "hash.h"

#define NB 1024

typedef struct entry { char *name; size_t len; mb_pid pid; struct entry *next; } entry;

struct mb_registry {
  pthread_mutex_t lock;
  entry *b[NB];
};

static unsigned hash(const char *s, size_t len) { return mb_hash_bytes(s, len) % NB; }

/* A NUL-terminated copy of the len bytes at s (the NUL for C readers). */
static char *copy(const char *s, size_t len) {
  char *c = malloc(len + 1);
  if (c) { memcpy(c, s, len); c[len] = 0; }
  return c;
}

mb_registry *mb_registry_new(void) {
  mb_registry *r = calloc(1, sizeof *r);
  if (r) pthread_mutex_init(&r->lock, NULL);
  return r;
}

void mb_registry_free(mb_registry *r) {
  if (!r) return;
  for (int i = 0; i < NB; i++)
    for (entry *e = r->b[i], *next; e; e = next) { next = e->next; free(e->name); free(e); }
  pthread_mutex_destroy(&r->lock);
  free(r);
}

static entry **find(mb_registry *r, const char *name, size_t len) {
  entry **pp = &r->b[hash(name, len)];
  while (*pp && ((*pp)->len != len || memcmp((*pp)->name, name, len) != 0)) pp = &(*pp)->next;
  return pp;
}

int mb_registry_add(mb_node *n, const char *name, size_t len, mb_pid pid) {
  mb_registry *r = n->reg;
  if (len > UINT32_MAX) return MB_EINVAL;   /* the process struct keeps a 32-bit length */
  mb_proc *p = mb_proc_get(n, pid);
  if (!p) return MB_ENOPROC;
  int rc = 0;
  pthread_mutex_lock(&r->lock);
  entry **pp = find(r, name, len);
  if (*pp) { rc = MB_EINVAL; goto out; }
  mb_lock_take(&p->meta);
  if (p->name) rc = MB_EINVAL;
  else if (atomic_load(&p->state) == MB_PS_DEAD) rc = MB_ENOPROC;
  else {
    entry *e = malloc(sizeof *e);
    char *a = copy(name, len), *b = copy(name, len);
    if (!e || !a || !b) { free(e); free(a); free(b); rc = MB_ENOMEM; }
    else { e->name = a; e->len = len; e->pid = pid; e->next = NULL; *pp = e; p->name = b; p->name_len = (uint32_t)len; }
  }
  mb_lock_give(&p->meta);
out:
  pthread_mutex_unlock(&r->lock);
  mb_proc_unref(p);
  return rc;
}

int mb_registry_unregister(mb_node *n, const char *name, size_t len) {
  mb_registry *r = n->reg;
  pthread_mutex_lock(&r->lock);
  entry **pp = find(r, name, len), *e = *pp;
  if (!e) { pthread_mutex_unlock(&r->lock); return MB_ENOTFOUND; }
  *pp = e->next;
  mb_proc *p = mb_proc_get(n, e->pid);
  if (p) {
    mb_lock_take(&p->meta);
    if (p->name && p->name_len == len && memcmp(p->name, name, len) == 0) { free(p->name); p->name = NULL; }
    mb_lock_give(&p->meta);
    mb_proc_unref(p);
  }
  pthread_mutex_unlock(&r->lock);
  free(e->name);
  free(e);
  return 0;
}

mb_pid mb_registry_whereis(mb_registry *r, const char *name, size_t len) {
  pthread_mutex_lock(&r->lock);
  entry *e = *find(r, name, len);
  mb_pid pid = e ? e->pid : 0;
  pthread_mutex_unlock(&r->lock);
  return pid;
}

void mb_registry_end(mb_node *n, mb_proc *p) {
  mb_lock_take(&p->meta);
  if (!p->name) {   /* no name: DEAD under meta is enough (mb_registry_add checks it there) */
    atomic_store(&p->state, MB_PS_DEAD);
    mb_lock_give(&p->meta);
    return;
  }
  mb_lock_give(&p->meta);
  mb_registry *r = n->reg;
  pthread_mutex_lock(&r->lock);
  mb_lock_take(&p->meta);
  char *name = p->name;
  size_t len = p->name_len;
  p->name = NULL;
  atomic_store(&p->state, MB_PS_DEAD);
  mb_lock_give(&p->meta);
  mb_test_point("registry_end");   /* dead, name not yet gone: whereis waits on the lock */
  entry *e = NULL;
  if (name) {
    entry **pp = find(r, name, len);
    e = *pp;
    if (e && e->pid == atomic_load(&p->pid)) *pp = e->next;
    else e = NULL;
  }
  pthread_mutex_unlock(&r->lock);
  if (e) { free(e->name); free(e); }
  free(name);
}
