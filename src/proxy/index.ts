/** The proxy room's front door. */
export { createProxy, closeProxy, deniedLine, DEFAULT_CONNECT_TIMEOUT, type ProxyOptions, type CloseProxyOptions } from './proxy.js';
