/**
 * Real connections for policy tests: a server on a fresh socket file (or abstract name),
 * a peer process (node, socat, python3, ...) run as any user that connects and holds the
 * connection until told to go, and the accepted socket on our side. Everything is torn
 * down by `close()`, which tests register with `t.after`.
 */
import { once } from 'node:events';
import { chmodSync } from 'node:fs';
import net from 'node:net';
import { closeServer, emulator, run, tempDir, type RunAs } from './index.js';

/** What connects: a command line whose process connects to the path (`@name` for an abstract socket) and then waits. */
export type PeerCommand = (path: string) => [string, string[]];

/** A node peer: connects, then holds the connection until its stdin ends. */
export const nodePeer =
  (exe = process.execPath): PeerCommand =>
  (path) => [
    exe,
    [
      '-e',
      `const a=process.argv[1];const s=require('net').connect(a[0]==='@'?'\\0'+a.slice(1):a);s.on('error',e=>{console.error(e.code);process.exit(3)});process.stdin.on('end',()=>process.exit(0)).resume()`,
      path,
    ],
  ];

/** A socat peer: connects and relays stdin (held open) to the socket. */
export const socatPeer: PeerCommand = (path) => [
  'socat',
  ['-u', 'STDIN', path.startsWith('@') ? `ABSTRACT-CONNECT:${path.slice(1)}` : `UNIX-CONNECT:${path}`],
];

/** A python3 peer (the real binary, not a pyenv shim): connects, waits for stdin to end. */
export const pythonPeer: PeerCommand = (path) => [
  '/usr/bin/python3',
  [
    '-c',
    'import socket,sys\ns=socket.socket(socket.AF_UNIX)\np=sys.argv[1]\ns.connect(("\\0"+p[1:]) if p.startswith("@") else p)\nsys.stdin.read()',
    path,
  ],
];

/** Options of {@link connection}. */
export interface ConnectionOptions {
  /** Run the peer as this user (root only). */
  as?: RunAs;
  /** The peer's command line. @default nodePeer() */
  peer?: PeerCommand;
  /** chmod the socket file to this after listen. @default 0o777, so any user can connect */
  mode?: number;
  /** Listen on an abstract name instead of a file. */
  abstract?: boolean;
}

/** A live connection: the accepted socket, the peer process, and how to end it all. */
export interface Connection {
  socket: net.Socket;
  server: net.Server;
  /** The socket path (a file, or `\0name` for an abstract socket). */
  path: string;
  dir: string;
  peer: ReturnType<typeof run>;
  close(): Promise<void>;
}

let counter = 0;
/** A bound against a peer that never connects, not a measure: an emulated Node starts in seconds, not milliseconds. */
const CONNECT_TIMEOUT = emulator ? 180_000 : 15_000;

/** Listens on a fresh socket, starts the peer, and resolves with the accepted socket. */
export async function connection(options: ConnectionOptions = {}): Promise<Connection> {
  const tmp = tempDir('secpolicy-conn-');
  const path = options.abstract ? `\0secpolicy-test-${process.pid}-${++counter}-${Date.now()}` : tmp.path('s.sock');
  // Paused: a peer that exits must not make Node read EOF and destroy our end before the test applies its policy.
  const server = net.createServer({ pauseOnConnect: true });
  const accepted = new Set<net.Socket>();
  server.on('connection', (s) => accepted.add(s));
  server.listen(path);
  await once(server, 'listening');
  let socket: net.Socket | undefined;
  const closeAll = async () => {
    socket?.destroy();
    for (const s of accepted) s.destroy();
    peer?.stdin?.end();
    if (peer && peer.exitCode === null && peer.signalCode === null) peer.kill('SIGKILL');
    await peer?.output();
    await closeServer(server);
    tmp.cleanup();
  };
  let peer: ReturnType<typeof run> | undefined;
  try {
    if (!options.abstract) chmodSync(path, options.mode ?? 0o777);
    const first = once(server, 'connection').then(([s]) => s as net.Socket);
    const [cmd, args] = (options.peer ?? nodePeer())(options.abstract ? `@${path.slice(1)}` : path);
    peer = run(cmd, args, options.as ? { as: options.as } : {});
    const exited = peer.output().then((o) => {
      throw new Error(`peer ${cmd} exited (${o.code}) before connecting: ${o.stderr.trim()}`);
    });
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`peer ${cmd} did not connect within ${CONNECT_TIMEOUT} ms`)), CONNECT_TIMEOUT);
    });
    try {
      socket = await Promise.race([first, exited, stuck]);
    } finally {
      clearTimeout(timer);
    }
    exited.catch(() => {});
    return { socket, server, path, dir: tmp.dir, peer, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** Users and groups that exist on the test machine (Debian base). */
export const DAEMON: RunAs = { uid: 1, gid: 1 };
export const NOBODY: RunAs = { uid: 65534, gid: 65534 };
