/* tcp_load: the TCP load generator of the echo benchmarks (issue 16), on libuv. N connections
 * each make request/response round trips of M bytes (send M, read the M bytes back, check them,
 * repeat) for T seconds; or N idle connections are held so the server's memory can be read.
 * Prints `METRIC name value unit` lines for bench/run; any failure exits 1 saying what failed. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

static const char usage[] =
  "usage: tcp_load HOST PORT [-c N] [-b M] [-t T] [-p PREFIX] [--window K] [--setup-timeout S]\n"
  "       tcp_load HOST PORT --idle [N] [-b M] [--server-pid PID] [-p PREFIX]\n"
  "\n"
  "Round trips: N connections (default 50) each send M bytes (default 64), read the M bytes\n"
  "back, check them and send again, for T seconds (default 5) counted from the moment every\n"
  "connection has answered a first round trip. Prints METRIC PREFIX_rtt_per_s (PREFIX default\n"
  "cN_bM).\n"
  "Idle (--idle [N], or -c N): each connection makes one round trip and is then held. With\n"
  "--server-pid, prints the server's VmRSS (PREFIX_rss_bytes, PREFIX default idleN) and the\n"
  "growth per connection since before the first connect (PREFIX_bytes_per_conn), then exits;\n"
  "without it, holds until a line (or EOF) on stdin, SIGINT or SIGTERM.\n"
  "--window K: connects in flight at once (default 200). --setup-timeout S: seconds allowed\n"
  "for connecting and the first round trips (default 60). Exit status 1 on any failure.\n";

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  int index;
  int connected;
  int closing;
  int in_round;        /* a request was sent and its echo is not complete */
  int writing;         /* wreq is in use */
  int send_pending;    /* a send waits for wreq */
  int answered;        /* the first round trip is done */
  size_t got;          /* bytes of this round echoed back so far */
  uint64_t rounds;     /* round trips completed in the measured window */
  char *rbuf;
} conn;

static uv_loop_t *loop;
static conn *conns;
static int nconns = 50;
static size_t msg_size = 64;
static double seconds = 5;
static int idle_mode;
static long server_pid;
static int window = 200;
static double setup_timeout = 60;
static const char *prefix;
static char prefix_buf[64];
static const char *host, *port;
static struct sockaddr_storage addr;
static char *payload;

static int started, nconnected, nanswered, measuring, stopping;
static uint64_t t0, total_rounds;
static long long rss_before = -1;   /* the server's VmRSS before the first connect (--server-pid) */
static uv_timer_t run_timer, setup_timer;
static uv_signal_t sigint_h, sigterm_h;
static uv_async_t stdin_async;

static void fail(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "tcp_load: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static long parse_long(const char *opt, const char *v, long lo, long hi) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || *end || end == v || n < lo || n > hi) fail("%s wants an integer from %ld to %ld, not '%s'", opt, lo, hi, v);
  return n;
}

static double parse_seconds(const char *opt, const char *v) {
  char *end;
  double d = strtod(v, &end);
  if (*end || end == v || !(d > 0) || d > 1e6) fail("%s wants a positive number of seconds, not '%s'", opt, v);
  return d;
}

