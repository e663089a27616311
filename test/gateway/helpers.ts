/**
 * Gateway test fixtures: a real upstream HTTP server on a UNIX socket that records exactly
 * what reached it, a gateway in this process, and raw clients in other processes
 * (python3, optionally as another user through setpriv) that send bytes as written.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { closeGateway, createGateway, parseGatewayPolicy, Peer, type GatewayLogEntry } from '../../src/index.js';
import { closeServer, run, tempDir, type RunAs } from '../helpers/index.js';

/**
 * X-Secpolicy-Container as the gateway sends it for a peer in this process's cgroup (peers
 * run with setpriv stay in it): absent on a recognised host layout, `unknown` in a cgroup
 * that names neither the host nor a container (a CI sandbox's, say), `runtime:id` in a
 * container. Read through the library from a real connection to this process.
 */
export async function hostContainerHeader(): Promise<string | undefined> {
  const tmp = tempDir('secpolicy-own-cgroup-');
  const server = net.createServer();
  try {
    server.listen(tmp.path('s.sock'));
    await once(server, 'listening');
    const client = net.connect(tmp.path('s.sock'));
    const [accepted] = (await once(server, 'connection')) as [net.Socket];
    const c = new Peer(accepted).container;
    client.destroy();
    accepted.destroy();
    return c === null ? undefined : c === undefined ? 'unknown' : `${c.runtime}:${c.id}`;
  } finally {
    await closeServer(server);
    tmp.cleanup();
  }
}

/** What the upstream received for one request. */
export interface Received {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** The full Id the recording upstream gives the container (or exec) a request names: 64 hex digits derived from the name. */
export function fakeId(name: string): string {
  return /^[0-9a-f]{64}$/.test(name) ? name : createHash('sha256').update(name).digest('hex');
}

/** Options of {@link upstream}. */
export interface UpstreamOptions {
  /** Docker containers the upstream knows: id to inspect answer. */
  containers?: Record<string, { Name: string; Config: { Labels: Record<string, string> } }>;
  /** Called for each request before the default answer; return true when it answered. */
  handle?: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => boolean;
}

/** A recording upstream: answers `{"url": ...}` to everything; on upgrade, says 101 and echoes upper-cased until the client ends. */
export async function upstream(t: TestContext, path: string, options: UpstreamOptions = {}) {
  const received: Received[] = [];
  const raw: Buffer[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      received.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, headers: req.headers, body });
      if (options.handle?.(req, res, body)) return;
      const m = /^\/containers\/([0-9a-f]{64})\/json$/.exec(req.url!);
      if (m && options.containers) {
        const c = options.containers[m[1]!];
        res.writeHead(c ? 200 : 404, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify(c ?? { message: 'No such container' }));
      }
      // Docker's /version and inspect answers, as far as the Docker profile reads them (a clean container).
      const docker = /^(?:\/v[0-9.]+)?\/version$/.test(req.url!)
        ? { ApiVersion: '1.41' }
        : /^\/(?:containers|exec)\/[^?]+\/json$/.test(req.url!)
          ? {
              // The full Id of what the path names (a container's Id, an exec's ID).
              [req.url!.startsWith('/exec/') ? 'ID' : 'Id']: fakeId(decodeURIComponent(req.url!.split('/')[2]!)),
              HostConfig: {
                // dockerd's defaults for an unprivileged container
                MaskedPaths: '/proc/asound /proc/acpi /proc/kcore /proc/keys /proc/latency_stats /proc/timer_list'
                  .concat(' /proc/timer_stats /proc/sched_debug /proc/scsi /sys/firmware')
                  .split(' '),
                ReadonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
              },
              Mounts: [],
              ContainerID: fakeId('c1'),
            }
          : {};
      const answer = JSON.stringify({ url: req.url, length: body.length, ...docker });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(answer) });
      res.end(answer);
    });
  });
  server.on('connection', (s: net.Socket) => s.on('data', (d: Buffer) => raw.push(d)));
  // Upgraded streams are not the http server's any more: closed here when the test ends.
  const streams = new Set<net.Socket>();
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    streams.add(socket);
    socket.once('close', () => streams.delete(socket));
    socket.on('error', () => socket.destroy());
    received.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, headers: req.headers, body: head });
    if (!req.url!.includes('/attach')) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
      return;
    }
    socket.write('HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(d.toString('latin1').toUpperCase()));
    // Half-close: the client has finished sending; the stream still answers, then ends.
    socket.on('end', () => socket.end('[stdin closed]'));
  });
  (server as http.Server & { allowHalfOpen?: boolean }).allowHalfOpen = true;
  server.listen(path);
  await once(server, 'listening');
  t.after(() => {
    for (const s of streams) s.destroy();
    return closeServer(server);
  });
  return { server, streams, received, raw: () => Buffer.concat(raw).toString('latin1') };
}

