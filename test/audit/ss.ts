/** Parses `ss -xlpH`: the reference listing the audit is compared with. */
import { spawnSync } from 'node:child_process';
import { trimPadding } from '../../src/audit/list.js';

/** One listening socket as ss shows it. */
export interface SsEntry {
  netid: string;
  path: string;
  inode: number;
  pids: number[];
}

// "u_str LISTEN 0 128 /path with spaces 12345 * 0 users:(("p",pid=1,fd=3),...)"
const LINE = /^(u_str|u_seq)\s+LISTEN\s+\d+\s+\d+\s+(.*?)\s+(\d+)\s+\*\s+\d+\s*(.*)$/;

/**
 * Listening stream and seqpacket sockets, by inode (dgram sockets, which ss also lists, are
 * left out), with padded abstract names trimmed as the audit names them.
 */
export function ssListening(): Map<number, SsEntry> {
  const r = spawnSync('ss', ['-xlpH'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`ss failed: ${r.stderr}`);
  const out = new Map<number, SsEntry>();
  for (const line of r.stdout.split('\n')) {
    const m = LINE.exec(line.trim());
    if (!m) continue;
    const pids = [...new Set([...m[4]!.matchAll(/pid=(\d+)/g)].map((p) => Number(p[1])))].sort((a, b) => a - b);
    out.set(Number(m[3]), { netid: m[1]!, path: trimPadding(m[2]!), inode: Number(m[3]), pids });
  }
  return out;
}
