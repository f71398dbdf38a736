/**
 * The metrics port's HTTP endpoints, for Prometheus and for an orchestrator's probes: `/metrics`
 * (Prometheus text), `/healthz` (the process answers), `/readyz` (the server listens and has a
 * ready worker) and `/limits` (the limits in force, JSON). Read-only: GET and HEAD; another
 * method is 405, another path 404. Everything is read from the server when asked.
 */
import type { RequestListener, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { LimitsDescription } from '../limits/describe-limits.js';
import type { ServerHealth, ServerState } from '../server/threaded-server.js';

/** What the endpoints read of a server (a {@link ThreadedServer} is one). */
export interface MetricsEndpointSource {
  /** The registry `/metrics` serves (asked for once). */
  metricsRegistry(): Registry;
  /** Read by `/healthz` and `/readyz` at each request. */
  health(): ServerHealth;
  /** Read by `/limits` at each request. */
  describeLimits(): LimitsDescription;
}

/** What `/readyz` answers (200 when `ready`, else 503). */
export interface Readiness {
  /** True while serving with at least one worker ready: `/readyz` answers 200. */
  ready: boolean;
  /** The server's state (`created`, `starting`, `serving`, `closing`, `closed`). */
  state: ServerState;
  /** Worker threads ready (handler loaded, not being replaced) and configured. */
  workers: { ready: number; configured: number };
  /** Why it is not ready, or which workers are missing while it still is. */
  reason?: string;
}

const NOT_SERVING: Record<Exclude<ServerState, 'serving'>, string> = {
  created: 'not started: listen() has not been called',
  starting: 'starting: the workers are loading the handler',
  closing: 'shutting down',
  closed: 'shut down',
};

/**
 * Ready while serving with at least one ready worker: calls are answered then, if more slowly
 * while a blocked worker is being replaced (the body says how many are missing). Not ready while
 * starting or shutting down, or while no worker can run a call.
 */
export function readiness(health: ServerHealth): Readiness {
  const workers = { ready: health.readyWorkers, configured: health.workers };
  const base = { state: health.state, workers };
  if (health.state !== 'serving') return { ready: false, ...base, reason: NOT_SERVING[health.state] };
  if (health.readyWorkers === 0) return { ready: false, ...base, reason: `no worker is ready (0 of ${health.workers}): they are being replaced` };
  if (health.readyWorkers < health.workers)
    return { ready: true, ...base, reason: `${health.readyWorkers} of ${health.workers} workers ready, the others being replaced` };
  return { ready: true, ...base };
}

const PATHS = ['/metrics', '/healthz', '/readyz', '/limits'];

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res
    .writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', ...headers })
    .end(`${JSON.stringify(body, null, 2)}\n`);
}

/**
 * The request listener of the metrics port: `http.createServer(metricsRequestListener(server))`.
 */
export function metricsRequestListener(source: MetricsEndpointSource): RequestListener {
  const registry = source.metricsRegistry();
  return (req, res) => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (!PATHS.includes(path)) {
      json(res, 404, { error: `no such path: ${path}`, paths: PATHS });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: `${req.method} not allowed: the endpoints are read-only` }, { Allow: 'GET, HEAD' });
      return;
    }
    switch (path) {
      case '/metrics':
        registry.metrics().then(
          (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
          (error: unknown) => json(res, 500, { error: `collecting the metrics failed: ${error instanceof Error ? error.message : String(error)}` }),
        );
        return;
      case '/healthz':
        json(res, 200, { alive: true, state: source.health().state });
        return;
      case '/readyz': {
        const r = readiness(source.health());
        json(res, r.ready ? 200 : 503, r);
        return;
      }
      default:
        json(res, 200, source.describeLimits());
    }
  };
}
