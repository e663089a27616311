/**
 * The C source of a small UNIX-socket client for tests that need a real executable as the
 * peer: it connects a stream socket to argv[1] (exit 2 if it cannot), then runs `body`,
 * the rest of main(), with the connected socket in `s`.
 */
export function unixClientSource(body: string): string {
  return `
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 2; }
${body}}
`;
}
