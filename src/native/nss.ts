/**
 * User and group names through NSS (getpwuid_r and friends in libc), so that LDAP, sssd
 * and systemd users resolve as they do for every other program on the host. Results are
 * cached, bounded and with a TTL, so the accept path does not ask NSS per connection.
 */
import { invalidArg } from '../errors.js';
import { Errno, errnoError, libc } from './libc.js';

const INITIAL_BUFFER = 1024;
const MAX_BUFFER = 1 << 20;

type Lookup = 'getpwuid_r' | 'getpwnam_r' | 'getgrgid_r' | 'getgrnam_r';

interface Entry {
  name: string;
  id: number;
  /** The primary gid of a user entry. */
  gid?: number;
}

function lookup(fn: Lookup, key: number | string): Entry | undefined {
  const c = libc();
  let size = INITIAL_BUFFER;
  for (;;) {
    const record: Record<string, unknown> = {};
    const result: unknown[] = [null];
    const buf = Buffer.alloc(size);
    const rc: number = c[fn](key, record, buf, size, result);
    if (rc === 0) {
      if (result[0] === null) return undefined;
      if (fn === 'getpwuid_r' || fn === 'getpwnam_r')
        return { name: record.pw_name as string, id: record.pw_uid as number, gid: record.pw_gid as number };
      return { name: record.gr_name as string, id: record.gr_gid as number };
    }
    // The _r functions return the error number; ERANGE asks for a larger buffer.
    if (rc === Errno.ERANGE && size < MAX_BUFFER) {
      size *= 4;
      continue;
    }
    // Not found is reported as 0 with a null result, but some NSS modules return these.
    if (rc === Errno.ENOENT || rc === Errno.ESRCH || rc === Errno.EBADF || rc === Errno.EPERM) return undefined;
    throw errnoError(fn, rc);
  }
}

/** Options of the name cache. */
export interface NameCacheOptions {
  /** Entries kept at most; the oldest go first. @default 4096 */
  maxEntries?: number;
  /** How long an answer (also "no such name") is trusted, in ms. @default 30000 */
  ttl?: number;
}

class TtlCache<K, V> {
  #map = new Map<K, { value: V; expires: number }>();
  constructor(
    public maxEntries: number,
    public ttl: number,
  ) {}

  get(key: K, load: (key: K) => V): V {
    const now = Date.now();
    const hit = this.#map.get(key);
    if (hit !== undefined && hit.expires > now) return hit.value;
    const value = load(key);
    if (hit !== undefined) this.#map.delete(key);
    else if (this.#map.size >= this.maxEntries) this.#map.delete(this.#map.keys().next().value as K);
    this.#map.set(key, { value, expires: now + this.ttl });
    return value;
  }

  clear(): void {
    this.#map.clear();
  }
}

const caches = {
  userById: new TtlCache<number, string | undefined>(4096, 30_000),
  groupById: new TtlCache<number, string | undefined>(4096, 30_000),
  uidByName: new TtlCache<string, number | undefined>(4096, 30_000),
  gidByName: new TtlCache<string, number | undefined>(4096, 30_000),
};

/** Change the size or TTL of the NSS name cache (and empty it). */
export function configureNameCache(options: NameCacheOptions = {}): void {
  if (typeof options !== 'object' || options === null) throw invalidArg('options', 'an object', options);
  const { maxEntries, ttl } = options;
  if (maxEntries !== undefined && !(Number.isInteger(maxEntries) && maxEntries >= 1)) {
    throw invalidArg('options.maxEntries', 'a positive integer', maxEntries);
  }
  if (ttl !== undefined && !(typeof ttl === 'number' && ttl >= 0 && ttl <= 2 ** 31 - 1)) {
    throw invalidArg('options.ttl', 'a number of milliseconds from 0 to 2147483647', ttl);
  }
  for (const cache of Object.values(caches)) {
    if (maxEntries !== undefined) cache.maxEntries = maxEntries;
    if (ttl !== undefined) cache.ttl = ttl;
    cache.clear();
  }
}

/** Empty the NSS name cache. */
export function clearNameCache(): void {
  for (const cache of Object.values(caches)) cache.clear();
}

/** The user name of a uid, or undefined when NSS knows none. */
export function userName(uid: number): string | undefined {
  return caches.userById.get(uid, (k) => lookup('getpwuid_r', k)?.name);
}

/** The group name of a gid, or undefined when NSS knows none. */
export function groupName(gid: number): string | undefined {
  return caches.groupById.get(gid, (k) => lookup('getgrgid_r', k)?.name);
}

/** The uid of a user name, or undefined when NSS knows none. */
export function uidOf(name: string): number | undefined {
  return caches.uidByName.get(name, (k) => lookup('getpwnam_r', k)?.id);
}

/** The gid of a group name, or undefined when NSS knows none. */
export function gidOf(name: string): number | undefined {
  return caches.gidByName.get(name, (k) => lookup('getgrnam_r', k)?.id);
}

/** The primary gid of a uid (its passwd entry's group), or undefined when NSS knows none. Not cached. */
export function primaryGidOf(uid: number): number | undefined {
  return lookup('getpwuid_r', uid)?.gid;
}
