/* cterm: the C writer, reader and renderer of encoded terms (format: core/codec_format.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cterm.h"
#include "handle.h"
#include "codec.h"
#include "codec_format.h"


_Static_assert(MB_TW_MAXDEPTH == MB_CODEC_MAXDEPTH, "the writer nests as deep as the codec");

/* ---------------------------------------------------------------- writer */

static void tw_fail(mb_tw *w, int err) {
  if (!w->err) w->err = err;
}

static int tw_room(mb_tw *w, size_t n) {
  mb_buf *b = w->b;
  if (w->err) return -1;
  size_t hard = b->limit && b->start + b->limit >= b->start ? b->start + b->limit : SIZE_MAX;
  if (b->len > hard || n > hard - b->len) { tw_fail(w, MB_ENC_TOOBIG); return -1; }
  if (b->len + n <= b->cap) return 0;
  size_t cap = b->cap < 64 ? 64 : b->cap;
  while (cap < b->len + n) cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
  if (cap > hard) cap = hard;
  char *d = realloc(b->data, cap);
  if (!d) { tw_fail(w, MB_ENC_NOMEM); return -1; }
  b->data = d;
  b->cap = cap;
  return 0;
}

static void tw_bytes(mb_tw *w, const void *p, size_t n) {
  if (tw_room(w, n)) return;
  if (n) memcpy(w->b->data + w->b->len, p, n);
  w->b->len += n;
}

static size_t put_varint(unsigned char *o, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) { o[n++] = (unsigned char)(v | 0x80); v >>= 7; }
  o[n++] = (unsigned char)v;
  return n;
}

/* One value is about to be written at the current level: count it; a key must
 * not be nil or NaN (the decoder refuses those). */
static int tw_value(mb_tw *w, int bad_key) {
  if (w->err) return -1;
  if (w->depth == 0) {
    if (w->values++) { tw_fail(w, MB_ENC_BADVALUE); return -1; }
    return 0;
  }
  __typeof__(w->open[0]) *o = &w->open[w->depth - 1];
  if (bad_key && o->items >= o->narr && (o->items - o->narr) % 2 == 0) {
    tw_fail(w, MB_ENC_BADVALUE);
    return -1;
  }
  o->items++;
  return 0;
}

static void tw_tagvar(mb_tw *w, int tag, uint64_t v, int bad_key) {
  unsigned char o[1 + VARINT_MAX];
  if (tw_value(w, bad_key)) return;
  o[0] = (unsigned char)tag;
  tw_bytes(w, o, 1 + put_varint(o + 1, v));
}

void mb_tw_begin(mb_tw *w, mb_buf *b) {
  w->b = b;
  w->len0 = b->len;
  w->err = w->depth = w->values = 0;
  unsigned char h = HDR_VERSION;
  tw_bytes(w, &h, 1);
}

void mb_tw_nil(mb_tw *w) {
  unsigned char t = T_NIL;
  if (!tw_value(w, 1)) tw_bytes(w, &t, 1);
}

void mb_tw_bool(mb_tw *w, int v) {
  unsigned char t = v ? T_TRUE : T_FALSE;
  if (!tw_value(w, 0)) tw_bytes(w, &t, 1);
}

void mb_tw_int(mb_tw *w, int64_t v) {
  uint64_t u = (uint64_t)v;
  tw_tagvar(w, T_INT, (u << 1) ^ (0 - (u >> 63)), 0);
}

void mb_tw_float(mb_tw *w, double v) {
  unsigned char o[9];
  if (tw_value(w, isnan(v))) return;
  o[0] = T_FLOAT;
  memcpy(o + 1, &v, 8);
  tw_bytes(w, o, 9);
}

void mb_tw_lstring(mb_tw *w, const char *s, size_t len) {
  tw_tagvar(w, T_STR, len, 0);
  tw_bytes(w, s, len);
}