/* VmRSS of a process in bytes, or -1 when it cannot be read. */
static long long read_rss(long pid) {
  char path[64], line[256];
  long long kb = -1;
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %lld kB", &kb) == 1) break;
  fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

static void start_send(conn *c);
static void start_connect(void);
static void *stdin_thread(void *arg);

static void on_close(uv_handle_t *h) {
  conn *c = h->data;
  free(c->rbuf);
  c->rbuf = NULL;
}

static void close_all(void) {
  for (int i = 0; i < nconns; i++) {
    conn *c = &conns[i];
    if (c->connected && !c->closing) {
      c->closing = 1;
      uv_close((uv_handle_t *)&c->tcp, on_close);
    }
  }
  uv_close((uv_handle_t *)&run_timer, NULL);
  uv_close((uv_handle_t *)&setup_timer, NULL);
  uv_close((uv_handle_t *)&sigint_h, NULL);
  uv_close((uv_handle_t *)&sigterm_h, NULL);
  uv_close((uv_handle_t *)&stdin_async, NULL);
}

static void on_run_timer(uv_timer_t *t) {
  (void)t;
  uint64_t t1 = uv_hrtime();
  stopping = 1;
  double elapsed = (double)(t1 - t0) / 1e9;
  uint64_t lo = UINT64_MAX, hi = 0;
  for (int i = 0; i < nconns; i++) {
    if (conns[i].rounds < lo) lo = conns[i].rounds;
    if (conns[i].rounds > hi) hi = conns[i].rounds;
  }
  if (total_rounds == 0) fail("no round trip completed in %.3f s", elapsed);
  printf("tcp_load: %d connections x %zu B to %s:%s: %llu round trips in %.3f s "
         "(per connection: min %llu, max %llu)\n", nconns, msg_size, host, port,
         (unsigned long long)total_rounds, elapsed, (unsigned long long)lo, (unsigned long long)hi);
  printf("METRIC %s_rtt_per_s %.1f round-trips/s\n", prefix, (double)total_rounds / elapsed);
  fflush(stdout);
  close_all();
}

/* Idle mode, every connection answered: report the server's memory, or hold until told. */
static void all_answered_idle(void) {
  uv_timer_stop(&setup_timer);
  printf("tcp_load: holding %d idle connections to %s:%s\n", nconns, host, port);
  if (server_pid) {
    long long rss = read_rss(server_pid);
    if (rss < 0) fail("cannot read VmRSS of server pid %ld (/proc/%ld/status)", server_pid, server_pid);
    printf("tcp_load: server VmRSS %lld kB before connecting, %lld kB with %d connections\n",
           rss_before / 1024, rss / 1024, nconns);
    printf("METRIC %s_rss_bytes %lld bytes\n", prefix, rss);
    printf("METRIC %s_bytes_per_conn %.1f bytes\n", prefix, (double)(rss - rss_before) / nconns);
    fflush(stdout);
    close_all();
    return;
  }
  fflush(stdout);
  /* otherwise a line or EOF on stdin, SIGINT or SIGTERM ends the hold */
  pthread_t th;
  if (pthread_create(&th, NULL, stdin_thread, NULL) != 0) fail("cannot start the stdin thread");
  pthread_detach(th);
}

static void round_done(conn *c) {
  c->in_round = 0;
  c->got = 0;
  if (!c->answered) {
    c->answered = 1;
    if (++nanswered < nconns) return;
    if (idle_mode) { all_answered_idle(); return; }
    uv_timer_stop(&setup_timer);
    measuring = 1;
    t0 = uv_hrtime();
    uv_timer_start(&run_timer, on_run_timer, (uint64_t)(seconds * 1000), 0);
    for (int i = 0; i < nconns; i++) start_send(&conns[i]);
    return;
  }
  if (stopping) return;
  c->rounds++;
  total_rounds++;
  start_send(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn *c = h->data;
  (void)suggested;
  /* Ask for no more than the rest of this round, so extra bytes show up as a mismatch. */
  *buf = uv_buf_init(c->rbuf, (unsigned)(c->in_round ? msg_size - c->got : msg_size));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  if (nread == 0) return;
  if (stopping) return;
  if (nread < 0) {
    const char *what = idle_mode && c->answered ? " while held idle" : "";
    if (nread == UV_EOF && !measuring) fail("connection %d: the server closed it%s", c->index, what);
    if (nread == UV_EOF)
      fail("connection %d: the server closed it after %llu measured round trips (%zu of %zu bytes of "
           "the current echo back)", c->index, (unsigned long long)c->rounds, c->got, msg_size);
    fail("connection %d: read failed%s: %s", c->index, what, uv_strerror((int)nread));
  }
  if (!c->in_round) fail("connection %d: %zd bytes arrived with no request outstanding", c->index, nread);
  if (memcmp(buf->base, payload + c->got, (size_t)nread) != 0)
    fail("connection %d: the echo differs from what was sent (bytes %zu..%zu of %zu)",
         c->index, c->got, c->got + (size_t)nread - 1, msg_size);
  c->got += (size_t)nread;
  if (c->got == msg_size) round_done(c);
}

static void write_cb(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  if (status < 0) {
    if (stopping || status == UV_ECANCELED) return;
    fail("connection %d: write failed: %s", c->index, uv_strerror(status));
  }
  if (c->send_pending) {
    c->send_pending = 0;
    start_send(c);
  }
}

/* Sends one request: try_write, then the rest (if any) through the connection's one write request. */
static void start_send(conn *c) {
  if (c->writing) { c->send_pending = 1; return; }   /* the previous write's callback has not run yet */
  c->in_round = 1;
  c->got = 0;
  uv_buf_t b = uv_buf_init(payload, (unsigned)msg_size);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)msg_size) return;
  if (n < 0 && n != UV_EAGAIN) fail("connection %d: write failed: %s", c->index, uv_strerror(n));
  if (n < 0) n = 0;
  b = uv_buf_init(payload + n, (unsigned)(msg_size - (size_t)n));
  c->writing = 1;
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
  if (rc < 0) fail("connection %d: write failed: %s", c->index, uv_strerror(rc));
}

