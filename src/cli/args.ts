/** Argument parsers shared by the commands. */
import { InvalidArgumentError } from 'commander';

/** A commander parser for a positive number of milliseconds (a usage error otherwise). */
export function milliseconds(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0 || n > 2 ** 31 - 1) {
    throw new InvalidArgumentError('expected a positive whole number of milliseconds');
  }
  return n;
}
