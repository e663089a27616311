/**
 * The thread that runs strict mode's holder scans, so that reading every fd on the host
 * never stalls the event loop that serves connections. One scan per message.
 */
import { parentPort } from 'node:worker_threads';
import { scanHolders, type OurEnd } from './holders.js';

/** A scan request from the main thread. */
export interface ScanRequest {
  serial: number;
  ours: OurEnd[];
  budgetMs: number;
}

parentPort?.on('message', (m: ScanRequest) => {
  try {
    parentPort!.postMessage({ serial: m.serial, scan: scanHolders(m.ours, { budgetMs: m.budgetMs, serial: m.serial }) });
  } catch (e) {
    parentPort!.postMessage({ serial: m.serial, error: (e as Error)?.message ?? String(e) });
  }
});
