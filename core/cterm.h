/* cterm: encoded terms (core/codec_format.h) written and read from C, without a
 * Lua state — for native processes (supervisors, gen_server loops) and for
 * rendering exit reasons. The writer builds one value into an mb_buf; the reader is
 * a cursor over an encoded buffer, checked whole when opened, so no byte sequence
 * can make it read out of bounds or loop. */
#ifndef MB_CTERM_H
#define MB_CTERM_H

#include <stddef.h>
#include <stdint.h>
#include "moonbeam.h"
#include "buf.h"

/* Value types as the reader reports them. */
enum { MB_TT_NONE = -1, MB_TT_NIL, MB_TT_BOOL, MB_TT_INT, MB_TT_FLOAT, MB_TT_STR, MB_TT_PID,
       MB_TT_REF, MB_TT_TABLE, MB_TT_HANDLE };

/* ---- writer ----
 * mb_tw_begin, then exactly one value; a table is mb_tw_table(narr), then its narr
 * array items t[1..narr], then any number of key, value pairs, then mb_tw_end.
 * Errors are sticky (the calls after one do nothing); mb_tw_finish reports the
 * first: MB_ENC_TOOBIG (over b->limit), MB_ENC_NOMEM, MB_ENC_DEEP, or
 * MB_ENC_BADVALUE (a nil or NaN key, a pair left half, an array item short, more
 * or less than one value). On failure b->len is back where mb_tw_begin found it. */
#define MB_TW_MAXDEPTH 100   /* = MB_CODEC_MAXDEPTH */
typedef struct mb_tw {
  mb_buf *b;
  size_t len0;
  int err, depth, values;   /* values: written at the top level */
  struct { size_t hpos; uint64_t narr, items; } open[MB_TW_MAXDEPTH];
} mb_tw;

void mb_tw_begin(mb_tw *w, mb_buf *b);
void mb_tw_nil(mb_tw *w);
void mb_tw_bool(mb_tw *w, int v);
void mb_tw_int(mb_tw *w, int64_t v);
void mb_tw_float(mb_tw *w, double v);
void mb_tw_lstring(mb_tw *w, const char *s, size_t len);
void mb_tw_string(mb_tw *w, const char *s);
void mb_tw_pid(mb_tw *w, mb_pid pid);
void mb_tw_ref(mb_tw *w, uint64_t ref);
void mb_tw_handle(mb_tw *w, int kind, uint64_t id);   /* an I/O handle (handle.h) */
/* One whole encoding (a value mb_encode or a writer made, header included) as the
 * next value; one with back-references is written as its rendering (a string). */
void mb_tw_encoded(mb_tw *w, const char *p, size_t len);
void mb_tw_table(mb_tw *w, uint64_t narr);
void mb_tw_end(mb_tw *w);
int mb_tw_finish(mb_tw *w);   /* 0 or MB_ENC_*; the buffer then holds one encoding */

/* ---- reader ----
 * mb_tr_open checks the whole encoding (structure, bounds, back-references) and
 * returns 0 or -1. Then each read takes the next value of the current level (the
 * top level holds one value; a table holds narr items, then nh key, value pairs
 * read as 2*nh values) and returns 0, or -1 without moving (wrong type, or nothing
 * left at this level). A back-reference is read as the table it names. */
typedef struct mb_tr_tab { uint32_t at, end; } mb_tr_tab;   /* a table's offsets */
#define MB_TR_MAXDEPTH 200   /* levels open at once (back-references may nest deeper than 100) */
typedef struct mb_tr {
  const unsigned char *base, *p, *end;
  mb_tr_tab *tabs;          /* the tables, by number; only when back-references occur */
  uint32_t ntabs;
  int depth;
  struct { const unsigned char *ret; uint64_t left; } lv[MB_TR_MAXDEPTH + 1];  /* lv[0]: the top */
} mb_tr;

int mb_tr_open(mb_tr *r, const char *p, size_t len);
void mb_tr_close(mb_tr *r);      /* frees what open allocated */
int mb_tr_type(const mb_tr *r);  /* type of the next value, MB_TT_NONE at the end of a level */
uint64_t mb_tr_left(const mb_tr *r);  /* values left at this level */
int mb_tr_nil(mb_tr *r);
int mb_tr_bool(mb_tr *r, int *v);
int mb_tr_int(mb_tr *r, int64_t *v);
int mb_tr_float(mb_tr *r, double *v);
int mb_tr_number(mb_tr *r, double *v);   /* an int or a float */
int mb_tr_string(mb_tr *r, const char **s, size_t *len);   /* s points into the buffer */
int mb_tr_is_string(mb_tr *r, const char *s);   /* the next value is the string s: take it (1) or not (0) */
int mb_tr_pid(mb_tr *r, mb_pid *v);
int mb_tr_ref(mb_tr *r, uint64_t *v);
int mb_tr_handle(mb_tr *r, int *kind, uint64_t *id);   /* an I/O handle: its kind and id */
int mb_tr_skip(mb_tr *r);
/* Enter the next value, a table: its narr array items and nh pairs follow. */
int mb_tr_enter(mb_tr *r, uint64_t *narr, uint32_t *nh);
/* Leave the current table (skipping what is left of it); -1 at the top level. */
int mb_tr_leave(mb_tr *r);

/* ---- rendering ----
 * A readable text of an encoded value, as Lua would print it: strings bare at the
 * top and %q-quoted inside tables, tables as {a, b, [k] = v} (array items, then
 * pairs in encoded order), nested tables past depth 4 as {...}. At most max bytes
 * (max >= 16) and a NUL; a longer text ends with "...". malloc'd; NULL without
 * memory; "<corrupt>" for bytes that are no encoding. */
char *mb_reason_render(const char *p, size_t len, size_t max);

#endif
