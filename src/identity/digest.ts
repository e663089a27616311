/**
 * SHA-256 of a process's executable, read through /proc/PID/exe: the magic link opens the
 * very file the process runs, whatever mount namespace or container it lives in, so the
 * digest cannot be fooled by a different file at the same path.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, statSync, type BigIntStats } from 'node:fs';
import { no, ok, type Outcome } from './outcome.js';
import { PEER_EXITED } from './pin.js';

// Digests by file identity and version: repeated connections of one program hash it once.
// A rewrite in place changes mtime (and usually size); a new file changes the inode.
const MAX_CACHED = 256;
const cache = new Map<string, string>();
let chunk: Buffer | undefined;

type Digest = Outcome<string>;

const keyOf = (s: BigIntStats) => `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;

function failure(e: unknown, what: string): Digest {
  const code = (e as NodeJS.ErrnoException).code;
  return no(code === 'ENOENT' || code === 'ESRCH' ? PEER_EXITED : `cannot ${what} the peer's executable: ${code ?? (e as Error).message}`);
}

/** The digest of the executable of the process at `proc` (`/proc/PID`), or why it cannot be had. */
export function executableDigest(proc: string): Digest {
  // A running executable cannot be written to (ETXTBSY): its identity and version stay put.
  let key: string;
  try {
    key = keyOf(statSync(`${proc}/exe`, { bigint: true }));
  } catch (e) {
    return failure(e, 'stat');
  }
  const hit = cache.get(key);
  if (hit !== undefined) return ok(hit);
  let fd: number;
  try {
    fd = openSync(`${proc}/exe`, 'r');
  } catch (e) {
    return failure(e, 'open');
  }
  try {
    // Hash what was opened, and file it under the opened file's own key.
    const opened = keyOf(fstatSync(fd, { bigint: true }));
    const hash = createHash('sha256');
    const buf = (chunk ??= Buffer.allocUnsafe(1 << 20));
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
    const digest = hash.digest('hex');
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(opened, digest);
    return ok(digest);
  } catch (e) {
    return failure(e, 'read');
  } finally {
    closeSync(fd);
  }
}