void mb_tw_string(mb_tw *w, const char *s) { mb_tw_lstring(w, s, strlen(s)); }
void mb_tw_pid(mb_tw *w, mb_pid pid) { tw_tagvar(w, T_PID, pid, 0); }
void mb_tw_ref(mb_tw *w, uint64_t ref) { tw_tagvar(w, T_REF, ref, 0); }

void mb_tw_handle(mb_tw *w, int kind, uint64_t id) {
  unsigned char k = (unsigned char)kind;
  tw_tagvar(w, T_HANDLE, id, 0);
  tw_bytes(w, &k, 1);
}

void mb_tw_encoded(mb_tw *w, const char *p, size_t len) {
  if (len < 2 || (unsigned char)p[0] != HDR_VERSION) {   /* back-references: numbered for that encoding only */
    char *t = mb_reason_render(p, len, 4096);
    mb_tw_string(w, t ? t : "?");
    free(t);
    return;
  }
  if (tw_value(w, 0)) return;
  tw_bytes(w, p + 1, len - 1);
}

void mb_tw_table(mb_tw *w, uint64_t narr) {
  if (!w->err && w->depth >= MB_TW_MAXDEPTH) tw_fail(w, MB_ENC_DEEP);
  tw_tagvar(w, T_TABLE, narr, 0);
  static const unsigned char zero[4];
  tw_bytes(w, zero, 4);   /* the pair count, patched by mb_tw_end */
  if (w->err) return;
  w->open[w->depth].hpos = w->b->len - 4;
  w->open[w->depth].narr = narr;
  w->open[w->depth].items = 0;
  w->depth++;
}

void mb_tw_end(mb_tw *w) {
  if (w->err) return;
  if (w->depth == 0) { tw_fail(w, MB_ENC_BADVALUE); return; }
  __typeof__(w->open[0]) *o = &w->open[--w->depth];
  if (o->items < o->narr || (o->items - o->narr) % 2) { tw_fail(w, MB_ENC_BADVALUE); return; }
  uint64_t nh = (o->items - o->narr) / 2;
  if (nh > UINT32_MAX) { tw_fail(w, MB_ENC_TOOBIG); return; }
  uint32_t h = (uint32_t)nh;
  memcpy(w->b->data + o->hpos, &h, 4);
}

int mb_tw_finish(mb_tw *w) {
  if (!w->err && (w->depth || w->values != 1)) tw_fail(w, MB_ENC_BADVALUE);
  if (w->err) w->b->len = w->len0;
  return w->err;
}

/* ---------------------------------------------------------------- reader */

static size_t left_bytes(const unsigned char *p, const unsigned char *end) { return (size_t)(end - p); }

static int get_varint(const unsigned char **pp, const unsigned char *end, uint64_t *out) {
  const unsigned char *p = *pp;
  uint64_t v = 0;
  for (int shift = 0; shift < 7 * VARINT_MAX; shift += 7) {
    if (p == end) return -1;
    unsigned c = *p++;
    if (shift == 63 && c > 1) return -1;
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) { *out = v; *pp = p; return 0; }
  }
  return -1;
}

/* A table's header after its tag: the same bounds as the decoder's. */
static int get_table(const unsigned char **pp, const unsigned char *end, uint64_t *narr, uint32_t *nh) {
  const unsigned char *p = *pp;
  if (get_varint(&p, end, narr) || *narr > left_bytes(p, end) || left_bytes(p, end) - *narr < 4) return -1;
  memcpy(nh, p, 4);
  p += 4;
  if ((uint64_t)*nh * 2 > left_bytes(p, end) - *narr) return -1;
  *pp = p;
  return 0;
}

/* The check at open: one walk of the whole encoding, numbering tables as the
 * decoder does (pre-order) and refusing what it refuses. */
typedef struct chk {
  const unsigned char *p, *end, *base;
  int backrefs, depth;
  uint32_t ntabs;
  size_t cap;
  mb_tr_tab *tabs;
  uint32_t open[MB_CODEC_MAXDEPTH];
} chk;

static size_t len_of(const chk *c) { return (size_t)(c->end - c->base); }

