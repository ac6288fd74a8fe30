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
/* Remove name if it maps to pid (a process ending). */
void mb_registry_remove(mb_registry *r, const char *name, size_t len, mb_pid pid);

#endif
