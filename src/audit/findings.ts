/**
 * Findings on a listening socket: what about its name, its file and the directories above
 * it deserves a user's attention. Each finding is data (`code`, `severity`, `message`);
 * codes are stable and documented in docs/audit.md.
 */
import { lstatSync } from 'node:fs';
import { formatMode, statPath, S_IFMT, S_IFSOCK, type FileStat } from '../native/index.js';

/** How much a finding matters, from least to most. */
export type Severity = 'info' | 'low' | 'medium' | 'high' | 'critical';

/** The severities in ascending order. */
export const SEVERITIES: readonly Severity[] = Object.freeze(['info', 'low', 'medium', 'high', 'critical']);

/** The rank of a severity (0 for info up to 4 for critical); -1 when it is not one. */
export function severityRank(severity: string): number {
  return SEVERITIES.indexOf(severity as Severity);
}

/** One thing worth attention about a socket. */
export interface Finding {
  /** A stable code such as `WORLD_WRITABLE`. */
  code: string;
  severity: Severity;
  /** One sentence for humans. */
  message: string;
}

/** Stable finding codes. */
export const FindingCode = Object.freeze({
  ABSTRACT_NAMESPACE: 'ABSTRACT_NAMESPACE',
  WORLD_WRITABLE: 'WORLD_WRITABLE',
  GROUP_WRITABLE: 'GROUP_WRITABLE',
  INSECURE_DIRECTORY: 'INSECURE_DIRECTORY',
  ROOT_WORLD_ACCESSIBLE: 'ROOT_WORLD_ACCESSIBLE',
  PATH_MISSING: 'PATH_MISSING',
  PATH_UNREADABLE: 'PATH_UNREADABLE',
  PATH_REPLACED: 'PATH_REPLACED',
  RELATIVE_PATH: 'RELATIVE_PATH',
  NO_HOLDER: 'NO_HOLDER',
  AUTHENTICATED_BY_SECPOLICY: 'AUTHENTICATED_BY_SECPOLICY',
} as const);

/** Memoised stat of directories: an audit meets /run and /tmp many times over. */
export type DirCache = Map<string, FileStat | null>;

function statDir(path: string, cache: DirCache): FileStat | null {
  let s = cache.get(path);
  if (s === undefined) {
    s = statPath(path) ?? null;
    cache.set(path, s);
  }
  return s;
}

/** What the file checks found: the socket file's stat and whether others can reach it. */
export interface FileCheck {
  /** stat of the socket file (not following a symlink); undefined when missing. */
  stat?: FileStat;
  findings: Finding[];
  /** Every directory above the file lets others search it (o+x), so its mode is what counts. */
  reachable: boolean;
}

/**
 * Checks a socket file and the directories above it. `owner` is the uid that should own
 * them (the socket file's owner, by default); directories owned by root or that uid are
 * trusted. `root` prefixes every path (e.g. `/proc/PID/root` to look through a
 * container's mount namespace); messages still name the path as given.
 */
export function checkFile(
  path: string,
  options: { root?: string; cache?: DirCache; expect?: { dev: number; ino: number } } = {},
): FileCheck {
  const root = options.root ?? '';
  const cache = options.cache ?? new Map();
  const findings: Finding[] = [];
  const stat = statPath(root + path, true);
  if (!stat) {
    findings.push(missingOrHidden(root + path, path));
  } else if ((stat.mode & S_IFMT) !== S_IFSOCK) {
    findings.push({
      code: FindingCode.PATH_REPLACED,
      severity: 'high',
      message: `${path} is not a socket any more: clients reach something else`,
    });
  } else if (options.expect && (options.expect.ino !== Number(stat.ino) || options.expect.dev !== stat.dev)) {
    findings.push({
      code: FindingCode.PATH_REPLACED,
      severity: 'high',
      message: `${path} is another socket than the one bound: clients reach a different listener`,
    });
  }
  const owner = stat?.uid ?? 0;
  let reachable = true;
  let dir = path;
  for (;;) {
    const cut = dir.lastIndexOf('/');
    if (cut < 0) break;
    dir = cut === 0 ? '/' : dir.slice(0, cut);
    const d = statDir(root + dir, cache);
    if (d) {
      if (!(d.mode & 0o001)) reachable = false;
      const problem = directoryProblem(d, owner);
      if (problem)
        findings.push({
          code: FindingCode.INSECURE_DIRECTORY,
          severity: problem.severity,
          message: `${dir} ${problem.why}: the socket can be replaced`,
        });
    }
    if (dir === '/') break;
  }
  if (stat && (stat.mode & S_IFMT) === S_IFSOCK) {
    if (stat.mode & 0o002) {
      findings.push(
        reachable
          ? { code: FindingCode.WORLD_WRITABLE, severity: 'medium', message: `mode ${formatMode(stat.mode)}: any user can connect` }
          : {
              code: FindingCode.WORLD_WRITABLE,
              severity: 'low',
              message: `mode ${formatMode(stat.mode)} lets any user connect, but a directory above it is closed to others`,
            },
      );
    } else if (stat.mode & 0o020) {
      findings.push({
        code: FindingCode.GROUP_WRITABLE,
        severity: 'info',
        message: `mode ${formatMode(stat.mode)}: members of gid ${stat.gid} can connect`,
      });
    }
  }
  return { ...(stat && { stat }), findings, reachable: reachable && stat !== undefined };
}

// statPath() says only "no": ask again, on this rare path, whether the file is gone or
// merely out of our sight (a directory we may not search, when not run as root).
function missingOrHidden(file: string, shown: string): Finding {
  try {
    if (lstatSync(file, { throwIfNoEntry: false }) === undefined) {
      return {
        code: FindingCode.PATH_MISSING,
        severity: 'low',
        message: `${shown} no longer exists: the listener cannot be reached by its path`,
      };
    }
  } catch (e) {
    return {
      code: FindingCode.PATH_UNREADABLE,
      severity: 'info',
      message: `${shown} cannot be checked (${(e as NodeJS.ErrnoException).code ?? 'error'}): run as root to see it`,
    };
  }
  return { code: FindingCode.PATH_UNREADABLE, severity: 'info', message: `${shown} cannot be checked: run as root to see it` };
}

// A directory lets others replace what is in it when others, its group (or a foreign owner) may
// write to it; the sticky bit limits renames and unlinks to each file's owner.
function directoryProblem(d: FileStat, owner: number): { severity: Severity; why: string } | undefined {
  const sticky = (d.mode & 0o1000) !== 0;
  if (d.mode & 0o002 && !sticky) return { severity: 'high', why: `is writable by every user (mode ${formatMode(d.mode)}, no sticky bit)` };
  if (d.uid !== 0 && d.uid !== owner) return { severity: 'medium', why: `belongs to uid ${d.uid}, neither root nor the socket's owner` };
  if (d.mode & 0o020 && !sticky) {
    return { severity: 'medium', why: `is writable by its group (gid ${d.gid}, mode ${formatMode(d.mode)}, no sticky bit)` };
  }
  return undefined;
}

/** The findings on an abstract socket: anyone in the network namespace can connect. */
export function abstractFindings(): Finding[] {
  return [
    {
      code: FindingCode.ABSTRACT_NAMESPACE,
      severity: 'medium',
      message: 'abstract socket: no file permissions, any process in the network namespace can connect',
    },
  ];
}
