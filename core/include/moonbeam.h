/* moonbeam.h: the embedding API of moonbeam (SPEC section 7); the only public header. */
#ifndef MOONBEAM_H
#define MOONBEAM_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's exported names; everything else in it is hidden. */
#if defined(__GNUC__)
#define MB_API __attribute__((visibility("default")))
#else
#define MB_API
#endif

#define MB_VERSION_MAJOR 0
#define MB_VERSION_MINOR 1
#define MB_VERSION_PATCH 0
#define MB_VERSION_STRING "0.1.0"

/* A process identifier. Its value is the ID printed as "<0.ID>"; never reused in a node. */
typedef uint64_t mb_pid;

/* Error codes: negative ints, named by mb_strerror(). */
#define MB_OK        0
#define MB_ENOMEM   (-1)   /* out of memory */
#define MB_EINVAL   (-2)   /* bad argument */
#define MB_ENOPROC  (-3)   /* no such process */
#define MB_ENOTFOUND (-4)  /* module or name not found */
#define MB_ETIMEOUT (-5)   /* timed out */
#define MB_ESTATE   (-6)   /* node in the wrong state for this call */
#define MB_EBADMSG  (-7)   /* value cannot be sent */
#define MB_ETOOBIG  (-8)   /* message over the size limit */
#define MB_ELIMIT   (-9)   /* process table full */
#define MB_ESYS     (-10)  /* a system call failed */

typedef struct mb_node mb_node;

typedef struct mb_node_opts {
  int schedulers;          /* scheduler threads; 0 = number of cores */
  const char *path;        /* script search path, ';'-separated templates; NULL = default */
  const char *log_level;   /* "debug", "info", "warning", "error", "none"; NULL = "info" */
  size_t max_message;      /* encoded message size limit; 0 = 64 MiB */
  uint32_t max_processes;  /* process table size; 0 = 1048576 */
  int preempt_signal;      /* real-time signal used for preemption; 0 = SIGRTMIN+3, -1 = off */
  int handle_signals;      /* nonzero: SIGINT/SIGTERM shut the node down (the CLI sets this) */
  int c_modules;           /* nonzero: processes may load C modules (package.cpath, package.loadlib);
                              0: refused, since a C module can reach anything and stop the node */
} mb_node_opts;

struct lua_State;
typedef int (*mb_lua_CFunction)(struct lua_State *L);

MB_API const char *mb_version_string(void);
MB_API const char *mb_strerror(int code);

MB_API mb_node *mb_node_new(const mb_node_opts *opts);
MB_API int mb_node_start(mb_node *node);   /* start scheduler threads in the background */
MB_API int mb_node_wait(mb_node *node);    /* wait until the node has stopped; returns its exit status */
MB_API int mb_node_run(mb_node *node);     /* start + wait until no process is alive */
MB_API int mb_node_stop(mb_node *node);    /* stop: kill every process, join all threads; idempotent */
MB_API void mb_node_free(mb_node *node);

/* A module every process can `require` (call before mb_node_start: MB_ESTATE after). */
MB_API int mb_node_preload(mb_node *node, const char *name, mb_lua_CFunction open);

/* Spawn `module` with the nargs values on top of L (the embedder's state, used only
 * to carry values; they are popped). */
MB_API int mb_spawn(mb_node *node, const char *module, struct lua_State *L, int nargs, mb_pid *pid);
/* Extension: spawn a script by file path with string arguments (the CLI's first process). */
MB_API int mb_spawn_script(mb_node *node, const char *path, int argc, char **argv, mb_pid *pid);
/* Send the value at idx of L. MB_ENOPROC for a dead pid / unknown name. */
MB_API int mb_send(mb_node *node, mb_pid pid, struct lua_State *L, int idx);
MB_API int mb_send_named(mb_node *node, const char *name, struct lua_State *L, int idx);
MB_API int mb_whereis(mb_node *node, const char *name, mb_pid *pid);

#ifdef __cplusplus
}
#endif
#endif
