/**
 * The Node.js floors of the gateway bench: the least a proxy written for Node.js does per
 * request, with none of the gateway's work (no verification, no policy, no log, no
 * identity headers), in a process of its own in front of the same dockerd.
 *
 *   relay  a byte relay: each accepted connection gets its own upstream connection and
 *          the two are piped both ways (no HTTP parsing at all). No Node.js proxy that
 *          reads requests can cost less per byte relayed.
 *   http   an HTTP proxy: node's http server, each request forwarded with http.request
 *          through a keep-alive Agent (upstream connections reused, as the gateway and
 *          HAProxy with upstream keep-alive do), the answer piped back.
 *
 *   mini   the least an HTTP proxy written in JavaScript on node:net does: its own minimal
 *          HTTP/1.1 reading (the request line and header lines split and the head written
 *          again, a Content-Length body; the answer's head read for its Content-Length or
 *          chunked framing), requests one at a time over upstream connections kept in a
 *          pool. Not a proxy to use (no limits, no checks beyond what framing needs): a
 *          floor for what an HTTP engine of the gateway's own could cost instead of node:http.
 *
 * With workers > 1, that many cluster workers serve, each accepting from the one listening
 * socket itself (no handle passing per connection), as the gateway's `--workers` do.
 *
 *   node dist/bench/lib/node-floor.js <relay|http|mini> <listen> <upstream> [workers]
 *   (prints "ready" once every process listens)
 */
import cluster from 'node:cluster';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { isMain } from './stats.js';

function relay(upstream: string): net.Server {
  return net.createServer((client) => {
    const up = net.connect(upstream);
    client.pipe(up).on('error', () => client.destroy());
    up.pipe(client).on('error', () => up.destroy());
    client.on('error', () => up.destroy());
    up.on('error', () => client.destroy());
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
  });
}

