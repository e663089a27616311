/**
 * `secpolicy gateway --workers N`: one gateway served by N processes on one listening
 * socket. The first process makes the socket (or takes the one systemd passed), serves
 * like a lone gateway, and starts N-1 more, each handed the listening socket as fd 4 and a
 * private IPC channel (fd 3). Every process accepts and verifies its own connections: the
 * peer is read from the kernel in the process that serves it. The first one speaks for the
 * group: it reads the policy file once and gives every process the same text; a SIGHUP
 * is prepared (read, parsed and compiled) in every process before any applies it, and
 * applied by all or by none; SIGUSR1 reopens every process's log; its metrics socket
 * answers the sum of all processes' counts; a process that dies is started again; SIGTERM
 * stops them all with the same grace. With `limits.connectionsPerUid`, the first process
 * counts every process's connections (each asks it before serving one). The decision log
 * stays whole: a file is appended to by every process, each batch of whole lines in one
 * write(2) on an O_APPEND descriptor, and standard output is written by the first process
 * alone (the others send it their lines).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type * as net from 'node:net';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { ErrorCode, SecpolicyError } from '../errors.js';
import { countReload, groupMetricsText, LocalCount, parseGatewayPolicy, prepareReload, reopenGatewayLog } from '../gateway/index.js';
import type { GatewayPolicy, MetricsJson } from '../gateway/index.js';
import { handleFd, listenerHandle } from '../native/index.js';
import type { Registry } from 'prom-client';

/** The most processes `--workers` takes. */
export const MAX_WORKERS = 64;

/**
 * The default of `--workers`: a process for each CPU this process may run on. On two CPUs,
 * shared with the upstream daemon and the clients, two processes served new connections
 * 11-31% faster than one and keep-alive requests at the same rate (bench/gateway.ts).
 */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(MAX_WORKERS, os.availableParallelism()));
}

/**
 * Why a reload's policy cannot run in this group, or undefined: a count of connections per
 * uid is kept for all the processes by the first one only when the group started with
 * such a limit (`shared`); otherwise each process counts its own, and together they could
 * admit more than a limit a reload brings.
 */
export function unsharedLimit(policy: GatewayPolicy, shared: boolean): string | undefined {
  return shared || policy.limits.connectionsPerUid === undefined
    ? undefined
    : 'limits.connectionsPerUid can be added by a reload only to a gateway started with it (or with --workers 1)';
}

/** What a worker process needs to serve: the same as the first process, the policy as text. */
export interface WorkerConfig {
  text: string;
  source: string;
  target: string;
  /** A file every process appends to, or `-`: lines sent to the first process, which writes them to stdout. */
  log?: string;
  logDeniedOnly: boolean;
  handshakeTimeout?: number;
  countMetrics: boolean;
  grace: number;
  /** Connections per uid are counted by the first process: ask it for each one. */
  sharedCount: boolean;
}

/** Messages from the first process to a worker. */
export type ToWorker =
  | { t: 'start'; config: WorkerConfig }
  | { t: 'prepare'; id: number; text: string }
  | { t: 'apply'; id: number }
  | { t: 'drop'; id: number }
  | { t: 'reopen'; id: number }
  | { t: 'metrics'; id: number }
  | { t: 'taken'; id: number; ok: boolean; open: number }
  | { t: 'stop' };

/** Messages from a worker to the first process. */
export type FromWorker =
  | { t: 'listening' }
  | { t: 'failed'; message: string }
  | { t: 'done'; id: number; error?: string }
  | { t: 'metrics'; id: number; json: MetricsJson }
  | { t: 'log'; data: string }
  /** A connection to count (`id`: answer whether `cap` allows it; none: counted whatever the count). */
  | { t: 'take'; uid: number; cap?: number; id?: number }
  | { t: 'give'; uid: number };

/** The listening socket as a worker has it. */
export const WORKER_LISTEN_FD = 4;

const WORKER = fileURLToPath(new URL('./gateway-worker.js', import.meta.url));

interface Worker {
  child: ChildProcess;
  /** Answers awaited from it, by request id. */
  waiting: Map<number, (m: FromWorker) => void>;
  listening: boolean;
  /** Its connections counted in the shared count, by uid: given back when it ends. */
  held: LocalCount;
}

