/* registry: node-wide process names (register / unregister / whereis). A name is
 * len bytes, any bytes (NUL included). */
#ifndef MB_REGISTRY_H
#define MB_REGISTRY_H

#include "node.h"

mb_registry *mb_registry_new(void);
void mb_registry_free(mb_registry *r);
/* 0; MB_EINVAL if the name is taken or the process already has a name; MB_ENOPROC if
 * the process is not alive. */
int mb_registry_add(mb_node *n, const char *name, size_t len, mb_pid pid);
/* 0 or MB_ENOTFOUND. */
int mb_registry_unregister(mb_node *n, const char *name, size_t len);
mb_pid mb_registry_whereis(mb_registry *r, const char *name, size_t len);
/* A process ends: under the registry's lock its name is removed and it turns DEAD,
 * so whereis never answers with a dead pid and the name is free at once. */
void mb_registry_end(mb_node *n, mb_proc *p);

#endif
