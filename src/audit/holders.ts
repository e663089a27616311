/**
 * Which processes hold which sockets (one pass over /proc/PID/fd for the whole audit, the
 * expensive part of it), and what the audit says of each holder.
 */
import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { socketHolders, type ScanProgress } from '../identity/index.js';

export type { ScanProgress };

/**
 * Maps each wanted socket inode to the pids holding it (each pid once, ascending), from
 * the same single /proc scan that strict mode uses.
 */
export function scanHolders(wanted: ReadonlySet<number>, onProgress?: ScanProgress, proc = '/proc'): Map<number, number[]> {
  const pids = new Map<number, number[]>();
  for (const [inode, holders] of socketHolders(wanted, onProgress, proc)) {
    pids.set(inode, [...new Set(holders.map((h) => h.pid))]);
  }
  return pids;
}

/** What an audit says about a process holding a socket. */
export interface ProcessInfo {
  pid: number;
  /** Effective uid; undefined when the process is gone. */
  uid?: number;
  /** The command name (`Name:` of /proc/PID/status). */
  comm?: string;
  /** The executable (/proc/PID/exe); undefined when it cannot be read. */
  program?: string;
}

/** uid, command name and executable of a process; fields are missing when unreadable. */
export function processInfo(pid: number, proc = '/proc'): ProcessInfo {
  const info: ProcessInfo = { pid };
  try {
    // status, not the owner of /proc/PID: a non-dumpable process's directory belongs to root.
    const status = readFileSync(`${proc}/${pid}/status`, 'utf8');
    const name = /^Name:\t(.*)$/m.exec(status);
    const uid = /^Uid:\t\d+\t(\d+)/m.exec(status);
    // The kernel writes a newline and a backslash in the name as \n and \\: undone, so the name is exact.
    if (name) info.comm = name[1]!.replace(/\\([n\\])/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
    if (uid) info.uid = Number(uid[1]);
  } catch {
    return info; // gone, or hidden by hidepid
  }
  try {
    info.program = readlinkSync(`${proc}/${pid}/exe`);
  } catch {
    // kernel threads have no executable; other users' need privilege
  }
  return info;
}

/** A holder that is `secpolicy gateway` or `secpolicy proxy`: which one, and the socket it was told to listen on. */
export interface SecpolicyService {
  command: 'gateway' | 'proxy';
  /** The `--listen` value (a path made absolute, or `systemd:NAME`). */
  listen: string;
  /** Sockets it serves without authenticating (`--metrics`), absolute. */
  unauthenticated: string[];
  /**
   * Set for a process of a gateway of several (`--workers`): the pid of the gateway process
   * that started it, the one an audit names as serving (pids wrap, so the first process
   * of a gateway may have the higher pid).
   */
  startedBy?: number;
}

/**
 * Whether `pid` runs this package's CLI as `gateway` or `proxy`: its executable is a Node
 * binary, its script (argv[1], as the process resolves it, through `root` for another mount
 * namespace) is `dist/src/cli/main.js` of a package named `secpolicy`, and the command is the
 * first argument after it, as the CLI itself reads it; or is a process of such a gateway
 * (`dist/src/cli/gateway-worker.js` of the package, started by it, `--workers`), which serves
 * what its parent serves. undefined for anything else, or when
 * any of it cannot be read (the caller then reports the socket as any other).
 */
export function secpolicyService(pid: number, root = '', proc = '/proc'): SecpolicyService | undefined {
  try {
    const argv = readFileSync(`${proc}/${pid}/cmdline`, 'utf8').split('\0');
    const command = argv[2];
    const named = command === 'gateway' || command === 'proxy';
    if (!named && argv.length !== 3) return undefined;
    let exe: string;
    try {
      exe = readlinkSync(`${proc}/${pid}/exe`);
    } catch {
      // Another user's process, seen without privilege: its command name stands in.
      exe = /^Name:\t(.*)$/m.exec(readFileSync(`${proc}/${pid}/status`, 'utf8'))?.[1] ?? '';
    }
    if (!/^node(?:js)?[0-9.]*$/.test(basename(exe))) return undefined;
    const script = argv[1] ?? '';
    const at = script.startsWith('/') ? root + script : `${proc}/${pid}/cwd/${script}`;
    const real = realpathSync(at);
    // argv [node, script] alone: only a process of a gateway is run that way.
    const worker = !named && real.endsWith('/dist/src/cli/gateway-worker.js');
    if (!worker && !(named && real.endsWith('/dist/src/cli/main.js'))) return undefined;
    const pkg = JSON.parse(readFileSync(join(dirname(real), '..', '..', '..', 'package.json'), 'utf8')) as { name?: unknown };
    if (pkg.name !== 'secpolicy') return undefined;
    // A process of a gateway of several (--workers) serves what the gateway that started it serves.
    if (worker) {
      const parent = Number(/^PPid:\t(\d+)$/m.exec(readFileSync(`${proc}/${pid}/status`, 'utf8'))?.[1]);
      const service = parent > 1 ? secpolicyService(parent, root, proc) : undefined;
      return service?.command === 'gateway' ? { ...service, startedBy: parent } : undefined;
    }
    const value = (flag: string): string[] => {
      const out: string[] = [];
      for (let i = 3; i < argv.length; i++) {
        if (argv[i] === '--') break;
        if (argv[i] === flag) out.push(argv[i + 1] ?? '');
        else if (argv[i]!.startsWith(`${flag}=`)) out.push(argv[i]!.slice(flag.length + 1));
      }
      return out;
    };
    const absolute = (path: string): string => (path.startsWith('/') ? path : resolve(readlinkSync(`${proc}/${pid}/cwd`), path));
    const listen = value('--listen').at(-1);
    if (listen === undefined || listen === '' || !named) return undefined;
    return {
      command,
      listen: listen.startsWith('systemd:') ? listen : absolute(listen),
      unauthenticated: value('--metrics').filter(Boolean).map(absolute),
    };
  } catch {
    return undefined; // gone, hidden, or not resolvable: not recognised
  }
}
