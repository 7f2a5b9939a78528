import { afterAll, describe, expect, it } from 'vitest';
import { openQueue, openStorage } from '../src/adapters/index.js';
import { FRESH_MS, sharedStateMetrics } from '../src/metrics/shared-state.js';
import { createLogger } from '../src/shared/logger.js';
import { tempDir, until } from './helpers/processes.js';

describe('shared-state gauges', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('reads the queue and the stock once per second, and leaves them out (logged) when they fail', async () => {
    const url = `sqlite:${dir.path}/onsale.db`;
    const storage = await openStorage(url);
    const queue = await openQueue(url);
    await Promise.all([storage.migrate(), queue.migrate()]);
    const event = await storage.createEvent({
      name: 'gauges',
      salesOpenAt: new Date().toISOString(),
      holdSeconds: 0,
      ticketTypes: [{ name: 'GA', priceCents: 100, capacity: 7, maxPerBuyer: 4 }],
    });
    await queue.enqueue([
      {
        purchase: {
          purchaseId: 'p-1',
          eventId: event.id,
          buyerId: 'ada',
          canonicalBuyerId: 'ada',
          items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 2 }],
          acceptedAt: new Date(Date.now() - 30_000).toISOString(),
        },
      },
    ]);
    const warnings: string[] = [];
    const logger = createLogger('warn', 'web', { write: (line: string) => void warnings.push(line) });
    const scrape = sharedStateMetrics(storage, queue, logger);

    // The first reading is taken after this, so it is reused until at least firstScrapeAt + FRESH_MS.
    const firstScrapeAt = Date.now();
    const text = await scrape();
    expect(text).toMatch(/^onsale_queue_depth 1$/m);
    const age = Number(/^onsale_queue_oldest_age_seconds (\S+)$/m.exec(text)![1]);
    expect(age).toBeGreaterThanOrEqual(29);
    expect(age).toBeLessThan(120);
    expect(text).toMatch(/^onsale_dead_letters 0$/m);
    const series = `{event="${event.id}",ticket_type="${event.ticketTypes[0]!.id}"}`;
    expect(text).toContain(`onsale_tickets_available${series} 7`);
    expect(text).toContain(`onsale_tickets_sold${series} 0`);

    // Scrapes within a second reuse the reading; a later one reads again.
    await queue.enqueue([
      {
        purchase: {
          purchaseId: 'p-2',
          eventId: event.id,
          buyerId: 'bob',
          canonicalBuyerId: 'bob',
          items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
          acceptedAt: new Date().toISOString(),
        },
      },
    ]);
    const reused = await scrape();
    // Only an answer that came within FRESH_MS of the first scrape is certainly a reuse (a slow machine may
    // take longer); the wait below checks the other side whatever the machine's pace.
    if (Date.now() - firstScrapeAt < FRESH_MS) expect(reused).toMatch(/^onsale_queue_depth 1$/m);
    await until(async () => /^onsale_queue_depth 2$/m.test(await scrape()));
    expect(Date.now() - firstScrapeAt).toBeGreaterThanOrEqual(FRESH_MS);

    // The database goes away: the scrape still succeeds, without these gauges, and says why in the log.
    await Promise.all([storage.close(), queue.close()]);
    await new Promise((r) => setTimeout(r, FRESH_MS + 100)); // past the reuse of the last reading
    expect(await scrape()).toBe('');
    expect(warnings.join('')).toContain('metrics: cannot read the queue and stock gauges');
  });
});
