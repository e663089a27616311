/*
 * A challenge peer written from docs/protocol.md alone, as a C program built on the C library
 * would speak it: it checks that the TypeScript side is wire-compatible.
 *
 *   peer server|client <socket-path> <mode> [key-file]
 *
 * mode: send   - we send the ten-byte example challenge, the answer is each byte << 1
 *       recv   - we answer the peer's challenge with each byte << 1
 *       mutual - both of the above
 *       secret - the shared-secret mechanism, version 2 (HMAC-SHA256 bound to the two sockets'
 *                inodes), key read from key-file; the peer's inode comes from sock_diag
 *
 * After a verified exchange it writes "C-APP\n" (a client then shuts down its write side),
 * prints "ok" and then every byte the peer sends until end of stream. Exit 0 verified,
 * 1 refused (wrong answer or reflected nonce), 2 error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum frame_type { CHALLENGE_REQUEST = 0, CHALLENGE_RESPONSE = 1 };
struct header { enum frame_type type; uint64_t version; size_t payload_size; };
_Static_assert(sizeof(struct header) == 24, "header is 24 bytes on a 64-bit ABI");
#define MAX_PAYLOAD 65536

static void die(const char *what) { fprintf(stderr, "peer: %s: %s\n", what, strerror(errno)); exit(2); }
static void fail(const char *what) { fprintf(stderr, "peer: %s\n", what); exit(2); }

static void write_all(int fd, const void *buf, size_t n) {
  const uint8_t *p = buf;
  while (n) { ssize_t w = write(fd, p, n); if (w < 0) { if (errno == EINTR) continue; die("write"); } p += w; n -= (size_t)w; }
}
static void read_all(int fd, void *buf, size_t n) {
  uint8_t *p = buf;
  while (n) { ssize_t r = read(fd, p, n); if (r < 0) { if (errno == EINTR) continue; die("read"); } if (r == 0) fail("stream ended inside a frame"); p += r; n -= (size_t)r; }
}
static uint64_t version = 1;
static void send_frame(int fd, enum frame_type type, const uint8_t *payload, size_t size) {
  struct header h; memset(&h, 0, sizeof h);
  h.type = type; h.version = version; h.payload_size = size;
  write_all(fd, &h, sizeof h); write_all(fd, payload, size);
}
static uint8_t *recv_frame(int fd, enum frame_type want, size_t *size) {
  struct header h; read_all(fd, &h, sizeof h);
  if (h.version != version) fail("bad version");
  if (h.type != want) fail("unexpected frame type");
  if (h.payload_size == 0 || h.payload_size > MAX_PAYLOAD) fail("bad payload size");
  uint8_t *p = malloc(h.payload_size); if (!p) fail("out of memory");
  read_all(fd, p, h.payload_size); *size = h.payload_size; return p;
}

/* ---- SHA-256 and HMAC (FIPS 180-4, RFC 2104) ---- */
static const uint32_t K[64] = {
  0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,
  0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
  0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,
  0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
  0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,
  0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2};
typedef struct { uint32_t h[8]; uint8_t buf[64]; size_t fill; uint64_t len; } sha256;
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void sha_block(sha256 *s, const uint8_t *b) {
  uint32_t w[64], a, c, d, e, f, g, h, bb;
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)b[4*i] << 24 | (uint32_t)b[4*i+1] << 16 | (uint32_t)b[4*i+2] << 8 | b[4*i+3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i-15], 7) ^ ROR(w[i-15], 18) ^ (w[i-15] >> 3), s1 = ROR(w[i-2], 17) ^ ROR(w[i-2], 19) ^ (w[i-2] >> 10);
    w[i] = w[i-16] + s0 + w[i-7] + s1;
  }
  a = s->h[0]; bb = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
    h = g; g = f; f = e; e = d + t1; d = c; c = bb; bb = a; a = t1 + t2;
  }
  s->h[0] += a; s->h[1] += bb; s->h[2] += c; s->h[3] += d; s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}
