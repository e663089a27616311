/**
 * Operations, in one place: the `secpolicy:decision` and `secpolicy:denied` diagnostics
 * channels and the `secpolicy` debuglog (NODE_DEBUG=secpolicy). Each event gives one log
 * line: a denied Decision is logged when it is made, and the refusal that follows it is
 * not logged again. Payloads and secrets are never published or logged.
 */
import { channel } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { escapeText } from './escape.js';
import type { SecpolicyError } from './errors.js';
import type { Decision } from './policy/policy.js';

/** Name of the channel on which every Decision made by `apply()` is published. */
export const DECISION_CHANNEL = 'secpolicy:decision';

/** Name of the channel on which every refused connection is published. */
export const DENIED_CHANNEL = 'secpolicy:denied';

/** The channels secpolicy publishes on, by what they carry. */
export const CHANNELS = Object.freeze({ decision: DECISION_CHANNEL, denied: DENIED_CHANNEL });

/** The message published on `secpolicy:denied`. */
export interface DeniedMessage {
  /** Which entry point refused the connection. */
  source: 'server' | 'guard' | 'connect';
  /** The Decision that denied the peer, or the error that prevented a verification. */
  reason: Decision | SecpolicyError;
  /** The refused socket (already destroyed, or about to be). */
  socket: Socket;
}

/** @internal The `secpolicy` debuglog (NODE_DEBUG=secpolicy). */
export const log = debuglog('secpolicy');

const decisionChannel = channel(DECISION_CHANNEL);
const deniedChannel = channel(DENIED_CHANNEL);
// Denials already logged when they were decided: their refusal adds no second line.
const logged = new WeakSet<Decision>();

/** @internal Publishes a Decision and logs it when it denies. */
export function publishDecision(decision: Decision): void {
  if (decisionChannel.hasSubscribers) decisionChannel.publish(decision);
  if (!decision.allowed && log.enabled) {
    logged.add(decision);
    log('%s', deniedText('denied', decision));
  }
}

/** @internal Publishes a refused connection and logs it unless its Decision already was. */
export function publishDenied(message: DeniedMessage): void {
  if (deniedChannel.hasSubscribers) deniedChannel.publish(message);
  if (!log.enabled) return;
  const r = message.reason;
  if ('allowed' in r) {
    if (!logged.has(r)) log('%s', deniedText(`${message.source}: denied`, r));
  } else log('%s', escapeText(`${message.source}: refused a connection: ${r.code}: ${r.message}`));
}

/** `denied pid=.. uid=.. gid=.. result=0x..: why; why`, with names and paths escaped. */
function deniedText(head: string, d: Decision): string {
  const p = d.peer;
  const why = d.failures.map((f) => f.message).join('; ');
  return escapeText(`${head} pid=${p.pid} uid=${p.uid} gid=${p.gid} result=0x${d.result.toString(16)}: ${why}`);
}
