/**
 * Bounded work per unverified peer: a frame header that announces the largest payload must
 * not make the server hold that much memory before the bytes arrive. A separate server
 * process (a createServer with a challenge) and a separate python3 client holding
 * thousands of connections: the server's RSS with every connection having sent only a
 * header is compared with its RSS when the same connections were idle.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { DEFAULT_MAX_PAYLOAD } from '../../src/challenge/index.js';
import { dumpUnixSockets } from '../../src/native/index.js';
import { needCommand, run, tempDir } from '../helpers/index.js';
import { PYTHON } from './peers.js';

const CONNECTIONS = 2000;
const INDEX = fileURLToPath(new URL('../../src/index.js', import.meta.url));

/** The server: a challenge server at argv[1]; each stdin line is answered with one JSON line of its state. */
const SERVER = `
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
const { Policy, createServer } = await import(process.argv[2]);
const policy = new Policy().challengeSend(() => new Uint8Array(32).fill(1), () => true);
const server = createServer({ policy, handshakeTimeout: 600000 }, (s) => s.destroy());
server.listen(process.argv[1], () => console.log('listening'));
createInterface({ input: process.stdin }).on('line', () => {
  globalThis.gc();
  const rss = Number(/VmRSS:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
  server.getConnections((_, conns) => console.log(JSON.stringify({ rss, conns })));
});
`;

/** The client: "open" opens N connections, "headers" sends each a RESPONSE header announcing `size` bytes; each answered "done". */
const CLIENT = String.raw`
import socket, struct, sys
path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conns = []
for line in sys.stdin:
    if line.strip() == 'open':
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX); s.connect(path); conns.append(s)
    elif line.strip() == 'headers':
        for s in conns: s.sendall(struct.pack('<IIQQ', 1, 0, 1, size))
    print('done', flush=True)
`;

/** Line-oriented request/response over a child's stdin/stdout. */
function talker(child: ReturnType<typeof run>) {
  let buffered = '';
  const waiting: Array<(line: string) => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d;
    let i;
    while ((i = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
      waiting.shift()?.(line);
    }
  });
  const next = () => new Promise<string>((resolve) => waiting.push(resolve));
  return {
    next,
    ask: (line: string) => {
      const p = next();
      child.stdin!.write(`${line}\n`);
      return p;
    },
  };
}

/** Waits until the server has taken every byte the clients sent: its accepted sockets' receive queues are empty. */
async function drained(path: string, count: number, server: ReturnType<typeof talker>): Promise<{ rss: number; conns: number }> {
  for (;;) {
    // One request to the server per round: it answers after the reads it has already done.
    const state = JSON.parse(await server.ask('stat')) as { rss: number; conns: number };
    const accepted = dumpUnixSockets().filter((s) => s.name === path && s.state === 'established');
    if (state.conns === count && accepted.length === count && accepted.every((s) => s.queue?.read === 0)) return state;
  }
}

test(
  `${CONNECTIONS} connections that each sent only a header announcing ${DEFAULT_MAX_PAYLOAD} bytes cost the server little more than idle ones`,
  { skip: needCommand(PYTHON), timeout: 120_000 },
  async (t) => {
    const dir = tempDir('secpolicy-bounded-');
    t.after(dir.cleanup);
    const path = dir.path('s');
    const server = run(process.execPath, ['--expose-gc', '--input-type=module', '-e', SERVER, path, INDEX]);
    t.after(() => server.kill('SIGKILL'));
    const s = talker(server);
    assert.equal(await s.next(), 'listening');
    const client = run(PYTHON, ['-c', CLIENT, path, String(CONNECTIONS), String(DEFAULT_MAX_PAYLOAD)]);
    t.after(() => client.kill('SIGKILL'));
    const c = talker(client);

    assert.equal(await c.ask('open'), 'done');
    const idle = await drained(path, CONNECTIONS, s);
    assert.equal(await c.ask('headers'), 'done');
    const headers = await drained(path, CONNECTIONS, s);

    const perConnection = (headers.rss - idle.rss) / CONNECTIONS;
    t.diagnostic(
      `server RSS idle ${(idle.rss / 2 ** 20).toFixed(1)} MiB, with headers ${(headers.rss / 2 ** 20).toFixed(1)} MiB: ${Math.round(perConnection)} bytes per connection`,
    );
    // Generous: a tenth of the announced payload per connection (allocating it costs all of it).
    assert.ok(perConnection < DEFAULT_MAX_PAYLOAD / 10, `${Math.round(perConnection)} bytes per header-only connection`);
  },
);
