/* tcp: listeners and connections on the node's libuv thread (see tcp.h).
 *
 * Threads. The uv handles and the [io] fields are the I/O thread's alone; the
 * rest of a socket is under its lock, taken briefly by both sides and never
 * while sending a signal. Reading: the I/O thread reads into one buffer per
 * loop and appends to the socket's input under the lock; frames are cut by
 * whoever takes them (the owner's recv, or the I/O thread in active mode). A
 * passive socket reads once asked, then ahead of its reader by at most
 * READ_AHEAD bytes (more only to finish a frame someone waits for). Writing: a
 * send copies the bytes into a request for the I/O thread; `unsent` counts what
 * is queued, and a sender waits while it is over the high-water mark.
 *
 * Life. refs counts: the I/O thread's (until its uv handles have closed), the
 * owner's (from the handle table entry until close), a listener's queue's (an
 * accepted connection nobody took yet), each queued request and each holder
 * (mb_tcp_hold). The last one frees the socket. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>
#include "tcp.h"
#include "cterm.h"
#include "handle.h"
#include "io.h"
#include "node.h"

#define READ_AHEAD (64u << 10)
#define READ_CHUNK (64u << 10)
#define PAUSE_POLL_MS 2
/* A connection's first input buffer: small, since most hold a few short frames
 * (and 10 000 idle ones hold one each); it doubles as needed. */
#define IN_FIRST 512

/* A waiter is the WAKE that will wake it, made by the waiting process (the I/O
 * thread allocates nothing to wake it): `from` holds the pid to wake until it
 * is sent, `next` links the socket's list. */
typedef mb_sig waiter;

struct mb_sock {
  mb_resource res;          /* first: the handle table's resource is the socket */
  mb_node *node;
  int kind;
  _Atomic int refs;
  uint64_t id;              /* the handle's id once someone owns it */
  mb_tcp_opts opts;
  char peer_host[INET6_ADDRSTRLEN], local_host[INET6_ADDRSTRLEN];
  int peer_port, local_port;
  int fd;                   /* a connection's fd (-1: none), for writes from the sender's thread */

  /* [io] */
  uv_tcp_t tcp;
  uv_timer_t pause;         /* an active socket whose owner is behind: polls its queue */
  int io_handles;           /* uv handles not yet closed */
  int io_open;              /* the tcp handle is open (not closing) */
  int pause_init, paused, reported;
  mb_sock *io_prev, *io_next;   /* the loop's open sockets */

  pthread_mutex_t lock;
  /* [lock] */
  mb_pid owner;
  int active;
  int reading;              /* the I/O thread reads (or has been asked to) */
  int err;                  /* why reading ended: MB_TCP_ECLOSED at EOF, or an error */
  int dead;                 /* the uv handle is closed: nothing more is read or written */
  int closed;               /* the owner closed it */
  char *in;                 /* input: bytes [in_off, in_off + in_len) of in_cap */
  size_t in_off, in_len, in_cap, scan;   /* scan: line mode, bytes known to hold no '\n' */
  waiter *readers, *writers;
  size_t unsent;
  int wr_err;
  mb_sock *acc_head, *acc_tail, *acc_next;   /* a listener's accepted connections */
};

/* the loop's state (mb_io_tcp) */
typedef struct tcp_loop {
  int closing;              /* the loop is stopping: nothing new opens on it */
  mb_sock *live;
  char rd[READ_CHUNK];
} tcp_loop;

static tcp_loop *loop_state(mb_io *io) {
  void **slot = mb_io_tcp(io);
  if (!*slot) *slot = calloc(1, sizeof(tcp_loop));
  return *slot;
}

/* ---- errors ---- */

const char *mb_tcp_strerror(int err, char *buf) {
  switch (err) {
  case MB_TCP_ECLOSED: case UV_EOF: return "closed";
  case MB_TCP_ETOOBIG: return "packet too large";
  case MB_TCP_EACTIVE: return "active";
  case MB_TCP_ENOTOWNER: return "not_owner";
  case MB_TCP_ENOMEM: case UV_ENOMEM: return "enomem";
  case MB_TCP_ETIMEOUT: return "timeout";
  case MB_TCP_ENOPROC: return "noproc";
  }
  const char *name = uv_err_name(err);
  size_t i = 0;
  for (; name[i] && i < 31; i++) buf[i] = (char)tolower((unsigned char)name[i]);
  buf[i] = 0;
  return buf;
}

/* ---- references ---- */

