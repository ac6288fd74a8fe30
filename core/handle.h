/* handle: the node's table of I/O handles (id -> kind, owner, resource) and the
 * per-process list of resources a process closes when it ends.
 *
 * Ownership: a resource (a socket, later) is owned by one process at a time. The
 * owner's list holds it; the process closes everything on its list when it ends,
 * before its EXIT and DOWN signals go out (mb_proc_finish). Garbage collection
 * never closes a resource: the Lua value of a handle is only its (kind, id).
 * The handle table maps an id, as carried in messages, to the entry; ids are
 * never reused during the node's life (generation * MB_HANDLE_CAP + slot). */
#ifndef MB_HANDLE_H
#define MB_HANDLE_H

#include <stdint.h>
#include "moonbeam.h"

typedef struct mb_proc mb_proc;

/* Handle kinds are 1 .. MB_HANDLE_KINDS-1, assigned by the modules that make
 * handles; 0 is none. The codec rejects a kind outside that range. */
#define MB_HANDLE_KINDS 16
/* Handles open at once in a node; an id's slot is id % MB_HANDLE_CAP. */
#define MB_HANDLE_CAP (1u << 20)

/* ---- resources: closed by their owner's end ---- */

/* Embed this in the resource. The caller sets `close`; the rest is the list's.
 * `close` runs once, on the thread ending the owner, after the process is DEAD
 * and before its EXIT/DOWN go out; it must not call into Lua and may free r.
 * It is not called for a resource removed from the list first. */
typedef struct mb_resource mb_resource;
struct mb_resource {
  void (*close)(mb_resource *r);
  /* Optional: take a reference to r for a process that is not its owner
   * (mb_handle_hold calls it under the entry's lock, so r cannot be closed
   * and freed in between). */
  void (*hold)(mb_resource *r);
  mb_resource *next, *prev;   /* [owner's meta lock] */
  mb_proc *proc;              /* the process whose list holds it, NULL when on none */
};

/* Put r (on no list) on p's list. Any thread (it takes p's meta lock). 0, or
 * MB_ENOPROC once p has started closing its resources (then r is not added and
 * the caller still owns it). */
int mb_proc_add_resource(mb_proc *p, mb_resource *r);
/* Take r off p's list without closing it (a no-op if r is not on it). Only p's
 * own thread, or the thread that set p up before it ran: p's end walks its list
 * without the lock. */
void mb_proc_remove_resource(mb_proc *p, mb_resource *r);
/* [owner] p has ended: refuse further adds, then close each resource, newest
 * first. Called by mb_proc_finish (and by the node's teardown for processes that
 * never finished). */
void mb_resources_close_all(mb_proc *p);

/* ---- the handle table ---- */

typedef struct mb_htab mb_htab;

mb_htab *mb_htab_new(void);
void mb_htab_free(mb_htab *t);   /* entries still open are dropped, their resources untouched */

/* A copy of an entry's fields, taken under its lock. `res` may be used only by
 * the owner's thread while it stays the owner: only the owner closes or hands
 * on a handle, so nothing frees it under that thread. */
typedef struct mb_handle_info {
  uint64_t id;
  int kind;
  mb_pid owner;
  mb_resource *res;
} mb_handle_info;

/* A new open entry for r, owned by `owner`; its id in *id. 0, MB_EINVAL (kind out
 * of range), MB_ELIMIT (MB_HANDLE_CAP open) or MB_ENOMEM. It does not put r on the
 * owner's list: the caller does (mb_proc_add_resource). */
int mb_handle_new(mb_node *n, int kind, mb_resource *r, mb_pid owner, uint64_t *id);
/* The open entry for id: 0 and *out filled, or MB_ENOTFOUND (closed, stale or never made). */
int mb_handle_get(mb_node *n, uint64_t id, mb_handle_info *out);
/* mb_handle_get, then the entry's resource's hold (if any) before the entry can
 * close: the caller may use res on any thread until it drops that reference. */
int mb_handle_hold(mb_node *n, uint64_t id, mb_handle_info *out);
/* Hand the handle on from `self` (its owner, running on its thread) to `to`: r moves
 * from self's resource list to to's, then the entry names `to`. 0, MB_ENOTFOUND
 * (closed or unknown), MB_EINVAL (self is not the owner) or MB_ENOPROC (to is not
 * alive, or is ending: nothing changes, self keeps it). */
int mb_handle_set_owner(mb_node *n, uint64_t id, mb_proc *self, mb_pid to);
/* Close the entry: lookups fail from now on, and its slot will be reused under a
 * new id. Idempotent: 1 if this call closed it, 0 if it was not open. Any thread.
 * The resource itself is the caller's to release. */
int mb_handle_close(mb_node *n, uint64_t id);

#endif
