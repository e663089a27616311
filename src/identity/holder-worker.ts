/**
 * The thread that runs strict mode's holder scans, so that reading every fd on the host
 * never stalls the event loop that serves connections. One scan per message. It starts a
 * helper thread of its own (this file again, in helper mode) that reads the fd tables of
 * half the processes during a scan.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { scanHolders, serveWalkHelper, startWalkHelper, type OurEnd } from './holders.js';

/** A scan request from the main thread. */
export interface ScanRequest {
  serial: number;
  ours: OurEnd[];
  budgetMs: number;
}

const helperOf = (workerData as { helper?: { port: MessagePort; signal: Int32Array } } | null)?.helper;

if (helperOf !== undefined) {
  serveWalkHelper(helperOf.port, helperOf.signal, parentPort);
} else {
  const helper = startWalkHelper();
  parentPort?.on('message', (m: ScanRequest) => {
    try {
      const scan = scanHolders(m.ours, { budgetMs: m.budgetMs, serial: m.serial, ...(helper && { helper }) });
      parentPort!.postMessage({ serial: m.serial, scan });
    } catch (e) {
      parentPort!.postMessage({ serial: m.serial, error: (e as Error)?.message ?? String(e) });
    }
  });
}
