/* supspec: supervisor specs read from their normal form (core/supspec.h) with the
 * checked term reader, deep copies and freeing. The parsed structs own every
 * string they point to (malloc'd, NUL-terminated); nothing points into the
 * encoding. Any bytes may arrive here: what is not a normal form is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "supspec.h"
#include "codec_format.h"
#include "cterm.h"

_Static_assert(3 * MB_SUP_MAXNEST + 3 <= MB_TW_MAXDEPTH, "nested specs fit the encoder");

typedef struct parse {
  mb_tr r;
  char *err;
  size_t errlen;
} parse;

static int bad(parse *ps, const char *what) {
  if (ps->err && ps->errlen) snprintf(ps->err, ps->errlen, "malformed spec: %s", what);
  return -1;
}

static int nomem(parse *ps) {
  if (ps->err && ps->errlen) snprintf(ps->err, ps->errlen, "not enough memory");
  return -1;
}

static char *dup_bytes(const char *s, size_t len) {
  char *d = malloc(len + 1);
  if (!d) return NULL;
  if (len) memcpy(d, s, len);
  d[len] = '\0';
  return d;
}

/* The next value, a string, copied out; -1 with err set. */
static int take_string(parse *ps, char **out, size_t *len, const char *field) {
  const char *s;
  size_t n;
  if (mb_tr_string(&ps->r, &s, &n)) return bad(ps, field);
  if (!(*out = dup_bytes(s, n))) return nomem(ps);
  if (len) *len = n;
  return 0;
}

/* The next value, an integer in [lo, hi]. */
static int take_int(parse *ps, int64_t *v, int64_t lo, int64_t hi, const char *field) {
  if (mb_tr_int(&ps->r, v) || *v < lo || *v > hi) return bad(ps, field);
  return 0;
}

static int take_enum(parse *ps, int *v, int hi, const char *field) {
  int64_t i;
  if (take_int(ps, &i, 0, hi, field)) return -1;
  *v = (int)i;
  return 0;
}

/* The key of the next pair: its index in names, or -1 (not a string, or unknown:
 * the pair is skipped by the caller). */
static int field_of(parse *ps, const char *const *names, int n) {
  const char *k;
  size_t kl;
  if (mb_tr_string(&ps->r, &k, &kl)) { mb_tr_skip(&ps->r); return -1; }
  for (int i = 0; i < n; i++)
    if (strlen(names[i]) == kl && memcmp(names[i], k, kl) == 0) return i;
  return -1;
}

/* The next value, a table of fields (no array items): each field is read by fn
 * (f = its index in names, -1 for one to skip), none twice, those in need present. */
typedef int (*field_fn)(parse *ps, void *obj, int f, int depth);
static int read_fields(parse *ps, const char *const *names, int n, unsigned need, field_fn fn, void *obj, int depth) {
  uint64_t narr;
  uint32_t nh;
  unsigned seen = 0;
  if (mb_tr_enter(&ps->r, &narr, &nh) || narr) return bad(ps, "not a table of fields");
  for (uint32_t k = 0; k < nh; k++) {
    int f = field_of(ps, names, n);
    if (f >= 0 && (seen & (1u << f))) return bad(ps, "a field twice");
    if (f >= 0) seen |= 1u << f;
    if (fn(ps, obj, f, depth)) return -1;
  }
  if (mb_tr_leave(&ps->r)) return bad(ps, "not a table of fields");
  return (seen & need) == need ? 0 : bad(ps, "a field missing");
}

static mb_sup_spec *parse_sup(parse *ps, int depth);

enum { C_ID, C_MODULE, C_ARGS, C_NAME, C_KIND, C_RESTART, C_SHUTDOWN, C_TYPE, C_SPEC, C_NFIELDS };
static const char *const child_fields[C_NFIELDS] = {
  "id", "module", "args", "name", "kind", "restart", "shutdown", "type", "spec" };

