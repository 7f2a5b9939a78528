import { describe, expect, it } from 'vitest';
import { createLogger, logRef } from '../src/shared/logger.js';

describe('createLogger', () => {
  it('writes JSON lines at the level asked for, with secrets censored wherever they are put', () => {
    const written: string[] = [];
    const logger = createLogger('info', 'web', { write: (line: string) => void written.push(line) });
    logger.debug({ purchaseId: 'p1' }, 'below the level');
    logger.info(
      {
        adminToken: 'admin-secret-1',
        paymentToken: 'pay-secret-2',
        headers: { authorization: 'Bearer header-secret-3', 'user-agent': 'curl' },
        req: { headers: { authorization: 'Bearer header-secret-4' }, body: { paymentToken: 'pay-secret-5' } },
        body: { paymentToken: 'pay-secret-6', buyerId: 'ada' },
        purchase: { paymentToken: 'pay-secret-7', purchaseId: 'p2' },
      },
      'a careless line',
    );
    expect(written).toHaveLength(1);
    const line = JSON.parse(written[0]!);
    expect(line).toMatchObject({ level: 30, role: 'web', msg: 'a careless line' });
    expect(line.headers['user-agent']).toBe('curl');
    // Ids that are keys (a purchase's) or personal (a buyer's) are logged as their refs, wherever they are.
    expect(line.body.buyerId).toBe(logRef('ada'));
    expect(line.purchase.purchaseId).toBe(logRef('p2'));
    expect(logRef('p2')).toMatch(/^[0-9a-f]{8}$/);
    expect(written[0]).not.toMatch(/secret-\d/);
    expect(written[0]!.match(/\[secret\]/g)).toHaveLength(7);
  });
});
