/**
 * Peers for the challenge tests, each a separate process speaking raw frames: a python3
 * peer with scripted behaviours (honest, hostile, silent) and the C peer compiled from
 * test/challenge/c/peer.c.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { hasCommand, listenOn, closeServer, run, tempDir } from '../helpers/index.js';

/** The real python3 (not a pyenv shim). */
export const PYTHON = '/usr/bin/python3';

/** Source of the C peer (tests run from dist/, the source stays under test/). */
export const C_SOURCE = fileURLToPath(new URL('../../../test/challenge/c/peer.c', import.meta.url));

/**
 * python3 peer: `peer.py client|server <path> <mode> [arg]`. Modes:
 *  shift       answer a REQUEST with each byte << 1, the RESPONSE and "APP-MESSAGE\n" in one write
 *  trickle     like shift, but one byte per send(), a millisecond apart
 *  badshift    answer with each byte >> 1 (wrong)
 *  secret HEX  shared-secret side (version 2, bound to the connection) with key bytes.fromhex(HEX): its
 *              RESPONSE and "APP-MESSAGE\n" in one write, then it prints "verified" or "refused" for
 *              our RESPONSE. Its own socket inode comes from fstat, its peer's from a sock_diag query.
 *  secret1 HEX the version-1 shared secret (not bound to the connection), as an older peer speaks it
 *  reflect     send the peer's own REQUEST back as ours, then wait
 *  raw HEX     write these bytes, then wait
 *  silent      say nothing
 * Then it prints every byte it receives until end of stream.
 */
export const PEER_PY = String.raw`
import hashlib, hmac, os, socket, struct, sys, time
side, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
arg = sys.argv[4] if len(sys.argv) > 4 else ''
if side == 'server':
    l = socket.socket(socket.AF_UNIX); l.bind(path); l.listen(1)
    print('listening', flush=True)
    s, _ = l.accept()
else:
    s = socket.socket(socket.AF_UNIX); s.connect(path)
def recv_exact(n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: sys.exit(5)
        b += c
    return b
VERSION = 2 if mode in ('secret', 'reflect') else 1
def frame(t, p): return struct.pack('<IIQQ', t, 0, VERSION, len(p)) + p
def read_frame(want):
    t, _, v, n = struct.unpack('<IIQQ', recv_exact(24))
    assert t == want and v == VERSION, (t, v)
    return recv_exact(n)
def peer_inode(ino):
    # sock_diag (NETLINK_SOCK_DIAG = 4): SOCK_DIAG_BY_FAMILY (20) for one AF_UNIX inode,
    # UDIAG_SHOW_PEER (4), any cookie; the answer's UNIX_DIAG_PEER (2) attribute is the peer.
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)
    req = struct.pack('<BBHIIIII', socket.AF_UNIX, 0, 0, 0xffffffff, ino, 4, 0xffffffff, 0xffffffff)
    nl.send(struct.pack('<IHHII', 16 + len(req), 20, 1, 1, 0) + req)
    msg = nl.recv(65536); nl.close()
    length, kind = struct.unpack_from('<IH', msg, 0)
    if kind != 20: raise SystemExit('sock_diag: no answer for inode %d (type %d)' % (ino, kind))
    off = 16 + 16
    while off + 4 <= length:
        alen, atype = struct.unpack_from('<HH', msg, off)
        if alen < 4: break
        if atype == 2: return struct.unpack_from('<I', msg, off + 4)[0]
        off += (alen + 3) & ~3
    raise SystemExit('sock_diag: inode %d has no peer' % ino)
APP = b'APP-MESSAGE\n'
if mode == 'shift':
    c = read_frame(0); s.sendall(frame(1, bytes((b << 1) & 255 for b in c)) + APP)
elif mode == 'trickle':
    c = read_frame(0)
    for b in frame(1, bytes((b << 1) & 255 for b in c)) + APP:
        s.sendall(bytes([b])); time.sleep(0.001)
elif mode == 'badshift':
    c = read_frame(0); s.sendall(frame(1, bytes(b >> 1 for b in c)))
elif mode == 'secret':
    key = bytes.fromhex(arg); ours = os.urandom(32)
    role, peer_role = (b'server', b'client') if side == 'server' else (b'client', b'server')
    s.sendall(frame(0, ours)); theirs = read_frame(0)
    # After the peer's REQUEST: by then the accepting side's socket exists (has an inode).
    own = os.fstat(s.fileno()).st_ino; other = peer_inode(own)
    client_ino, server_ino = (other, own) if side == 'server' else (own, other)
    bound = struct.pack('<QQ', client_ino, server_ino)
    answer = hmac.new(key, b'secpolicy-v2 ' + role + b'\0' + bound + theirs + ours, hashlib.sha256).digest()
    s.sendall(frame(1, answer) + APP)
    resp = read_frame(1)
    expected = hmac.new(key, b'secpolicy-v2 ' + peer_role + b'\0' + bound + ours + theirs, hashlib.sha256).digest()
    print('verified' if hmac.compare_digest(resp, expected) else 'refused', flush=True)
elif mode == 'secret1':
    key = bytes.fromhex(arg); ours = os.urandom(32)
    role, peer_role = (b'server', b'client') if side == 'server' else (b'client', b'server')
    s.sendall(frame(0, ours)); theirs = read_frame(0)
    answer = hmac.new(key, b'secpolicy-v1 ' + role + b'\0' + theirs + ours, hashlib.sha256).digest()
    s.sendall(frame(1, answer) + APP)
    resp = read_frame(1)
    expected = hmac.new(key, b'secpolicy-v1 ' + peer_role + b'\0' + ours + theirs, hashlib.sha256).digest()
    print('verified' if hmac.compare_digest(resp, expected) else 'refused', flush=True)
elif mode == 'reflect':
    theirs = read_frame(0); s.sendall(frame(0, theirs))
elif mode == 'raw':
    s.sendall(bytes.fromhex(arg))
elif mode == 'silent':
    pass
sys.stdout.buffer.write(b'')
while True:
    try:
        d = s.recv(65536)
    except ConnectionResetError:
        break
    if not d: break
    sys.stdout.buffer.write(d); sys.stdout.flush()
`;

