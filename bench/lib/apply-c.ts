/**
 * The C baseline of bench/apply: the system calls apply() makes for uid, gid, user,
 * group, program and perms (names come from a cache, so no NSS), with no JS in the way.
 * strace of one apply() on an allowed peer shows exactly these, in this order:
 * getsockopt(SO_PEERCRED), getsockopt(SO_PEERPIDFD) (the pin), statx("/proc/PID/exe"),
 * poll(pidfd, POLLIN, 0) (still alive: a pidfd turns readable when its process exits),
 * statx(socket file fd, "", AT_EMPTY_PATH) (the listener's file, held open with O_PATH since
 * the bind), close(pidfd). A fresh connection from a process nobody has looked
 * at yet costs more (the kernel builds its /proc and pidfs entries): the "first" figures.
 * Usage of the compiled program: `apply-c <socket-path> <connections> <rounds>` (one
 * client process per connection); it prints
 * `first <µs, one per connection, round 0>`, `full <µs, later rounds>` and
 * `peercred <µs, ...>`.
 */
export const C_BENCH = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  const char *path = argv[1];
  int n = atoi(argv[2]), rounds = atoi(argv[3]);
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  unlink(path);
  if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, n) || chmod(path, 0755)) { perror("listen"); return 1; }
  // One process per connection, as in the JS bench.
  pid_t *kids = malloc(n * sizeof *kids);
  for (int i = 0; i < n; i++) {
    if ((kids[i] = fork()) == 0) {
      int s = socket(AF_UNIX, SOCK_STREAM, 0);
      if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); _exit(1); }
      pause();
      _exit(0);
    }
  }
  int *fds = malloc(n * sizeof *fds);
  for (int i = 0; i < n; i++) if ((fds[i] = accept(l, NULL, NULL)) < 0) { perror("accept"); return 1; }
  // The socket file, held as listen() holds it: perms is one statx of this fd per connection.
  int sf = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (sf < 0) { perror("open O_PATH"); return 1; }
  struct statx rule;
  if (statx(AT_FDCWD, "/proc/self/exe", 0, STATX_BASIC_STATS, &rule)) { perror("statx"); return 1; } // the children run this binary
  // One sample per connection and round, in microseconds.
  double *full = malloc((size_t)n * rounds * sizeof *full), *cred = malloc((size_t)n * rounds * sizeof *cred);
  long matched = 0;
  for (int r = 0; r < rounds; r++) {
    for (int i = 0; i < n; i++) {
      double t0 = now_us();
      struct ucred uc; socklen_t len = sizeof uc;
      if (getsockopt(fds[i], SOL_SOCKET, SO_PEERCRED, &uc, &len)) { perror("SO_PEERCRED"); return 1; }
      int pidfd = -1; len = sizeof pidfd;
      if (getsockopt(fds[i], SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len)) pidfd = -1;
      char exe[32];
      snprintf(exe, sizeof exe, "/proc/%d/exe", uc.pid);
      struct statx sx;
      if (statx(AT_FDCWD, exe, 0, STATX_BASIC_STATS, &sx) == 0 && sx.stx_ino == rule.stx_ino && sx.stx_dev_major == rule.stx_dev_major && sx.stx_dev_minor == rule.stx_dev_minor) matched++;
      if (pidfd >= 0) { struct pollfd pf = { .fd = pidfd, .events = POLLIN }; if (poll(&pf, 1, 0) == 0) matched++; }
      struct statx ss;
      if (statx(sf, "", AT_EMPTY_PATH, STATX_TYPE | STATX_MODE, &ss) == 0 && (ss.stx_mode & 0777) == 0755) matched++;
      if (pidfd >= 0) close(pidfd);
      full[r * n + i] = now_us() - t0;
    }
    for (int i = 0; i < n; i++) {
      double t0 = now_us();
      struct ucred uc; socklen_t len = sizeof uc;
      getsockopt(fds[i], SOL_SOCKET, SO_PEERCRED, &uc, &len);
      matched += uc.uid == 0;
      cred[r * n + i] = now_us() - t0;
    }
  }
  // Round 0 meets each process for the first time (procfs and pidfs create their inodes then).
  printf("first");
  for (long k = 0; k < n; k++) printf(" %.3f", full[k]);
  printf("\nfull");
  for (long k = n; k < (long)n * rounds; k++) printf(" %.3f", full[k]);
  printf("\npeercred");
  for (long k = 0; k < (long)n * rounds; k++) printf(" %.3f", cred[k]);
  printf("\n");
  fprintf(stderr, "matched %ld\n", matched);
  for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
  for (int i = 0; i < n; i++) waitpid(kids[i], NULL, 0);
  unlink(path);
  return 0;
}
`;
