/**
 * SHA-256 of a process's executable, read through /proc/PID/exe: the magic link opens the
 * very file the process runs, whatever mount namespace or container it lives in, so the
 * digest cannot be fooled by a different file at the same path.
 *
 * The size of that file is the peer's choice, so the work is bounded: a file above
 * {@link MAX_DIGEST_BYTES} is not hashed (the digest is unknown, and says why), and
 * `apply()` hashes on a worker thread, so a large file never stalls the event loop.
 * Digests are cached under a file identity a replacement cannot repeat: device, inode,
 * birth time (statx), size, mtime and ctime; without a birth time nothing is cached.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { ErrorCode } from '../errors.js';
import { WorkerPort } from '../worker-port.js';
import type { DigestAnswer, DigestRequest } from './digest-worker.js';
import { no, ok, type Outcome } from './outcome.js';
import { PEER_EXITED } from './pin.js';

/** Largest executable hashed for programDigest, in bytes (1 GiB): above it the digest is unknown. */
export const MAX_DIGEST_BYTES = 1024 * 1024 * 1024;

/**
 * Largest executable of *another holder* hashed in strict mode by `applySync()` (64 MiB),
 * which is synchronous and so hashes them on the calling thread. `apply()` hashes every
 * holder's off the event loop, within {@link MAX_DIGEST_BYTES}.
 */
export const MAX_HOLDER_DIGEST_BYTES = 64 * 1024 * 1024;

const MAX_CACHED = 256;
const cache = new Map<string, string>();
let chunk: Buffer | undefined;

type Digest = Outcome<string>;

/** The cache key of an opened file; undefined when the file system gives no birth time (then nothing is cached). */
const keyOf = (s: BigIntStats): string | undefined =>
  s.birthtimeNs === 0n ? undefined : `${s.dev}:${s.ino}:${s.birthtimeNs}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;

function failure(e: unknown, what: string): Digest {
  const code = (e as NodeJS.ErrnoException).code;
  return no(code === 'ENOENT' || code === 'ESRCH' ? PEER_EXITED : `cannot ${what} the peer's executable: ${code ?? (e as Error).message}`);
}

const tooLarge = (size: bigint, cap = MAX_DIGEST_BYTES): Digest =>
  no(`the peer's executable is ${size} bytes, larger than the digest size cap of ${cap} bytes: it is not hashed`);

function remember(key: string | undefined, digest: string): void {
  if (key === undefined) return;
  if (cache.size >= MAX_CACHED) cache.clear();
  cache.set(key, digest);
}

/** An opened executable: its fd, its cache key and size; or the digest already known, or why neither. */
type Opened = { fd: number; key: string | undefined; size: bigint } | { done: Digest };

function openExe(proc: string, cap = MAX_DIGEST_BYTES): Opened {
  let fd: number;
  try {
    fd = openSync(`${proc}/exe`, 'r');
  } catch (e) {
    return { done: failure(e, 'open') };
  }
  try {
    // Hash what was opened, and file it under the opened file's own identity.
    const s = fstatSync(fd, { bigint: true });
    const key = keyOf(s);
    const hit = key === undefined ? undefined : cache.get(key);
    if (hit !== undefined) return close(fd, ok(hit));
    if (s.size > BigInt(cap)) return close(fd, tooLarge(s.size, cap));
    return { fd, key, size: s.size };
  } catch (e) {
    return close(fd, failure(e, 'stat'));
  }
}

function close(fd: number, done: Digest): Opened {
  closeSync(fd);
  return { done };
}

/** The digest of the executable of the process at `proc` (`/proc/PID`), hashed on the calling thread (at most `cap` bytes). */
export function executableDigest(proc: string, cap = MAX_DIGEST_BYTES): Digest {
  const opened = openExe(proc, cap);
  if ('done' in opened) return opened.done;
  try {
    const answer = hashHere(opened.fd, cap);
    if (typeof answer !== 'string') return answer;
    remember(opened.key, answer);
    return ok(answer);
  } finally {
    closeSync(opened.fd);
  }
}

/** What reads /proc of the peer under its pin. */
interface ProcSource {
  procRead<T>(read: (proc: string) => Outcome<T>): Outcome<T>;
}

/**
 * The digest of the peer's executable, hashed on a worker thread: the file is opened here
 * under the pin (so it is the peer's), and the worker reads that fd.
 */
export async function executableDigestAsync(source: ProcSource): Promise<Digest> {
  let opened: Opened | undefined;
  const r = source.procRead((proc) => {
    opened = openExe(proc);
    return 'done' in opened ? opened.done : ok('');
  });
  if (opened === undefined) return r;
  if ('done' in opened) return opened.done;
  const { fd, key } = opened;
  if (!r.ok) {
    closeSync(fd);
    return r;
  }
  try {
    const answer = await hashOnWorker(fd);
    if (typeof answer !== 'string') return answer;
    remember(key, answer);
    return ok(answer);
  } finally {
    closeSync(fd);
  }
}

// One thread hashes, one file at a time, in the order asked; the event loop only waits.
const hasher = new WorkerPort<DigestRequest, DigestAnswer>({
  url: new URL('./digest-worker.js', import.meta.url),
  name: 'the digest thread',
});

async function hashOnWorker(fd: number): Promise<string | Digest> {
  // No worker threads here: hash on this thread, bounded by the cap all the same.
  if (!hasher.available) return hashHere(fd);
  try {
    const answer = await hasher.request({ fd, max: MAX_DIGEST_BYTES });
    return 'digest' in answer ? answer.digest : tooLarge(BigInt(answer.tooLarge));
  } catch (e) {
    // A worker that could not start: this thread, as above.
    if ((e as { code?: string }).code === ErrorCode.UNSUPPORTED_PLATFORM) return hashHere(fd);
    return no(`cannot read the peer's executable: ${(e as Error).message}`);
  }
}

/** Hashes the file at `fd` from its start on this thread, bounded by the cap. */
function hashHere(fd: number, cap = MAX_DIGEST_BYTES): string | Digest {
  const hash = createHash('sha256');
  const buf = (chunk ??= Buffer.allocUnsafe(1 << 20));
  let total = 0;
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, total)) > 0;) {
      total += n;
      if (total > cap) return tooLarge(BigInt(total), cap);
      hash.update(buf.subarray(0, n));
    }
  } catch (e) {
    return failure(e, 'read');
  }
  return hash.digest('hex');
}
