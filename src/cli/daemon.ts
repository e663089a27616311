/**
 * What the CLI's long-running commands (proxy, gateway) share: where they listen (a path,
 * or a socket systemd passed), and telling a supervisor that they are ready, alive and
 * stopping (NOTIFY_SOCKET, WATCHDOG_USEC).
 */
import { isSystemdSpec, systemdSocket } from '../systemd/index.js';
import { notifier, watchdogThrough, type Watchdog } from '../systemd/index.js';

/** The `--listen` help text of a daemon command. */
export const LISTEN_HELP = 'the socket file to create and listen on, or "systemd" / "systemd:NAME" for a socket systemd passed';

/** A `--listen` value resolved: a socket file path, or `{ fd }` of the activated socket it names. */
export function listenFlag(value: string): string | { fd: number } {
  return isSystemdSpec(value) ? { fd: systemdSocket(value).fd } : value;
}

/** How a daemon reports its state to its supervisor; every call is a no-op without one. */
export interface Supervisor {
  /** Listening: READY=1 (with a STATUS line), and the watchdog keep-alive starts. */
  ready(status: string): void;
  /** Stopping on a signal: STOPPING=1, and the keep-alive stops. */
  stopping(): void;
}

/**
 * The supervisor link of a daemon command. Nothing here waits for the supervisor: a message
 * it cannot take now is dropped. Failures are logged once (until a message goes through
 * again), never fatal.
 */
export function supervisor(log: (line: string) => void): Supervisor {
  let watchdog: Watchdog | undefined;
  const send = notifier(log);
  return {
    ready(status) {
      send(`READY=1\nSTATUS=${status.replace(/\n/g, ' ')}\nMAINPID=${process.pid}`);
      watchdog = watchdogThrough(send, log);
    },
    stopping() {
      watchdog?.stop();
      send('STOPPING=1');
    },
  };
}

/** Resolves with the first SIGTERM or SIGINT; only that one is ours, a second ends the process the default way. */
export function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (name: NodeJS.Signals): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve(name);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