/** Runs the python3 peer (see PEER_PY for modes). */
export function pythonPeer(side: 'client' | 'server', path: string, mode: string, arg?: string) {
  return run(PYTHON, ['-c', PEER_PY, side, path, mode, ...(arg === undefined ? [] : [arg])]);
}

/** A reason to skip when the C peer cannot be built here, else false. */
export function needCc(): string | false {
  return hasCommand('cc') ? false : 'needs a C compiler (cc) to build the interop peer: apt-get install -y gcc';
}

/** Compiles the C peer into `dir`; returns the binary's path. */
export function buildCPeer(dir: string): string {
  const out = `${dir}/peer`;
  const r = spawnSync('cc', ['-O2', '-std=c11', '-D_GNU_SOURCE', '-Wall', '-Werror', '-o', out, C_SOURCE], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc failed: ${r.stderr}`);
  return out;
}

/** A listening server on a fresh path (socket file chmod'ed to `mode` if given) whose accepted sockets arrive through `next()`. */
export async function acceptor(t: { after: (fn: () => unknown) => void }, mode?: number) {
  const tmp = tempDir('secpolicy-challenge-');
  const path = tmp.path('s');
  const waiting: Array<(s: net.Socket) => void> = [];
  const queued: net.Socket[] = [];
  const accepted: net.Socket[] = [];
  const server = await listenOn(
    path,
    (s) => {
      accepted.push(s);
      const w = waiting.shift();
      if (w) w(s);
      else queued.push(s);
    },
    mode,
  );
  t.after(async () => {
    // server.close() waits for open connections: end them first.
    for (const s of accepted) s.destroy();
    await closeServer(server);
    tmp.cleanup();
  });
  return {
    path,
    tmp,
    next: () => (queued.length ? Promise.resolve(queued.shift()!) : new Promise<net.Socket>((r) => waiting.push(r))),
  };
}

/** A python3 client (see PEER_PY for modes) connected to a fresh server: its accepted socket. */
export async function pythonClient(t: { after: (fn: () => unknown) => void }, mode: string, arg?: string) {
  const server = await acceptor(t);
  const peer = pythonPeer('client', server.path, mode, arg);
  t.after(() => reap(peer));
  return { server, peer, socket: await server.next() };
}

/** Waits until a server peer prints its first line (it is listening). */
export function listening(child: ReturnType<typeof run>): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (d: Buffer) => {
      seen += d;
      if (!seen.includes('\n')) return;
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
      resolve();
    };
    const onExit = () => child.output().then((o) => reject(new Error(`peer exited before listening: ${o.stderr}`)));
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Reads everything a socket sends until it ends. */
export async function readAll(socket: net.Socket): Promise<string> {
  let out = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (out += d));
  await once(socket, 'end');
  return out;
}

/** Kills a child if it is still running and waits for it. */
export async function reap(child: ReturnType<typeof run>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await child.output();
}
