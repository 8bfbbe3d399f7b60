// Builds an in-process Tally on a given store, with logs off, for route tests.
import { type AppDeps, buildApp, type Tally } from '../../src/app.js';
import { type ConfigInput, loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/obs/logger.js';
import { Metrics } from '../../src/obs/metrics.js';
import type { Store } from '../../src/store/interface.js';
import { MemoryStore } from '../../src/store/memory/index.js';
import { checkAnswers } from './openapi-check.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/**
 * In-process app; the write-ahead log is off unless `overrides` turns it on (with a dataDir), and
 * logs are silent unless `overrides.logLevel` is set.
 * Its answers are checked against its OpenAPI document.
 */
export async function testApp(
  overrides: ConfigInput = {},
  store: Store = new MemoryStore(),
  deps: Partial<Pick<AppDeps, 'openWalFile'>> = {},
): Promise<Tally> {
  const config = loadConfig({}, { logFiles: false, flushIntervalMs: 20, wal: false, ...overrides });
  // Silent unless a test asks for a level (the logger still writes nowhere).
  const level = overrides.logLevel === undefined ? 'silent' : config.logLevel;
  const { logger } = createLogger({ level, stdout: false });
  const tally = await buildApp(config, {
    store,
    logger,
    instanceId: config.instanceId ?? `test-${Math.random().toString(36).slice(2, 8)}`,
    metrics: new Metrics({ defaultMetrics: false }),
    ...deps,
  });
  // Every answer the test sees is checked against the OpenAPI document (helpers/setup.ts).
  checkAnswers(tally.app, () => tally.openapi());
  return tally;
}
