/* codec_format: the layout of an encoding, shared by the encoder (encode.c), the
 * decoder (decode.c) and the C term reader/writer (cterm.c). */
#ifndef MB_CODEC_FORMAT_H
#define MB_CODEC_FORMAT_H

#include <lua.h>

/* An encoding is one header byte, then the value(s). Messages never leave the
 * node, so floats and the hash count are stored in native byte order.
 *
 *   header      0x01, | 0x80 when the encoding holds a back-reference
 *   0 T_NIL, 1 T_FALSE, 2 T_TRUE
 *   3 T_INT     zigzag varint
 *   4 T_FLOAT   8 bytes (a double)
 *   5 T_STR     varint length, bytes
 *   6 T_PID     varint id
 *   7 T_REF     varint id
 *   8 T_TABLE   varint n (lua_rawlen), u32 h, values of t[1..n], h key/value pairs
 *   9 T_BACKREF varint k: the k-th table (0-based, in encounter order) again
 *  10 T_HANDLE  varint id, 1 byte kind (an I/O handle: term.c, handle.h)
 *
 * Varints are LEB128, at most 10 bytes. A table is numbered when its tag is
 * written (pre-order, keys before values), the same order the decoder meets it. */
enum { T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_PID, T_REF, T_TABLE, T_BACKREF, T_HANDLE };

#define HDR_VERSION  0x01
#define HDR_BACKREFS 0x80
#define VARINT_MAX   10

_Static_assert(sizeof(lua_Number) == 8, "floats are encoded as 8 bytes");

#endif
