/*
 * The proxy anchor: a plain C epoll proxy between two UNIX socket paths, moving bytes
 * with splice(2) through a 256 KiB pipe per direction, with half-close (an end of stream becomes
 * shutdown(SHUT_WR) on the other side once the pipe is empty). No policy, one thread.
 * Usage: proxy-c <listen-path> <target-path>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct dir { int src, dst, p[2]; size_t in; int eof, shut; };
struct conn { int a, b, dead; struct dir ab, ba; struct conn *next; };

// Freed after each epoll batch: a later event of the same batch may still point here.
static struct conn *graveyard;

static int ep;
static struct sockaddr_un target = { .sun_family = AF_UNIX };

static void drop(struct conn *c) {
  int fds[] = { c->a, c->b, c->ab.p[0], c->ab.p[1], c->ba.p[0], c->ba.p[1] };
  for (int i = 0; i < 6; i++) close(fds[i]);
  c->dead = 1, c->next = graveyard, graveyard = c;
}

/* Moves what can move without blocking; -1 on an error of either socket. */
static int pump(struct dir *d) {
  for (;;) {
    int progress = 0;
    if (!d->eof) {
      ssize_t n = splice(d->src, NULL, d->p[1], NULL, 1 << 30, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) d->in += n, progress = 1;
      else if (n == 0) d->eof = 1, progress = 1;
      else if (errno != EAGAIN && errno != EINTR) return -1;
    }
    if (d->in > 0) {
      ssize_t n = splice(d->p[0], NULL, d->dst, NULL, d->in, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) d->in -= n, progress = 1;
      else if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
    }
    if (!progress) break;
  }
  if (d->eof && d->in == 0 && !d->shut) d->shut = 1, shutdown(d->dst, SHUT_WR);
  return 0;
}

static void service(struct conn *c) {
  if (c->dead) return;
  if (pump(&c->ab) < 0 || pump(&c->ba) < 0 || (c->ab.shut && c->ba.shut)) drop(c);
}

static void join(int a) {
  int b = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  // A UNIX connect completes or fails at once; a full target queue is tried again.
  while (connect(b, (struct sockaddr *)&target, sizeof target) != 0) {
    if (errno != EAGAIN) { close(a); close(b); return; }
    usleep(1000);
  }
  struct conn *c = calloc(1, sizeof *c);
  c->a = a, c->b = b;
  c->ab = (struct dir){ .src = a, .dst = b }, c->ba = (struct dir){ .src = b, .dst = a };
  if (pipe2(c->ab.p, O_NONBLOCK | O_CLOEXEC) || pipe2(c->ba.p, O_NONBLOCK | O_CLOEXEC)) { perror("pipe2"); exit(1); }
  // The pipe size the secpolicy relay asks for.
  fcntl(c->ab.p[1], F_SETPIPE_SZ, 256 * 1024), fcntl(c->ba.p[1], F_SETPIPE_SZ, 256 * 1024);
  struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
  epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
  epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev);
  service(c);
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: proxy-c <listen-path> <target-path>\n"); return 2; }
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
  strncpy(target.sun_path, argv[2], sizeof target.sun_path - 1);
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  unlink(argv[1]);
  if (bind(l, (struct sockaddr *)&addr, sizeof addr) || listen(l, 511)) { perror("listen"); return 1; }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(ep, EPOLL_CTL_ADD, l, &lev);
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == NULL) {
        int a;
        while ((a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) join(a);
      } else {
        service(events[i].data.ptr);
      }
    }
    while (graveyard) { struct conn *c = graveyard; graveyard = c->next; free(c); }
  }
}
