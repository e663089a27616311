/**
 * SHA-256 of a process's executable, read through /proc/PID/exe: the magic link opens the
 * very file the process runs, whatever mount namespace or container it lives in, so the
 * digest cannot be fooled by a different file at the same path.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

// Digests by file identity and version: repeated connections of one program hash it once.
// A rewrite in place changes mtime (and usually size); a new file changes the inode.
const MAX_CACHED = 256;
const cache = new Map<string, string>();
let chunk: Buffer | undefined;

/** The digest of the executable of the process at `proc` (`/proc/PID`), or why it cannot be had. */
export function executableDigest(proc: string): { ok: true; value: string } | { ok: false; reason: string } {
  let fd: number;
  try {
    fd = openSync(`${proc}/exe`, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' || code === 'ESRCH' ? 'peer exited' : `cannot open the peer's executable: ${code ?? (e as Error).message}` };
  }
  try {
    const s = fstatSync(fd, { bigint: true });
    const key = `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
    const hit = cache.get(key);
    if (hit !== undefined) return { ok: true, value: hit };
    const hash = createHash('sha256');
    const buf = (chunk ??= Buffer.allocUnsafe(1 << 20));
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n));
    const digest = hash.digest('hex');
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(key, digest);
    return { ok: true, value: digest };
  } catch (e) {
    return { ok: false, reason: `cannot read the peer's executable: ${(e as Error).message}` };
  } finally {
    closeSync(fd);
  }
}

/** Forgets cached digests (tests, or after replacing binaries in place). */
export function clearDigestCache(): void {
  cache.clear();
}
