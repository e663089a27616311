/** Flags that the daemon commands (`proxy`, `gateway`) share about the socket files they use. */
import { statSync } from 'node:fs';
import { ErrorCode, SecpolicyError } from '../errors.js';
import { gidOf, uidOf } from '../native/index.js';

/** A user or group as given: a number is an id, anything else a name. */
export function idOrName(value: string): string | number {
  return /^\d+$/.test(value) ? Number(value) : value;
}

/** Why the target cannot take connections yet (missing, not a socket), or undefined. */
export function targetProblem(path: string): string | undefined {
  try {
    return statSync(path).isSocket() ? undefined : 'is not a socket';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'does not exist (yet)' : `cannot be checked (${code})`;
  }
}

/** `--owner` and `--group` as ids (-1 for not given); an unknown name is ERR_SECPOLICY_INVALID_ARG, before anything starts. */
export function ownership(owner: string | undefined, group: string | undefined): { uid: number; gid: number } {
  const resolve = (flag: string, value: string | undefined, lookup: (name: string) => number | undefined): number => {
    if (value === undefined) return -1;
    const id = idOrName(value);
    if (typeof id === 'number') return id;
    const found = lookup(id);
    if (found === undefined)
      throw new SecpolicyError(ErrorCode.INVALID_ARG, `${flag} ${value}: no such ${flag.slice(2) === 'owner' ? 'user' : 'group'}`);
    return found;
  };
  return { uid: resolve('--owner', owner, uidOf), gid: resolve('--group', group, gidOf) };
}
