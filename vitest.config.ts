import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Floods, crashes and server restarts on two cores: generous, so that a busy machine is not a failure.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Tests start real processes and floods; two cores do not gain from more parallel files.
    fileParallelism: true,
    maxWorkers: 2,
    // The JSON report lets .ci/run print one closing line: "tests: N passed, N failed".
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
  },
});
