/**
 * The gateway's Prometheus metrics (prom-client, one registry per gateway) and the UNIX
 * socket that serves them: `GET /metrics` in the Prometheus text format. The request
 * counter and the duration histogram are fed by the same finished entries as the decision
 * log, so the two always agree.
 */
import * as http from 'node:http';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { listenAt } from '../systemd/index.js';
import type { GatewayLogEntry } from './log.js';

/** A gateway's metrics. */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #requests = new Counter({
    name: 'secpolicy_gateway_requests_total',
    help: 'Requests decided, by the rule that decided (empty when no rule matched the peer) and the verdict (allowed or denied; in audit mode, what the rules decided)',
    labelNames: ['rule', 'verdict'] as const,
    registers: [this.registry],
  });
  readonly #refused = new Counter({
    name: 'secpolicy_gateway_connections_refused_total',
    help: 'Connections refused by the connect policy before any request',
    registers: [this.registry],
  });
  readonly #upstreamErrors = new Counter({
    name: 'secpolicy_gateway_upstream_errors_total',
    help: 'Forwarded requests the upstream could not be reached for (or that failed before its answer began)',
    registers: [this.registry],
  });
  readonly #duration = new Histogram({
    name: 'secpolicy_gateway_request_duration_seconds',
    help: 'From the arrival of a request to the end of its answer (an upgrade: to the upstream answer), in seconds',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly connections = new Gauge({
    name: 'secpolicy_gateway_connections',
    help: 'Client connections open now',
    registers: [this.registry],
  });
  readonly #reloads = new Counter({
    name: 'secpolicy_gateway_reloads_total',
    help: 'Policy reloads, by result (success or failure; a failed reload keeps the policy that was running)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor() {
    // Both results are shown from the start, at 0.
    this.#reloads.inc({ result: 'success' }, 0);
    this.#reloads.inc({ result: 'failure' }, 0);
  }

  /** Counts a finished decision (the entry the decision log gets, whether or not it is logged). */
  observe(e: GatewayLogEntry): void {
    if (e.method === null) {
      if (!e.forwarded) this.#refused.inc();
      return;
    }
    this.#requests.inc({ rule: e.rule ?? '', verdict: e.allowed ? 'allowed' : 'denied' });
    if (e.durationMs !== undefined) this.#duration.observe(e.durationMs / 1000);
  }

  upstreamError(): void {
    this.#upstreamErrors.inc();
  }

  reloaded(ok: boolean): void {
    this.#reloads.inc({ result: ok ? 'success' : 'failure' });
  }
}

/**
 * Serves the metrics `text()` makes (of a content type, such as a registry's) on a new
 * UNIX socket at `path` (created like the gateway's own, with `mode`): `GET /metrics` (and
 * HEAD) answers the text format, any other path 404, any other method 405.
 */
export async function serveMetrics(
  text: () => Promise<string>,
  contentType: string,
  path: string,
  mode: number,
  allowInsecureDirectory: boolean | undefined,
): Promise<http.Server> {
  const server = http.createServer({ requestTimeout: 10_000, headersTimeout: 10_000, keepAliveTimeout: 5_000 }, (req, res) => {
    const answer = (status: number, body: string, headers: http.OutgoingHttpHeaders = {}): void => {
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const url = req.url ?? '';
    if (url !== '/metrics' && !url.startsWith('/metrics?')) return answer(404, 'not found: the metrics are at /metrics\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(405, 'only GET /metrics\n', { Allow: 'GET, HEAD' });
    text().then(
      (body) => {
        res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (e: unknown) => answer(500, `metrics unavailable: ${(e as Error)?.message}\n`),
    );
  });
  await listenAt(server, path, { mode, ...(allowInsecureDirectory !== undefined && { allowInsecureDirectory }) });
  return server;
}

/** Metrics of one process as JSON, as a group's processes send them to the one that serves them. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/**
 * The metrics of a gateway of several processes in the text format: every process's
 * counters, gauges and histograms summed, series by series.
 */
export async function groupMetricsText(own: Registry, others: readonly MetricsJson[]): Promise<string> {
  return AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...others]).metrics();
}
