/**
 * Checksummed byte streams for forwarding tests: a sender writes a deterministic stream
 * (every 64 KiB chunk different, so a reordered, lost or duplicated chunk changes the
 * digest) with backpressure; a receiver hashes whatever arrives until end of stream.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';

const POOL = randomBytes(1 << 20);
const CHUNK = 64 * 1024;

/** The `index`-th chunk of stream `seed`. */
function chunk(seed: number, index: number): Buffer {
  const offset = (index * 4099 + seed * 131) % (POOL.length - CHUNK);
  return POOL.subarray(offset, offset + CHUNK);
}

/** sha256 (hex) of the `bytes`-long stream `seed`, without sending it. */
export function expectedDigest(seed: number, bytes: number): string {
  const h = createHash('sha256');
  for (let i = 0, left = bytes; left > 0; i++, left -= CHUNK) h.update(chunk(seed, i).subarray(0, Math.min(CHUNK, left)));
  return h.digest('hex');
}

/** Writes `bytes` of stream `seed` to `socket` respecting backpressure; `end` half-closes after it. */
export function sendStream(socket: Socket, seed: number, bytes: number, end = true): Promise<void> {
  return new Promise((resolve, reject) => {
    let i = 0;
    let left = bytes;
    socket.once('error', reject);
    const pump = (): void => {
      while (left > 0) {
        const c = chunk(seed, i++).subarray(0, Math.min(CHUNK, left));
        left -= c.length;
        if (!socket.write(c)) {
          socket.once('drain', pump);
          return;
        }
      }
      if (end) socket.end(resolve);
      else resolve();
    };
    pump();
  });
}

/** Hashes everything `socket` receives until its end of stream. */
export function receiveStream(socket: Socket): Promise<{ digest: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let bytes = 0;
    socket.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    socket.once('end', () => resolve({ digest: h.digest('hex'), bytes }));
    socket.once('error', reject);
  });
}
