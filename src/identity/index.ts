/** The identity room's front door. */
export { Peer, type Side, type PeerOptions } from './peer.js';
