/**
 * The thread that hashes executables for programDigest, one file at a time in the order
 * asked, so that a large file never stalls the event loop. The file is opened on the main
 * thread under the peer's pin; this thread reads it by fd, bounded by the cap.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { serve } from '../worker-port.js';

/** A file to hash: an open fd, and the most bytes to read. */
export interface DigestRequest {
  fd: number;
  max: number;
}

/** The digest (hex), or the size read past the cap. */
export type DigestAnswer = { digest: string } | { tooLarge: number };

const buf = Buffer.allocUnsafe(1 << 20);

serve<DigestRequest, DigestAnswer>(({ fd, max }) => {
  const hash = createHash('sha256');
  let total = 0;
  for (let n; (n = readSync(fd, buf, 0, buf.length, total)) > 0;) {
    total += n;
    if (total > max) return { tooLarge: total };
    hash.update(buf.subarray(0, n));
  }
  return { digest: hash.digest('hex') };
});
