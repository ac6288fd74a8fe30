/* log: formats one entry per event (UTC time, level, pid, text) and writes it to
 * stderr with a single write(2), so entries from concurrent processes never mix.
 * An entry is one line unless its text holds newlines (a crash report's
 * traceback): then each continuation line is indented, so that no text can
 * forge what looks like another entry; other control characters are escaped. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "node.h"

static const char *const names[] = { "debug", "info", "warning", "error", "none" };

int mb_log_level_parse(const char *name) {
  for (int i = 0; i <= MB_LOG_NONE; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

const char *mb_log_level_name(int level) {
  return level >= 0 && level <= MB_LOG_NONE ? names[level] : "?";
}

int mb_log_enabled(mb_node *n, int level) {
  return level >= atomic_load_explicit(&n->log_level, memory_order_relaxed);
}

#define INDENT "    "

static size_t escaped_len(unsigned char c) {
  if (c == '\n') return 1 + sizeof INDENT - 1;
  if ((c < 0x20 && c != '\t') || c == 0x7f) return 4;   /* \xNN */
  return 1;
}

static char *put_escaped(char *w, unsigned char c) {
  if (c == '\n') {
    *w++ = '\n';
    memcpy(w, INDENT, sizeof INDENT - 1);
    return w + sizeof INDENT - 1;
  }
  if ((c < 0x20 && c != '\t') || c == 0x7f) {
    static const char hex[] = "0123456789abcdef";
    *w++ = '\\'; *w++ = 'x'; *w++ = hex[c >> 4]; *w++ = hex[c & 15];
    return w;
  }
  *w++ = (char)c;
  return w;
}

void mb_log_str(mb_node *n, int level, mb_pid pid, const char *msg, size_t len) {
  if (n && !mb_log_enabled(n, level)) return;
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  char head[96];
  int h = snprintf(head, sizeof head, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
  if (pid) h += snprintf(head + h, sizeof head - h, "<0.%llu> ", (unsigned long long)pid);
  if (h < 0 || (size_t)h >= sizeof head) h = (int)strlen(head);   /* never: the head fits */
  size_t body = 0;
  for (size_t i = 0; i < len; i++) body += escaped_len((unsigned char)msg[i]);
  size_t total = (size_t)h + body + 1;
  char stackbuf[1024];
  char *line = total <= sizeof stackbuf ? stackbuf : malloc(total);
  if (!line) return;
  memcpy(line, head, h);
  char *w = line + h;
  for (size_t i = 0; i < len; i++) w = put_escaped(w, (unsigned char)msg[i]);
  line[total - 1] = '\n';
  size_t off = 0;
  while (off < total) {
    ssize_t w = write(2, line + off, total - off);
    if (w <= 0) break;
    off += (size_t)w;
  }
  if (line != stackbuf) free(line);
}

void mb_log(mb_node *n, int level, mb_pid pid, const char *fmt, ...) {
  if (n && !mb_log_enabled(n, level)) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (len < 0) return;
  if ((size_t)len < sizeof buf) { mb_log_str(n, level, pid, buf, (size_t)len); return; }
  char *big = malloc((size_t)len + 1);
  if (!big) return;
  va_start(ap, fmt);
  vsnprintf(big, (size_t)len + 1, fmt, ap);
  va_end(ap);
  mb_log_str(n, level, pid, big, (size_t)len);
  free(big);
}
