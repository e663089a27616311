/*
 * HTTP load over a UNIX socket, in C so that on a small machine the load costs little
 * beside the proxies under test:
 *   http-load <socket> <path> <n> <threads> <keep-alive 0|1>
 * sends n `GET <path>` requests from that many threads, each on one keep-alive connection
 * or on a new connection per request, reads each response to its end (Content-Length or
 * chunked), fails on any status but 2xx, and prints the seconds it took.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

static struct sockaddr_un addr = { .sun_family = AF_UNIX };
static char request[1024];
static size_t request_len;
static long total, started;
static int keep_alive;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "http-load: %s\n", what);
  exit(1);
}

/* A connected socket; a full accept queue (EAGAIN) is waited out. */
static int dial(void) {
  for (;;) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket");
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) == 0) return s;
    int e = errno;
    close(s);
    if (e != EAGAIN) die(strerror(e));
    usleep(200);
  }
}

static int take(void) {
  pthread_mutex_lock(&lock);
  int ok = started < total;
  if (ok) started++;
  pthread_mutex_unlock(&lock);
  return ok;
}

/* Reads more into buf (holding *have bytes); fails at end of stream. */
static void more(int s, char *buf, size_t *have) {
  if (*have >= BUF - 1) die("response too large");
  ssize_t r = read(s, buf + *have, BUF - 1 - *have);
  if (r <= 0) die("connection closed before a whole response");
  *have += (size_t)r;
  buf[*have] = 0;
}

/* One request and its whole response; what follows it stays in buf. */
static void exchange(int s, char *buf, size_t *have) {
  if (write(s, request, request_len) != (ssize_t)request_len) die("write");
  char *end;
  while ((end = strstr(buf, "\r\n\r\n")) == NULL) more(s, buf, have);
  if (*have < 12 || strncmp(buf, "HTTP/1.1 2", 10) != 0) die("a status other than 2xx");
  size_t head = (size_t)(end + 4 - buf);
  long length = -1;
  int chunked = 0;
  for (char *p = strstr(buf, "\r\n") + 2; p < end; p = strstr(p, "\r\n") + 2) {
    if (strncasecmp(p, "content-length:", 15) == 0) length = atol(p + 15);
    else if (strncasecmp(p, "transfer-encoding:", 18) == 0) chunked = 1;
  }
  size_t used;
  if (length >= 0) {
    while (*have < head + (size_t)length) more(s, buf, have);
    used = head + (size_t)length;
  } else if (chunked) {
    char *last;
    while ((last = strstr(buf + head, "0\r\n\r\n")) == NULL) more(s, buf, have);
    used = (size_t)(last + 5 - buf);
  } else {
    die("a response without Content-Length or chunks");
  }
  memmove(buf, buf + used, *have - used);
  *have -= used;
  buf[*have] = 0;
}

static void *worker(void *unused) {
  (void)unused;
  char *buf = malloc(BUF);
  if (buf == NULL) die("malloc");
  size_t have = 0;
  int s = -1;
  while (take()) {
    if (s < 0) {
      s = dial();
      have = 0;
      buf[0] = 0;
    }
    exchange(s, buf, &have);
    if (!keep_alive) {
      close(s);
      s = -1;
    }
  }
  if (s >= 0) close(s);
  free(buf);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: http-load <socket> <path> <n> <threads> <keep-alive 0|1>\n");
    return 2;
  }
  if (strlen(argv[1]) >= sizeof addr.sun_path) die("socket path too long");
  strcpy(addr.sun_path, argv[1]);
  total = atol(argv[3]);
  int threads = atoi(argv[4]);
  keep_alive = atoi(argv[5]);
  if (total < 1 || threads < 1 || threads > 1024) die("bad n or threads");
  int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: docker\r\n%s\r\n", argv[2], keep_alive ? "" : "Connection: close\r\n");
  if (n <= 0 || (size_t)n >= sizeof request) die("path too long");
  request_len = (size_t)n;
  pthread_t *t = calloc((size_t)threads, sizeof *t);
  double start = now();
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, worker, NULL) != 0) die("pthread_create");
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  printf("%.6f\n", now() - start);
  return 0;
}
