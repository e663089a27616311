/**
 * Mutual shared-secret handshakes per second between two processes (the server here, the
 * client in a child process), beside plain connect+close over the same kind of socket in
 * the same run. Rounds alternate between the modes so that the noise of a shared machine
 * falls on all of them alike. Each connection ends when the server closes it after its
 * decision, so a figure is the full round trip: connect, exchange, verify on both sides.
 *
 *   node dist/bench/challenge.js
 */
import { fork } from 'node:child_process';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Policy } from '../src/index.js';
import { isMain, median, report } from './lib/stats.js';

const ROUNDS = 11;
const CONNECTIONS = 300;

/** One measured mode: how the server treats a connection, and what the client is told. */
interface Mode {
  name: string;
  /** What the client runs per connection: nothing ('plain'), the shared secret, or the unbound mutual challenge. */
  client: { key?: string; keyFile?: string; mutual?: string };
  serve: (socket: net.Socket) => Promise<void>;
  samples: number[];
}

/** A client request: make `n` sequential connections to `path`. */
interface Job {
  path: string;
  n: number;
  key?: string;
  keyFile?: string;
  mutual?: string;
}

/**
 * The shared secret's exchange without its connection binding: the same two nonces and
 * HMACs in the same frames through challengeSend/challengeReceive, so that the difference
 * to the shared secret is the binding (two sock_diag lookups per handshake, one per side).
 */
function unboundMutual(key: Buffer, role: string): Policy {
  const mac = (...parts: Uint8Array[]) => parts.reduce((h, p) => h.update(p), createHmac('sha256', key)).digest();
  const peer = role === 'server' ? 'client' : 'server';
  return new Policy()
    .challengeSend(
      () => randomBytes(32),
      (challenge, response) => timingSafeEqual(mac(Buffer.from(peer), challenge), response),
    )
    .challengeReceive((challenge) => mac(Buffer.from(role), challenge));
}

/** The client process: runs each job it is sent and answers with 'done'. */
async function client(): Promise<void> {
  process.on('message', async (job: Job) => {
    const policy = job.mutual
      ? undefined
      : job.key
        ? new Policy().sharedSecret(Buffer.from(job.key, 'hex'))
        : job.keyFile
          ? new Policy().sharedSecret({ keyFile: job.keyFile })
          : undefined;
    for (let i = 0; i < job.n; i++) {
      const s = net.connect(job.path);
      await once(s, 'connect');
      const p = job.mutual ? unboundMutual(Buffer.from(job.mutual, 'hex'), 'client') : policy;
      if (p && !(await p.apply(s)).allowed) throw new Error('the bench server was refused');
      s.resume();
      await once(s, 'close');
    }
    process.send!('done');
  });
}

/** Runs the benchmark and prints µs per connection for each mode against plain connect+close. */
export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-bench-challenge-'));
  const key = randomBytes(32);
  const keyFile = join(dir, 'key');
  writeFileSync(keyFile, `${key.toString('hex')}\n`, { mode: 0o600 });
  const keyPolicy = new Policy().sharedSecret(key);
  const filePolicy = new Policy().sharedSecret({ keyFile });
  const verified = (policy: Policy) => async (socket: net.Socket) => {
    const d = await policy.apply(socket);
    if (!d.allowed) throw new Error('the bench client was refused');
    socket.destroy();
  };
  const modes: Mode[] = [
    { name: 'connect+close (plain)', client: {}, serve: async (s) => void s.destroy(), samples: [] },
    {
      name: 'mutual HMAC challenge, same frames, unbound (challengeSend/Receive)',
      client: { mutual: key.toString('hex') },
      serve: (s) => verified(unboundMutual(key, 'server'))(s),
      samples: [],
    },
    { name: 'sharedSecret handshake (key bytes)', client: { key: key.toString('hex') }, serve: verified(keyPolicy), samples: [] },
    { name: 'sharedSecret handshake (key file, both sides)', client: { keyFile }, serve: verified(filePolicy), samples: [] },
  ];
  let current: Mode = modes[0]!;
  let failure: unknown;
  const server = net.createServer((s) => current.serve(s).catch((e) => ((failure ??= e), s.destroy())));
  const path = join(dir, 's');
  server.listen(path);
  await once(server, 'listening');
  const child = fork(fileURLToPath(import.meta.url), ['--client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // One pending job at a time: its 'done', or the child's exit, settles it.
  let settle: ((error?: Error) => void) | undefined;
  child.on('message', () => settle?.());
  child.on('exit', () => settle?.(new Error('the bench client exited')));
  try {
    const round = async (mode: Mode) => {
      current = mode;
      const start = performance.now();
      await new Promise<void>((resolve, reject) => {
        settle = (error) => (error ? reject(error) : resolve());
        child.send({ path, n: CONNECTIONS, ...mode.client } satisfies Job);
      });
      if (failure) throw failure;
      return ((performance.now() - start) * 1000) / CONNECTIONS;
    };
    for (const mode of modes) await round(mode); // warm-up
    for (let r = 0; r < ROUNDS; r++) for (const mode of modes) mode.samples.push(await round(mode));
    const anchor = { name: modes[0]!.name, samples: modes[0]!.samples };
    for (const mode of modes) report(`${mode.name}, µs per connection`, mode.samples, mode === modes[0] ? undefined : anchor);
    for (const mode of modes) console.log(`${mode.name}: ${Math.round(1e6 / median(mode.samples))} per second`);
  } finally {
    settle = undefined;
    child.kill();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--client')) await client();
else if (isMain(import.meta.url)) await run();
