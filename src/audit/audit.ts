/**
 * `audit()`: every listening UNIX socket of our network namespace, the processes holding
 * it, and findings. One listing (sock_diag where it works, /proc/net/unix otherwise), one
 * scan of /proc/PID/fd for the whole host, then cheap per-socket checks.
 */
import { formatMode } from '../native/index.js';
import { readlinkSync } from 'node:fs';
import { groupName, userName } from '../native/index.js';
import * as v from '../validate.js';
import { FindingCode, abstractFindings, checkFile, severityRank, type DirCache, type Finding, type Severity } from './findings.js';
import { processInfo, scanHolders, secpolicyService, type ProcessInfo, type ScanProgress, type SecpolicyService } from './holders.js';
import { listListening, type ListSource, type ListeningSocket, type SocketKind } from './list.js';

/** A process holding a listening socket. */
export interface HolderReport {
  pid: number;
  uid?: number;
  user?: string;
  /** Command name. */
  comm?: string;
  /** Executable path, as the process's mount namespace names it. */
  program?: string;
  /** Set when the process is `secpolicy gateway` or `secpolicy proxy`. */
  secpolicy?: 'gateway' | 'proxy';
}

/** What an audit says about one listening socket (the `--json` shape of `secpolicy audit`). */
export interface SocketReport {
  /** The bound path, or `@name` for an abstract socket. */
  path: string;
  abstract: boolean;
  kind: SocketKind;
  /** The socket's inode (as `ss -x` and /proc/PID/fd show it). */
  inode: number;
  /** Pids of the processes holding the socket, ascending; empty when none is visible. */
  pids: number[];
  holders: HolderReport[];
  /** The socket file's owner and mode; absent for abstract sockets and missing files. */
  owner?: { uid: number; user?: string; gid: number; group?: string };
  mode?: number;
  /** The same mode as an octal string (`"0666"`), for people reading the JSON. */
  modeOctal?: string;
  findings: Finding[];
  /**
   * Set when a holder is `secpolicy gateway` or `secpolicy proxy` serving this socket (its
   * `--listen`): it checks every peer against its policy, so a socket open to all users is by design.
   */
  authenticatedBy?: { pid: number; command: 'gateway' | 'proxy' };
  /** The most severe finding's severity; absent when there are none. */
  severity?: Severity;
}

/** Options of {@link audit}. */
export interface AuditOptions {
  /** Called while /proc is scanned: processes done out of the total. */
  onProgress?: ScanProgress;
  /** Where the listing comes from: sock_diag `netlink`, `/proc/net/unix`, or netlink with /proc as the fallback. @default 'auto' */
  source?: ListSource;
}

/** Every listening UNIX stream and seqpacket socket on the host, with holders and findings. */
export async function audit(options?: AuditOptions): Promise<SocketReport[]> {
  const o = v.options<AuditOptions>('options', options);
  const onProgress = o.onProgress === undefined ? undefined : v.func<ScanProgress>('options.onProgress', o.onProgress);
  const sockets = listListening(o.source ?? 'auto');
  const holders = scanHolders(new Set(sockets.map((s) => s.inode)), onProgress);
  const ctx: Context = { dirs: new Map(), procs: new Map(), owners: new Map(), ourMnt: mountNamespace('self') };
  const reports = sockets.map((s) => report(s, holders.get(s.inode) ?? [], ctx));
  reports.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.inode - b.inode));
  return reports;
}

// Per-audit caches: thousands of sockets share a handful of holders, owners and directories.
interface Context {
  dirs: DirCache;
  procs: Map<number, Holder>;
  owners: Map<number, NonNullable<SocketReport['owner']>>;
  ourMnt: string | undefined;
}

/** A holder as reported, with the prefix under which it sees its own files. */
interface Holder {
  report: HolderReport;
  /** `/proc/PID/root` for a process in another mount namespace, else ''. */
  root: string;
  service: SecpolicyService | undefined;
}

