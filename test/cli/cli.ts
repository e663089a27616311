/**
 * Helpers of the CLI tests: the built `secpolicy` run as a real process, and listeners
 * run as any user (python3 binds with the exact address length, like most servers do;
 * node pads abstract names, so both are offered).
 */
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { run, sharedDist, type RunAs } from '../helpers/index.js';

/** The built CLI entry point. */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Output of one CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `secpolicy ...args` with colour variables cleared (set them through `env`), stdin
 * closed, and stdout/stderr piped (so: not a terminal).
 */
export async function secpolicy(
  args: string[],
  options: { env?: Record<string, string>; as?: RunAs; cwd?: string } = {},
): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NO_COLOR;
  delete env.FORCE_COLOR;
  // The width of piped output is 80 unless a test sets COLUMNS itself.
  delete env.COLUMNS;
  // Another user may not reach this checkout (a private directory): it runs a world-readable copy.
  const child = run(process.execPath, [options.as ? sharedDist('src/cli/main.js') : CLI, ...args], {
    env: { ...env, ...options.env },
    ...(options.as && { as: options.as }),
    ...(options.cwd && { cwd: options.cwd }),
  });
  child.stdin?.end();
  return child.output();
}

/** A listening process; `close()` ends it. */
export interface Listener {
  pid: number;
  close(): Promise<void>;
}

const PYTHON_LISTENER = `
import os, socket, sys
path, mode = sys.argv[1], int(sys.argv[2], 8)
s = socket.socket(socket.AF_UNIX)
if path.startswith('@'):
    s.bind('\\0' + path[1:])
else:
    s.bind(path)
    os.chmod(path, mode)
s.listen(16)
print('ready', flush=True)
sys.stdin.read()
`;

const NODE_LISTENER = `
const [path, mode] = process.argv.slice(1);
const server = require('net').createServer((c) => c.on('error', () => {}));
server.listen(path[0] === '@' ? '\\0' + path.slice(1) : path, () => {
  if (path[0] !== '@') require('fs').chmodSync(path, parseInt(mode, 8));
  console.log('ready');
});
process.stdin.on('end', () => process.exit(0)).resume();
`;

/** Starts a listener on `path` (`@name`: abstract) as `as`, the socket file chmodded to `mode`. */
export async function listener(path: string, options: { as?: RunAs; mode?: number; program?: 'python' | 'node' } = {}): Promise<Listener> {
  const mode = (options.mode ?? 0o666).toString(8);
  const [cmd, args] =
    options.program === 'node'
      ? [process.execPath, ['-e', NODE_LISTENER, path, mode]]
      : ['/usr/bin/python3', ['-c', PYTHON_LISTENER, path, mode]];
  const child = run(cmd, args, options.as ? { as: options.as } : {});
  const close = async () => {
    child.stdin?.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await child.output();
    clearTimeout(timer);
  };
  try {
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => String(d).includes('ready') && resolve());
      once(child, 'close')
        .then(() => child.output())
        .then((o) => reject(new Error(`listener exited (${o.code}): ${o.stderr}`)), reject);
    });
    await ready;
  } catch (e) {
    await close();
    throw e;
  }
  return { pid: child.pid!, close };
}

/** True when no line is wider than `width` columns. */
export function fits(text: string, width = 80): boolean {
  return text.split('\n').every((line) => line.length <= width);
}

/** ANSI escape sequences (colour) present. */
export const hasAnsi = (text: string) => text.includes('\x1b[');
