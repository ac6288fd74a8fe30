/* code: search-path resolution like package.searchpath, compilation in a scratch
 * state, lua_dump with debug info (line numbers for tracebacks, upvalue names), and
 * a hash of module name -> bytecode under one mutex. Compiling happens outside the
 * lock. Every compile takes a ticket before it reads the file; a get keeps the
 * entry it finds (first insert wins), a reload replaces an entry only if its
 * ticket is newer, so overlapping reloads leave the source read last. */
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "code.h"
#include "hash.h"

#define NB 256

/* seq: the ticket of the compile that produced code */
typedef struct centry { mb_code *code; uint64_t seq; struct centry *next; } centry;

struct mb_codecache {
  pthread_mutex_t lock;
  _Atomic uint64_t seq;
  centry *b[NB];
};

static unsigned hash(const char *s) { return mb_hash_str(s) % NB; }

mb_codecache *mb_codecache_new(void) {
  mb_codecache *c = calloc(1, sizeof *c);
  if (c) pthread_mutex_init(&c->lock, NULL);
  return c;
}

void mb_codecache_free(mb_codecache *c) {
  if (!c) return;
  for (int i = 0; i < NB; i++)
    for (centry *e = c->b[i], *next; e; e = next) { next = e->next; mb_code_unref(e->code); free(e); }
  pthread_mutex_destroy(&c->lock);
  free(c);
}

void mb_code_unref(mb_code *c) {
  if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
    free(c->name);
    free(c->chunkname);
    free(c->bc);
    free(c);
  }
}

int mb_code_load(lua_State *L, const mb_code *c) {
  return luaL_loadbufferx(L, c->bc, c->len, c->chunkname, "b");
}

typedef struct { char *p; size_t len, cap; } sbuf;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  sbuf *b = ud;
  if (b->len + sz > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + sz) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return 1;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, sz);
  b->len += sz;
  return 0;
}

/* Compile the file at path; a new mb_code (1 ref) or NULL with err. */
static mb_code *compile(const char *name, const char *path, char *err, size_t errlen) {
  lua_State *L = luaL_newstate();
  if (!L) { snprintf(err, errlen, "not enough memory"); return NULL; }
  mb_code *c = NULL;
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    goto out;
  }
  sbuf b = { 0 };
  if (lua_dump(L, dump_writer, &b, 0) != 0 || !(c = calloc(1, sizeof *c))) {
    free(b.p);
    snprintf(err, errlen, "not enough memory");
    goto out;
  }
  atomic_store(&c->refs, 1);
  c->gen = 1;
  c->name = strdup(name);
  size_t cl = strlen(path) + 2;
  c->chunkname = malloc(cl);
  if (c->chunkname) snprintf(c->chunkname, cl, "@%s", path);
  c->bc = b.p;
  c->len = b.len;
  if (!c->name || !c->chunkname) { mb_code_unref(c); c = NULL; snprintf(err, errlen, "not enough memory"); }
out:
  lua_close(L);
  return c;
}

static mb_code *lookup(mb_codecache *cc, const char *name) {
  pthread_mutex_lock(&cc->lock);
  mb_code *c = NULL;
  for (centry *e = cc->b[hash(name)]; e; e = e->next)
    if (strcmp(e->code->name, name) == 0) { c = e->code; atomic_fetch_add(&c->refs, 1); break; }
  pthread_mutex_unlock(&cc->lock);
  return c;
}

/* Put c (compiled under ticket seq) in the cache: a new name is inserted with
 * gen 1; an entry already there is kept, unless `replace` and our ticket is newer:
 * then c takes its place with the next gen. Returns the entry to use (+1 ref). */
static mb_code *insert(mb_codecache *cc, mb_code *c, uint64_t seq, int replace) {
  pthread_mutex_lock(&cc->lock);
  unsigned h = hash(c->name);
  mb_code *old = NULL;
  for (centry *e = cc->b[h]; e; e = e->next)
    if (strcmp(e->code->name, c->name) == 0) {
      old = e->code;
      if (!replace || e->seq > seq) {
        atomic_fetch_add(&old->refs, 1);
        pthread_mutex_unlock(&cc->lock);
        mb_code_unref(c);
        return old;
      }
      c->gen = old->gen + 1;
      atomic_store_explicit(&old->superseded, 1, memory_order_release);
      e->code = c;
      e->seq = seq;
      atomic_fetch_add(&c->refs, 1);
      break;
    }
  if (!old) {
    centry *e = malloc(sizeof *e);
    if (e) {  /* else c is used uncached */
      e->code = c;
      e->seq = seq;
      atomic_fetch_add(&c->refs, 1);
      e->next = cc->b[h];
      cc->b[h] = e;
    }
  }
  pthread_mutex_unlock(&cc->lock);
  mb_code_unref(old);  /* the cache's reference to the replaced entry */
  return c;
}

/* A file that opens for reading; not a directory (which fopen opens on Linux). */
static int readable(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  struct stat st;
  int dir = fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode);
  fclose(f);
  if (dir) errno = EISDIR;
  return !dir;
}

/* Search the path for module and compile it; see insert for `replace`. */
static mb_code *load(mb_node *n, const char *module, int replace, char *err, size_t errlen) {
  /* the ticket comes before the search and the read: a later ticket saw a later file */
  uint64_t seq = atomic_fetch_add(&n->codes->seq, 1);
  mb_code *c;
  /* module name -> file name: dots become directory separators */
  size_t mlen = strlen(module);
  char *fname = malloc(mlen + 1);
  if (!fname) { snprintf(err, errlen, "not enough memory"); return NULL; }
  for (size_t i = 0; i <= mlen; i++) fname[i] = module[i] == '.' ? '/' : module[i];
  size_t used = (size_t)snprintf(err, errlen, "module '%s' not found:", module);
  const char *p = n->path;
  char path[4096];
  while (*p) {
    const char *end = strchr(p, ';');
    size_t tl = end ? (size_t)(end - p) : strlen(p);
    size_t o = 0;
    for (size_t i = 0; i < tl && o + mlen + 1 < sizeof path; i++) {
      if (p[i] == '?') { memcpy(path + o, fname, mlen); o += mlen; }
      else path[o++] = p[i];
    }
    path[o] = 0;
    if (tl > 0) {
      if (readable(path)) {
        free(fname);
        c = compile(module, path, err, errlen);
        return c ? insert(n->codes, c, seq, replace) : NULL;
      }
      if (used < errlen) used += (size_t)snprintf(err + used, errlen - used, "\n\tno file '%s'", path);
    }
    p += tl;
    if (*p == ';') p++;
  }
  free(fname);
  return NULL;
}

mb_code *mb_code_get(mb_node *n, const char *module, char *err, size_t errlen) {
  mb_code *c = lookup(n->codes, module);
  return c ? c : load(n, module, 0, err, errlen);
}

mb_code *mb_code_reload(mb_node *n, const char *module, char *err, size_t errlen) {
  return load(n, module, 1, err, errlen);
}

mb_code *mb_code_file(mb_node *n, const char *path, char *err, size_t errlen) {
  if (!readable(path)) { snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno)); return NULL; }
  (void)n;
  return compile(path, path, err, errlen);
}