static void connect_cb(uv_connect_t *req, int status) {
  conn *c = req->data;
  if (status < 0)
    fail("connection %d of %d: connect to %s:%s failed: %s (%d connected so far)", c->index + 1, nconns,
         host, port, uv_strerror(status), nconnected);
  c->connected = 1;
  nconnected++;
  uv_tcp_nodelay(&c->tcp, 1);
  int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  if (rc < 0) fail("connection %d: read_start: %s", c->index, uv_strerror(rc));
  start_send(c);          /* the first round trip: proves the server accepted this connection */
  if (started < nconns) start_connect();
}

static void start_connect(void) {
  conn *c = &conns[started++];
  int rc = uv_tcp_init(loop, &c->tcp);
  if (rc < 0) fail("connection %d: uv_tcp_init: %s", c->index + 1, uv_strerror(rc));
  rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, connect_cb);
  if (rc < 0) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    fail("connection %d of %d: connect to %s:%s failed: %s (%d connected so far; open file limit %llu)",
         c->index + 1, nconns, host, port, uv_strerror(rc), nconnected, (unsigned long long)rl.rlim_cur);
  }
}

static void on_setup_timeout(uv_timer_t *t) {
  (void)t;
  fail("after %g s, only %d of %d connections to %s:%s were connected and %d had answered a first "
       "request (--setup-timeout)", setup_timeout, nconnected, nconns, host, port, nanswered);
}

static void on_stop(const char *why) {
  if (nanswered < nconns)
    fail("%s before every connection was up (%d of %d connected, %d answered)", why, nconnected, nconns, nanswered);
  if (stopping) return;
  stopping = 1;
  close_all();
}

static void on_signal(uv_signal_t *h, int signum) { (void)h; on_stop(signum == SIGINT ? "SIGINT" : "SIGTERM"); }
static void on_stdin(uv_async_t *h) { (void)h; on_stop("stdin"); }

