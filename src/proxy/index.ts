/** The proxy room's front door. */
export { createProxy, closeProxy, deniedLine, type ProxyOptions, type CloseProxyOptions } from './proxy.js';
