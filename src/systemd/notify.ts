/**
 * Readiness and the watchdog (sd_notify): newline-separated `KEY=value` assignments sent
 * as one datagram to the socket named by NOTIFY_SOCKET, a path or an `@abstract` name.
 */
import { debuglog } from 'node:util';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { sendDatagram } from '../native/activation.js';

const log = debuglog('secpolicy');

/**
 * Sends `state` (for example `READY=1`, `STOPPING=1`, `STATUS=serving`, `WATCHDOG=1`) to
 * the supervisor. Returns false when NOTIFY_SOCKET is not set (nobody asked to be told),
 * true once the datagram was sent. Throws ERR_SECPOLICY_NOTIFY when it cannot be sent
 * (nobody reads that socket, or the address is not a path or `@name`).
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
    throw new SecpolicyError(ErrorCode.NOTIFY, `cannot notify ${to}: ${(cause as Error).message}`, { cause });
  }
  log('notify: %s', state.split('\n')[0]);
  return true;
}

/** A running watchdog keep-alive; see {@link startWatchdog}. */
export interface Watchdog {
  /** The interval between `WATCHDOG=1` messages, in ms (half of WATCHDOG_USEC). */
  interval: number;
  /** Stops sending keep-alives. */
  stop(): void;
}

/**
 * Sends `WATCHDOG=1` at half of WATCHDOG_USEC when the supervisor asked for it
 * (WATCHDOG_USEC set, and WATCHDOG_PID unset or this process's pid); undefined otherwise.
 * The timer does not keep the process alive. A keep-alive that cannot be sent is logged
 * (NODE_DEBUG=secpolicy) and retried at the next tick: the supervisor decides what a
 * missed one means.
 */
export function startWatchdog(): Watchdog | undefined {
  const usec = process.env.WATCHDOG_USEC;
  const pid = process.env.WATCHDOG_PID;
  if (usec === undefined || !/^[0-9]{1,15}$/.test(usec) || Number(usec) === 0) return undefined;
  if (pid !== undefined && pid !== String(process.pid)) return undefined;
  const interval = Math.max(1, Math.floor(Number(usec) / 2000));
  const timer = setInterval(() => {
    try {
      notify('WATCHDOG=1');
    } catch (e) {
      log('watchdog: %s', (e as Error).message);
    }
  }, interval);
  timer.unref();
  return { interval, stop: () => clearInterval(timer) };
}
