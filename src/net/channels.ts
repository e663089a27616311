/**
 * Operations: the `secpolicy:denied` diagnostics channel and the `secpolicy` debuglog.
 * (`secpolicy:decision` is published by Policy.apply for every decision.)
 */
import { channel } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import type { SecpolicyError } from '../errors.js';
import type { Decision } from '../policy/policy.js';

/** @internal The `secpolicy` debuglog (NODE_DEBUG=secpolicy). */
export const log = debuglog('secpolicy');

/** Name of the channel on which every refused connection is published. */
export const DENIED_CHANNEL = 'secpolicy:denied';

/** The message published on `secpolicy:denied`. */
export interface DeniedMessage {
  /** Which entry point refused the connection. */
  source: 'server' | 'guard' | 'connect';
  /** The Decision that denied the peer, or the error that prevented a verification. */
  reason: Decision | SecpolicyError;
  /** The refused socket (already destroyed, or about to be). */
  socket: Socket;
}

const deniedChannel = channel(DENIED_CHANNEL);

/** @internal Publishes a refusal and logs it; never logs payloads or secrets. */
export function publishDenied(message: DeniedMessage): void {
  if (deniedChannel.hasSubscribers) deniedChannel.publish(message);
  const r = message.reason;
  if ('allowed' in r) log('%s: denied uid=%d pid=%d result=0x%s', message.source, r.peer.uid, r.peer.pid, r.result.toString(16));
  else log('%s: refused connection: %s %s', message.source, r.code, r.message);
}
