/*
 * Both ends of the proxy benchmark, in C so that the ends cost little beside the proxy
 * under test (on a small machine a JavaScript end would be the bottleneck):
 *   load target <path>              a thread per connection: reads to end of stream and
 *                                   answers with the byte count; "ping" gets "pong" at once
 *   load stream <path> <MiB>        one stream of MiB MiB, then shutdown; prints seconds
 *                                   until the target acknowledged every byte
 *   load rate <path> <n> <threads>  n short exchanges (connect, ping, pong, close) over
 *                                   that many threads; prints seconds
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_un addr = { .sun_family = AF_UNIX };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int dial(void) {
  for (;;) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) == 0) return s;
    int e = errno;
    close(s);
    if (e != EAGAIN) { perror("connect"); exit(1); }
    usleep(500); // a full accept queue: try again
  }
}

static void *serve(void *arg) {
  int c = (int)(long)arg;
  size_t size = 256 * 1024;
  char *buf = malloc(size);
  long n = 0;
  ssize_t r;
  while ((r = read(c, buf, size)) > 0) {
    n += r;
    if (n == 4 && r == 4 && memcmp(buf, "ping", 4) == 0) write(c, "pong", 4);
  }
  if (n != 4) {
    char reply[32];
    int len = snprintf(reply, sizeof reply, "%ld", n);
    write(c, reply, len);
  }
  close(c);
  free(buf);
  return NULL;
}

static long per_thread;

static void *rate(void *arg) {
  (void)arg;
  char buf[8];
  for (long i = 0; i < per_thread; i++) {
    int s = dial();
    if (write(s, "ping", 4) != 4 || read(s, buf, 4) != 4) { fprintf(stderr, "rate: no pong\n"); exit(1); }
    close(s);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  strncpy(addr.sun_path, argv[2], sizeof addr.sun_path - 1);
  if (strcmp(argv[1], "target") == 0) {
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(argv[2]);
    if (bind(l, (struct sockaddr *)&addr, sizeof addr) || listen(l, 4096)) { perror("listen"); return 1; }
    printf("ready\n");
    fflush(stdout);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (;;) {
      int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
      if (c < 0) continue;
      pthread_t t;
      if (pthread_create(&t, &attr, serve, (void *)(long)c)) close(c);
    }
  }
  if (strcmp(argv[1], "stream") == 0 && argc == 4) {
    long mib = atol(argv[3]);
    char *chunk = malloc(1 << 20);
    memset(chunk, 0x5a, 1 << 20);
    double t0 = now();
    int s = dial();
    for (long i = 0; i < mib; i++)
      for (size_t off = 0; off < 1 << 20;) {
        ssize_t w = write(s, chunk + off, (1 << 20) - off);
        if (w <= 0) { perror("write"); return 1; }
        off += w;
      }
    shutdown(s, SHUT_WR);
    char reply[32] = { 0 };
    size_t got = 0;
    ssize_t r;
    while (got < sizeof reply - 1 && (r = read(s, reply + got, sizeof reply - 1 - got)) > 0) got += r;
    if (atol(reply) != mib << 20) { fprintf(stderr, "stream: target received %s of %ld bytes\n", reply, mib << 20); return 1; }
    printf("%.6f\n", now() - t0);
    return 0;
  }
  if (strcmp(argv[1], "rate") == 0 && argc == 5) {
    long n = atol(argv[3]), threads = atol(argv[4]);
    per_thread = n / threads;
    pthread_t *t = calloc(threads, sizeof *t);
    double t0 = now();
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, rate, NULL);
    for (long i = 0; i < threads; i++) pthread_join(t[i], NULL);
    printf("%.6f\n", now() - t0);
    return 0;
  }
  return 2;
}
