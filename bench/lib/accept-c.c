/*
 * The accept anchors: a C accept loop on a UNIX socket path. Each line "<n> <mode>" on
 * stdin makes it accept n connections and print "done <µs>", the CPU time (user + system,
 * getrusage) it spent on them. Modes:
 *   plain  accept, close;
 *   calls  accept, then the system calls a verifying server makes for uid + group +
 *          program (strace of createServer() shows exactly these): getsockopt(SO_PEERCRED),
 *          getsockopt(SO_PEERPIDFD) (the pin), statx("/proc/PID/exe"), poll(pidfd) (still
 *          alive after the read), close(pidfd); then close;
 *   full   calls, and statx of the socket file through an O_PATH fd held since the bind
 *          (the perms rule): the C library's whole rule set.
 * User and group names come from a cache in the server, so they make no system call.
 * Usage: accept-c <path>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static double cpu_us(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(argv[1]);
  // The backlog Node's net.Server uses.
  if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 511) || chmod(argv[1], 0600)) { perror("listen"); return 1; }
  int sf = open(argv[1], O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (sf < 0) { perror("open O_PATH"); return 1; }
  printf("ready\n");
  fflush(stdout);
  char line[64], mode[16];
  long matched = 0;
  while (fgets(line, sizeof line, stdin)) {
    long n = 0;
    mode[0] = 0;
    if (sscanf(line, "%ld %15s", &n, mode) < 1) return 2;
    int calls = strcmp(mode, "calls") == 0 || strcmp(mode, "full") == 0, perms = strcmp(mode, "full") == 0;
    double start = cpu_us();
    for (long i = 0; i < n; i++) {
      int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
      if (c < 0) { perror("accept"); return 1; }
      if (calls) {
        struct ucred uc;
        socklen_t len = sizeof uc;
        if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &uc, &len)) { perror("SO_PEERCRED"); return 1; }
        int pidfd = -1;
        len = sizeof pidfd;
        if (getsockopt(c, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len)) pidfd = -1;
        char exe[32];
        snprintf(exe, sizeof exe, "/proc/%d/exe", uc.pid);
        struct statx sx;
        // STATX_BASIC_STATS | STATX_BTIME: what the program rule asks for.
        if (statx(AT_FDCWD, exe, 0, STATX_BASIC_STATS | STATX_BTIME, &sx) == 0) matched += sx.stx_ino != 0;
        if (pidfd >= 0) {
          struct pollfd pf = { .fd = pidfd, .events = POLLIN };
          matched += poll(&pf, 1, 0) == 0;
        }
        if (perms) {
          struct statx ss;
          if (statx(sf, "", AT_EMPTY_PATH, STATX_TYPE | STATX_MODE, &ss) == 0) matched += (ss.stx_mode & 0777) == 0600;
        }
        if (pidfd >= 0) close(pidfd);
      }
      close(c);
    }
    printf("done %.0f\n", cpu_us() - start);
    fflush(stdout);
  }
  // Kept so that the checks are made as a server would make them.
  return matched < 0;
}
