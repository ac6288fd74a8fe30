/* log: formats one line per event (UTC time, level, pid, text) and writes it to
 * stderr with a single write(2), so lines from concurrent processes never mix. */
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
  size_t total = (size_t)h + len + 1;
  char stackbuf[1024];
  char *line = total <= sizeof stackbuf ? stackbuf : malloc(total);
  if (!line) return;
  memcpy(line, head, h);
  memcpy(line + h, msg, len);
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