static void sha_init(sha256 *s) {
  static const uint32_t iv[8] = {0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19};
  memcpy(s->h, iv, sizeof iv); s->fill = 0; s->len = 0;
}
static void sha_update(sha256 *s, const uint8_t *p, size_t n) {
  s->len += n;
  while (n--) { s->buf[s->fill++] = *p++; if (s->fill == 64) { sha_block(s, s->buf); s->fill = 0; } }
}
static void sha_final(sha256 *s, uint8_t out[32]) {
  uint64_t bits = s->len * 8; uint8_t pad = 0x80, zero = 0, lenb[8];
  sha_update(s, &pad, 1);
  while (s->fill != 56) sha_update(s, &zero, 1);
  for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8*i));
  sha_update(s, lenb, 8);
  for (int i = 0; i < 8; i++) { out[4*i] = s->h[i] >> 24; out[4*i+1] = s->h[i] >> 16; out[4*i+2] = s->h[i] >> 8; out[4*i+3] = s->h[i]; }
}
/* The inode of the socket connected to socket `ino` (sock_diag, UNIX_DIAG_PEER). */
static uint32_t peer_inode(uint32_t ino) {
  int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG); if (nl < 0) die("socket(NETLINK_SOCK_DIAG)");
  struct { struct nlmsghdr nh; struct unix_diag_req r; } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = sizeof req; req.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY; req.nh.nlmsg_flags = NLM_F_REQUEST; req.nh.nlmsg_seq = 1;
  req.r.sdiag_family = AF_UNIX; req.r.udiag_states = ~0u; req.r.udiag_ino = ino; req.r.udiag_show = UDIAG_SHOW_PEER;
  req.r.udiag_cookie[0] = req.r.udiag_cookie[1] = ~0u;
  if (send(nl, &req, sizeof req, 0) != (ssize_t)sizeof req) die("send(sock_diag)");
  static uint8_t buf[8192]; ssize_t n = recv(nl, buf, sizeof buf, 0); if (n < 0) die("recv(sock_diag)"); close(nl);
  struct nlmsghdr *h = (struct nlmsghdr *)buf;
  if (!NLMSG_OK(h, (size_t)n) || h->nlmsg_type != SOCK_DIAG_BY_FAMILY) fail("sock_diag: no answer for our socket");
  struct unix_diag_msg *m = NLMSG_DATA(h);
  int left = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
  for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, left); a = RTA_NEXT(a, left))
    if (a->rta_type == UNIX_DIAG_PEER) return *(uint32_t *)RTA_DATA(a);
  fail("sock_diag: our socket has no peer");
  return 0;
}

/* HMAC-SHA256(key, "secpolicy-v2 " role "\0" u64le(client_ino) u64le(server_ino) received own) */
static void secret_response(const uint8_t *key, size_t klen, const char *role, const uint8_t bound[16], const uint8_t *received, const uint8_t *own, uint8_t out[32]) {
  uint8_t k[64] = {0}, ipad[64], opad[64], inner[32];
  if (klen > 64) { sha256 s; sha_init(&s); sha_update(&s, key, klen); sha_final(&s, k); } else memcpy(k, key, klen);
  for (int i = 0; i < 64; i++) { ipad[i] = k[i] ^ 0x36; opad[i] = k[i] ^ 0x5c; }
  sha256 s; sha_init(&s); sha_update(&s, ipad, 64);
  sha_update(&s, (const uint8_t *)"secpolicy-v2 ", 13); sha_update(&s, (const uint8_t *)role, strlen(role) + 1);
  sha_update(&s, bound, 16);
  sha_update(&s, received, 32); sha_update(&s, own, 32); sha_final(&s, inner);
  sha_init(&s); sha_update(&s, opad, 64); sha_update(&s, inner, 32); sha_final(&s, out);
}

static int same(const uint8_t *a, const uint8_t *b, size_t n) { uint8_t d = 0; for (size_t i = 0; i < n; i++) d |= a[i] ^ b[i]; return d == 0; }

