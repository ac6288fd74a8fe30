/* test_alloc: the arena's blocks that start a cache line (mb_arena_alloc_lines), which
 * the process structs come from. */
#include <stdint.h>
#include <string.h>
#include "nodecheck.h"
#include "alloc.h"
#include "proc.h"

#define LINES 512
#define ROUNDS 6000   /* ~3 MiB of line blocks: several chunks */

/* Line blocks between small blocks of every odd size: each starts a line, none
 * overlaps another (each keeps the pattern written into it), through new chunks;
 * with a scheduler's cache and with the arena's shared one. */
static void lines_among_small_blocks(mb_acache *c) {
  mb_arena a;
  mb_arena_init(&a);
  static unsigned char *blocks[ROUNDS];
  static size_t small_size[ROUNDS];
  static unsigned char *small[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    small_size[i] = (size_t)(8 + (i * 40) % 200);
    small[i] = mb_arena_realloc(&a, c, NULL, 0, small_size[i]);
    CHECK(small[i] != NULL);
    memset(small[i], 0xA5, small_size[i]);
    blocks[i] = mb_arena_alloc_lines(&a, c, LINES);
    CHECK(blocks[i] != NULL);
    CHECK_EQ_INT((int)((uintptr_t)blocks[i] % 64), 0);
    memset(blocks[i], i & 0xff, LINES);
  }
  for (int i = 0; i < ROUNDS; i++) {
    for (size_t k = 0; k < LINES; k++) CHECK_EQ_INT(blocks[i][k], i & 0xff);
    for (size_t k = 0; k < small_size[i]; k++) CHECK_EQ_INT(small[i][k], 0xA5);
  }
  for (int i = 0; i < ROUNDS; i++) {
    mb_arena_realloc(&a, c, blocks[i], LINES, 0);
    mb_arena_realloc(&a, c, small[i], small_size[i], 0);
  }
  mb_arena_free(&a);
}

TEST(line_blocks_start_a_line_and_keep_apart) {
  mb_acache c;
  memset(&c, 0, sizeof c);
  lines_among_small_blocks(&c);
  lines_among_small_blocks(NULL);
}

#ifndef MB_ALLOC_PLAIN
/* The bytes skipped to reach a line are not lost: they are the next block of
 * their size. */
TEST(the_gap_before_a_line_block_is_reused) {
  mb_arena a;
  mb_arena_init(&a);
  mb_acache c;
  memset(&c, 0, sizeof c);
  unsigned char *first = mb_arena_alloc_lines(&a, &c, LINES);
  unsigned char *odd = mb_arena_realloc(&a, &c, NULL, 0, 8);   /* right after it: 8 past a line */
  CHECK(odd == first + LINES);
  unsigned char *next = mb_arena_alloc_lines(&a, &c, LINES);
  CHECK(next == first + LINES + 64);
  CHECK(mb_arena_realloc(&a, &c, NULL, 0, 56) == odd + 8);
  mb_arena_free(&a);
}
#endif

/* Every process struct starts a line, so its fields grouped by line (proc.h) take
 * the lines they were grouped in. */
TEST(process_structs_start_a_cache_line) {
  mb_node *n = check_quiet_node(1);
  mb_proc *p[64];
  for (int i = 0; i < 64; i++) {
    p[i] = mb_proc_alloc(n, MB_PK_EXTERNAL);
    CHECK(p[i] != NULL);
    CHECK_EQ_INT((int)((uintptr_t)p[i] % 64), 0);
  }
  for (int i = 0; i < 64; i++) mb_proc_finish(p[i], mb_sig_static("normal"));
  mb_node_free(n);
}

TEST_MAIN(CHECK_CASE(line_blocks_start_a_line_and_keep_apart),
#ifndef MB_ALLOC_PLAIN
          CHECK_CASE(the_gap_before_a_line_block_is_reused),
#endif
          CHECK_CASE(process_structs_start_a_cache_line))
