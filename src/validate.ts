/** Argument validators shared by the builder, policy files and entry points. */
import { invalidArg } from './errors.js';

const MAX_ID = 0xfffffffe; // (uid_t)-1 means "no change" to the kernel, never an identity

/** An integer uid/gid the kernel can hold (0 to 2^32-2). */
export function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_ID;
}

/** A non-empty string of at most 256 characters without NUL. */
export function isName(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= 256 && !v.includes('\0');
}

/** One value or a non-empty array of values, each checked; returns a frozen array. */
export function oneOrMany<T>(name: string, value: unknown, test: (v: unknown) => v is T, expected: string): readonly T[] {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) throw invalidArg(name, `${expected}, or a non-empty array of them`, value);
  list.forEach((v, i) => {
    if (!test(v)) throw invalidArg(Array.isArray(value) ? `${name}[${i}]` : name, expected, v);
  });
  return Object.freeze([...list]) as readonly T[];
}

/** One id or a non-empty array of ids, else ERR_SECPOLICY_INVALID_ARG naming `name`. */
export function ids(name: string, value: unknown): readonly number[] {
  return oneOrMany(name, value, isId, 'an integer id from 0 to 4294967294');
}

/** One name or a non-empty array of names, else ERR_SECPOLICY_INVALID_ARG naming `name`. */
export function names(name: string, value: unknown): readonly string[] {
  return oneOrMany(name, value, isName, 'a non-empty string without NUL bytes');
}

/** One absolute path or a non-empty array of them, else ERR_SECPOLICY_INVALID_ARG naming `name`. */
export function absolutePaths(name: string, value: unknown): readonly string[] {
  return oneOrMany(name, value, (v): v is string => isName(v) && v.startsWith('/'), 'an absolute path');
}

/** A file mode from 0 to 0o777, else ERR_SECPOLICY_INVALID_ARG naming `name`. */
export function mode(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0o777) {
    throw invalidArg(name, 'an integer mode from 0 to 0o777', value);
  }
  return value;
}

/** A positive number of milliseconds (timer range), or `fallback` when undefined. */
export function timeout(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 2 ** 31 - 1) {
    throw invalidArg(name, 'a positive number of milliseconds', value);
  }
  return value;
}

/** A number of milliseconds from 0 (timer range), or `fallback` when undefined. */
export function grace(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= 0) || value > 2 ** 31 - 1) throw invalidArg(name, 'a number of milliseconds from 0', value);
  return value;
}

/** A function, else ERR_SECPOLICY_INVALID_ARG naming `name`. */
export function func<T extends (...args: never[]) => unknown>(name: string, value: unknown): T {
  if (typeof value !== 'function') throw invalidArg(name, 'a function', value);
  return value as T;
}

/** An AbortSignal or undefined, else ERR_SECPOLICY_INVALID_ARG naming `name`. */
export function signal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw invalidArg(name, 'an AbortSignal', value);
  return value;
}

/** Copy user options into a null-prototype object so that prototype keys never leak in. */
export function options<T extends object>(name: string, value: unknown): Partial<T> {
  if (value === undefined) return Object.create(null) as Partial<T>;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidArg(name, 'an object', value);
  return Object.assign(Object.create(null), value) as Partial<T>;
}

/** True for a plain mapping (not a list, null, or a typed value such as `!!binary`). */
export function isMapping(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
