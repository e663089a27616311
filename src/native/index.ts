/** The native room's front door: typed functions over libc. Only this room imports koffi. */
export { assertPlatform, Errno, errnoName } from './libc.js';
export {
  socketFd,
  socketHandle,
  peerCred,
  peerGroups,
  peerSecurityLabel,
  localAddress,
  remoteAddress,
  closeFd,
  listenerHandle,
  handleFd,
  type PeerCred,
  type UnixAddress,
} from './socket.js';
export {
  listUnixSockets,
  dumpUnixSockets,
  unixSocket,
  unixPeerInode,
  queuedToRead,
  type UnixSocketInfo,
  type UnixSocketList,
  type UnixSocketState,
  type UnixSocketType,
  type ListUnixSocketsOptions,
  type UnixSocketQuery,
} from './sock-diag.js';
export { socketInode, procNetUnix } from './unix-sockets.js';
export { openPathFd, closePathFd, fdIdentity, sameBoundFile, listenerBoundFile, type FdIdentity } from './bound-file.js';
export { connectAbstract } from './unix-connect.js';
export { bindSocketFile, chownPathFd, chmodPathFd, listenOnBoundSocket } from './bind.js';
export { readFileInto } from './proc-file.js';
export { fdMode, formatMode, statFd, statPath, statProcExe, S_IFMT, S_IFSOCK, S_IFREG, S_IFLNK, S_IFDIR, type FileStat } from './file.js';
export { userName, groupName, uidOf, gidOf, primaryGidOf, configureNameCache, clearNameCache, type NameCacheOptions } from './nss.js';
export { sameFdTable } from './kcmp.js';
export { readFdLinks, readTaskIds, type FdLinks } from './fd-links.js';
export {
  takeSocket,
  closeTaken,
  connectUnix,
  startRelay,
  type ConnectFailure,
  type TakenSocket,
  type Relay,
  type RelayOptions,
} from './splice.js';
// Used by other rooms of this package; not re-exported by the package root.
export { notUnixStreamListener, ownPidfdId, sendDatagram, setCloseOnExec } from './activation.js';
export { pidfdAlive, pidfdOpen, socketPeerPidfd } from './pidfd.js';
