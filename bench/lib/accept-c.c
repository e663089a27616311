/*
 * The accept-rate anchor: a plain C accept loop on a UNIX socket path. Each line
 * "<n>" on stdin makes it accept n connections, closing each at once, then print "done".
 * Usage: accept-c <path>
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(argv[1]);
  // The backlog Node's net.Server uses.
  if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 511) || chmod(argv[1], 0600)) { perror("listen"); return 1; }
  printf("ready\n");
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    long n = atol(line);
    for (long i = 0; i < n; i++) {
      int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
      if (c < 0) { perror("accept"); return 1; }
      close(c);
    }
    printf("done\n");
    fflush(stdout);
  }
  return 0;
}