function report(socket: ListeningSocket, pids: number[], ctx: Context): SocketReport {
  const holders = pids.map((pid) => holder(pid, ctx));
  const findings: Finding[] = [];
  const out: SocketReport = {
    path: socket.path,
    abstract: socket.abstract,
    kind: socket.kind,
    inode: socket.inode,
    pids,
    holders: holders.map((h) => h.report),
    findings,
  };
  let open = false;
  if (socket.abstract) {
    findings.push(ABSTRACT);
    open = true;
  } else if (!socket.path.startsWith('/')) {
    findings.push({
      code: FindingCode.RELATIVE_PATH,
      severity: 'info',
      message: `bound by the relative path ${socket.path}: its directory is unknown, file checks skipped`,
    });
  } else {
    // A holder in another mount namespace (a container) bound the path in its own view.
    const root = holders[0]?.root ?? '';
    const file = checkFile(socket.path, { root, cache: root ? new Map() : ctx.dirs, ...(socket.vfs && { expect: socket.vfs }) });
    findings.push(...file.findings);
    if (file.stat) {
      out.owner = owner(file.stat.uid, file.stat.gid, ctx);
      out.mode = file.stat.mode & 0o7777;
      out.modeOctal = formatMode(out.mode);
      open = file.reachable && (file.stat.mode & 0o002) !== 0;
    }
  }
  // A secpolicy gateway or proxy serving this very socket authenticates each peer; systemd
  // (pid 1) holding it too is socket activation. Any other root holder keeps the finding.
  // A gateway of several processes: each of them serves it.
  const servers = holders.filter((h) => h.service && serves(h.service, socket.path));
  const serving = servers[0];
  const others = holders.filter((h) => !servers.includes(h) && !(h.report.pid === 1 && h.report.comm === 'systemd'));
  if (serving) {
    // Named by its first process (a process it started says which), whatever the order of the pids.
    const by = { pid: serving.service!.startedBy ?? serving.report.pid, command: serving.service!.command };
    out.authenticatedBy = by;
    findings.push({
      code: FindingCode.AUTHENTICATED_BY_SECPOLICY,
      severity: 'info',
      message: `served by secpolicy ${by.command} (pid ${by.pid}), which checks every peer against its policy`,
    });
    for (const [i, f] of findings.entries()) {
      if (f.code === FindingCode.WORLD_WRITABLE && f.severity !== 'info')
        findings[i] = { ...f, severity: 'info', message: `${f.message}, and secpolicy ${by.command} decides who may use it` };
    }
  }
  const rootHolder = (serving ? others : holders).find((h) => h.report.uid === 0)?.report;
  if (open && rootHolder) {
    findings.push({
      code: FindingCode.ROOT_WORLD_ACCESSIBLE,
      severity: 'high',
      message: `held by root (pid ${rootHolder.pid}${rootHolder.comm ? `, ${rootHolder.comm}` : ''}) and any user can connect: it must authenticate its peers`,
    });
  }
  if (pids.length === 0) findings.push(NO_HOLDER);
  if (findings.length > 1) findings.sort((a, b) => severityRank(b.severity) - severityRank(a.severity));
  if (findings.length) out.severity = findings[0]!.severity;
  return out;
}

const ABSTRACT: Finding = Object.freeze(abstractFindings()[0]!);
const NO_HOLDER: Finding = Object.freeze({
  code: FindingCode.NO_HOLDER,
  severity: 'info',
  message: 'no visible process holds it (another pid namespace, or /proc is restricted)',
});

function holder(pid: number, ctx: Context): Holder {
  let h = ctx.procs.get(pid);
  if (!h) {
    const mnt = mountNamespace(String(pid));
    const root = mnt !== undefined && ctx.ourMnt !== undefined && mnt !== ctx.ourMnt ? `/proc/${pid}/root` : '';
    const service = secpolicyService(pid, root);
    const report = holderReport(processInfo(pid));
    if (service) report.secpolicy = service.command;
    h = { report, root, service };
    ctx.procs.set(pid, h);
  }
  return h;
}

/** Whether a gateway or proxy serves `path` on its authenticated socket (`--listen`), not on its metrics socket. */
function serves(service: SecpolicyService, path: string): boolean {
  if (service.unauthenticated.includes(path)) return false;
  return service.listen.startsWith('systemd:') || service.listen === path;
}

function holderReport(h: ProcessInfo): HolderReport {
  const out: HolderReport = { pid: h.pid };
  if (h.uid !== undefined) {
    out.uid = h.uid;
    const user = userName(h.uid);
    if (user !== undefined) out.user = user;
  }
  if (h.comm !== undefined) out.comm = h.comm;
  if (h.program !== undefined) out.program = h.program;
  return out;
}

function owner(uid: number, gid: number, ctx: Context): NonNullable<SocketReport['owner']> {
  const key = uid * 2 ** 32 + gid;
  let o = ctx.owners.get(key);
  if (!o) {
    o = { uid, user: userName(uid), gid, group: groupName(gid) };
    ctx.owners.set(key, o);
  }
  return o;
}

function mountNamespace(pid: string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}
