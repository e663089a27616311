/** systemd integration: socket activation, readiness and the watchdog. */
export {
  systemdListeners,
  systemdSockets,
  systemdSocket,
  isSystemdSpec,
  listenOnFd,
  type ActivatedSocket,
  type SystemdListenersOptions,
} from './listeners.js';
export { notify, startWatchdog, type Watchdog, type WatchdogOptions } from './notify.js';
// Used by other rooms of this package; not re-exported by the package root.
/** @internal */
export { listenAt, listenTarget } from './listeners.js';
/** @internal */
export { notifier, watchdogThrough } from './notify.js';
