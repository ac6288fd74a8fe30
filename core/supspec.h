/* supspec: supervisor specs in C (SPEC section 3) — the structs a supervisor
 * (core/supervisor.c) runs on, and their wire form.
 *
 * The Lua face checks a user's spec table and writes its normal form, an encoded
 * term the core parses here without a Lua state:
 *   sup spec   = { strategy = int (MB_SUP_*), intensity = int, period = float (s),
 *                  name = string or absent, children = { child spec, ... } }
 *   child spec = { id = string or int (absent: assign one), module = string,
 *                  args = string (the self-contained encoding of the args value)
 *                         or absent (nil), name = string or absent,
 *                  kind = int (MB_CHILD_*), restart = int (MB_RESTART_*),
 *                  shutdown = int (ms, or MB_SHUTDOWN_BRUTAL / MB_SHUTDOWN_INFINITY),
 *                  type = int (MB_TYPE_*), spec = sup spec (type supervisor only) }
 * Every field of the normal form is present except those marked absent. */
#ifndef MB_SUPSPEC_H
#define MB_SUPSPEC_H

#include <stddef.h>
#include <stdint.h>

enum { MB_SUP_ONE_FOR_ONE, MB_SUP_ONE_FOR_ALL, MB_SUP_REST_FOR_ONE };
enum { MB_CHILD_GEN_SERVER, MB_CHILD_PROCESS };
enum { MB_RESTART_PERMANENT, MB_RESTART_TRANSIENT, MB_RESTART_TEMPORARY };
enum { MB_TYPE_WORKER, MB_TYPE_SUPERVISOR };
#define MB_SHUTDOWN_BRUTAL (-1)
#define MB_SHUTDOWN_INFINITY (-2)
/* Specs nested in specs, the top one at level 0: at most this level (so the
 * normal form stays within the encoder's nesting, three tables a level). */
#define MB_SUP_MAXNEST 32

typedef struct mb_sup_spec mb_sup_spec;

typedef struct mb_child_spec {
  int id_is_int;             /* the id: an integer ... */
  int64_t id_int;
  char *id;                  /* ... or a string of id_len bytes (NUL-terminated); NULL: none given */
  size_t id_len;
  char *module;              /* NUL-terminated */
  char *args;                /* the encoding of the args value, args_len bytes; NULL: nil */
  size_t args_len;
  char *name;                /* registered name, or NULL */
  size_t name_len;
  int kind, restart, type;
  int64_t shutdown;          /* ms >= 0, MB_SHUTDOWN_BRUTAL or MB_SHUTDOWN_INFINITY */
  mb_sup_spec *spec;         /* type supervisor: its spec; else NULL */
} mb_child_spec;

struct mb_sup_spec {
  int strategy;
  int64_t intensity;
  double period;             /* seconds */
  char *name;                /* registered name, or NULL */
  size_t name_len;
  int nchildren;
  mb_child_spec *children;   /* nchildren of them */
};

/* Parse a normal-form encoding. NULL on malformed input or no memory, with err
 * set (for the core's own use: the Lua face has checked the user's spec). */
mb_sup_spec *mb_sup_spec_parse(const char *p, size_t len, char *err, size_t errlen);
/* One child spec in normal form (start_child's request). */
int mb_child_spec_parse(const char *p, size_t len, mb_child_spec *out, char *err, size_t errlen);

/* Deep copies (a sub-supervisor gets its own spec); NULL / -1 without memory. */
mb_sup_spec *mb_sup_spec_copy(const mb_sup_spec *s);
int mb_child_spec_copy(const mb_child_spec *src, mb_child_spec *dst);

void mb_sup_spec_free(mb_sup_spec *s);
void mb_child_spec_clear(mb_child_spec *c);   /* frees what c holds, not c */

#endif