/** A running group, as the gateway command drives it. */
export interface GatewayGroup {
  /** What the first process's metrics socket answers: every process's metrics summed. */
  metricsText(own: Registry): Promise<string>;
  /** Starts the other processes; resolves once each listens (rejects, all stopped, if one cannot). */
  start(server: net.Server): Promise<void>;
  /** SIGHUP: the file read once, prepared everywhere, then applied everywhere, or nowhere. */
  reload(): Promise<GatewayPolicy>;
  /** SIGUSR1: every process reopens its log. */
  reopen(): Promise<void>;
  /** SIGTERM: every other process stops with the grace; resolves when they have exited. */
  stop(): Promise<void>;
}

/** Options of {@link gatewayGroup}. */
export interface GroupOptions {
  workers: number;
  policyFile: string;
  /** The policy text the first process runs, as read at start. */
  text: string;
  readText: () => Promise<string>;
  target: string;
  log?: string;
  logDeniedOnly: boolean;
  handshakeTimeout?: number;
  metrics: boolean;
  grace: number;
  say: (line: string) => void;
  /** The first process's count of connections per uid, kept for every process (when the policy limits them). */
  count?: LocalCount;
}

/**
 * The other processes of a gateway whose first process is this one. Nothing starts before
 * {@link GatewayGroup.start}.
 */