static void *stdin_thread(void *arg) {
  char line[256];
  (void)arg;
  if (!fgets(line, sizeof line, stdin)) { /* EOF also ends the hold */ }
  uv_async_send(&stdin_async);
  return NULL;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  int npos = 0;
  const char *pos[2] = { NULL, NULL };
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_val = i + 1 < argc;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { fputs(usage, stdout); return 0; }
    if (strcmp(a, "--idle") == 0) {
      idle_mode = 1;
      if (has_val && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9' && npos == 2)
        nconns = (int)parse_long(a, argv[++i], 1, 10000000);
      continue;
    }
    if (a[0] == '-' && a[1]) {
      if (!has_val) fail("option %s needs a value (see tcp_load --help)", a);
      const char *v = argv[++i];
      if (strcmp(a, "-c") == 0) nconns = (int)parse_long(a, v, 1, 10000000);
      else if (strcmp(a, "-b") == 0) msg_size = (size_t)parse_long(a, v, 1, 64 << 20);
      else if (strcmp(a, "-t") == 0) seconds = parse_seconds(a, v);
      else if (strcmp(a, "-p") == 0) prefix = v;
      else if (strcmp(a, "--server-pid") == 0) server_pid = parse_long(a, v, 1, 1L << 30);
      else if (strcmp(a, "--window") == 0) window = (int)parse_long(a, v, 1, 1000000);
      else if (strcmp(a, "--setup-timeout") == 0) setup_timeout = parse_seconds(a, v);
      else fail("unknown option '%s' (see tcp_load --help)", a);
      continue;
    }
    if (npos == 2) fail("unexpected argument '%s' (see tcp_load --help)", a);
    pos[npos++] = a;
  }
  if (npos < 2) { fputs(usage, stderr); return 2; }
  host = pos[0];
  port = pos[1];
  if (!prefix) {
    if (idle_mode) snprintf(prefix_buf, sizeof prefix_buf, "idle%d", nconns);
    else snprintf(prefix_buf, sizeof prefix_buf, "c%d_b%zu", nconns, msg_size);
    prefix = prefix_buf;
  }

  /* Every connection is a descriptor: raise the soft limit to the hard one. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  if ((unsigned long long)nconns + 16 > (unsigned long long)rl.rlim_cur)
    fail("%d connections need about %d descriptors, but the open file limit is %llu (hard limit %llu)",
         nconns, nconns + 16, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);

  struct addrinfo hints, *res;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  int gai = getaddrinfo(host, port, &hints, &res);
  if (gai != 0) fail("cannot resolve %s port %s: %s", host, port, gai_strerror(gai));
  memcpy(&addr, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);

  payload = malloc(msg_size);
  conns = calloc((size_t)nconns, sizeof *conns);
  if (!payload || !conns) fail("out of memory for %d connections", nconns);
  for (size_t i = 0; i < msg_size; i++) payload[i] = (char)('a' + i % 26);
  for (int i = 0; i < nconns; i++) {
    conns[i].index = i;
    conns[i].tcp.data = &conns[i];
    conns[i].creq.data = &conns[i];
    conns[i].wreq.data = &conns[i];
    conns[i].rbuf = malloc(msg_size);
    if (!conns[i].rbuf) fail("out of memory for %d connections", nconns);
  }

  loop = uv_default_loop();
  uv_timer_init(loop, &run_timer);
  uv_timer_init(loop, &setup_timer);
  uv_signal_init(loop, &sigint_h);
  uv_signal_init(loop, &sigterm_h);
  uv_async_init(loop, &stdin_async, on_stdin);
  if (idle_mode && !server_pid) {
    uv_signal_start(&sigint_h, on_signal, SIGINT);
    uv_signal_start(&sigterm_h, on_signal, SIGTERM);
  }
  if (server_pid) {
    rss_before = read_rss(server_pid);
    if (rss_before < 0) fail("cannot read VmRSS of server pid %ld (/proc/%ld/status)", server_pid, server_pid);
  }
  uv_timer_start(&setup_timer, on_setup_timeout, (uint64_t)(setup_timeout * 1000), 0);
  for (int i = 0; i < window && started < nconns; i++) start_connect();
  uv_run(loop, UV_RUN_DEFAULT);

  if (idle_mode && !server_pid) {
    /* held until told: every connection must still be open */
    printf("tcp_load: released %d idle connections\n", nconns);
  }
  for (int i = 0; i < nconns; i++) free(conns[i].rbuf);
  free(conns);
  free(payload);
  uv_loop_close(loop);
  return 0;
}
