import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Thread and socket tests measure real time; running files one at a time keeps the two
    // cores of a CI machine from being shared by several load tests at once.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', 'json'],
    outputFile: { json: 'dist/test-results.json' },
  },
});
