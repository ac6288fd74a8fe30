/* supspec (Lua face): the checker of supervisor spec tables, which writes their
 * normal form (core/supspec.h, included here: a file in bindings/ that includes
 * "supspec.h" gets both). */
#ifndef MB_L_SUPSPEC_H
#define MB_L_SUPSPEC_H

#include <stddef.h>
#include <lua.h>
#include "../core/supspec.h"
#include "buf.h"
#include "node.h"

/* Check the user's spec table at idx and append its normal form to b (an mb_buf from
 * mb_buf_init with MB_SIG_HDR reserved). 0, or -1 with err = "invalid spec: <path>:
 * <what>" (child: "invalid child spec: <path>: <what>") and b as it was. Module
 * names are looked up on the node's path (mb_code_get, then mb_code_unref). Fields
 * are read with their metamethods, under a pcall: an error raised by one is reported
 * as what is wrong with that field. Raises only for memory (b then as it was). */
int mb_l_sup_spec(lua_State *L, mb_node *n, int idx, mb_buf *b, char *err, size_t errlen);
int mb_l_child_spec(lua_State *L, mb_node *n, int idx, mb_buf *b, char *err, size_t errlen);

#endif
