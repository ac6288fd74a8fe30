/* nodecheck: what the node-level C tests share on top of check.h. */
#ifndef MB_NODECHECK_H
#define MB_NODECHECK_H

#include "check.h"
#include "moonbeam.h"

/* A node that logs nothing (crash reports would clutter the test output). */
static inline mb_node *check_quiet_node(int schedulers) {
  mb_node_opts o = { 0 };
  o.schedulers = schedulers;
  o.log_level = "none";
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  return n;
}

#endif
