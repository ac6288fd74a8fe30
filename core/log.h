/* log: the node's log lines on stderr (time, level, pid) and its level. */
#ifndef MB_LOG_H
#define MB_LOG_H

#include "moonbeam.h"
typedef struct mb_node mb_node;

enum { MB_LOG_DEBUG, MB_LOG_INFO, MB_LOG_WARNING, MB_LOG_ERROR, MB_LOG_NONE };

int mb_log_level_parse(const char *name);   /* -1 if unknown */
const char *mb_log_level_name(int level);
int mb_log_enabled(mb_node *n, int level);
/* One line, written with one write(2). pid 0 = the node itself. */
void mb_log(mb_node *n, int level, mb_pid pid, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void mb_log_str(mb_node *n, int level, mb_pid pid, const char *msg, size_t len);

#endif