/** A gateway in this process in front of a recording upstream, in a fresh directory. */
export async function gatewayFixture(t: TestContext, policy: string | object, options: { mode?: number; upstream?: UpstreamOptions } = {}) {
  const tmp = tempDir('secpolicy-gateway-');
  t.after(() => tmp.cleanup());
  const up = await upstream(t, tmp.path('up.sock'), options.upstream);
  const logs: GatewayLogEntry[] = [];
  const server = await createGateway({
    listen: tmp.path('gw.sock'),
    target: tmp.path('up.sock'),
    policy: parseGatewayPolicy(policy),
    mode: options.mode ?? 0o666,
    log: (e) => logs.push(e),
  });
  t.after(() => closeGateway(server, { grace: 0 }));
  return { tmp, up, server, logs, path: tmp.path('gw.sock') };
}

/** The system python3 (a per-user shim, such as pyenv's, may not run as another user). */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const PY_CLIENT = `
import socket, sys, base64, time
parts = sys.stdin.read().split()
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)  # a safety net so that a gateway that never answers fails the test instead of hanging it
s.connect(sys.argv[1])
pause = 'pause' in sys.argv[2:]  # a pause between parts: each arrives as a write of its own
try:
    for i, part in enumerate(parts):
        if pause and i > 0:
            time.sleep(0.15)
        s.sendall(base64.b64decode(part))
except (BrokenPipeError, ConnectionResetError):
    if pause:
        raise  # paced writes must each be taken: a gateway that closed in between fails the client
    pass  # the gateway closed early (413, 400): read what it said
if 'shut' in sys.argv[2:]:
    s.shutdown(socket.SHUT_WR)
out = b''
while True:
    try:
        d = s.recv(65536)
    except (ConnectionResetError, socket.timeout):
        break
    if not d:
        break
    out += d
sys.stdout.write(base64.b64encode(out).decode())
`;

/**
 * Sends `bytes` (as written, one write per part; with `pause`, 150 ms apart, and a write the
 * gateway refuses fails the client) from a python3 process, optionally as another user, and resolves with everything received until the
 * gateway closes.
 */
export async function rawRequest(
  path: string,
  bytes: string | Buffer | Array<string | Buffer>,
  options: { as?: RunAs; shut?: boolean; pause?: boolean } = {},
) {
  const parts = (Array.isArray(bytes) ? bytes : [bytes]).map((b) => Buffer.from(b as string, 'utf8').toString('base64'));
  const flags = [...(options.shut ? ['shut'] : []), ...(options.pause ? ['pause'] : [])];
  const child = run(PYTHON, ['-c', PY_CLIENT, path, ...flags], options.as ? { as: options.as } : {});
  child.stdin!.end(parts.join('\n'));
  const out = await child.output();
  if (out.code !== 0) throw new Error(`python3 client failed (${out.code}): ${out.stderr}`);
  // Bytes as latin1: one character per byte, so Content-Length counts match.
  return Buffer.from(out.stdout, 'base64').toString('latin1');
}

/** A parsed HTTP response. */
export interface Response {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Splits the responses of one connection (Content-Length or chunked bodies). */
export function parseResponses(text: string): Response[] {
  // Lengths count bytes: work on the bytes as latin1 and decode bodies as UTF-8 at the end.
  const out: Response[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) throw new Error(`incomplete response: ${JSON.stringify(rest.slice(0, 200))}`);
    const lines = rest.slice(0, end).split('\r\n');
    const status = Number(lines[0]!.split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    rest = rest.slice(end + 4);
    let body = '';
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = rest.slice(0, n);
      rest = rest.slice(n);
    } else if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const nl = rest.indexOf('\r\n');
        const n = Number.parseInt(rest.slice(0, nl), 16);
        rest = rest.slice(nl + 2);
        if (n === 0) {
          rest = rest.slice(2);
          break;
        }
        body += rest.slice(0, n);
        rest = rest.slice(n + 2);
      }
    } else {
      body = rest;
      rest = '';
    }
    out.push({ status, headers, body: Buffer.from(body, 'latin1').toString('utf8') });
  }
  return out;
}

/** A request as bytes: `GET /x` plus headers, with a body and Content-Length when given. */
export function req(line: string, options: { headers?: string[]; body?: string; close?: boolean } = {}): string {
  const headers = ['Host: docker', ...(options.headers ?? [])];
  if (options.body !== undefined && !headers.some((h) => /^(content-length|transfer-encoding):/i.test(h)))
    headers.push(`Content-Length: ${Buffer.byteLength(options.body)}`);
  if (options.close) headers.push('Connection: close');
  return `${line} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n${options.body ?? ''}`;
}
