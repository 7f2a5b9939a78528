import { describe } from 'vitest';
import { createDatabase, ServiceUnreachableError, uniqueName } from '../support/services.js';

/**
 * The shared servers the engine tests use (started before the session and by .ci/run): PostgreSQL on
 * 127.0.0.1:5432 (user postgres, trust), Redis on 6379, RabbitMQ on 5672 (guest/guest). A test that needs
 * one fails loudly when it is down. ONSALE_TEST_EXCLUDE=postgres,redis,rabbitmq leaves backends out on
 * purpose (.ci/run refuses it): their tests stay in the run and are reported as skipped, with the reason in
 * their name (see `exclusion`), so nothing ever vanishes silently.
 */
export const POSTGRES_ADMIN_URL =
  process.env.ONSALE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.ONSALE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const RABBITMQ_URL = process.env.ONSALE_TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export type Backend = 'postgres' | 'redis' | 'rabbitmq';

export function included(backend: Backend): boolean {
  const excluded = (process.env.ONSALE_TEST_EXCLUDE ?? '').split(',').map((s) => s.trim());
  return !excluded.includes(backend);
}

/**
 * Why the tests that need these backends are skipped, to append to their name —
 * " (excluded by ONSALE_TEST_EXCLUDE=postgres)" — or '' when they all run. Skip with
 * `describe.skipIf(exclusion(...) !== '')` so the report counts them as skipped instead of dropping them.
 */
export function exclusion(...backends: Backend[]): string {
  const left = backends.filter((backend) => !included(backend));
  return left.length === 0 ? '' : ` (excluded by ONSALE_TEST_EXCLUDE=${left.join(',')})`;
}

/** A short random suffix for names that must not collide between test files running in parallel. */
export { uniqueName };

/** A fresh, empty PostgreSQL database; `drop` removes it (ending its connections first). */
export async function freshPostgresDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  try {
    return await createDatabase(POSTGRES_ADMIN_URL, 'onsale_test');
  } catch (error) {
    if (!(error instanceof ServiceUnreachableError)) throw error;
    throw new Error(`${error.message}; start it (see .ci/run)`, { cause: error });
  }
}

/**
 * `describe.each` that keeps every entry: one whose backends are excluded is reported as skipped, with
 * `excluded` (the reason) in its name. `$name` in the title is the entry's name.
 */
export function describeEach<T extends { name: string; excluded: string }>(
  entries: T[],
  title: string,
  body: (entry: T) => void,
): void {
  for (const entry of entries) {
    describe.skipIf(entry.excluded !== '')(`${title.replaceAll('$name', entry.name)}${entry.excluded}`, () =>
      body(entry),
    );
  }
}
