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