static void sock_free(mb_sock *s) {
  for (waiter *w = s->readers, *next; w; w = next) { next = w->next; mb_sig_free(w); }
  for (waiter *w = s->writers, *next; w; w = next) { next = w->next; mb_sig_free(w); }
  free(s->in);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

void mb_tcp_release(mb_sock *s) {
  if (s && atomic_fetch_sub(&s->refs, 1) == 1) sock_free(s);
}

static void sock_hold(mb_resource *r) { atomic_fetch_add(&((mb_sock *)r)->refs, 1); }

static void res_close(mb_resource *r);

static mb_sock *sock_new(mb_node *n, int kind, const mb_tcp_opts *o) {
  mb_sock *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->node = n;
  s->kind = kind;
  s->opts = *o;
  s->active = MB_ACTIVE_OFF;
  s->res.close = res_close;
  s->res.hold = sock_hold;
  atomic_store(&s->refs, 1);   /* the I/O thread's */
  pthread_mutex_init(&s->lock, NULL);
  s->tcp.data = s;
  s->pause.data = s;
  s->fd = -1;
  return s;
}

mb_sock *mb_tcp_hold(mb_node *n, uint64_t id, int kind) {
  mb_handle_info h;
  if (mb_handle_hold(n, id, &h) != 0) return NULL;
  if (h.kind != kind) { mb_tcp_release((mb_sock *)h.res); return NULL; }
  return (mb_sock *)h.res;
}

mb_pid mb_tcp_owner(mb_sock *s) {
  pthread_mutex_lock(&s->lock);
  mb_pid o = s->owner;
  pthread_mutex_unlock(&s->lock);
  return o;
}


void mb_tcp_peer(mb_sock *s, const char **host, int *port) { *host = s->peer_host; *port = s->peer_port; }
void mb_tcp_local(mb_sock *s, const char **host, int *port) { *host = s->local_host; *port = s->local_port; }

/* ---- waiters ---- */

static int add_waiter(waiter **list, mb_pid pid, uint64_t ref) {
  waiter *w = mb_sig_new(MB_SIG_WAKE, pid, ref);
  if (!w) return -1;
  w->next = *list;
  *list = w;
  return 0;
}

static void drop_waiter(waiter **list, mb_pid pid, uint64_t ref) {
  for (waiter **pp = list; *pp; pp = &(*pp)->next)
    if ((*pp)->from == pid && (*pp)->ref == ref) {
      waiter *w = *pp;
      *pp = w->next;
      mb_sig_free(w);
      return;
    }
}

void mb_tcp_unwait(mb_sock *s, mb_pid me, uint64_t ref) {
  pthread_mutex_lock(&s->lock);
  drop_waiter(&s->readers, me, ref);
  drop_waiter(&s->writers, me, ref);
  pthread_mutex_unlock(&s->lock);
}

/* Wake a list taken off a socket (outside its lock): each waiter looks again. */
static void wake(mb_node *n, waiter *w) {
  while (w) {
    waiter *next = w->next;
    mb_pid to = w->from;
    w->from = 0;
    w->next = NULL;
    mb_send_sig(n, to, w);
    w = next;
  }
}

static waiter *take_all(waiter **list) {
  waiter *w = *list;
  *list = NULL;
  return w;
}

/* ---- requests to the I/O thread ---- */

static int post(mb_node *n, mb_io_fn fn, mb_sock *s) {
  mb_io *io = n->io;
  atomic_fetch_add(&s->refs, 1);
  int rc = io ? mb_io_call(io, fn, s) : MB_ESTATE;
  if (rc != 0) mb_tcp_release(s);
  return rc;
}

/* ---- input and frames [lock] ---- */

static int in_append(mb_sock *s, const char *p, size_t n) {
  if (s->in_off + s->in_len + n > s->in_cap) {
    if (s->in_off && s->in_len + n <= s->in_cap) {
      memmove(s->in, s->in + s->in_off, s->in_len);
    } else {
      size_t cap = s->in_cap ? s->in_cap : IN_FIRST;
      while (cap < s->in_len + n) cap *= 2;
      char *q = malloc(cap);
      if (!q) return -1;
      if (s->in_len) memcpy(q, s->in + s->in_off, s->in_len);
      free(s->in);
      s->in = q;
      s->in_cap = cap;
    }
    s->in_off = 0;
  }
  memcpy(s->in + s->in_off + s->in_len, p, n);
  s->in_len += n;
  return 0;
}

/* The next frame in the input: 1 (at offset *at from in_off, *flen bytes, *used
 * consumed with its framing), 0 (not complete yet), -1 (over max_packet). After
 * the end of input, a line without its '\n' is a frame; a partial packet-4 frame
 * is not. */
static int frame(mb_sock *s, size_t *at, size_t *flen, size_t *used) {
  const char *p = s->in + s->in_off;
  switch (s->opts.packet) {
  case MB_PACKET_LINE: {
    const char *nl = s->in_len > s->scan ? memchr(p + s->scan, '\n', s->in_len - s->scan) : NULL;
    if (nl) {
      *at = 0;
      *flen = (size_t)(nl - p);
      *used = *flen + 1;
      if (*flen > s->opts.max_packet) return -1;
      return 1;
    }
    s->scan = s->in_len;
    if (s->in_len > s->opts.max_packet) return -1;
    if (s->err && s->in_len) { *at = 0; *flen = *used = s->in_len; return 1; }
    return 0;
  }
  case MB_PACKET_4: {
    if (s->in_len < 4) return 0;
    const unsigned char *u = (const unsigned char *)p;
    size_t n = (size_t)u[0] << 24 | (size_t)u[1] << 16 | (size_t)u[2] << 8 | u[3];
    if (n > s->opts.max_packet) return -1;
    if (s->in_len - 4 < n) return 0;
    *at = 4;
    *flen = n;
    *used = 4 + n;
    return 1;
  }
  default:
    if (!s->in_len) return 0;
    *at = 0;
    *flen = *used = s->in_len;
    return 1;
  }
}

/* Small frames are copied here rather than into a block of their own: the
 * caller pushes them before it takes another (one per thread). */
#define SCRATCH 4096
static __thread char scratch[SCRATCH];

/* Take the frame out: *data is this thread's scratch (*owned 0), or malloc'd
 * (*owned 1; for a frame that is the whole buffer, the buffer itself); NULL for
 * an empty one. -1: no memory. */
static int take(mb_sock *s, size_t at, size_t flen, size_t used, char **data, int *owned) {
  *owned = 0;
  if (flen == 0) {
    *data = NULL;
  } else if (flen <= SCRATCH) {
    *data = scratch;
    memcpy(scratch, s->in + s->in_off + at, flen);
  } else if (s->in_off == 0 && at == 0 && flen == s->in_len) {
    *data = s->in;   /* the whole buffer: hand it over */
    *owned = 1;
    s->in = NULL;
    s->in_cap = 0;
  } else {
    *data = malloc(flen);
    if (!*data) return -1;
    *owned = 1;
    memcpy(*data, s->in + s->in_off + at, flen);
  }
  s->in_off += used;
  s->in_len -= used;
  s->scan = 0;
  if (!s->in_len) s->in_off = 0;
  return 0;
}

/* ---- the I/O thread: opening and closing ---- */

static void on_uv_closed(uv_handle_t *h) {
  mb_sock *s = h->data;
  if (--s->io_handles == 0) mb_tcp_release(s);   /* the I/O thread's reference */
}

/* [io] Close the uv side: reads and writes end, waiters look again. */
static void io_close(mb_io *io, mb_sock *s) {
  if (!s->io_open) return;
  s->io_open = 0;
  tcp_loop *t = loop_state(io);
  if (s->io_prev) s->io_prev->io_next = s->io_next;
  else if (t && t->live == s) t->live = s->io_next;
  if (s->io_next) s->io_next->io_prev = s->io_prev;
  s->io_prev = s->io_next = NULL;
  pthread_mutex_lock(&s->lock);
  s->dead = 1;
  if (!s->err) s->err = MB_TCP_ECLOSED;
  s->reading = 0;
  waiter *r = take_all(&s->readers), *w = take_all(&s->writers);
  mb_sock *acc = s->acc_head;
  s->acc_head = s->acc_tail = NULL;
  pthread_mutex_unlock(&s->lock);
  uv_close((uv_handle_t *)&s->tcp, on_uv_closed);
  if (s->pause_init) uv_close((uv_handle_t *)&s->pause, on_uv_closed);
  wake(s->node, r);
  wake(s->node, w);
  while (acc) {   /* a listener's connections nobody took */
    mb_sock *next = acc->acc_next;
    io_close(io, acc);
    mb_tcp_release(acc);   /* the queue's reference */
    acc = next;
  }
}

/* [io] A socket made here, on the loop's list, its uv handle open. */
static mb_sock *io_sock(mb_io *io, int kind, const mb_tcp_opts *o) {
  tcp_loop *t = loop_state(io);
  mb_sock *s = t && !t->closing ? sock_new(mb_io_node(io), kind, o) : NULL;
  if (!s) return NULL;
  if (uv_tcp_init(mb_io_loop(io), &s->tcp) != 0) { mb_tcp_release(s); return NULL; }
  s->io_handles = 1;
  s->io_open = 1;
  s->io_next = t->live;
  if (t->live) t->live->io_prev = s;
  t->live = s;
  return s;
}

void mb_tcp_io_close_all(mb_io *io) {
  tcp_loop *t = loop_state(io);
  if (t) t->closing = 1;   /* a name resolved after this must not open a socket */
  while (t && t->live) io_close(io, t->live);
}

static void name_addr(const struct sockaddr_storage *a, char *host, int *port) {
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a6 = (const void *)a;
    uv_ip6_name(a6, host, INET6_ADDRSTRLEN);
    *port = ntohs(a6->sin6_port);
  } else {
    const struct sockaddr_in *a4 = (const void *)a;
    uv_ip4_name(a4, host, INET6_ADDRSTRLEN);
    *port = ntohs(a4->sin_port);
  }
}

