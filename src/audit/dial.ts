/**
 * dial(): a client connection to a socket named the way users and ss name them (a path,
 * or `@name` for an abstract socket), for the commands that look at the server on the
 * other end (inspect, check). No byte is sent.
 */
import * as net from 'node:net';
import { resolve } from 'node:path';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { connectAbstract } from '../native/index.js';
import { openSocket } from '../net/index.js';
import * as v from '../validate.js';

/** A connected client socket and how its address reads. */
export interface Dialed {
  socket: net.Socket;
  /** An absolute path, or `@name`. */
  path: string;
  abstract: boolean;
}

/**
 * Connects within `timeout` ms. Rejects with ERR_SECPOLICY_CONNECT (nobody listening, no
 * such file, no permission) or ERR_SECPOLICY_TIMEOUT. Errors on the socket after connect
 * are swallowed: a server that closes first must not crash a caller reading its identity.
 */
export async function dial(path: string, timeout: number): Promise<Dialed> {
  if (!v.isName(path) || path === '@') throw invalidArg('path', 'a socket path, or @name for an abstract socket', path);
  if (path.startsWith('@')) return { socket: await dialAbstract(path.slice(1), timeout), path, abstract: true };
  const shown = resolve(path);
  return { socket: await open(shown, shown, timeout), path: shown, abstract: false };
}

/**
 * An abstract name as other programs bind it (exact length), then as Node binds it
 * (padded to the whole sun_path) when nobody listens on the exact one.
 */
async function dialAbstract(name: string, timeout: number): Promise<net.Socket> {
  let fd: number;
  try {
    fd = connectAbstract(name);
  } catch (e) {
    if ((e as { errnoName?: string }).errnoName !== 'ECONNREFUSED') throw e;
    return open(`\0${name}`, `@${name}`, timeout);
  }
  const socket = new net.Socket({ fd, readable: true, writable: true });
  socket.on('error', () => {});
  return socket;
}

/** openSocket() bounded by `timeout` ms (ERR_SECPOLICY_TIMEOUT). */
async function open(address: string, shown: string, timeout: number): Promise<net.Socket> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new SecpolicyError(ErrorCode.TIMEOUT, `connecting to ${shown} took longer than ${timeout} ms`, { path: shown })),
    timeout,
  );
  try {
    return await openSocket(address, controller.signal);
  } finally {
    clearTimeout(timer);
  }
}
