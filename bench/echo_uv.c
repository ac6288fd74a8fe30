/* echo_uv: a plain libuv TCP echo server, the ceiling of the echo benchmarks (issue 16).
 * `echo_uv PORT` (0 picks one) listens on 127.0.0.1, prints "listening on 127.0.0.1:PORT" and
 * echoes every connection's bytes back until killed. One thread, one loop: reads land in one
 * shared buffer and go straight back with uv_try_write; only what the socket does not take at
 * once is copied into a write request. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define READ_BUF (64 * 1024)
#define HIGH_WATER (1024 * 1024)   /* unsent bytes above which a connection stops reading */

typedef struct {
  uv_write_t req;
  char data[];
} write_req;

static uv_loop_t *loop;
static char read_buf[READ_BUF];    /* the loop's thread consumes each read before the next */

static void on_close(uv_handle_t *h) { free(h); }

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h; (void)suggested;
  *buf = uv_buf_init(read_buf, sizeof read_buf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status) {
  uv_stream_t *s = req->handle;
  free(req);
  if (status < 0) return;                      /* the read side sees the error and closes */
  if (s->data && uv_stream_get_write_queue_size(s) == 0 && !uv_is_closing((uv_handle_t *)s)) {
    s->data = NULL;                              /* drained: read again */
    uv_read_start(s, alloc_cb, read_cb);
  }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  if (nread < 0) {
    if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_close);
    return;
  }
  if (nread == 0) return;
  uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
  int n = uv_try_write(s, &b, 1);
  if (n == nread) return;
  if (n < 0 && n != UV_EAGAIN) { uv_close((uv_handle_t *)s, on_close); return; }
  if (n < 0) n = 0;
  size_t rest = (size_t)nread - (size_t)n;
  write_req *w = malloc(sizeof *w + rest);
  if (!w) { uv_close((uv_handle_t *)s, on_close); return; }
  memcpy(w->data, buf->base + n, rest);
  b = uv_buf_init(w->data, (unsigned)rest);
  if (uv_write(&w->req, s, &b, 1, write_cb) < 0) {
    free(w);
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  if (uv_stream_get_write_queue_size(s) > HIGH_WATER) {   /* a peer that does not read */
    s->data = s;                                           /* marks "stopped" for write_cb */
    uv_read_stop(s);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) { fprintf(stderr, "echo_uv: accept: %s\n", uv_strerror(status)); return; }
  uv_tcp_t *c = malloc(sizeof *c);
  if (!c) { fprintf(stderr, "echo_uv: out of memory\n"); return; }
  uv_tcp_init(loop, c);
  c->data = NULL;
  if (uv_accept(server, (uv_stream_t *)c) < 0) { uv_close((uv_handle_t *)c, on_close); return; }
  uv_tcp_nodelay(c, 1);
  uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: echo_uv PORT   (0 picks a free port)\n"); return 2; }
  char *end;
  long port = strtol(argv[1], &end, 10);
  if (*end || end == argv[1] || port < 0 || port > 65535) {
    fprintf(stderr, "echo_uv: PORT wants 0..65535, not '%s'\n", argv[1]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  uv_tcp_t server;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", (int)port, &sa);
  uv_tcp_init(loop, &server);
  int rc = uv_tcp_bind(&server, (const struct sockaddr *)&sa, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&server, 4096, on_connection);
  if (rc < 0) { fprintf(stderr, "echo_uv: listen on 127.0.0.1:%ld: %s\n", port, uv_strerror(rc)); return 1; }
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
  printf("listening on 127.0.0.1:%d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
