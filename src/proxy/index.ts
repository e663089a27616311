/** The proxy room's front door. */
export {
  createProxy,
  closeProxy,
  deniedLine,
  proxyDataPath,
  type ProxyOptions,
  type CloseProxyOptions,
  type ProxyDataPath,
  type ProxyDataPathInfo,
} from './proxy.js';