static void fill_names(mb_sock *s, int peer) {
  uv_os_fd_t fd;
  if (peer && uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0) s->fd = fd;
  struct sockaddr_storage a;
  int len = sizeof a;
  memset(&a, 0, sizeof a);
  if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&a, &len) == 0) name_addr(&a, s->local_host, &s->local_port);
  len = sizeof a;
  memset(&a, 0, sizeof a);
  if (peer && uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&a, &len) == 0) name_addr(&a, s->peer_host, &s->peer_port);
}

typedef struct open_req {
  mb_io *io;
  mb_pid owner;
  uint64_t ref;
  int listen, port;
  mb_tcp_opts opts;
  uv_getaddrinfo_t gai;
  uv_connect_t conn;
  mb_sock *s;
  struct addrinfo *ai, *ai_next;   /* a name's addresses: connect tries each in turn */
  char host[];
} open_req;

typedef struct answer { int32_t err; uint64_t id; } answer;

static void reply(mb_node *n, mb_pid to, uint64_t ref, int err, uint64_t id) {
  answer a = { err, id };
  mb_sig *s = mb_sig_raw(MB_SIG_REPLY, 0, ref, &a, sizeof a);
  if (s) mb_send_sig(n, to, s);
}

int mb_tcp_answer(const mb_sig *r, uint64_t *id) {
  answer a;
  if (r->kind != MB_SIG_REPLY || r->len != sizeof a) return MB_ESTATE;
  memcpy(&a, mb_sig_payload(r), sizeof a);
  *id = a.id;
  return a.err;
}

