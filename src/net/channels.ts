/**
 * The diagnostics channels of the net room. The names are exported constants; publishing
 * and the debuglog live in one module (src/diagnostics.ts) so that each event is one line.
 */
export { CHANNELS, DECISION_CHANNEL, DENIED_CHANNEL, type DeniedMessage } from '../diagnostics.js';