static int chk_value(chk *c, int is_key) {
  uint64_t v;
  if (c->p == c->end) return -1;
  int tag = *c->p++;
  switch (tag) {
  case T_NIL: return is_key ? -1 : 0;
  case T_FALSE: case T_TRUE: return 0;
  case T_INT: case T_PID: case T_REF: return get_varint(&c->p, c->end, &v);
  case T_HANDLE:   /* what mb_push_handle accepts: a kind 1..15, an id off slot 0 */
    if (get_varint(&c->p, c->end, &v) || c->p == c->end) return -1;
    return *c->p > 0 && *c->p++ < MB_HANDLE_KINDS && v % MB_HANDLE_CAP != 0 ? 0 : -1;
  case T_FLOAT: {
    double d;
    if (left_bytes(c->p, c->end) < 8) return -1;
    memcpy(&d, c->p, 8);
    c->p += 8;
    return is_key && isnan(d) ? -1 : 0;
  }
  case T_STR:
    if (get_varint(&c->p, c->end, &v) || v > left_bytes(c->p, c->end)) return -1;
    c->p += v;
    return 0;
  case T_BACKREF:
    if (!c->backrefs || get_varint(&c->p, c->end, &v) || v >= c->ntabs) return -1;
    for (int i = 0; i < c->depth; i++)
      if (c->open[i] == v) return -1;
    return 0;
  case T_TABLE: {
    uint64_t narr;
    uint32_t nh;
    size_t at = (size_t)(c->p - 1 - c->base);
    if (c->depth >= MB_CODEC_MAXDEPTH || c->ntabs == UINT32_MAX || (c->backrefs && len_of(c) > UINT32_MAX) ||
        get_table(&c->p, c->end, &narr, &nh))
      return -1;
    if (c->backrefs) {
      if (c->ntabs == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        mb_tr_tab *t = realloc(c->tabs, cap * sizeof *t);
        if (!t) return -1;
        c->tabs = t;
        c->cap = cap;
      }
      c->tabs[c->ntabs].at = (uint32_t)at;
    }
    uint32_t k = c->ntabs++;
    c->open[c->depth++] = k;
    for (uint64_t i = 0; i < narr; i++)
      if (chk_value(c, 0)) return -1;
    for (uint32_t i = 0; i < nh; i++)
      if (chk_value(c, 1) || chk_value(c, 0)) return -1;
    c->depth--;
    if (c->backrefs) c->tabs[k].end = (uint32_t)(c->p - c->base);
    return 0;
  }
  default:
    return -1;
  }
}

int mb_tr_open(mb_tr *r, const char *p, size_t len) {
  memset(r, 0, offsetof(mb_tr, lv));
  if (!p || !len || (((unsigned char)p[0]) & ~HDR_BACKREFS) != HDR_VERSION) return -1;
  chk c = { 0 };
  c.base = (const unsigned char *)p;
  c.p = c.base + 1;
  c.end = c.base + len;
  c.backrefs = (c.base[0] & HDR_BACKREFS) != 0;
  if (chk_value(&c, 0) || c.p != c.end) { free(c.tabs); return -1; }
  r->base = c.base;
  r->p = c.base + 1;
  r->end = c.end;
  r->tabs = c.tabs;
  r->ntabs = c.ntabs;
  r->depth = 0;
  r->lv[0].ret = NULL;
  r->lv[0].left = 1;
  return 0;
}

void mb_tr_close(mb_tr *r) {
  free(r->tabs);
  r->tabs = NULL;
  r->p = r->end;
  r->depth = 0;
  r->lv[0].left = 0;
}

/* From here on the encoding is known good: reads still stay in bounds. */

uint64_t mb_tr_left(const mb_tr *r) { return r->base ? r->lv[r->depth].left : 0; }