export function gatewayGroup(o: GroupOptions): GatewayGroup {
  const workers = new Set<Worker>();
  let server: net.Server | undefined;
  let fd = -1;
  let text = o.text;
  let nextId = 1;
  let stopping = false;

  const config = (): WorkerConfig => ({
    text,
    source: o.policyFile,
    target: o.target,
    ...(o.log !== undefined && { log: o.log }),
    logDeniedOnly: o.logDeniedOnly,
    ...(o.handshakeTimeout !== undefined && { handshakeTimeout: o.handshakeTimeout }),
    countMetrics: o.metrics,
    grace: o.grace,
    sharedCount: o.count !== undefined,
  });

  const send = (w: Worker, m: ToWorker): boolean => {
    if (!w.child.connected) return false;
    try {
      w.child.send(m);
      return true;
    } catch {
      return false;
    }
  };

  /** Asks every listening worker; resolves with each one's answer (one that has exited answers with an error). */
  const ask = (make: (id: number) => ToWorker): Promise<FromWorker[]> =>
    Promise.all(
      [...workers]
        .filter((w) => w.listening)
        .map(
          (w) =>
            new Promise<FromWorker>((resolve) => {
              const id = nextId++;
              w.waiting.set(id, resolve);
              if (!send(w, make(id))) {
                w.waiting.delete(id);
                resolve({ t: 'done', id, error: `process ${w.child.pid} has exited` });
              }
            }),
        ),
    );

  const failure = (answers: readonly FromWorker[]): string | undefined =>
    answers.map((a) => (a.t === 'done' ? a.error : undefined)).find((e) => e !== undefined);

  /** Settles when no reload is under way: a process is started only with a policy text no reload is replacing. */
  let reloaded: Promise<void> = Promise.resolve();
  /** Processes being started: a reload waits for them, so that it reaches every process. */
  const starting = new Set<Promise<void>>();

  const spawnWorker = async (): Promise<void> => {
    await reloaded;
    const started = startWorker();
    starting.add(started);
    try {
      await started;
    } finally {
      starting.delete(started);
    }
  };

  const startWorker = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [...process.execArgv, WORKER], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc', fd],
      });
      const w: Worker = { child, waiting: new Map(), listening: false, held: new LocalCount() };
      workers.add(w);
      child.on('message', (m: FromWorker) => {
        if (m.t === 'listening') {
          w.listening = true;
          resolve();
        } else if (m.t === 'failed') {
          reject(new SecpolicyError(ErrorCode.INVALID_ARG, `gateway process ${child.pid}: ${m.message}`));
        } else if (m.t === 'log') {
          process.stdout.write(m.data);
        } else if (m.t === 'take') {
          const taken = o.count?.take(m.uid, m.cap) ?? { ok: true, open: 0 };
          if (taken.ok) w.held.take(m.uid, undefined);
          if (m.id !== undefined) send(w, { t: 'taken', id: m.id, ...taken });
        } else if (m.t === 'give') {
          // Only what it holds: a process cannot give back another's places.
          if (w.held.open(m.uid) === 0) return;
          w.held.give(m.uid);
          o.count?.give(m.uid);
        } else {
          const answer = w.waiting.get(m.id);
          w.waiting.delete(m.id);
          answer?.(m);
        }
      });
      child.on('error', (e) => reject(e));
      child.on('exit', (code, signal) => {
        workers.delete(w);
        // Its connections closed with it.
        for (const [uid, n] of w.held.entries()) for (let i = 0; i < n; i++) o.count?.give(uid);
        for (const [id, answer] of w.waiting) answer({ t: 'done', id, error: `process ${child.pid} has exited` });
        w.waiting.clear();
        if (!w.listening) return reject(new SecpolicyError(ErrorCode.INVALID_ARG, `gateway process ${child.pid} exited before listening`));
        if (stopping) return;
        o.say(`process ${child.pid} ended (${signal ?? `exit ${code}`}); starting another`);
        setTimeout(() => {
          if (!stopping) spawnWorker().catch((e: Error) => o.say(`cannot start another process: ${e.message}; serving with one fewer`));
        }, 1000).unref();
      });
      send(w, { t: 'start', config: config() });
    });

  return {
    async metricsText(own) {
      const answers = await ask((id) => ({ t: 'metrics', id }));
      const others = answers.flatMap((a) => (a.t === 'metrics' ? [a.json] : []));
      return groupMetricsText(own, others);
    },

    async start(s) {
      server = s;
      const handle = listenerHandle(s);
      fd = handle === undefined ? -1 : (handleFd(handle) ?? -1);
      if (fd < 0)
        throw new SecpolicyError(ErrorCode.NATIVE, 'gateway: the listening socket has no descriptor to share with other processes');
      try {
        await Promise.all(Array.from({ length: o.workers - 1 }, () => spawnWorker()));
      } catch (e) {
        await this.stop();
        throw e;
      }
    },

    // One at a time: the gateway command runs reloads one after another.
    async reload() {
      const s = server!;
      let done!: () => void;
      reloaded = new Promise((resolve) => (done = resolve));
      try {
        // Every process is listening, and none starts until this reload is over.
        await Promise.allSettled([...starting]);
        let next: string;
        let prepared: Awaited<ReturnType<typeof prepareReload>>;
        try {
          next = await o.readText();
          const policy = parseGatewayPolicy(next, { source: o.policyFile, resolveNames: true });
          const unshared = unsharedLimit(policy, o.count !== undefined);
          if (unshared !== undefined)
            throw new SecpolicyError(ErrorCode.POLICY_FILE, `${unshared}: this gateway runs ${o.workers} processes`);
          prepared = await prepareReload(s, policy);
          const why = failure(await ask((id) => ({ t: 'prepare', id, text: next })));
          if (why !== undefined) {
            await ask((id) => ({ t: 'drop', id }));
            throw new SecpolicyError(ErrorCode.POLICY_FILE, `not applied by every process of the gateway: ${why}`);
          }
        } catch (e) {
          countReload(s, false);
          throw e;
        }
        // Every process has the new policy compiled: each swaps it in at once. One that
        // ended meanwhile is started again with it.
        prepared.apply();
        text = next;
        await ask((id) => ({ t: 'apply', id }));
        countReload(s, true);
        return prepared.policy;
      } finally {
        done();
      }
    },

    async reopen() {
      reopenGatewayLog(server!);
      const why = failure(await ask((id) => ({ t: 'reopen', id })));
      if (why !== undefined) throw new SecpolicyError(ErrorCode.UNSAFE_PATH, why);
    },

    async stop() {
      stopping = true;
      const exits = [...workers].map((w) =>
        w.child.exitCode !== null || w.child.signalCode !== null
          ? Promise.resolve()
          : new Promise<void>((r) => w.child.once('exit', () => r())),
      );
      for (const w of workers) if (!send(w, { t: 'stop' })) w.child.kill('SIGTERM');
      await Promise.all(exits);
    },
  };
}