static void io_do_close(mb_io *io, void *arg);
static void io_start_active(mb_io *io, void *arg);

/* [io] The opened socket goes to its owner, or is closed if the owner is gone. */
static void open_done(open_req *r, int err) {
  mb_node *n = mb_io_node(r->io);
  uint64_t id = 0;
  if (!err) {
    mb_sock *s = r->s;
    mb_proc *p = mb_proc_get(n, r->owner);
    atomic_fetch_add(&s->refs, 1);   /* the owner's */
    if (!p) {
      mb_tcp_release(s);
      io_close(r->io, s);
      err = MB_TCP_ENOPROC;
    } else {
      err = mb_handle_new(n, s->kind, &s->res, r->owner, &id) == 0 ? 0 : MB_TCP_ENOMEM;
      if (!err) {
        s->id = id;
        pthread_mutex_lock(&s->lock);
        s->owner = r->owner;
        pthread_mutex_unlock(&s->lock);
        if (mb_proc_add_resource(p, &s->res) != 0) {
          mb_handle_close(n, id);
          err = MB_TCP_ENOPROC;
        }
      }
      if (err) { mb_tcp_release(s); io_close(r->io, s); }
      mb_proc_unref(p);
    }
  }
  if (r->s) mb_tcp_release(r->s);   /* the request's */
  if (r->ai) uv_freeaddrinfo(r->ai);
  reply(n, r->owner, r->ref, err, err ? 0 : id);
  free(r);
}

static void on_connection(uv_stream_t *server, int status);
static void on_connected(uv_connect_t *c, int status);

static void open_at(open_req *r, const struct sockaddr *addr) {
  tcp_loop *t = loop_state(r->io);
  if (t && t->closing) { open_done(r, MB_TCP_ECLOSED); return; }   /* after a halt's close-all */
  mb_sock *s = io_sock(r->io, r->listen ? MB_HK_TCP_LISTENER : MB_HK_TCP_CONN, &r->opts);
  if (!s) { open_done(r, MB_TCP_ENOMEM); return; }
  r->s = s;
  atomic_fetch_add(&s->refs, 1);   /* the request's */
  int rc;
  if (r->listen) {
    rc = uv_tcp_bind(&s->tcp, addr, 0);
    if (!rc) rc = uv_listen((uv_stream_t *)&s->tcp, r->opts.backlog, on_connection);
    if (rc) { io_close(r->io, s); open_done(r, rc); return; }
    fill_names(s, 0);
    open_done(r, 0);
    return;
  }
  r->conn.data = r;
  rc = uv_tcp_connect(&r->conn, &s->tcp, addr, on_connected);
  if (rc) { io_close(r->io, s); open_done(r, rc); }
}

static void on_connected(uv_connect_t *c, int status) {
  open_req *r = c->data;
  if (status == 0 && !r->s->io_open) status = UV_ECANCELED;
  if (status) {
    io_close(r->io, r->s);
    struct addrinfo *next = status != UV_ECANCELED ? r->ai_next : NULL;
    if (next) {   /* the name's next address */
      mb_tcp_release(r->s);
      r->s = NULL;
      r->ai_next = next->ai_next;
      open_at(r, next->ai_addr);
      return;
    }
    open_done(r, status);
    return;
  }
  uv_tcp_nodelay(&r->s->tcp, 1);
  fill_names(r->s, 1);
  open_done(r, 0);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
  open_req *r = g->data;
  if (status || !res) { if (res) uv_freeaddrinfo(res); open_done(r, status ? status : UV_EAI_NONAME); return; }
  r->ai = res;
  r->ai_next = res->ai_next;
  open_at(r, res->ai_addr);
}

