/* code: the node's module cache. A module is found on the node's search path,
 * compiled once and kept as bytecode with its debug info; spawns and `require`
 * load the cached chunk. Entries are refcounted so a reload can replace one. */
#ifndef MB_CODE_H
#define MB_CODE_H

#include <stddef.h>
#include <lua.h>
#include "node.h"

struct mb_code {
  _Atomic int refs;
  char *name;        /* module name, or the script path */
  char *chunkname;   /* "@path" */
  char *bc;
  size_t len;
};

mb_codecache *mb_codecache_new(void);
void mb_codecache_free(mb_codecache *c);

/* +1 ref. NULL with err set ("module 'x' not found:\n\tno file ...", or the syntax error). */
mb_code *mb_code_get(mb_node *n, const char *module, char *err, size_t errlen);
/* A script by file path (the CLI's first process). */
mb_code *mb_code_file(mb_node *n, const char *path, char *err, size_t errlen);
void mb_code_unref(mb_code *c);
/* Push the chunk as a function; LUA_OK or a load error (message pushed). */
int mb_code_load(lua_State *L, const mb_code *c);

#endif
