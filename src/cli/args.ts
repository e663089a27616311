/** Argument parsers shared by the commands: socket addresses and durations. */
import { InvalidArgumentError } from 'commander';

/** `@name` (how users, ss and audit write abstract sockets) → the `\0name` Node connects to. */
export function socketAddress(path: string): string {
  return path.startsWith('@') && path.length > 1 ? `\0${path.slice(1)}` : path;
}

/** A commander parser for a positive number of milliseconds (a usage error otherwise). */
export function milliseconds(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0 || n > 2 ** 31 - 1) {
    throw new InvalidArgumentError('expected a positive whole number of milliseconds');
  }
  return n;
}