static void io_open(mb_io *io, void *arg) {
  open_req *r = arg;
  r->io = io;
  struct sockaddr_storage a;
  memset(&a, 0, sizeof a);
  /* an address literal needs no resolver */
  if (uv_ip4_addr(r->host, r->port, (struct sockaddr_in *)&a) == 0 ||
      uv_ip6_addr(r->host, r->port, (struct sockaddr_in6 *)&a) == 0) {
    open_at(r, (const struct sockaddr *)&a);
    return;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (r->listen) hints.ai_flags = AI_PASSIVE;
  char port[16];
  snprintf(port, sizeof port, "%d", r->port);
  r->gai.data = r;
  int rc = uv_getaddrinfo(mb_io_loop(io), &r->gai, on_resolved, r->host, port, &hints);
  if (rc) open_done(r, rc);
}

int mb_tcp_open(mb_node *n, mb_pid owner, uint64_t ref, int listen, const char *host, int port,
                const mb_tcp_opts *o) {
  size_t hl = strlen(host);
  open_req *r = calloc(1, sizeof *r + hl + 1);
  if (!r) return MB_ENOMEM;
  r->owner = owner;
  r->ref = ref;
  r->listen = listen;
  r->port = port;
  r->opts = *o;
  memcpy(r->host, host, hl + 1);
  int rc = n->io ? mb_io_call(n->io, io_open, r) : MB_ESTATE;
  if (rc) free(r);
  return rc;
}

/* ---- the I/O thread: accepting ---- */

static void on_connection(uv_stream_t *server, int status) {
  mb_sock *l = server->data;
  if (status < 0) return;   /* e.g. EMFILE: libuv tries again */
  mb_io *io = l->node->io;
  mb_sock *c = io_sock(io, MB_HK_TCP_CONN, &l->opts);
  if (!c) return;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) { io_close(io, c); return; }
  uv_tcp_nodelay(&c->tcp, 1);
  fill_names(c, 1);
  atomic_fetch_add(&c->refs, 1);   /* the queue's */
  pthread_mutex_lock(&l->lock);
  if (l->acc_tail) l->acc_tail->acc_next = c;
  else l->acc_head = c;
  l->acc_tail = c;
  waiter *w = take_all(&l->readers);
  pthread_mutex_unlock(&l->lock);
  wake(l->node, w);
}

int mb_tcp_accept(mb_node *n, mb_sock *l, mb_proc *self, uint64_t ref, uint64_t *id) {
  mb_pid me = atomic_load(&self->pid);
  pthread_mutex_lock(&l->lock);
  mb_sock *c = l->acc_head;
  if (c) {
    l->acc_head = c->acc_next;
    if (!l->acc_head) l->acc_tail = NULL;
    c->acc_next = NULL;
  } else if (l->dead || l->closed) {
    pthread_mutex_unlock(&l->lock);
    return MB_TCP_ECLOSED;
  } else if (ref && add_waiter(&l->readers, me, ref) != 0) {
    pthread_mutex_unlock(&l->lock);
    return MB_TCP_ENOMEM;
  }
  pthread_mutex_unlock(&l->lock);
  if (!c) return 0;
  /* the queue's reference becomes the new owner's */
  int rc = mb_handle_new(n, MB_HK_TCP_CONN, &c->res, me, id);
  if (rc != 0) {
    post(n, io_do_close, c);
    mb_tcp_release(c);
    return MB_TCP_ENOMEM;
  }
  c->id = *id;
  pthread_mutex_lock(&c->lock);
  c->owner = me;
  pthread_mutex_unlock(&c->lock);
  if (mb_proc_add_resource(self, &c->res) != 0) {   /* cannot happen to a running process */
    res_close(&c->res);
    return MB_TCP_ECLOSED;
  }
  return 1;
}

/* ---- the I/O thread: reading ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  mb_sock *s = h->data;
  tcp_loop *t = *mb_io_tcp(s->node->io);
  *buf = uv_buf_init(t->rd, sizeof t->rd);
}

static void deliver_active(mb_io *io, mb_sock *s);

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  mb_sock *s = st->data;
  mb_io *io = s->node->io;
  if (nread == 0) return;
  pthread_mutex_lock(&s->lock);
  if (nread > 0) {
    if (in_append(s, buf->base, (size_t)nread) != 0 && !s->err) s->err = MB_TCP_ENOMEM;
  } else if (!s->err) {
    s->err = nread == UV_EOF ? MB_TCP_ECLOSED : (int)nread;
  }
  if (s->active) {
    pthread_mutex_unlock(&s->lock);
    deliver_active(io, s);
    return;
  }
  size_t at, flen, used;
  int f = frame(s, &at, &flen, &used);
  if (f < 0 && !s->err) s->err = MB_TCP_ETOOBIG;
  waiter *w = f != 0 || s->err ? take_all(&s->readers) : NULL;
  int keep = !s->err && (s->in_len < READ_AHEAD || (s->readers && f == 0));
  if (!keep && s->reading) { uv_read_stop(st); s->reading = 0; }
  int fail = s->err && s->err != MB_TCP_ECLOSED;
  pthread_mutex_unlock(&s->lock);
  wake(s->node, w);
  if (fail) io_close(io, s);   /* a broken or oversized stream: the connection closes */
}