static int child_field(parse *ps, void *obj, int f, int depth) {
  mb_child_spec *c = obj;
  int64_t i;
  size_t len;
  mb_tr t;
  switch (f) {
  case C_ID:
    if (mb_tr_type(&ps->r) == MB_TT_INT) {
      c->id_is_int = 1;
      return mb_tr_int(&ps->r, &c->id_int);
    }
    return take_string(ps, &c->id, &c->id_len, "child id");
  case C_MODULE:
    if (take_string(ps, &c->module, &len, "child module")) return -1;
    return memchr(c->module, '\0', len) ? bad(ps, "child module: a NUL byte") : 0;
  case C_ARGS:
    if (take_string(ps, &c->args, &c->args_len, "child args")) return -1;
    if (mb_tr_open(&t, c->args, c->args_len)) return bad(ps, "child args: not an encoding");
    mb_tr_close(&t);
    return 0;
  case C_NAME: return take_string(ps, &c->name, &c->name_len, "child name");
  case C_KIND: return take_enum(ps, &c->kind, MB_CHILD_PROCESS, "child kind");
  case C_RESTART: return take_enum(ps, &c->restart, MB_RESTART_TEMPORARY, "child restart");
  case C_TYPE: return take_enum(ps, &c->type, MB_TYPE_SUPERVISOR, "child type");
  case C_SHUTDOWN:
    if (take_int(ps, &i, MB_SHUTDOWN_INFINITY, INT64_MAX, "child shutdown")) return -1;
    c->shutdown = i;
    return 0;
  case C_SPEC:
    if (depth >= MB_SUP_MAXNEST) return bad(ps, "nested too deeply");
    return (c->spec = parse_sup(ps, depth + 1)) ? 0 : -1;
  default:
    return mb_tr_skip(&ps->r) ? bad(ps, "child spec") : 0;
  }
}

/* The next value, a child spec table, into c (zeroed first; cleared on failure). */
static int parse_child(parse *ps, mb_child_spec *c, int depth) {
  unsigned need = 1u << C_MODULE | 1u << C_KIND | 1u << C_RESTART | 1u << C_SHUTDOWN | 1u << C_TYPE;
  memset(c, 0, sizeof *c);
  if (read_fields(ps, child_fields, C_NFIELDS, need, child_field, c, depth)) goto fail;
  if ((c->type == MB_TYPE_SUPERVISOR) != (c->spec != NULL)) {
    bad(ps, "a spec goes with type supervisor, and only there");
    goto fail;
  }
  return 0;
fail:
  mb_child_spec_clear(c);
  return -1;
}

enum { S_STRATEGY, S_INTENSITY, S_PERIOD, S_NAME, S_CHILDREN, S_NFIELDS };
static const char *const sup_fields[S_NFIELDS] = { "strategy", "intensity", "period", "name", "children" };

static int parse_children(parse *ps, mb_sup_spec *s, int depth) {
  uint64_t narr;
  uint32_t nh;
  if (mb_tr_enter(&ps->r, &narr, &nh) || nh) return bad(ps, "children: not an array");
  if (narr > (uint64_t)INT32_MAX) return bad(ps, "children: too many");
  int cap = 0;
  for (uint64_t i = 0; i < narr; i++) {
    if (s->nchildren == cap) {   /* grown as they come: a count is no promise of bytes */
      int ncap = cap ? (cap > INT32_MAX / 2 ? INT32_MAX : cap * 2) : 4;
      mb_child_spec *a = realloc(s->children, (size_t)ncap * sizeof *a);
      if (!a) return nomem(ps);
      s->children = a;
      cap = ncap;
    }
    if (parse_child(ps, &s->children[s->nchildren], depth)) return -1;
    s->nchildren++;
  }
  return mb_tr_leave(&ps->r) ? bad(ps, "children") : 0;
}

static int sup_field(parse *ps, void *obj, int f, int depth) {
  mb_sup_spec *s = obj;
  switch (f) {
  case S_STRATEGY: return take_enum(ps, &s->strategy, MB_SUP_REST_FOR_ONE, "strategy");
  case S_INTENSITY: return take_int(ps, &s->intensity, 0, INT64_MAX, "intensity");
  case S_PERIOD:
    if (mb_tr_number(&ps->r, &s->period) || !(s->period > 0)) return bad(ps, "period");
    return 0;
  case S_NAME: return take_string(ps, &s->name, &s->name_len, "name");
  case S_CHILDREN: return parse_children(ps, s, depth);
  default:
    return mb_tr_skip(&ps->r) ? bad(ps, "spec") : 0;
  }
}