int mb_tr_type(const mb_tr *r) {
  if (!mb_tr_left(r) || r->p >= r->end) return MB_TT_NONE;
  switch (*r->p) {
  case T_NIL: return MB_TT_NIL;
  case T_FALSE: case T_TRUE: return MB_TT_BOOL;
  case T_INT: return MB_TT_INT;
  case T_FLOAT: return MB_TT_FLOAT;
  case T_STR: return MB_TT_STR;
  case T_PID: return MB_TT_PID;
  case T_REF: return MB_TT_REF;
  case T_HANDLE: return MB_TT_HANDLE;
  case T_TABLE: case T_BACKREF: return MB_TT_TABLE;
  default: return MB_TT_NONE;
  }
}

static int take(mb_tr *r, int type) {
  if (mb_tr_type(r) != type) return -1;
  r->lv[r->depth].left--;
  return 0;
}

int mb_tr_nil(mb_tr *r) {
  if (take(r, MB_TT_NIL)) return -1;
  r->p++;
  return 0;
}

int mb_tr_bool(mb_tr *r, int *v) {
  if (take(r, MB_TT_BOOL)) return -1;
  *v = *r->p++ == T_TRUE;
  return 0;
}

static int take_varint(mb_tr *r, int type, uint64_t *v) {
  const unsigned char *p = r->p + 1;
  if (mb_tr_type(r) != type || get_varint(&p, r->end, v)) return -1;
  take(r, type);
  r->p = p;
  return 0;
}

int mb_tr_int(mb_tr *r, int64_t *v) {
  uint64_t u;
  if (take_varint(r, MB_TT_INT, &u)) return -1;
  *v = (int64_t)((u >> 1) ^ (0 - (u & 1)));
  return 0;
}

int mb_tr_float(mb_tr *r, double *v) {
  if (mb_tr_type(r) != MB_TT_FLOAT || left_bytes(r->p + 1, r->end) < 8) return -1;
  take(r, MB_TT_FLOAT);
  memcpy(v, r->p + 1, 8);
  r->p += 9;
  return 0;
}

int mb_tr_number(mb_tr *r, double *v) {
  int64_t i;
  if (mb_tr_type(r) == MB_TT_INT) {
    if (mb_tr_int(r, &i)) return -1;
    *v = (double)i;
    return 0;
  }
  return mb_tr_float(r, v);
}

int mb_tr_string(mb_tr *r, const char **s, size_t *len) {
  uint64_t n;
  const unsigned char *p = r->p + 1;
  if (mb_tr_type(r) != MB_TT_STR || get_varint(&p, r->end, &n) || n > left_bytes(p, r->end)) return -1;
  take(r, MB_TT_STR);
  *s = (const char *)p;
  *len = (size_t)n;
  r->p = p + n;
  return 0;
}

int mb_tr_is_string(mb_tr *r, const char *s) {
  /* only the cursor and this level's count move (not the whole reader: 3 KB) */
  const unsigned char *p = r->p;
  uint64_t left = r->lv[r->depth].left;
  const char *v;
  size_t n;
  if (mb_tr_string(r, &v, &n)) return 0;
  if (n == strlen(s) && memcmp(v, s, n) == 0) return 1;
  r->p = p;
  r->lv[r->depth].left = left;
  return 0;
}

int mb_tr_pid(mb_tr *r, mb_pid *v) { return take_varint(r, MB_TT_PID, v); }
int mb_tr_ref(mb_tr *r, uint64_t *v) { return take_varint(r, MB_TT_REF, v); }

int mb_tr_handle(mb_tr *r, int *kind, uint64_t *id) {
  if (mb_tr_type(r) != MB_TT_HANDLE) return -1;
  if (take_varint(r, MB_TT_HANDLE, id)) return -1;   /* the tag and the id; the kind byte follows */
  *kind = *r->p++;
  return 0;
}

/* Step over one value at p (known good), no bookkeeping. A back-reference is a
 * tag and a varint here: its table is elsewhere. */
