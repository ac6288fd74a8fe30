/* info: a snapshot of a process's figures (for mb.info), taken under its lock into a
 * buffer its caller owns, so that building a Lua table from it holds no reference. */
#ifndef MB_INFO_H
#define MB_INFO_H

#include <stddef.h>
#include <stdint.h>
#include "node.h"

typedef struct mb_snapshot {
  int status;                    /* MB_PS_* */
  int trap, nlinks, nmonitors;
  int64_t memory, queue_len;
  uint64_t reductions;
  size_t name_len, module_len;   /* (size_t)-1: none */
  char bytes[];                  /* pids (links, then monitors), then the name, then the module */
} mb_snapshot;

/* Fill s, which has `room` bytes after its header: 0; -1 if pid is not alive (or a
 * fatal exit signal is on its way to it); else the room it needs (> room). */
long mb_snapshot_take(mb_node *n, mb_pid pid, mb_snapshot *s, size_t room);
const char *mb_status_name(int status);   /* "running", "waiting", "runnable" */

static inline const mb_pid *mb_snapshot_pids(const mb_snapshot *s) { return (const mb_pid *)s->bytes; }
static inline const char *mb_snapshot_text(const mb_snapshot *s) {
  return (const char *)(mb_snapshot_pids(s) + s->nlinks + s->nmonitors);
}

#endif
