/**
 * HTTP load over UNIX sockets from a separate process, so the process measured does not
 * share its event loop with the load. The parent writes one JSON command per line on
 * stdin and reads one JSON answer per line on stdout:
 *
 * - `{ op: 'rate', socket, path, n, keepAlive, concurrency }` → `{ ms }`: n GETs, `concurrency` at a time
 * - `{ op: 'latency', socket, path, n }` → `{ samples }`: n sequential GETs on one keep-alive connection, µs each
 * - `{ op: 'hold', socket, path, n }` → `{ held }`: n connections, one GET each, then left open and idle
 * - `{ op: 'release' }` → `{ released, closedEarly }`: closes the held connections (closedEarly: closed by the server meanwhile)
 *
 * Any non-2xx status or socket error ends the process with a message on stderr.
 */
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isMain } from './stats.js';

/** A command of the load process. */
export type LoadCommand =
  | { op: 'rate'; socket: string; path: string; n: number; keepAlive: boolean; concurrency: number }
  | { op: 'latency'; socket: string; path: string; n: number }
  | { op: 'hold'; socket: string; path: string; n: number }
  | { op: 'release' };

function fail(message: string): never {
  process.stderr.write(`http-load: ${message}\n`);
  process.exit(1);
}

function get(socketPath: string, path: string, agent: http.Agent | false): Promise<void> {
  return new Promise((resolve) => {
    http
      .get({ socketPath, path, agent, headers: { Host: 'docker' } }, (res) => {
        if (res.statusCode! < 200 || res.statusCode! > 299) fail(`${path}: status ${res.statusCode}`);
        res.resume().on('end', resolve);
      })
      .on('error', (e: NodeJS.ErrnoException) => fail(`${path}: ${e.code ?? e.message}`));
  });
}

async function rate(c: Extract<LoadCommand, { op: 'rate' }>): Promise<{ ms: number }> {
  const agent = c.keepAlive ? new http.Agent({ keepAlive: true, maxSockets: c.concurrency }) : false;
  let started = 0;
  const start = performance.now();
  const worker = async (): Promise<void> => {
    while (started < c.n) {
      started++;
      await get(c.socket, c.path, agent);
    }
  };
  await Promise.all(Array.from({ length: c.concurrency }, worker));
  const ms = performance.now() - start;
  if (agent) agent.destroy();
  return { ms };
}

async function latency(c: Extract<LoadCommand, { op: 'latency' }>): Promise<{ samples: number[] }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const samples: number[] = [];
  for (let i = 0; i < c.n; i++) {
    const t = performance.now();
    await get(c.socket, c.path, agent);
    samples.push((performance.now() - t) * 1000);
  }
  agent.destroy();
  return { samples };
}

const held: net.Socket[] = [];
let closedEarly = 0;

/** One raw keep-alive request per connection; resolves once the response head has arrived, the connection stays open. */
async function hold(c: Extract<LoadCommand, { op: 'hold' }>): Promise<{ held: number }> {
  const one = async (): Promise<void> => {
    const s = net.connect(c.socket);
    s.on('error', (e: NodeJS.ErrnoException) => fail(`hold: ${e.code ?? e.message}`));
    await once(s, 'connect');
    s.write(`GET ${c.path} HTTP/1.1\r\nHost: docker\r\n\r\n`);
    let seen = '';
    await new Promise<void>((resolve) => {
      const onData = (d: Buffer): void => {
        seen += d.toString('latin1');
        if (seen.includes('\r\n\r\n')) {
          if (!/^HTTP\/1\.1 2\d\d/.test(seen)) fail(`hold: ${seen.split('\r\n')[0]}`);
          s.off('data', onData);
          s.on('data', () => {});
          resolve();
        }
      };
      s.on('data', onData);
    });
    // A server may close idle connections (a keep-alive timeout); the parent sees how many.
    s.on('close', () => closedEarly++);
    held.push(s);
  };
  // In batches: the servers measured have ordinary accept backlogs.
  for (let i = 0; i < c.n; i += 64) await Promise.all(Array.from({ length: Math.min(64, c.n - i) }, one));
  return { held: held.length };
}

function release(): { released: number; closedEarly: number } {
  const out = { released: held.length, closedEarly };
  for (const s of held.splice(0)) {
    s.removeAllListeners('close');
    s.destroy();
  }
  closedEarly = 0;
  return out;
}

async function serve(): Promise<void> {
  for await (const line of createInterface({ input: process.stdin })) {
    const c = JSON.parse(line) as LoadCommand;
    const out = c.op === 'rate' ? await rate(c) : c.op === 'latency' ? await latency(c) : c.op === 'hold' ? await hold(c) : release();
    process.stdout.write(JSON.stringify(out) + '\n');
  }
}

/** The parent's handle on a load process. */
export interface LoadProcess {
  child: ChildProcess;
  /** Sends a command and resolves with its answer. */
  send: <T>(command: LoadCommand) => Promise<T>;
  close: () => Promise<void>;
}

/** Starts a load process (a separate node process running this module). */
export function startLoad(): LoadProcess {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  let queue = Promise.resolve();
  const send = <T>(command: LoadCommand): Promise<T> => {
    const p = queue.then(async () => {
      child.stdin!.write(JSON.stringify(command) + '\n');
      const line = await lines.next();
      if (line.done) throw new Error(`the load process stopped during ${command.op}`);
      return JSON.parse(line.value) as T;
    });
    queue = p.then(
      () => {},
      () => {},
    );
    return p;
  };
  return {
    child,
    send,
    close: async () => {
      child.stdin!.end();
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

if (isMain(import.meta.url)) await serve();
