/**
 * Readiness and the watchdog (sd_notify): newline-separated `KEY=value` assignments sent
 * as one datagram to the socket named by NOTIFY_SOCKET, a path or an `@abstract` name.
 *
 * Nothing sent to the supervisor can block: the datagram is sent non-blocking, and one that
 * the supervisor's socket cannot take now (its queue is full: it stopped reading) is dropped,
 * never retried in a loop. A server whose supervisor hangs keeps serving and stopping.
 */
import { debuglog } from 'node:util';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { Errno } from '../native/index.js';
import { sendDatagram } from '../native/index.js';

const debug = debuglog('secpolicy');

/**
 * Sends `state` (for example `READY=1`, `STOPPING=1`, `STATUS=serving`, `WATCHDOG=1`) to
 * the supervisor. Returns false when NOTIFY_SOCKET is not set (nobody asked to be told),
 * true once the datagram was sent. Never waits for the supervisor. Throws
 * ERR_SECPOLICY_NOTIFY when it cannot be sent (nobody reads that socket, its queue is full
 * so the message is dropped, or the address is not a path or `@name`).
 */
export function notify(state: string): boolean {
  if (typeof state !== 'string' || state.length === 0 || state.includes('\0') || !state.includes('=')) {
    throw invalidArg('state', 'KEY=value assignments, one per line (e.g. "READY=1")', state);
  }
  const to = process.env.NOTIFY_SOCKET;
  if (to === undefined || to === '') return false;
  if (!to.startsWith('/') && !to.startsWith('@')) {
    throw new SecpolicyError(ErrorCode.NOTIFY, `NOTIFY_SOCKET=${JSON.stringify(to)} is neither a path nor an @abstract name`);
  }
  try {
    sendDatagram(to, Buffer.from(state));
  } catch (cause) {
    const errno = (cause as SecpolicyError).errno;
    const why =
      errno === Errno.EAGAIN
        ? `${to} takes no more messages now (its queue is full: the supervisor is not reading); the message was dropped`
        : (cause as Error).message;
    throw new SecpolicyError(ErrorCode.NOTIFY, `cannot notify ${to}: ${why}`, { cause, ...(errno !== undefined && { errno }) });
  }
  debug('notify: %s', state.split('\n')[0]);
  return true;
}

/**
 * @internal Sends `state` and reports a failure once: the first message that cannot be
 * sent is logged, later ones are dropped quietly until one goes through again (which is
 * logged too, with the number dropped). A supervisor that stopped reading gets no flood of
 * log lines from the watchdog.
 */
export function notifier(log: (line: string) => void): (state: string) => void {
  let dropped = 0;
  return (state) => {
    try {
      notify(state);
    } catch (e) {
      if (dropped++ === 0)
        log(`cannot notify the supervisor: ${(e as Error).message} (further failures are not logged until one succeeds)`);
      return;
    }
    if (dropped > 0) log(`notifying the supervisor works again (${dropped} message(s) dropped)`);
    dropped = 0;
  };
}

/** A running watchdog keep-alive; see {@link startWatchdog}. */
export interface Watchdog {
  /** The interval between `WATCHDOG=1` messages, in ms (half of WATCHDOG_USEC, at most 2^31-1). */
  interval: number;
  /** Stops sending keep-alives. */
  stop(): void;
}

/** Options of {@link startWatchdog}. */
export interface WatchdogOptions {
  /**
   * Where to say that WATCHDOG_USEC or WATCHDOG_PID was ignored, and that a keep-alive could
   * not be sent (once, until one is sent again). @default the NODE_DEBUG=secpolicy log
   */
  log?: (line: string) => void;
}

/** @internal The longest delay a Node timer takes (2^31-1 ms, about 24.8 days); longer ones fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** systemd's USEC_INFINITY: "no timeout", not a watchdog. */
const USEC_INFINITY = 2n ** 64n - 1n;

/**
 * @internal The keep-alive interval in ms that WATCHDOG_USEC and WATCHDOG_PID ask of this process,
 * read as systemd's sd_watchdog_enabled() reads them, or why there is none (`ignored`
 * says the variables are set but unusable, which is worth a log line).
 */
export function watchdogInterval(env: NodeJS.ProcessEnv = process.env): { interval: number } | { none: string; ignored: boolean } {
  const usec = env.WATCHDOG_USEC;
  const pid = env.WATCHDOG_PID;
  if (usec === undefined) return { none: 'WATCHDOG_USEC is not set', ignored: false };
  if (pid !== undefined) {
    if (!/^[1-9][0-9]{0,9}$/.test(pid) || Number(pid) > 2 ** 31 - 1)
      return { none: `WATCHDOG_PID=${JSON.stringify(pid)} is not a process id; the watchdog is ignored`, ignored: true };
    // Meant for another process (the variables were inherited): not ours, nothing to say.
    if (Number(pid) !== process.pid) return { none: `WATCHDOG_PID=${pid} is another process`, ignored: false };
  }
  const value = /^[0-9]{1,20}$/.test(usec) ? BigInt(usec) : undefined;
  if (value === undefined || value === 0n || value >= USEC_INFINITY)
    return { none: `WATCHDOG_USEC=${JSON.stringify(usec)} is not a timeout in microseconds; the watchdog is ignored`, ignored: true };
  // Half the timeout, as sd_notify's documentation advises; never 0, and never more than a
  // timer can wait (a longer delay would make Node fire every millisecond).
  const half = value / 2000n;
  return { interval: half < 1n ? 1 : half > BigInt(MAX_TIMER_MS) ? MAX_TIMER_MS : Number(half) };
}

/**
 * Sends `WATCHDOG=1` at half of WATCHDOG_USEC (at most every 2^31-1 ms) when the supervisor
 * asked for it (WATCHDOG_USEC a number of microseconds, and WATCHDOG_PID unset or this
 * process's pid); undefined otherwise, with a log line when a variable is set but
 * nonsensical. The timer does not keep the process alive. A keep-alive that cannot be sent
 * is dropped, never retried: the supervisor decides what a missed one means.
 */
export function startWatchdog(options?: WatchdogOptions): Watchdog | undefined {
  if (options !== undefined && (typeof options !== 'object' || options === null)) throw invalidArg('options', 'an object', options);
  if (options?.log !== undefined && typeof options.log !== 'function') throw invalidArg('options.log', 'a function', options.log);
  const log = options?.log ?? ((line: string) => debug('watchdog: %s', line));
  return watchdogThrough(notifier(log), log);
}

/**
 * @internal {@link startWatchdog} sending through `send` (a {@link notifier}), so that a
 * daemon's readiness messages and keep-alives share one "logged once" state.
 */
export function watchdogThrough(send: (state: string) => void, log: (line: string) => void): Watchdog | undefined {
  const asked = watchdogInterval();
  if ('none' in asked) {
    if (asked.ignored) log(asked.none);
    return undefined;
  }
  const timer = setInterval(() => send('WATCHDOG=1'), asked.interval);
  timer.unref();
  return { interval: asked.interval, stop: () => clearInterval(timer) };
}
