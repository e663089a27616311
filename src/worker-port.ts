/**
 * The library's worker threads, one way: digest hashing (identity/digest.ts), strict mode's
 * holder scan (identity/holders.ts) and the splice(2) relay (native/splice.ts). A worker is
 * started from a module file next to its user (from src/ or dist/ alike), spoken to over a
 * MessagePort with ids, referenced only while it has work, and when it dies every request
 * waiting on it fails with ERR_SECPOLICY_WORKER; the next use starts a new one.
 *
 * The worker's side is {@link serve} (a handler per request) or, for a worker that runs its
 * own loop, the port in `workerData.port` with {@link WorkerAnswer} messages.
 */
import { MessageChannel, Worker, receiveMessageOnPort, workerData, type MessagePort, type TransferListItem } from 'node:worker_threads';
import { ErrorCode, SecpolicyError } from './errors.js';

/** A request as it crosses to the worker; id 0 expects no answer. */
export interface WorkerRequest<T> {
  id: number;
  body: T;
}

/** What a worker posts on its port: that it is ready (or cannot run), or answers to requests (one or a batch). */
export type WorkerAnswer<T> =
  | { ready: unknown }
  | { unavailable: string }
  | { id: number; value: T }
  | { id: number; error: string }
  | Array<{ id: number; value?: T; error?: string }>;

/** Options of a {@link WorkerPort}. */
export interface WorkerPortOptions {
  /** The worker's module file (`new URL('./x-worker.js', import.meta.url)`). */
  url: URL;
  /** What the worker is, for messages: "the digest thread". */
  name: string;
  /** More `workerData` (the port is added as `port`). */
  data?: Record<string, unknown>;
  /**
   * Post requests in one batch (an array) per turn of the event loop, then call `flushed`
   * (a worker parked in a system call is woken there).
   */
  batch?: { flushed(): void };
  /** Start a new worker on the next use after one died (default true). */
  restart?: boolean;
}

/** The error requests fail with when their worker dies. */
const died = (name: string, why: string): SecpolicyError => new SecpolicyError(ErrorCode.WORKER, `${name} stopped: ${why}`);

interface Waiting<R> {
  resolve(value: R): void;
  reject(error: Error): void;
}

interface Running {
  worker: Worker;
  port: MessagePort;
  ready: Promise<unknown>;
  exited: Promise<void>;
}

/** A worker thread and the requests waiting on it. */
export class WorkerPort<Req, Res> {
  readonly #options: WorkerPortOptions;
  #running: Running | undefined;
  /** Why no worker can start here (a bundle without the worker file, a runtime without threads); set once. */
  #broken: string | undefined;
  #dead: string | undefined;
  readonly #waiting = new Map<number, Waiting<Res>>();
  #nextId = 1;
  #queue: Array<WorkerRequest<Req>> = [];

  constructor(options: WorkerPortOptions) {
    this.#options = options;
  }

  /** False when no worker can run here (it could not start, or died before it was ready): callers do the work themselves. */
  get available(): boolean {
    return this.#broken === undefined && (this.#options.restart !== false || this.#dead === undefined);
  }

  /** Requests waiting for an answer. */
  get size(): number {
    return this.#waiting.size;
  }

