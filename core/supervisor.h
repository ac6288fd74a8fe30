/* supervisor: supervisors (SPEC section 3) as native processes — no Lua state. */
#ifndef MB_SUPERVISOR_H
#define MB_SUPERVISOR_H

#include "proc.h"
#include "supspec.h"

/* Spawn a supervisor running spec (taken: freed by it, or here on failure), linked
 * with self, whose start is self's call `ref` (live in self's calls): self waits for
 * the REPLY (`true`, or {reason} / {"already_started", pid}) or the DOWN of ref, as
 * for mb_gen_server_spawn. [owner of self] 0 and *pid, or MB_E*. */
int mb_supervisor_spawn(mb_proc *self, mb_sup_spec *spec, uint64_t ref, mb_pid *pid);

/* Requests (the payload of a CALL to a supervisor): an encoded table whose first
 * item names the operation — {"start_child", normal-form child spec (a string)},
 * {"terminate_child", id}, {"restart_child", id}, {"delete_child", id},
 * {"which_children"}, {"count_children"}. Replies: {true [, pid]} or
 * {false, reason [, pid]}; which_children an array of {id=, pid=, type=, module=};
 * count_children {specs=, active=, supervisors=, workers=}. */

#endif
