/* codec: the compact binary encoding of Lua values that carries every message
 * between process states. Encoded once by the sender, decoded by the receiver. */
#ifndef MB_CODEC_H
#define MB_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "buf.h"

/* Result codes of the encoder. */
#define MB_ENC_OK       0
#define MB_ENC_BADVALUE (-1) /* unsendable value; err holds "cannot send a function (at msg[2].cb)" */
#define MB_ENC_TOOBIG   (-2) /* over b->limit; err holds "message too large" */
#define MB_ENC_NOMEM    (-3) /* malloc failed; err holds "not enough memory" */
#define MB_ENC_DEEP     (-4) /* nesting deeper than MB_CODEC_MAXDEPTH; err holds "message nested too deeply (at ...)" */

#define MB_CODEC_MAXDEPTH 100

/* Append the encoding of the value at idx. `root` names it in error paths ("msg").
 * Never raises a Lua error and never leaves anything on L's stack. `err` (may be
 * NULL) receives a message of at most errlen bytes on failure. */
int mb_encode(lua_State *L, int idx, mb_buf *b, const char *root, char *err, size_t errlen);

/* Append a count and then n values L[first..first+n-1], nils allowed (spawn arguments).
 * Paths in errors are "args[i]..." */
int mb_encode_values(lua_State *L, int first, int n, mb_buf *b, char *err, size_t errlen);

/* The whole encoding (header included) of the value at idx into out, when it is a
 * number, a boolean or a string of at most MB_SCALAR_STR bytes: its length, the
 * same bytes mb_encode writes. 0 for anything else (use mb_encode). For the send
 * of a lone scalar, which then needs no buffer. Never raises, pushes nothing. */
#define MB_SCALAR_STR 64
#define MB_SCALAR_MAX (MB_SCALAR_STR + 3)
size_t mb_encode_scalar(lua_State *L, int idx, unsigned char out[MB_SCALAR_MAX]);

/* The same for a tuple: a table whose keys are exactly 1..n (n <= MB_TUPLE_N), all
 * in its array part, each value a number, a boolean, a string, a pid or a ref. Read
 * in place (luatab.h; 0 when the layout is not trusted), the bytes mb_encode writes,
 * and 0 for anything else, or when they need more than MB_TUPLE_MAX bytes: no seen
 * set, no stack, no buffer to grow. For a send of {"tag", pid, n}. It reports no
 * ref to a buffer's on_ref: not for a sender that watches refs (call.c). */
#define MB_TUPLE_N 8
#define MB_TUPLE_MAX 96
size_t mb_encode_tuple(lua_State *L, int idx, unsigned char out[MB_TUPLE_MAX]);

/* Either of the two for the value at idx of the given type (lua_type's, which the
 * caller has read): tuples only when `tuples`. */
#define MB_SMALL_MAX (MB_TUPLE_MAX > MB_SCALAR_MAX ? MB_TUPLE_MAX : MB_SCALAR_MAX)
size_t mb_encode_small(lua_State *L, int idx, int type, unsigned char out[MB_SMALL_MAX], int tuples);

/* C-side writers for values the core builds itself (exit reasons, DOWN messages). */
int mb_encode_string(mb_buf *b, const char *s, size_t len);

/* Decode one value from [p, p+len) and push it. Returns 0, or -1 on malformed input
 * (nothing pushed). Must run where a Lua error is allowed: memory errors raise. */
int mb_decode(lua_State *L, const char *p, size_t len);
/* The same, for a caller that decodes into one state again and again (a process's
 * receive): *cache keeps the address of the state's string cache between calls
 * (NULL at first; the decoder sets it), so a message does not look it up. Only
 * ever with threads of the state that set it, for that state's whole life, and
 * only for a state whose registry no Lua code can reach (a process state; a C
 * library could, on a node with c_modules): the address is good while the
 * registry holds the cache, and a hit reads through it unchecked. */
int mb_decode_in(lua_State *L, const char *p, size_t len, void **cache);

/* Decode what mb_encode_values wrote: pushes the values, returns their count, or -1. */
int mb_decode_values(lua_State *L, const char *p, size_t len);

/* Exit-reason classification on an encoded value: "normal", "shutdown" or {"shutdown", x}. */
int mb_reason_is_normal(const char *p, size_t len);
/* 1 if the encoded value is exactly the string s. */
int mb_encoded_is_string(const char *p, size_t len, const char *s);

#endif
