/**
 * The program rule's paths, compiled once: each path with the file identity it had when
 * last looked at. The accept path compares against these without a stat per connection;
 * an identity is looked at again once it is older than a second, so a replaced file is
 * seen soon.
 *
 * A file's identity is its device, inode and birth time. Device and inode alone do not
 * name one file over time: replacing the file by rename frees its inode, and the next
 * file made on that filesystem may get the same number (ext4 hands out the lowest free
 * one), so a file made a moment later would match an identity looked at before. The birth
 * time of that file is later than that of the one looked at. Where a birth time cannot
 * settle it (the filesystem reports none, or the file was born so recently that a
 * replacement could share its clock tick), a match is verified by stat-ing the path again.
 */
import { statPath, type FileStat } from '../native/index.js';

/** How long a path's file identity is trusted before it is looked at again, in ms. */
const TTL_MS = 1000;

/**
 * A file born less than this long (in seconds) before it was looked at is verified on
 * every match: file birth times come from a coarse clock, and a file replaced and its
 * inode reused within one tick of its birth would repeat its birth time.
 */
const YOUNG_S = 2;

interface Entry {
  readonly path: string;
  stat: FileStat | undefined;
  expires: number;
  /** The identity has no birth time, or a recent one: a match is verified by a fresh stat. */
  verify: boolean;
}

/** The program rule's paths and their file identities. */
export interface ProgramFiles {
  readonly paths: readonly string[];
  readonly entries: readonly Entry[];
}

/** The program rule's compiled form of these (already validated) paths. */
export function programFiles(paths: readonly string[]): ProgramFiles {
  return { paths, entries: paths.map((path) => ({ path, stat: undefined, expires: 0, verify: true })) };
}

const born = (s: FileStat): boolean => s.btimeSec !== undefined && s.btimeSec >= 0;

/** Same device and inode, and the same birth time where both sides have one. */
function sameFile(a: FileStat, b: FileStat): boolean {
  if (a.dev !== b.dev || a.ino !== b.ino) return false;
  return !born(a) || !born(b) || (a.btimeSec === b.btimeSec && a.btimeNsec === b.btimeNsec);
}

function look(e: Entry, now: number): FileStat | undefined {
  const s = statPath(e.path);
  e.stat = s;
  e.expires = now + TTL_MS;
  e.verify = s === undefined || !born(s) || now / 1000 - s.btimeSec! < YOUNG_S;
  return s;
}

/** True when `exe` is the same file (device, inode and birth time) as one of the paths. */
export function programMatches(exe: FileStat, files: ProgramFiles): boolean {
  let now = 0;
  for (const e of files.entries) {
    const s = e.expires <= (now ||= Date.now()) ? look(e, now) : e.stat;
    if (s === undefined || !sameFile(s, exe)) continue;
    // Without both birth times, or for a young file, the path is looked at again: the
    // identity must be that of the file there now.
    if (!e.verify && born(exe)) return true;
    const fresh = look(e, now);
    if (fresh !== undefined && sameFile(fresh, exe)) return true;
  }
  return false;
}
