/** A child process whose output can be awaited line by line (no polling, no sleeps). */
import type { ChildProcess } from 'node:child_process';

/** A watched child: resolves when its stdout or stderr so far matches a pattern. */
export interface Watched {
  child: ChildProcess;
  /** Resolves with the first match of `pattern` in everything written to stdout so far. */
  stdout(pattern: RegExp): Promise<string>;
  /** The same for stderr. */
  stderr(pattern: RegExp): Promise<string>;
}

/** Collects a child's output; a wait rejects if the child exits first. */
export function watch(child: ChildProcess): Watched {
  const seen = { stdout: '', stderr: '' };
  const waiters = new Set<() => void>();
  for (const stream of ['stdout', 'stderr'] as const) {
    child[stream]!.on('data', (d: Buffer) => {
      seen[stream] += d;
      for (const w of waiters) w();
    });
  }
  let exited = false;
  child.once('close', () => {
    exited = true;
    for (const w of waiters) w();
  });
  const wait =
    (stream: 'stdout' | 'stderr') =>
    (pattern: RegExp): Promise<string> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const m = pattern.exec(seen[stream]);
          if (m) {
            waiters.delete(check);
            resolve(m[0]);
          } else if (exited) {
            waiters.delete(check);
            reject(new Error(`the process exited before its ${stream} matched ${pattern}: ${JSON.stringify(seen)}`));
          }
        };
        waiters.add(check);
        check();
      });
  return { child, stdout: wait('stdout'), stderr: wait('stderr') };
}
