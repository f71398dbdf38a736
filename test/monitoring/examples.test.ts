// The monitoring examples (examples/monitoring/) against the real thing: every metric the Grafana
// dashboard and the Prometheus alert rules name is in the /metrics output of a running `serve`
// (example handler, a limit in Redis), and Prometheus's own promtool checks the rules, runs their
// unit tests and parses every query of the dashboard. Needs Debian's `prometheus` package for
// promtool (`.ci/run` installs it) and a redis-server (as the store tests).
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startServe } from '../serve-cli.js';
import { connect } from '../server/calculator.js';
import { sharedRedis, type TestRedis } from '../stores/redis-server.js';

const run = promisify(execFile);
const monitoring = fileURLToPath(new URL('../../examples/monitoring/', import.meta.url));
const dashboardPath = join(monitoring, 'grafana-dashboard.json');
const rulesPath = join(monitoring, 'alerts.yml');

/** promtool, or a clear failure: the checks below are what CI runs them for. */
function promtool(): string {
  if (spawnSync('promtool', ['--version']).error !== undefined) {
    throw new Error('promtool is not installed: the monitoring example checks need it (apt-get install prometheus)');
  }
  return 'promtool';
}

/** Every string under the keys `expr`, `definition` and `query` of the dashboard: its PromQL. */
function dashboardQueries(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) dashboardQueries(item, out);
  else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (typeof value === 'string' && ['expr', 'definition', 'query'].includes(key)) out.push(value);
      else dashboardQueries(value, out);
    }
  }
  return out;
}

/** The `tql_` metric names a text mentions. */
const metricNames = (text: string): Set<string> => new Set(text.match(/\btql_[a-z0-9_]+/g) ?? []);

/** The sample names of a Prometheus text exposition (histograms give `_bucket`, `_sum`, `_count`). */
const sampleNames = (text: string): Set<string> =>
  new Set(
    text
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)![0]),
  );

let redis: Pick<TestRedis, 'url' | 'cli' | 'stop'>;
beforeAll(async () => {
  redis = await sharedRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('monitoring examples', () => {
  test('every metric the dashboard and the alert rules name is exported by a running serve (example handler, a limit in Redis)', async () => {
    const serve = await startServe([
      ...['--stats-interval', '1m', '--limit', 'add=100/s,burst=5', '--limit', '*=1000/s', '--max-wait', '2s'],
      ...['--redis', redis.url, '--redis-prefix', `monitoring:${process.pid}:${Date.now()}:`, '--metrics-port', '0'],
    ]);
    let text: string;
    try {
      const metricsUrl = /metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(serve.out())![1]!;
      const { client, close } = await connect(serve.port);
      // Calls on both limits, so the per-method series exist as they would in production.
      await Promise.all(Array.from({ length: 20 }, (_, k) => client.add(k, 1)));
      await client.sleep(5);
      close();
      text = await (await fetch(metricsUrl)).text();
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect(await serve.exited).toBe(0);

    const exported = sampleNames(text);
    const dashboard = metricNames(dashboardQueries(JSON.parse(readFileSync(dashboardPath, 'utf8'))).join('\n'));
    const rules = metricNames(readFileSync(rulesPath, 'utf8'));
    // The examples cover what the issue asks for: these are among the names they use.
    for (const name of [
      'tql_method_admitted_total',
      'tql_method_refused_total',
      'tql_queued',
      'tql_wait_seconds_bucket',
      'tql_method_handler_duration_seconds_bucket',
      'tql_server_workers_ready',
      'tql_server_worker_replacements_total',
      'tql_store_errors_total',
      'tql_store_down',
    ]) {
      expect(dashboard, `the dashboard uses ${name}`).toContain(name);
    }
    for (const name of ['tql_wait_seconds_bucket', 'tql_method_refused_total', 'tql_store_down', 'tql_server_worker_replacements_total']) {
      expect(rules, `the rules use ${name}`).toContain(name);
    }
    expect([...dashboard].filter((n) => !exported.has(n))).toEqual([]);
    expect([...rules].filter((n) => !exported.has(n))).toEqual([]);
  });

  test('promtool check rules accepts the alert rules, and promtool test rules passes their unit tests', async () => {
    const tool = promtool();
    const checked = await run(tool, ['check', 'rules', rulesPath]);
    expect(checked.stdout).toMatch(/SUCCESS: 5 rules found/);
    const tested = await run(tool, ['test', 'rules', join(monitoring, 'alerts.test.yml')]);
    expect(tested.stdout).toMatch(/SUCCESS/);
  });

  test("every query of the dashboard is PromQL that promtool parses (Grafana's variables given values)", async () => {
    const tool = promtool();
    const dashboard = JSON.parse(readFileSync(dashboardPath, 'utf8')) as { panels: { id: number; targets: { expr: string }[] }[] };
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const queries = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    expect(queries.length).toBeGreaterThanOrEqual(20);
    // Each query becomes a recording rule: promtool parses its expression, as Prometheus would.
    const rules = queries.map(
      (q, k) => `      - record: dashboard_query_${k}\n        expr: ${JSON.stringify(q.replaceAll('$__rate_interval', '5m').replaceAll('$job', '.*'))}`,
    );
    const dir = mkdtempSync(join(tmpdir(), 'tql-dashboard-'));
    try {
      const file = join(dir, 'queries.yml');
      writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules.join('\n')}\n`);
      const checked = await run(tool, ['check', 'rules', file]);
      expect(checked.stdout).toContain(`SUCCESS: ${queries.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
