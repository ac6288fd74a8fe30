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
/* Line blocks come from the top of the chunk down, small blocks from its bottom up:
 * line blocks follow each other with no gap between them, whatever small blocks of
 * odd sizes came in between, and small blocks follow each other too. */
TEST(line_blocks_leave_no_gap) {
  mb_arena a;
  mb_arena_init(&a);
  mb_acache c;
  memset(&c, 0, sizeof c);
  unsigned char *first = mb_arena_alloc_lines(&a, &c, LINES);
  unsigned char *odd = mb_arena_realloc(&a, &c, NULL, 0, 8);
  unsigned char *next = mb_arena_alloc_lines(&a, &c, LINES);
  CHECK(next == first - LINES);
  unsigned char *more = mb_arena_realloc(&a, &c, NULL, 0, 56);
  CHECK(more == odd + 8);
  CHECK(mb_arena_alloc_lines(&a, &c, 64) == next - 64);
  mb_arena_free(&a);
}

#define RUN 6000

/* A run that does not fit in the rest of the chunk comes from a new one, and that
 * rest is not lost: small blocks go on using it, then the new chunk's rest, where
 * the runs go on too. */
TEST(a_run_that_does_not_fit_leaves_the_rest_to_small_blocks) {
  mb_arena a;
  mb_arena_init(&a);
  mb_acache c;
  memset(&c, 0, sizeof c);
  unsigned char *small = mb_arena_realloc(&a, &c, NULL, 0, 8), *last = small, *run;
  while ((run = mb_arena_alloc_run(&a, &c, RUN)) == last + (last == small ? 8 : RUN)) last = run;
  unsigned char *rest = mb_arena_realloc(&a, &c, NULL, 0, 8);
  CHECK(rest == last + RUN);                      /* the old chunk's rest */
  CHECK(mb_arena_alloc_run(&a, &c, RUN) == run + RUN);   /* runs: the new chunk */
  unsigned char *p = rest, *q;
  while ((q = mb_arena_realloc(&a, &c, NULL, 0, 8)) == p + 8) p = q;   /* the old rest used up */
  CHECK(q == run + 2 * RUN);                      /* small blocks: the new chunk's rest */
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

#ifndef MB_ALLOC_PLAIN
/* A spare too small for a small block is not taken for it: runs of 2,600 bytes
 * leave 760 at the end of their chunk (1 MiB less its 16-byte header); a 2 KB block
 * asked for once the chunk small blocks use is full comes from a new chunk, not
 * from those 760 bytes and past the chunk's end. */
TEST(a_spare_too_small_for_a_block_is_not_taken) {
  mb_arena a;
  mb_arena_init(&a);
  mb_acache c;
  memset(&c, 0, sizeof c);
  unsigned char *prev = mb_arena_realloc(&a, &c, NULL, 0, 8), *run;
  size_t step = 8;   /* the small block, then the runs, one after the other in the first chunk */
  while ((run = mb_arena_alloc_run(&a, &c, 2600)) == prev + step) { prev = run; step = 2600; }
  /* run: the first of a new chunk, the spare; fill it to its last 800 bytes */
  for (int i = 1; i < 403; i++) {
    unsigned char *next = mb_arena_alloc_run(&a, &c, 2600);
    CHECK(next == run + 2600);
    run = next;
  }
  unsigned char *last_full = run;   /* the spare's last run: 760 bytes after it */
  for (int i = 0; i < 1024; i++) {   /* small blocks use up their chunk, then ask for more */
    unsigned char *b = mb_arena_realloc(&a, &c, NULL, 0, 2048);
    CHECK(b != NULL);
    CHECK(!(b >= last_full + 2600 && b < last_full + 2600 + 2048));
    memset(b, 0x5A, 2048);   /* past a chunk's end: a fault, or another block's bytes */
  }
  mb_arena_free(&a);
}
#endif

TEST_MAIN(CHECK_CASE(line_blocks_start_a_line_and_keep_apart),
#ifndef MB_ALLOC_PLAIN
          CHECK_CASE(line_blocks_leave_no_gap),
          CHECK_CASE(a_run_that_does_not_fit_leaves_the_rest_to_small_blocks),
          CHECK_CASE(a_spare_too_small_for_a_block_is_not_taken),
#endif
          CHECK_CASE(process_structs_start_a_cache_line))
