/**
 * The program rule's paths, compiled once: each path with the file identity (device and
 * inode) it had when last looked at. The accept path compares against these without a
 * stat per connection; an identity is looked at again once it is older than a second, so
 * a replaced file is seen soon.
 */
import { statPath, type FileStat } from '../native/index.js';

/** How long a path's file identity is trusted before it is looked at again, in ms. */
const TTL_MS = 1000;

interface Entry {
  readonly path: string;
  stat: FileStat | undefined;
  expires: number;
}

/** The program rule's paths and their file identities. */
export interface ProgramFiles {
  readonly paths: readonly string[];
  readonly entries: readonly Entry[];
}

/** The program rule's compiled form of these (already validated) paths. */
export function programFiles(paths: readonly string[]): ProgramFiles {
  return { paths, entries: paths.map((path) => ({ path, stat: undefined, expires: 0 })) };
}

/** True when `exe` is the same file (device and inode) as one of the paths. */
export function programMatches(exe: FileStat, files: ProgramFiles): boolean {
  let now = 0;
  for (const e of files.entries) {
    if (e.expires <= (now ||= Date.now())) {
      e.stat = statPath(e.path);
      e.expires = now + TTL_MS;
    }
    const s = e.stat;
    if (s && s.dev === exe.dev && s.ino === exe.ino) return true;
  }
  return false;
}
