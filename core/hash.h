/* hash: the core's one string hash (32-bit FNV-1a), for the name tables (code
 * cache, registry); callers reduce it to their bucket count. */
#ifndef MB_HASH_H
#define MB_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t mb_hash_bytes(const void *p, size_t len) {
  const unsigned char *s = p;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ s[i]) * 16777619u;
  return h;
}

/* Same value as mb_hash_bytes(s, strlen(s)). */
static inline uint32_t mb_hash_str(const char *s) { return mb_hash_bytes(s, strlen(s)); }

#endif
