/**
 * The thread that runs strict mode's holder scans, so that reading every fd on the host
 * never stalls the event loop that serves connections. One scan per request.
 */
import { serve } from '../worker-port.js';
import { scanHolders, type HolderScan, type OurEnd } from './holders.js';

/** A scan request from the main thread. */
export interface ScanRequest {
  serial: number;
  ours: OurEnd[];
  budgetMs: number;
}

serve<ScanRequest, HolderScan>((m) => scanHolders(m.ours, { budgetMs: m.budgetMs, serial: m.serial }));
