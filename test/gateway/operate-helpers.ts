/**
 * Helpers of the operating tests: a keep-alive HTTP client on one raw connection, a
 * scrape of the metrics socket, the decision log file read back, and waiting for a line
 * of a gateway process's output.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { GatewayLogEntry } from '../../src/index.js';
import { startGateway, type GatewayProcess } from '../helpers/dockerd.js';

/** startGateway(), resolved once the gateway says it is listening (its socket file appears a moment before). */
export async function startListening(options: Parameters<typeof startGateway>[0]): Promise<GatewayProcess> {
  const gw = await startGateway(options);
  try {
    await outputMatches(gw, (o) => o.includes('listening on'));
  } catch (e) {
    await gw.stop();
    throw e;
  }
  return gw;
}

/** One raw connection that sends requests one at a time and reads each Content-Length answer. */
export class RawConnection {
  readonly socket: net.Socket;
  #buffer = Buffer.alloc(0);
  #waiting: (() => void) | undefined;
  #closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, d]);
      this.#waiting?.();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#waiting?.();
    });
    socket.on('error', () => {});
  }

  static async open(path: string): Promise<RawConnection> {
    const socket = net.connect(path);
    await once(socket, 'connect');
    return new RawConnection(socket);
  }

  /** Sends `METHOD target` and resolves with the answer's status and body. */
  async request(method: string, target: string): Promise<{ status: number; body: string }> {
    this.socket.write(`${method} ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
    for (;;) {
      const text = this.#buffer.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end !== -1) {
        const head = text.slice(0, end);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        const bodyless = method === 'HEAD';
        if (text.length >= end + 4 + (bodyless ? 0 : length)) {
          const body = bodyless ? '' : text.slice(end + 4, end + 4 + length);
          this.#buffer = this.#buffer.subarray(end + 4 + (bodyless ? 0 : length));
          return { status: Number(head.slice(9, 12)), body };
        }
      }
      if (this.#closed) throw new Error(`connection closed before a whole answer: ${JSON.stringify(text)}`);
      await new Promise<void>((resolve) => (this.#waiting = resolve));
      this.#waiting = undefined;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One sample of the text format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** GET /metrics on a metrics socket: status, content type and the samples. */
export async function scrape(path: string): Promise<{ status: number; type: string; text: string; samples: Sample[] }> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
    http.get({ socketPath: path, path: '/metrics' }, resolve).on('error', reject),
  );
  let text = '';
  res.setEncoding('utf8');
  for await (const chunk of res) text += chunk;
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { status: res.statusCode!, type: String(res.headers['content-type']), text, samples };
}

/** The value of one sample (0 when absent). */
export function sample(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value ?? 0;
}

/** The entries of a decision log file. */
export function readLog(path: string): GatewayLogEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as GatewayLogEntry);
}

/** Resolves once `test` holds for the process's output (checked on each write); rejects if it exits first. */
export function outputMatches(gw: GatewayProcess, test: (output: string) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (test(gw.output())) {
        gw.child.stderr!.off('data', check);
        gw.child.off('exit', gone);
        resolve();
      }
    };
    const gone = (): void => reject(new Error(`the gateway exited: ${gw.output()}`));
    gw.child.stderr!.on('data', check);
    gw.child.once('exit', gone);
    check();
  });
}

/** Resolves once `test` holds for the entries of a log file, rechecked each turn (the gateway writes once per turn). */
export async function logHas(path: string, test: (entries: GatewayLogEntry[]) => boolean, what: string): Promise<GatewayLogEntry[]> {
  for (let i = 0; i < 2000; i++) {
    const entries = readLog(path);
    if (test(entries)) return entries;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`the decision log never showed ${what}: ${JSON.stringify(readLog(path))}`);
}
