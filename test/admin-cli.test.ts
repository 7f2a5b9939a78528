/**
 * `onsale events list|create|stats|export`, the real CLI against a real server: tables for people, JSON
 * for scripts, and clear errors with distinct exit statuses when the server is down or refuses the token.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purchase, waitFinal } from './helpers/api.js';
import { ADMIN_TOKEN, freePort, runCli, startOnsale, tempDir, type Onsale } from './helpers/processes.js';

let onsale: Onsale;
beforeAll(async () => {
  onsale = await startOnsale({ workers: 1 });
});
afterAll(async () => onsale?.stop());

async function cli(args: string[], env: Record<string, string> = {}) {
  const p = runCli(['events', ...args], {
    ONSALE_URL: onsale.baseUrl,
    ONSALE_ADMIN_TOKEN: ADMIN_TOKEN,
    ...env,
  });
  const { code } = await p.exited;
  return { code, output: p.output() };
}

describe('onsale events', () => {
  it('creates an event, lists it, shows its stats and exports its purchases', async () => {
    const created = await cli([
      'create',
      '--name',
      'Jazz, late',
      '--ticket-type',
      'Floor:35.50:100:4',
      '--ticket-type',
      'Balcony:20:50',
      '--json',
    ]);
    expect(created.code).toBe(0);
    const event = JSON.parse(created.output);
    expect(event.name).toBe('Jazz, late');
    expect(event.ticketTypes.map((t: any) => [t.name, t.priceCents, t.capacity, t.maxPerBuyer])).toEqual([
      ['Floor', 3550, 100, 4],
      ['Balcony', 2000, 50, 10],
    ]);

    const table = await cli(['list']);
    expect(table.code).toBe(0);
    expect(table.output).toMatch(/^ID\s+NAME\s+SALES OPEN AT\n-+/);
    expect(table.output).toContain(`${event.id}  Jazz, late`);
    const json = await cli(['list', '--json']);
    expect(JSON.parse(json.output).map((e: any) => e.id)).toContain(event.id);

    const accepted = await purchase(onsale.baseUrl, event.id, {
      buyerId: 'ola@example.com',
      items: [{ ticketTypeId: event.ticketTypes[0].id, quantity: 3 }],
    });
    await waitFinal(onsale.baseUrl, accepted.body.purchaseId);

    const stats = await cli(['stats', event.id]);
    expect(stats.code).toBe(0);
    expect(stats.output).toMatch(new RegExp(`${event.ticketTypes[0].id}\\s+3\\s+0\\s+97\\s+100`));
    expect(stats.output).toMatch(/confirmed\s+1/);
    const statsJson = JSON.parse((await cli(['stats', event.id, '--json'])).output);
    expect(statsJson.purchases.confirmed).toBe(1);

    const dir = tempDir();
    try {
      const file = join(dir.path, 'sale.csv');
      const exported = await cli(['export', event.id, '--output', file]);
      expect(exported.code).toBe(0);
      const lines = readFileSync(file, 'utf8').trim().split('\r\n');
      expect(lines).toHaveLength(2);
      expect(lines[1]).toContain(`${accepted.body.purchaseId},ola@example.com,confirmed`);
      const toStdout = await cli(['export', event.id]);
      expect(toStdout.output).toContain(`${accepted.body.purchaseId},ola@example.com,confirmed`);
    } finally {
      dir.remove();
    }
  });

  it('reads the admin token from the data folder when ONSALE_ADMIN_TOKEN is unset', async () => {
    const dir = tempDir();
    try {
      writeFileSync(join(dir.path, 'admin-token'), `${ADMIN_TOKEN}\n`);
      const p = runCli(['events', 'list', '--json', '--data-dir', dir.path], { ONSALE_URL: onsale.baseUrl });
      expect((await p.exited).code).toBe(0);
      expect(Array.isArray(JSON.parse(p.output()))).toBe(true);
      const none = runCli(['events', 'list'], {
        ONSALE_URL: onsale.baseUrl,
        ONSALE_DATA_DIR: join(dir.path, 'nope'),
      });
      expect((await none.exited).code).toBe(2);
      expect(none.output()).toMatch(/no admin token: set ONSALE_ADMIN_TOKEN/);
    } finally {
      dir.remove();
    }
  });

  it('says so, with distinct exit statuses, when the server is down, refuses the token or has no such event', async () => {
    const down = await cli(['list'], { ONSALE_URL: `http://127.0.0.1:${await freePort()}` });
    expect(down.code).toBe(1);
    expect(down.output).toMatch(
      /cannot reach the onsale server at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
    );
    const wrong = await cli(['stats', 'any-event'], { ONSALE_ADMIN_TOKEN: 'x'.repeat(40) });
    expect(wrong.code).toBe(3);
    expect(wrong.output).toMatch(/the server refused the admin token \(unauthorized/);
    const missing = await cli(['stats', 'no-such-event']);
    expect(missing.code).toBe(3);
    expect(missing.output).toMatch(/404 \(not_found/);
    const badUrl = await cli(['list', '--url', 'ftp://x']);
    expect(badUrl.code).toBe(2);
    const badType = await cli(['create', '--name', 'x', '--ticket-type', 'GA-25']);
    expect(badType.code).toBe(2);
    expect(badType.output).toMatch(/NAME:PRICE:CAPACITY/);
    // Nothing printed a secret.
    for (const r of [down, wrong, missing]) expect(r.output).not.toContain(ADMIN_TOKEN);
  });
});