static int walk(const unsigned char **pp, const unsigned char *end, int depth) {
  const unsigned char *p = *pp;
  uint64_t v;
  if (p == end || depth > MB_CODEC_MAXDEPTH) return -1;
  switch (*p++) {
  case T_NIL: case T_FALSE: case T_TRUE: break;
  case T_INT: case T_PID: case T_REF: case T_BACKREF:
    if (get_varint(&p, end, &v)) return -1;
    break;
  case T_HANDLE:
    if (get_varint(&p, end, &v) || p == end) return -1;
    p++;
    break;
  case T_FLOAT:
    if (left_bytes(p, end) < 8) return -1;
    p += 8;
    break;
  case T_STR:
    if (get_varint(&p, end, &v) || v > left_bytes(p, end)) return -1;
    p += v;
    break;
  case T_TABLE: {
    uint32_t nh;
    if (get_table(&p, end, &v, &nh)) return -1;
    for (uint64_t i = 0; i < v + 2 * (uint64_t)nh; i++)
      if (walk(&p, end, depth + 1)) return -1;
    break;
  }
  default:
    return -1;
  }
  *pp = p;
  return 0;
}

/* The end of the table at p, by its number, when the tables are numbered: a
 * table reached again and again through back-references is not walked again. */
static const unsigned char *numbered_end(const mb_tr *r, const unsigned char *p) {
  if (!r->tabs || *p != T_TABLE) return NULL;
  uint32_t at = (uint32_t)(p - r->base), lo = 0, hi = r->ntabs;
  while (lo < hi) {   /* tables are numbered in the order of their offsets */
    uint32_t mid = lo + (hi - lo) / 2;
    if (r->tabs[mid].at < at) lo = mid + 1;
    else hi = mid;
  }
  return lo < r->ntabs && r->tabs[lo].at == at ? r->base + r->tabs[lo].end : NULL;
}

int mb_tr_skip(mb_tr *r) {
  const unsigned char *p = r->p;
  if (mb_tr_type(r) == MB_TT_NONE) return -1;
  const unsigned char *e = numbered_end(r, p);
  if (e) p = e;
  else if (walk(&p, r->end, 0)) return -1;
  r->lv[r->depth].left--;
  r->p = p;
  return 0;
}

int mb_tr_enter(mb_tr *r, uint64_t *narr, uint32_t *nh) {
  const unsigned char *p = r->p + 1, *ret = NULL;
  if (mb_tr_type(r) != MB_TT_TABLE || r->depth >= MB_TR_MAXDEPTH) return -1;
  if (*r->p == T_BACKREF) {
    uint64_t k;
    if (get_varint(&p, r->end, &k) || k >= r->ntabs || !r->tabs) return -1;
    ret = p;
    p = r->base + r->tabs[k].at + 1;
  }
  if (get_table(&p, r->end, narr, nh)) return -1;
  r->lv[r->depth].left--;
  r->depth++;
  r->lv[r->depth].ret = ret;
  r->lv[r->depth].left = *narr + 2 * (uint64_t)*nh;
  r->p = p;
  return 0;
}

int mb_tr_leave(mb_tr *r) {
  if (r->depth == 0) return -1;
  while (r->lv[r->depth].left)
    if (mb_tr_skip(r)) return -1;
  if (r->lv[r->depth].ret) r->p = r->lv[r->depth].ret;
  r->depth--;
  return 0;
}

/* ---------------------------------------------------------------- rendering */

typedef struct out { char *s; size_t len, max; int full; } out;

static void put(out *o, const char *t, size_t n) {
  if (o->full) return;
  if (n > o->max - o->len) { n = o->max - o->len; o->full = 1; }
  memcpy(o->s + o->len, t, n);
  o->len += n;
}

static void puts_(out *o, const char *t) { put(o, t, strlen(t)); }

