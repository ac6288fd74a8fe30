/* code: the node's module cache. A module is found on the node's search path,
 * compiled and kept as bytecode with its debug info; spawns and `require` load
 * the cached chunk. A reload replaces a module's entry with a new generation;
 * entries are refcounted, so holders of the old one keep it as long as they like. */
#ifndef MB_CODE_H
#define MB_CODE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "node.h"

struct mb_code {
  _Atomic int refs;
  _Atomic int superseded; /* set under the cache lock when a reload replaces this entry */
  uint64_t gen;      /* 1 for a name's first compile, +1 at each replacement; set before
                      * the entry is published, immutable after */
  char *name;        /* module name, or the script path */
  char *chunkname;   /* "@path" */
  char *bc;
  size_t len;
};

mb_codecache *mb_codecache_new(void);
void mb_codecache_free(mb_codecache *c);

/* +1 ref. NULL with err set ("module 'x' not found:\n\tno file ...", or the syntax error). */
mb_code *mb_code_get(mb_node *n, const char *module, char *err, size_t errlen);
/* Compile the module's current source (searched on the path again) and make it
 * the entry later gets return, with gen = old gen + 1 (1 if it was not cached);
 * the old entry is marked superseded. +1 ref to the entry now cached. NULL with
 * err set (not found, syntax error, memory) and the cache unchanged. When
 * reloads of one name overlap, the one that started last wins. */
mb_code *mb_code_reload(mb_node *n, const char *module, char *err, size_t errlen);
/* A script by file path (the CLI's first process); not cached, gen 1. */
mb_code *mb_code_file(mb_node *n, const char *path, char *err, size_t errlen);
void mb_code_unref(mb_code *c);
/* Push the chunk as a function; LUA_OK or a load error (message pushed). */
int mb_code_load(lua_State *L, const mb_code *c);
/* Has a reload replaced c? One atomic load, for a holder to ask between two
 * messages; if so, mb_code_get(n, c->name, ...) returns the current entry. */
static inline int mb_code_superseded(const mb_code *c) {
  return atomic_load_explicit(&c->superseded, memory_order_acquire);
}

#endif
