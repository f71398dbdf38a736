import { defineConfig } from 'vitest/config';

/**
 * Tests in two tiers. Unit tests use injected clocks and no threads, sockets, child processes or
 * sleeps: they run first, in parallel, in seconds. Integration tests use real worker threads,
 * sockets, Redis, Python clients and the bench smoke run; they measure real time, so their files
 * run one at a time, keeping the two cores of a CI machine from being shared by several load tests.
 * Their wall-clock tolerances add the event-loop stalls measured during the run (`watchStalls` in
 * test/helpers.ts); counts of admissions stay exact.
 */
const UNIT = [
  'test/structure.test.ts',
  'test/helpers.test.ts',
  'test/validate.test.ts',
  'test/cli/limit-spec.test.ts',
  'test/fair/arg-field.test.ts',
  'test/report/svg-chart.test.ts',
  'test/keyed/keyed-token-bucket.test.ts',
  'test/keyed/set-limit.test.ts',
  'test/limiters/adaptive-concurrency-limit.test.ts',
  'test/limiters/concurrency-limit.test.ts',
  'test/limiters/fixed-window.test.ts',
  'test/limiters/fixed-window-wrap.test.ts',
  'test/limiters/pacing.test.ts',
  'test/limiters/set-limit.test.ts',
  'test/limiters/token-bucket.test.ts',
  'test/limiters/validation.test.ts',
  'test/queue/admission-front.test.ts',
  'test/shared/layout.test.ts',
  'test/stores/remote-limit.test.ts',
  'test/thrift/wire.test.ts',
  'test/thrift/wire-detect.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', 'json'],
    outputFile: { json: 'dist/test-results.json' },
    projects: [
      { extends: true, test: { name: 'unit', include: UNIT, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'integration', include: ['test/**/*.test.ts'], exclude: UNIT, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