function httpProxy(upstream: string): http.Server {
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256 });
  const server = http.createServer((req, res) => {
    const out = http.request({ socketPath: upstream, agent, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode!, answer.rawHeaders);
      answer.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  server.keepAliveTimeout = 0;
  return server;
}

const CRLF2 = Buffer.from('\r\n\r\n');

/** Where the framing of an answer stands: bytes of body left, or a chunked body being walked. */
interface Framing {
  /** Content-Length bytes still to come; -1 for chunked. */
  left: number;
  /** Chunked: bytes of the current chunk's data (and its CRLF) still to skip. */
  skip: number;
  /** Chunked: the unread tail of a size line. */
  line: string;
  /** Chunked: the last chunk was seen and its trailer's end is awaited. */
  last: boolean;
}

/** Advances a chunked body's framing over `data`; true once the body has ended. */
function chunked(f: Framing, data: Buffer): boolean {
  let i = 0;
  while (i < data.length) {
    if (f.skip > 0) {
      const n = Math.min(f.skip, data.length - i);
      f.skip -= n;
      i += n;
      continue;
    }
    const nl = data.indexOf(10, i);
    if (nl < 0) {
      f.line += data.toString('latin1', i);
      return false;
    }
    const line = (f.line + data.toString('latin1', i, nl)).trim();
    f.line = '';
    i = nl + 1;
    if (f.last) {
      if (line === '') return true; // the empty line after the last chunk (and any trailer)
      continue;
    }
    const size = parseInt(line, 16);
    if (size === 0) f.last = true;
    else f.skip = size + 2;
  }
  return false;
}

function miniProxy(upstream: string): net.Server {
  const idle: net.Socket[] = [];
  const connectUp = (): net.Socket => {
    const up = net.connect(upstream);
    up.on('error', () => up.destroy());
    up.on('close', () => {
      const at = idle.indexOf(up);
      if (at >= 0) idle.splice(at, 1);
    });
    return up;
  };
  return net.createServer((client) => {
    let pending: Buffer = Buffer.alloc(0);
    let busy = false;
    client.on('error', () => client.destroy());
    const next = (): void => {
      if (busy) return;
      const end = pending.indexOf(CRLF2);
      if (end < 0) return;
      const lines = pending.toString('latin1', 0, end).split('\r\n');
      let closing = false;
      const [method, target, version] = lines[0]!.split(' ');
      let length = 0;
      const headers: string[] = [];
      for (let i = 1; i < lines.length; i++) {
        const colon = lines[i]!.indexOf(':');
        const name = lines[i]!.slice(0, colon).toLowerCase();
        const value = lines[i]!.slice(colon + 1).trim();
        if (name === 'transfer-encoding') return void client.destroy(); // not in the floor's load
        if (name === 'content-length') length = Number(value);
        // Hop-by-hop: the upstream connection stays in the pool whatever the client asked.
        if (name === 'connection') {
          if (/close/i.test(value)) closing = true;
          continue;
        }
        headers.push(`${name}: ${value}`);
      }
      if (pending.length < end + 4 + length) return;
      const body = pending.subarray(end + 4, end + 4 + length);
      pending = pending.subarray(end + 4 + length);
      busy = true;
      const up = idle.pop() ?? connectUp();
      const failed = (): void => void client.destroy();
      up.on('close', failed);
      let head: Buffer | undefined = Buffer.alloc(0) as Buffer;
      const f: Framing = { left: 0, skip: 0, line: '', last: false };
      let upClosing = false;
      const done = (): void => {
        up.removeListener('data', onData);
        up.removeListener('close', failed);
        // An upstream that said it will close is not reused.
        if (!upClosing) idle.push(up);
        busy = false;
        if (closing) client.end();
        else next();
      };
      const onData = (data: Buffer): void => {
        if (head !== undefined) {
          head = Buffer.concat([head, data]);
          const e = head.indexOf(CRLF2);
          if (e < 0) return;
          const text = head.toString('latin1', 0, e).toLowerCase();
          const m = /\r\ncontent-length:\s*(\d+)/.exec(text);
          f.left = m ? Number(m[1]) : /\r\ntransfer-encoding:\s*chunked/.test(text) ? -1 : 0;
          upClosing = /\r\nconnection:\s*close/.test(text);
          const rest = head.subarray(e + 4);
          client.write(head);
          head = undefined;
          if (f.left === -1 ? chunked(f, rest) : (f.left -= rest.length) <= 0) done();
          return;
        }
        client.write(data);
        if (f.left === -1 ? chunked(f, data) : (f.left -= data.length) <= 0) done();
      };
      up.on('data', onData);
      up.write(`${method} ${target} ${version}\r\n${headers.join('\r\n')}\r\n\r\n`);
      if (body.length > 0) up.write(body);
    };
    client.on('data', (data: Buffer) => {
      pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
      next();
    });
    client.on('end', () => client.end());
  });
}

async function main(mode: string, listen: string, upstream: string, workers: number): Promise<void> {
  if (cluster.isPrimary) rmSync(listen, { force: true });
  if (cluster.isPrimary && workers > 1) {
    // The workers serve; the cluster primary binds the socket once and hands the listening
    // socket to each, which accepts from it itself (no handle passing per connection).
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    const started: Array<Promise<unknown>> = [];
    for (let i = 0; i < workers; i++) started.push(once(cluster.fork(), 'listening'));
    await Promise.all(started);
    process.stdout.write('ready\n');
    process.on('SIGTERM', () => {
      for (const w of Object.values(cluster.workers ?? {})) w?.kill();
      process.exit(0);
    });
    return;
  }
  const server = mode === 'relay' ? relay(upstream) : mode === 'mini' ? miniProxy(upstream) : httpProxy(upstream);
  server.listen(listen);
  await once(server, 'listening');
  if (cluster.isPrimary) {
    process.stdout.write('ready\n');
    process.on('SIGTERM', () => process.exit(0));
  }
}

if (isMain(import.meta.url)) {
  const [mode, listen, upstream, workers] = process.argv.slice(2);
  if ((mode !== 'relay' && mode !== 'http' && mode !== 'mini') || !listen || !upstream) {
    console.error('usage: node-floor <relay|http|mini> <listen> <upstream> [workers]');
    process.exit(2);
  }
  await main(mode, listen, upstream, Number(workers ?? 1));
}