  /**
   * Starts the worker if none runs, and waits until it is ready: its ready value. Rejects
   * with ERR_SECPOLICY_UNSUPPORTED_PLATFORM when it cannot start, ERR_SECPOLICY_WORKER when
   * it died and is not restarted.
   */
  start(): Promise<unknown> {
    try {
      return this.#run().ready;
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  /**
   * Sends `body` to the worker: its id (for requests that name others, such as the relay's
   * destroy) and a promise of the answer, rejected with ERR_SECPOLICY_WORKER if the worker
   * dies first. Throws when no worker can run.
   */
  call(body: Req): { id: number; answer: Promise<Res> } {
    const running = this.#run();
    // Ids stay below 2^31 and are never 0 (no answer expected).
    const id = this.#nextId;
    this.#nextId = id >= 0x7fffffff ? 1 : id + 1;
    const answer = new Promise<Res>((resolve, reject) => this.#waiting.set(id, { resolve, reject }));
    // Referenced while work is waiting: a verification in progress keeps the process alive.
    if (this.#waiting.size === 1) this.#hold(running, true);
    this.#post(running, { id, body });
    return { id, answer };
  }

  /** {@link call}'s answer alone. */
  request(body: Req): Promise<Res> {
    try {
      return this.call(body).answer;
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  /** Sends `body` expecting no answer; nothing when no worker runs. */
  post(body: Req): void {
    if (this.#running) this.#post(this.#running, { id: 0, body });
  }

  /**
   * Ends the worker: sends `body` (a worker that stops by itself when told) or terminates
   * it, and resolves once it has exited. Referenced until then, so that whoever awaits this
   * is not left behind by an emptied event loop.
   */
  async stop(body?: Req): Promise<void> {
    const running = this.#running;
    if (!running) return;
    running.worker.ref();
    if (body === undefined) await running.worker.terminate();
    else this.post(body);
    await running.exited;
  }

  #run(): Running {
    if (this.#running) return this.#running;
    if (this.#broken !== undefined)
      throw new SecpolicyError(ErrorCode.UNSUPPORTED_PLATFORM, `${this.#options.name} cannot run here: ${this.#broken}`);
    if (this.#dead !== undefined && this.#options.restart === false) throw died(this.#options.name, this.#dead);
    const { port1, port2 } = new MessageChannel();
    const data = { ...this.#options.data, port: port2 };
    let worker: Worker;
    try {
      worker = startWorker(this.#options.url, data, [port2]);
    } catch (error) {
      port1.close();
      this.#broken = (error as Error).message;
      throw new SecpolicyError(ErrorCode.UNSUPPORTED_PLATFORM, `${this.#options.name} cannot run here: ${this.#broken}`, { cause: error });
    }
    let ready = false;
    let readyResolve!: (value: unknown) => void;
    let readyReject!: (error: Error) => void;
    const readyP = new Promise<unknown>((resolve, reject) => ((readyResolve = resolve), (readyReject = reject)));
    // A start nobody awaits must not be an unhandled rejection.
    readyP.catch(() => undefined);
    let exitedResolve!: () => void;
    const exited = new Promise<void>((resolve) => (exitedResolve = resolve));
    const running: Running = { worker, port: port1, ready: readyP, exited };
    let ended = false;
    let unavailable: string | undefined;
    const gone = (reason: string): void => {
      if (ended) return;
      ended = true;
      // Answers the worker posted before it ended still count (a relay closing its pairs as it stops).
      for (let m = receiveMessageOnPort(port1); m !== undefined; m = receiveMessageOnPort(port1)) receive(m.message as WorkerAnswer<Res>);
      const why = unavailable ?? reason;
      this.#running = undefined;
      this.#queue = [];
      port1.close();
      // A worker that never got ready cannot run here: later work is done by the caller.
      if (!ready) {
        this.#broken = why;
        readyReject(new SecpolicyError(ErrorCode.UNSUPPORTED_PLATFORM, `${this.#options.name} cannot run here: ${why}`));
      } else this.#dead = why;
      const error = died(this.#options.name, why);
      const waiting = [...this.#waiting.values()];
      this.#waiting.clear();
      for (const w of waiting) w.reject(error);
    };
    const receive = (m: WorkerAnswer<Res>): void => {
      if (Array.isArray(m)) for (const a of m) this.#answer(running, a);
      else if ('ready' in m) {
        ready = true;
        if (this.#waiting.size === 0) this.#hold(running, false);
        readyResolve(m.ready);
      } else if ('unavailable' in m) gone((unavailable ??= m.unavailable));
      else this.#answer(running, m);
    };
    port1.on('message', receive);
    worker.on('error', (e) => gone(e.message));
    worker.on('exit', (code) => {
      gone(`exit code ${code}`);
      exitedResolve();
    });
    this.#running = running;
    // Referenced until it is ready: whoever awaits its start is not left behind by an emptied event loop.
    this.#hold(running, true);
    return running;
  }

  #answer(running: Running, a: { id: number; value?: Res; error?: string }): void {
    const w = this.#waiting.get(a.id);
    if (w === undefined) return;
    this.#waiting.delete(a.id);
    if (this.#waiting.size === 0) this.#hold(running, false);
    if (a.error !== undefined) w.reject(new SecpolicyError(ErrorCode.WORKER, `${this.#options.name}: ${a.error}`));
    else w.resolve(a.value as Res);
  }

  #hold(running: Running, on: boolean): void {
    if (on) {
      running.worker.ref();
      running.port.ref();
    } else {
      running.worker.unref();
      running.port.unref();
    }
  }

  #post(running: Running, request: WorkerRequest<Req>): void {
    const batch = this.#options.batch;
    if (batch === undefined) return running.port.postMessage(request);
    if (this.#queue.push(request) > 1) return;
    setImmediate(() => {
      const requests = this.#queue;
      this.#queue = [];
      if (this.#running !== running || requests.length === 0) return;
      running.port.postMessage(requests);
      batch.flushed();
    });
  }
}

/**
 * A worker running the module at `url`, with our own flags only (an --input-type or --eval
 * of the main program means nothing to the worker's file). Node's test runner (and a
 * user's process-wide flags such as --stack-trace-limit) hand us flags a worker refuses;
 * then it starts without any.
 */
function startWorker(url: URL, data: Record<string, unknown>, transferList: TransferListItem[]): Worker {
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type') && a !== '-e' && a !== '--eval');
  try {
    return new Worker(url, { execArgv, workerData: data, transferList });
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw e;
    return new Worker(url, { execArgv: [], workerData: data, transferList });
  }
}

/** In a worker started by a {@link WorkerPort}: the port to its main thread. */
export function workerPort(): MessagePort {
  return (workerData as { port: MessagePort }).port;
}

/**
 * In a worker started by a {@link WorkerPort}: answers each request with what `handle`
 * returns, or with the message of what it throws. Says it is ready at once.
 */
export function serve<Req, Res>(handle: (body: Req) => Res): void {
  const port = workerPort();
  port.on('message', (m: WorkerRequest<Req>) => {
    let answer: WorkerAnswer<Res>;
    try {
      answer = { id: m.id, value: handle(m.body) };
    } catch (e) {
      answer = { id: m.id, error: (e as NodeJS.ErrnoException)?.code ?? (e as Error)?.message ?? String(e) };
    }
    if (m.id !== 0) port.postMessage(answer);
  });
  port.postMessage({ ready: null } satisfies WorkerAnswer<Res>);
}
