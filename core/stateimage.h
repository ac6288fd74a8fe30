/* stateimage: a node's image of a bare Lua state. lua_newstate interns Lua's 47
 * metamethod names and reserved words into every new state (half of a small spawn's
 * instructions); the image is one state made that way once, in a region of its own,
 * and a new process's state is a copy of the region with the pointers in it moved.
 * The copy is checked once, when the image is made, by running Lua code on a trial
 * copy; anything unexpected leaves the node without an image (lua_newstate then). */
#ifndef MB_STATEIMAGE_H
#define MB_STATEIMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

typedef struct mb_node mb_node;
typedef struct mb_stateimage mb_stateimage;

/* The image of a state as a process's starts: lua_newstate, mb_spawn_prepare, and
 * n's open_state (n NULL: a bare state), then, if lua, n's open_lua (for a body in
 * Lua). The open functions run with no process (p NULL) and must not key a table by
 * the address of one of the state's objects (a copy's would hash it elsewhere).
 * NULL: no memory, the build's allocator cannot hand out a copy's blocks one by one
 * (ASan), open_lua declined (nonzero), a block was freed or moved while it was made
 * (dead bytes in every copy), or the trial copy did not behave as a new state. */
mb_stateimage *mb_stateimage_new(mb_node *n, int lua);
void mb_stateimage_free(mb_stateimage *im);

/* Bytes a copy takes (a multiple of 8). */
size_t mb_stateimage_size(const mb_stateimage *im);

/* The image's own bytes (mb_stateimage_size of them), which a copy starts as. */
const void *mb_stateimage_region(const mb_stateimage *im);

/* Lua's own count of a copy's bytes (what lua_gc LUA_GCCOUNT/COUNTB say). */
int64_t mb_stateimage_bytes(const mb_stateimage *im);

/* The size of a copy's first block, the lua_State and global state (a class only a
 * state's own block has: on a free list, a closed state's blocks are there to reuse). */
size_t mb_stateimage_first_block(const mb_stateimage *im);

/* Copy the image to dst (mb_stateimage_size bytes, 8-aligned) and return its state.
 * Its blocks are the allocator's: each is freed (or reallocated) with its own size,
 * as any block of a state. The caller sets the allocator (lua_setallocf) and the
 * extra space; the copy has the image's panic handler, first GC credit and opened
 * environment, and shares the image's string hash seed. */
lua_State *mb_stateimage_copy(const mb_stateimage *im, void *dst);

#endif
