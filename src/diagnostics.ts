/**
 * Operations, in one place: the `secpolicy:decision` and `secpolicy:denied` diagnostics
 * channels and the `secpolicy` debuglog (NODE_DEBUG=secpolicy). The debuglog is one more
 * subscriber of the channels (as undici's is), so it sees exactly what applications see.
 * Each event gives one log line: a denied Decision is logged when it is published, and the
 * refusal that follows it is not logged again. Payloads and secrets are never published
 * or logged.
 */
import { channel, subscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { escapeText } from './escape.js';
import type { SecpolicyError } from './errors.js';
import type { Decision } from './policy/decision.js';

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

/** @internal Publishes a Decision (an application-facing verification's). */
export function publishDecision(decision: Decision): void {
  if (decisionChannel.hasSubscribers) decisionChannel.publish(decision);
}

/** @internal Publishes a refused connection. */
export function publishDenied(message: DeniedMessage): void {
  if (deniedChannel.hasSubscribers) deniedChannel.publish(message);
}

// The debuglog, when NODE_DEBUG names secpolicy: a subscriber like any other.
if (log.enabled) {
  subscribe(DECISION_CHANNEL, (m) => {
    const decision = m as Decision;
    if (decision.allowed) return;
    logged.add(decision);
    log('%s', deniedText('denied', decision));
  });
  subscribe(DENIED_CHANNEL, (m) => {
    const message = m as DeniedMessage;
    const r = message.reason;
    if ('allowed' in r) {
      if (!logged.has(r)) log('%s', deniedText(`${message.source}: denied`, r));
    } else log('%s', escapeText(`${message.source}: refused a connection: ${r.code}: ${r.message}`));
  });
}

/** `denied pid=.. uid=.. gid=.. result=0x..: why; why`, with names and paths escaped. */
function deniedText(head: string, d: Decision): string {
  const p = d.peer;
  const why = d.failures.map((f) => f.message).join('; ');
  return escapeText(`${head} pid=${p.pid} uid=${p.uid} gid=${p.gid} result=0x${d.result.toString(16)}: ${why}`);
}