/* The next value, a sup spec table; NULL with err set. */
static mb_sup_spec *parse_sup(parse *ps, int depth) {
  unsigned need = 1u << S_STRATEGY | 1u << S_INTENSITY | 1u << S_PERIOD | 1u << S_CHILDREN;
  mb_sup_spec *s = calloc(1, sizeof *s);
  if (!s) { nomem(ps); return NULL; }
  if (read_fields(ps, sup_fields, S_NFIELDS, need, sup_field, s, depth)) {
    mb_sup_spec_free(s);
    return NULL;
  }
  return s;
}

/* Open the encoding: a normal form never shares a table, so an encoding with
 * back-references (which could make a small input expand without bound) is refused. */
static int open_form(parse *ps, const char *p, size_t len, char *err, size_t errlen) {
  ps->err = err;
  ps->errlen = errlen;
  if (!p || !len || ((unsigned char)p[0] & HDR_BACKREFS)) return bad(ps, "not a normal form");
  if (mb_tr_open(&ps->r, p, len)) return bad(ps, "not an encoding");
  return 0;
}

mb_sup_spec *mb_sup_spec_parse(const char *p, size_t len, char *err, size_t errlen) {
  parse ps;
  if (open_form(&ps, p, len, err, errlen)) return NULL;
  mb_sup_spec *s = parse_sup(&ps, 0);
  mb_tr_close(&ps.r);
  return s;
}

int mb_child_spec_parse(const char *p, size_t len, mb_child_spec *out, char *err, size_t errlen) {
  parse ps;
  memset(out, 0, sizeof *out);
  if (open_form(&ps, p, len, err, errlen)) return -1;
  int rc = parse_child(&ps, out, 0);
  mb_tr_close(&ps.r);
  return rc;
}

/* ---- copies and freeing ---- */

static int copy_bytes(char **dst, const char *src, size_t len) {
  *dst = NULL;
  return src && !(*dst = dup_bytes(src, len)) ? -1 : 0;
}

int mb_child_spec_copy(const mb_child_spec *src, mb_child_spec *dst) {
  *dst = *src;
  dst->id = dst->module = dst->args = dst->name = NULL;
  dst->spec = NULL;
  if (copy_bytes(&dst->id, src->id, src->id_len) ||
      copy_bytes(&dst->module, src->module, src->module ? strlen(src->module) : 0) ||
      copy_bytes(&dst->args, src->args, src->args_len) ||
      copy_bytes(&dst->name, src->name, src->name_len) ||
      (src->spec && !(dst->spec = mb_sup_spec_copy(src->spec)))) {
    mb_child_spec_clear(dst);
    return -1;
  }
  return 0;
}

mb_sup_spec *mb_sup_spec_copy(const mb_sup_spec *s) {
  if (!s) return NULL;
  mb_sup_spec *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->strategy = s->strategy;
  d->intensity = s->intensity;
  d->period = s->period;
  d->name_len = s->name_len;
  if (copy_bytes(&d->name, s->name, s->name_len)) goto fail;
  if (s->nchildren > 0) {
    if (!(d->children = calloc((size_t)s->nchildren, sizeof *d->children))) goto fail;
    for (; d->nchildren < s->nchildren; d->nchildren++)
      if (mb_child_spec_copy(&s->children[d->nchildren], &d->children[d->nchildren])) goto fail;
  }
  return d;
fail:
  mb_sup_spec_free(d);
  return NULL;
}

void mb_child_spec_clear(mb_child_spec *c) {
  free(c->id);
  free(c->module);
  free(c->args);
  free(c->name);
  mb_sup_spec_free(c->spec);
  memset(c, 0, sizeof *c);
}

void mb_sup_spec_free(mb_sup_spec *s) {
  if (!s) return;
  for (int i = 0; i < s->nchildren; i++) mb_child_spec_clear(&s->children[i]);
  free(s->children);
  free(s->name);
  free(s);
}
