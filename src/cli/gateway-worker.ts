/**
 * A process of a gateway group (see gateway-group.ts): started by the group's first
 * process with the listening socket as fd 4 and an IPC channel; serves the policy text it
 * is given, accepts and verifies its own connections, and does what the first process
 * asks (prepare and apply a reload, reopen the log, send its metrics, stop). It ends when
 * the first process asks, on SIGTERM or SIGINT, or when the first process is gone (its
 * channel closes): a process left alone would serve a policy nobody can reload.
 */
import type * as net from 'node:net';
import { batched, closeGateway, metricsOf, openGateway, parseGatewayPolicy, prepareReload, reopenGatewayLog } from '../gateway/index.js';
import type { ConnectionCount, PreparedReload, Taken } from '../gateway/index.js';
import type { FromWorker, ToWorker, WorkerConfig } from './gateway-group.js';
import { WORKER_LISTEN_FD } from './gateway-group.js';

let server: net.Server | undefined;
let grace = 10_000;
let stopping = false;
/** The policy file's path: messages name it, and relative key files resolve against its directory. */
let source = '';
/** The last prepared reload, which `apply` swaps in. */
let pending: PreparedReload | undefined;

function tell(m: FromWorker): void {
  if (process.connected) process.send!(m);
}

/** Places asked of the first process, by request id. */
const asked = new Map<number, (t: Taken) => void>();
let nextAsk = 1;

/** Connections per uid counted by the first process for the whole group. */
const sharedCount: ConnectionCount = {
  take(uid, cap) {
    // No limit: counted there (a reload may bring one), nothing to wait for.
    if (cap === undefined) {
      tell({ t: 'take', uid });
      return { ok: true, open: 0 };
    }
    return new Promise((resolve) => {
      const id = nextAsk++;
      asked.set(id, resolve);
      tell({ t: 'take', uid, cap, id });
    });
  },
  give(uid) {
    tell({ t: 'give', uid });
  },
};

function message(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return `${typeof code === 'string' ? `${code}: ` : ''}${(e as Error).message}`.replace(/\n/g, ' ');
}

async function start(config: WorkerConfig): Promise<void> {
  grace = config.grace;
  source = config.source;
  const policy = parseGatewayPolicy(config.text, { source: config.source, resolveNames: true });
  server = await openGateway(
    {
      listen: { fd: WORKER_LISTEN_FD },
      target: config.target,
      policy,
      ...(config.log !== undefined && config.log !== '-' && { log: config.log }),
      ...(config.logDeniedOnly && { logDeniedOnly: true }),
      ...(config.handshakeTimeout !== undefined && { handshakeTimeout: config.handshakeTimeout }),
    },
    {
      countMetrics: config.countMetrics,
      ...(config.sharedCount && { count: sharedCount }),
      // Standard output is the first process's: its lines go there, a batch a turn.
      ...(config.log === '-' && { sink: batched((data) => tell({ t: 'log', data })) }),
    },
  );
}

async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), grace + 1000).unref();
  if (server !== undefined) await closeGateway(server, { grace });
  process.exit(0);
}

async function handle(m: ToWorker): Promise<void> {
  switch (m.t) {
    case 'start':
      try {
        await start(m.config);
        tell({ t: 'listening' });
      } catch (e) {
        tell({ t: 'failed', message: message(e) });
        process.exit(2);
      }
      return;
    case 'prepare':
      try {
        const next = await prepareReload(server!, parseGatewayPolicy(m.text, { source, resolveNames: true }));
        pending = next;
        tell({ t: 'done', id: m.id });
      } catch (e) {
        tell({ t: 'done', id: m.id, error: message(e) });
      }
      return;
    case 'apply':
      if (pending === undefined) return tell({ t: 'done', id: m.id, error: 'no reload prepared' });
      pending.apply();
      pending = undefined;
      return tell({ t: 'done', id: m.id });
    case 'drop':
      pending = undefined;
      return tell({ t: 'done', id: m.id });
    case 'reopen':
      try {
        reopenGatewayLog(server!);
        tell({ t: 'done', id: m.id });
      } catch (e) {
        tell({ t: 'done', id: m.id, error: message(e) });
      }
      return;
    case 'metrics': {
      const registry = server === undefined ? undefined : metricsOf(server);
      return tell({ t: 'metrics', id: m.id, json: registry === undefined ? [] : await registry.getMetricsAsJSON() });
    }
    case 'taken': {
      const answer = asked.get(m.id);
      asked.delete(m.id);
      return answer?.({ ok: m.ok, open: m.open });
    }
    case 'stop':
      return void stop();
  }
}

process.on('message', (m: ToWorker) => void handle(m));
// The first process is gone: nobody could reload or stop this one any more.
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
// Signals meant for the group's first process (sent to the whole process group, say) are its to act on.
process.on('SIGHUP', () => {});
process.on('SIGUSR1', () => {});