/* string.format("%q", s) of Lua 5.4 (C locale). */
static void put_quoted(out *o, const char *s, size_t n) {
  put(o, "\"", 1);
  for (size_t i = 0; i < n && !o->full; i++) {
    unsigned char c = (unsigned char)s[i];
    char e[8];
    if (c == '"' || c == '\\' || c == '\n') {
      e[0] = '\\';
      e[1] = (char)c;
      put(o, e, 2);
    } else if (c < 32 || c == 127) {
      int digit_next = i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9';
      snprintf(e, sizeof e, digit_next ? "\\%03d" : "\\%d", c);
      puts_(o, e);
    } else {
      put(o, (const char *)&s[i], 1);
    }
  }
  put(o, "\"", 1);
}

/* tostring of a number, as Lua writes it. */
static void put_int(out *o, int64_t i) {
  char t[32];
  snprintf(t, sizeof t, "%lld", (long long)i);
  puts_(o, t);
}

static void put_float(out *o, double d) {
  char t[64];
  snprintf(t, sizeof t, "%.14g", d);
  if (t[strspn(t, "-0123456789")] == '\0') strcat(t, ".0");
  puts_(o, t);
}

static int render(mb_tr *r, out *o, int depth) {
  const char *s;
  size_t n;
  int64_t i;
  double d;
  uint64_t u, narr;
  uint32_t nh;
  int b;
  char t[48];
  switch (mb_tr_type(r)) {
  case MB_TT_NIL: puts_(o, "nil"); return mb_tr_nil(r);
  case MB_TT_BOOL: if (mb_tr_bool(r, &b)) return -1; puts_(o, b ? "true" : "false"); return 0;
  case MB_TT_INT: if (mb_tr_int(r, &i)) return -1; put_int(o, i); return 0;
  case MB_TT_FLOAT: if (mb_tr_float(r, &d)) return -1; put_float(o, d); return 0;
  case MB_TT_STR:
    if (mb_tr_string(r, &s, &n)) return -1;
    if (depth > 0) put_quoted(o, s, n);
    else put(o, s, n);
    return 0;
  case MB_TT_PID:
    if (mb_tr_pid(r, &u)) return -1;
    snprintf(t, sizeof t, "<0.%llu>", (unsigned long long)u);
    puts_(o, t);
    return 0;
  case MB_TT_REF:
    if (mb_tr_ref(r, &u)) return -1;
    snprintf(t, sizeof t, "#Ref<0.%llu>", (unsigned long long)u);
    puts_(o, t);
    return 0;
  case MB_TT_HANDLE: {
    int kind;
    if (mb_tr_handle(r, &kind, &u)) return -1;
    snprintf(t, sizeof t, "#Port<0.%llu>", (unsigned long long)u);
    puts_(o, t);
    return 0;
  }
  case MB_TT_TABLE:
    if (depth > 4) { puts_(o, "{...}"); return mb_tr_skip(r); }
    if (mb_tr_enter(r, &narr, &nh)) return -1;
    put(o, "{", 1);
    for (uint64_t k = 0; k < narr + nh && !o->full; k++) {
      if (k) put(o, ", ", 2);
      if (k >= narr) {
        put(o, "[", 1);
        if (render(r, o, depth + 1)) return -1;
        put(o, "] = ", 4);
      }
      if (render(r, o, depth + 1)) return -1;
    }
    put(o, "}", 1);
    return o->full ? 0 : mb_tr_leave(r);
  default:
    return -1;
  }
}

char *mb_reason_render(const char *p, size_t len, size_t max) {
  static const char corrupt[] = "<corrupt>";
  if (max < 16) max = 16;
  out o = { malloc(max + 1), 0, max, 0 };
  if (!o.s) return NULL;
  mb_tr r;
  if (mb_tr_open(&r, p, len) != 0) {
    memcpy(o.s, corrupt, sizeof corrupt);
    return o.s;
  }
  int st = render(&r, &o, 0);
  mb_tr_close(&r);
  if (st && !o.full) {
    memcpy(o.s, corrupt, sizeof corrupt);
    return o.s;
  }
  if (o.full) {
    o.len = max - 3;
    memcpy(o.s + o.len, "...", 3);
    o.len += 3;
  }
  o.s[o.len] = '\0';
  return o.s;
}
