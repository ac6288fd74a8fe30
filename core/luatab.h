/* luatab: what the codec may know of a Lua table beyond the public API (see luatab.c). */
#ifndef MB_LUATAB_H
#define MB_LUATAB_H

#include <stddef.h>
#include <string.h>
#include <lua.h>

/* Lua 5.4's value representation: 8 bytes of value, then a tag byte. */
typedef union mb_luatab_value {
  lua_Integer i;
  lua_Number n;
  const void *p; /* strings and other collectable objects */
} mb_luatab_value;

/* One element of a table's array part (a TValue). */
typedef struct mb_luatab_slot {
  mb_luatab_value v;
  unsigned char tag;
} mb_luatab_slot;

/* One node of a table's hash part: the value, then the key. */
typedef struct mb_luatab_node {
  mb_luatab_value v;
  unsigned char tag;
  unsigned char key_tag;
  int next;
  mb_luatab_value key;
} mb_luatab_node;

/* Tags of the values the codec reads in place; an empty slot has (tag & 0x0f) == 0. */
#define MB_LUATAB_FALSE  0x01
#define MB_LUATAB_TRUE   0x11
#define MB_LUATAB_INT    0x03
#define MB_LUATAB_FLOAT  0x13
#define MB_LUATAB_SHRSTR 0x44
#define MB_LUATAB_LNGSTR 0x54

static inline int mb_luatab_empty(unsigned char tag) { return (tag & 0x0f) == 0; }

/* A read-only view of a table, valid until the table is written to. */
typedef struct mb_luatab_view {
  const mb_luatab_slot *array; /* t[1..asize] */
  lua_Unsigned keys;           /* t[1..keys] are in the array part, so none in the hash part */
  lua_Unsigned asize;          /* the array part's real size (>= keys) */
  const mb_luatab_node *nodes; /* the hash part, nnodes nodes */
  size_t nnodes;
} mb_luatab_view;

/* 1 when the running Lua passed the layout probe (done once per program). */
int mb_luatab_trusted(void);

/* Fill v for the table at idx; 0 (v untouched) when the layout is not trusted. */
int mb_luatab_view_of(lua_State *L, int idx, mb_luatab_view *v);

/* The bytes and length of a string value whose tag is MB_LUATAB_SHRSTR or _LNGSTR
 * (a TString: GC header, extra, shrlen, hash, size_t lnglen, then the bytes). */
static inline const char *mb_luatab_string(const void *ts, unsigned char tag, size_t *len) {
  const char *s = ts;
  if (tag == MB_LUATAB_SHRSTR) *len = (unsigned char)s[sizeof(void *) + 3];
  else memcpy(len, s + sizeof(void *) + 8, sizeof *len);
  return s + sizeof(void *) + 8 + sizeof(size_t);
}

#endif