int main(int argc, char **argv) {
  if (argc < 4) fail("usage: peer server|client <socket-path> send|recv|mutual|secret [key-file]");
  int server = strcmp(argv[1], "server") == 0;
  const char *mode = argv[3];
  int sending = !strcmp(mode, "send") || !strcmp(mode, "mutual"), answering = !strcmp(mode, "recv") || !strcmp(mode, "mutual");
  int secret = !strcmp(mode, "secret");
  if (!sending && !answering && !secret) fail("unknown mode");
  uint8_t key[4096]; size_t klen = 0;
  if (secret) {
    if (argc < 5) fail("secret mode needs a key file");
    int kfd = open(argv[4], O_RDONLY | O_NOFOLLOW); if (kfd < 0) die("open key file");
    ssize_t r = read(kfd, key, sizeof key); if (r < 0) die("read key file"); close(kfd);
    klen = (size_t)r; if (klen && key[klen-1] == '\n') klen--;
    if (klen < 16) fail("key shorter than 16 bytes");
  }

  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen(argv[2]) >= sizeof addr.sun_path) fail("path too long");
  strcpy(addr.sun_path, argv[2]);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); if (fd < 0) die("socket");
  if (server) {
    unlink(argv[2]);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(fd, 1) < 0) die("listen");
    printf("listening\n"); fflush(stdout);
    int c = accept(fd, NULL, NULL); if (c < 0) die("accept");
    close(fd); fd = c;
  } else if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");

  int verified = 1;
  size_t n;
  if (secret) {
    const char *role = server ? "server" : "client", *peer_role = server ? "client" : "server";
    uint8_t ours[32], answer[32], expected[32], bound[16];
    version = 2;
    if (getrandom(ours, 32, 0) != 32) die("getrandom");
    send_frame(fd, CHALLENGE_REQUEST, ours, 32);
    uint8_t *theirs = recv_frame(fd, CHALLENGE_REQUEST, &n);
    /* After the peer's REQUEST: by then the accepting side's socket exists (has an inode). */
    struct stat st; if (fstat(fd, &st) < 0) die("fstat");
    uint64_t own = (uint64_t)st.st_ino, other = peer_inode((uint32_t)st.st_ino);
    uint64_t client_ino = server ? other : own, server_ino = server ? own : other;
    for (int i = 0; i < 8; i++) { bound[i] = (uint8_t)(client_ino >> (8 * i)); bound[8 + i] = (uint8_t)(server_ino >> (8 * i)); }
    if (n != 32 || same(theirs, ours, 32)) { fprintf(stderr, "peer: refused nonce\n"); return 1; }
    secret_response(key, klen, role, bound, theirs, ours, answer);
    send_frame(fd, CHALLENGE_RESPONSE, answer, 32);
    uint8_t *resp = recv_frame(fd, CHALLENGE_RESPONSE, &n);
    secret_response(key, klen, peer_role, bound, ours, theirs, expected);
    verified = n == 32 && same(resp, expected, 32);
  } else {
    uint8_t challenge[10];
    if (sending) {
      for (int i = 0; i < 10; i++) challenge[i] = (uint8_t)(0x41 + i * 13);
      send_frame(fd, CHALLENGE_REQUEST, challenge, 10);
    }
    if (answering) {
      uint8_t *theirs = recv_frame(fd, CHALLENGE_REQUEST, &n);
      for (size_t i = 0; i < n; i++) theirs[i] = (uint8_t)(theirs[i] << 1);
      send_frame(fd, CHALLENGE_RESPONSE, theirs, n);
    }
    if (sending) {
      uint8_t *resp = recv_frame(fd, CHALLENGE_RESPONSE, &n);
      verified = n == 10;
      for (size_t i = 0; verified && i < 10; i++) verified = resp[i] == (uint8_t)(challenge[i] << 1);
    }
  }
  if (!verified) { printf("refused\n"); return 1; }
  write_all(fd, "C-APP\n", 6);
  if (!server) shutdown(fd, SHUT_WR);
  printf("ok\n"); fflush(stdout);
  char buf[4096]; ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)r, stdout);
  fflush(stdout);
  return 0;
}