/* [io] Start reading (the lock held). */
static void start_reading(mb_sock *s) {
  if (s->io_open && !s->err && uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) == 0) s->reading = 1;
  else s->reading = 0;
}

static void io_start_read(mb_io *io, void *arg) {
  (void)io;
  mb_sock *s = arg;
  pthread_mutex_lock(&s->lock);
  start_reading(s);
  waiter *w = !s->reading ? take_all(&s->readers) : NULL;   /* nothing will come: look again */
  pthread_mutex_unlock(&s->lock);
  wake(s->node, w);
  mb_tcp_release(s);
}

int mb_tcp_recv(mb_node *n, mb_sock *s, mb_pid me, uint64_t ref, char **data, size_t *len, int *owned) {
  pthread_mutex_lock(&s->lock);
  int rc;
  size_t at, flen, used;
  int f;
  if (s->owner != me) { rc = MB_TCP_ENOTOWNER; goto out; }
  if (s->active) { rc = MB_TCP_EACTIVE; goto out; }
  f = frame(s, &at, &flen, &used);
  if (f > 0) {
    if (take(s, at, flen, used, data, owned) != 0) { rc = MB_TCP_ENOMEM; goto out; }
    *len = flen;
    rc = 1;
    if (!s->reading && !s->err && s->in_len < READ_AHEAD) {
      s->reading = 1;
      pthread_mutex_unlock(&s->lock);
      if (post(n, io_start_read, s) != 0) {
        pthread_mutex_lock(&s->lock);
        s->reading = 0;
        pthread_mutex_unlock(&s->lock);
      }
      return 1;
    }
    goto out;
  }
  if (f < 0) {   /* found here (the I/O thread checks only the first frame): the connection closes */
    if (!s->err || s->err == MB_TCP_ECLOSED) s->err = MB_TCP_ETOOBIG;
    pthread_mutex_unlock(&s->lock);
    post(n, io_do_close, s);
    return MB_TCP_ETOOBIG;
  }
  if (s->err) { rc = s->err; goto out; }
  rc = 0;
  if (!ref) goto out;
  if (add_waiter(&s->readers, me, ref) != 0) { rc = MB_TCP_ENOMEM; goto out; }
  if (!s->reading) {
    s->reading = 1;
    pthread_mutex_unlock(&s->lock);
    if (post(n, io_start_read, s) != 0) {
      pthread_mutex_lock(&s->lock);
      s->reading = 0;
      if (!s->err) s->err = MB_TCP_ECLOSED;
      drop_waiter(&s->readers, me, ref);
      pthread_mutex_unlock(&s->lock);
      return MB_TCP_ECLOSED;
    }
    return 0;
  }
out:
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* ---- active mode ---- */

static mb_sig *active_msg(mb_sock *s, const char *tag, const char *data, size_t len, int with_data) {
  mb_buf b;
  if (mb_buf_init(&b, MB_SIG_HDR, 0) != 0) return NULL;
  mb_tw w;
  mb_tw_begin(&w, &b);
  mb_tw_table(&w, with_data ? 3 : 2);
  mb_tw_string(&w, tag);
  mb_tw_handle(&w, MB_HK_TCP_CONN, s->id);
  if (with_data) mb_tw_lstring(&w, data ? data : "", len);
  mb_tw_end(&w);
  if (mb_tw_finish(&w) != 0) { mb_buf_free(&b); return NULL; }
  return mb_sig_from_buf(&b, MB_SIG_MSG, 0, 0);
}

static void on_pause_timer(uv_timer_t *t) { deliver_active(((mb_sock *)t->data)->node->io, t->data); }

/* Is the owner's mailbox over the bound? Then the socket pauses. */
static int owner_behind(mb_node *n, mb_pid owner) {
  mb_proc *p = mb_proc_get(n, owner);
  if (!p) return 0;
  int behind = atomic_load_explicit(&p->queue_bytes, memory_order_relaxed) > (int64_t)MB_TCP_ACTIVE_LIMIT;
  mb_proc_unref(p);
  return behind;
}

/* [io] Deliver what the input holds as messages while the socket is active, then
 * the error and the close once the input is done; read more if still active. */
static void deliver_active(mb_io *io, mb_sock *s) {
  for (;;) {
    pthread_mutex_lock(&s->lock);
    mb_pid owner = s->owner;
    if (!s->active || !owner || s->closed) {
      if (s->reading && !s->err && s->io_open && s->in_len >= READ_AHEAD) { uv_read_stop((uv_stream_t *)&s->tcp); s->reading = 0; }
      pthread_mutex_unlock(&s->lock);
      break;
    }
    if (owner_behind(s->node, owner)) {
      if (s->reading) { uv_read_stop((uv_stream_t *)&s->tcp); s->reading = 0; }
      pthread_mutex_unlock(&s->lock);
      if (!s->pause_init && s->io_open) {
        uv_timer_init(mb_io_loop(io), &s->pause);
        s->pause_init = 1;
        s->io_handles++;
      }
      if (s->io_open && !s->paused) { uv_timer_start(&s->pause, on_pause_timer, PAUSE_POLL_MS, PAUSE_POLL_MS); s->paused = 1; }
      return;
    }
    size_t at, flen, used;
    char *data = NULL;
    int owned = 0;
    int f = frame(s, &at, &flen, &used);
    if (f > 0 && take(s, at, flen, used, &data, &owned) != 0) f = -2;
    if (f > 0) {
      if (s->active == MB_ACTIVE_ONCE) s->active = MB_ACTIVE_OFF;
      pthread_mutex_unlock(&s->lock);
      mb_sig *m = active_msg(s, "tcp", data, flen, 1);
      if (owned) free(data);
      if (m) mb_send_sig(s->node, owner, m);
      continue;
    }
    if (f < 0 && (!s->err || s->err == MB_TCP_ECLOSED)) s->err = f == -1 ? MB_TCP_ETOOBIG : MB_TCP_ENOMEM;
    int err = s->err;
    if (!err) {
      if (!s->reading) start_reading(s);
      pthread_mutex_unlock(&s->lock);
      break;
    }
    int report = !s->reported;
    s->reported = 1;
    pthread_mutex_unlock(&s->lock);
    if (report) {
      char buf[32];
      mb_sig *m;
      if (err != MB_TCP_ECLOSED && (m = active_msg(s, "tcp_error", mb_tcp_strerror(err, buf), strlen(mb_tcp_strerror(err, buf)), 1)))
        mb_send_sig(s->node, owner, m);
      if ((m = active_msg(s, "tcp_closed", NULL, 0, 0))) mb_send_sig(s->node, owner, m);
      io_close(io, s);
    }
    break;
  }
  if (s->paused) { uv_timer_stop(&s->pause); s->paused = 0; }
}

static void io_start_active(mb_io *io, void *arg) {
  mb_sock *s = arg;
  deliver_active(io, s);
  mb_tcp_release(s);
}

int mb_tcp_set_active(mb_node *n, mb_sock *s, mb_pid me, int mode) {
  pthread_mutex_lock(&s->lock);
  if (s->owner != me) { pthread_mutex_unlock(&s->lock); return MB_TCP_ENOTOWNER; }
  s->active = mode;
  pthread_mutex_unlock(&s->lock);
  if (mode != MB_ACTIVE_OFF && post(n, io_start_active, s) != 0) return MB_TCP_ECLOSED;
  return 0;
}

/* ---- writing ---- */

typedef struct write_req {
  uv_write_t w;
  mb_sock *s;
  size_t len;
  char data[];
} write_req;

static void write_done(mb_sock *s, size_t len, int status) {
  pthread_mutex_lock(&s->lock);
  s->unsent -= len;
  if (status < 0 && !s->wr_err) s->wr_err = status;
  waiter *w = status < 0 || s->unsent <= MB_TCP_HIGH_WATER / 2 ? take_all(&s->writers) : NULL;
  pthread_mutex_unlock(&s->lock);
  wake(s->node, w);
}

static void on_write(uv_write_t *w, int status) {
  write_req *r = w->data;
  write_done(r->s, r->len, status);
  mb_tcp_release(r->s);
  free(r);
}

static void io_write(mb_io *io, void *arg) {
  (void)io;
  write_req *r = arg;
  mb_sock *s = r->s;
  int rc = MB_TCP_ECLOSED;   /* the uv side closed after the send looked */
  r->w.data = r;
  if (s->io_open) {
    uv_buf_t b = uv_buf_init(r->data, (unsigned)r->len);
    rc = uv_write(&r->w, (uv_stream_t *)&s->tcp, &b, 1, on_write);
  }
  if (rc) on_write(&r->w, rc);
}

/* 1: below the mark (or failed: the next send says so); 0: over it, (me, ref)
 * registered unless ref is 0. */
static int over_water(mb_sock *s, mb_pid me, uint64_t ref) {
  if (s->wr_err || s->dead || s->unsent <= MB_TCP_HIGH_WATER) return 1;
  if (ref && add_waiter(&s->writers, me, ref) != 0) return 1;
  return 0;
}

/* [lock] Write what the kernel takes now, from this thread: only when nothing
 * is queued (order), and under the lock, so the I/O thread cannot close the fd
 * meanwhile (io_close marks the socket dead under it first). The bytes written,
 * or a (negative) error. */
static ssize_t write_now(mb_sock *s, const char *pre, size_t npre, const char *data, size_t len) {
  if (s->fd < 0 || s->unsent) return 0;
  struct iovec iov[2] = { { (void *)pre, npre }, { (void *)data, len } };
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = npre ? iov : iov + 1;
  m.msg_iovlen = npre ? 2 : 1;
  ssize_t k;
  do k = sendmsg(s->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT); while (k < 0 && errno == EINTR);
  if (k >= 0) return k;
  return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
}

int mb_tcp_send(mb_node *n, mb_sock *s, mb_pid me, uint64_t ref, const char *data, size_t len) {
  int prefix = s->opts.packet == MB_PACKET_4;
  if (len > 0xffffffffu - 4) return MB_TCP_ETOOBIG;   /* a packet-4 length, and one uv_buf */
  unsigned char pre[4] = { (unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8),
                           (unsigned char)len };
  size_t npre = prefix ? 4 : 0, total = len + npre;
  /* Everything under the lock, the rest's request posted too: the order in
   * which senders take the lock is the order of their bytes on the wire, so a
   * frame written in part is never cut into by another sender's. */
  pthread_mutex_lock(&s->lock);
  int err = s->dead || s->closed ? MB_TCP_ECLOSED : s->wr_err;
  ssize_t done = err ? 0 : write_now(s, (const char *)pre, npre, data, len);
  if (done < 0) err = s->wr_err = (int)done;
  if (err || (size_t)done == total) {
    pthread_mutex_unlock(&s->lock);
    return err ? err : 1;
  }
  size_t rest = total - (size_t)done;
  write_req *r = malloc(sizeof *r + rest);
  if (!r) {   /* part of a frame may be out: the stream is broken, say so from now on */
    if (done) s->wr_err = MB_TCP_ENOMEM;
    pthread_mutex_unlock(&s->lock);
    return MB_TCP_ENOMEM;
  }
  r->s = s;
  r->len = rest;
  size_t from_pre = (size_t)done < npre ? npre - (size_t)done : 0;
  memcpy(r->data, pre + (npre - from_pre), from_pre);
  memcpy(r->data + from_pre, data + (len - (rest - from_pre)), rest - from_pre);
  atomic_fetch_add(&s->refs, 1);   /* the request's; the caller's hold keeps it above 0 */
  if (!n->io || mb_io_call(n->io, io_write, r) != 0) {
    atomic_fetch_sub(&s->refs, 1);
    if (done) s->wr_err = MB_TCP_ECLOSED;
    pthread_mutex_unlock(&s->lock);
    free(r);
    return MB_TCP_ECLOSED;
  }
  s->unsent += rest;
  int rc = over_water(s, me, ref);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int mb_tcp_send_drained(mb_sock *s, mb_pid me, uint64_t ref) {
  pthread_mutex_lock(&s->lock);
  /* closed or failed while the sender waited: its bytes may not all be out */
  int rc = s->dead || s->closed ? MB_TCP_ECLOSED : s->wr_err ? s->wr_err : over_water(s, me, ref);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* ---- owner changes, closing ---- */

int mb_tcp_set_owner(mb_node *n, mb_sock *s, mb_proc *self, mb_pid to) {
  mb_pid me = atomic_load(&self->pid);
  if (mb_tcp_owner(s) != me) return MB_TCP_ENOTOWNER;
  int rc = mb_handle_set_owner(n, s->id, self, to);
  if (rc == MB_EINVAL) return MB_TCP_ENOTOWNER;
  if (rc == MB_ENOTFOUND) return MB_TCP_ECLOSED;
  if (rc != 0) return MB_TCP_ENOPROC;
  pthread_mutex_lock(&s->lock);
  if (s->owner == me) s->owner = to;
  int active = s->active;
  pthread_mutex_unlock(&s->lock);
  if (s->kind == MB_HK_TCP_CONN && active) post(n, io_start_active, s);
  return 0;
}

static void io_do_close(mb_io *io, void *arg) {
  mb_sock *s = arg;
  io_close(io, s);
  mb_tcp_release(s);   /* the request's */
}

/* The owner's side ends: the handle goes, the I/O thread closes the socket, and
 * the owner's reference is dropped. */
static void close_owned(mb_node *n, mb_sock *s) {
  pthread_mutex_lock(&s->lock);
  int was = !s->closed;
  s->closed = 1;
  s->owner = 0;
  waiter *r = take_all(&s->readers), *w = take_all(&s->writers);
  pthread_mutex_unlock(&s->lock);
  wake(n, r);
  wake(n, w);
  if (!was) return;
  mb_handle_close(n, s->id);
  post(n, io_do_close, s);
  mb_tcp_release(s);   /* the owner's */
}

static void res_close(mb_resource *r) {
  mb_sock *s = (mb_sock *)r;
  close_owned(s->node, s);
}

int mb_tcp_close(mb_node *n, mb_sock *s, mb_proc *self) {
  if (mb_tcp_owner(s) != atomic_load(&self->pid)) { mb_tcp_release(s); return MB_TCP_ENOTOWNER; }
  mb_proc_remove_resource(self, &s->res);
  close_owned(n, s);
  mb_tcp_release(s);   /* the caller's hold */
  return 0;
}
