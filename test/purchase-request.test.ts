import { describe, expect, it } from 'vitest';
import { eventToCreate } from '../src/domain/event-request.js';
import { purchaseRefusal } from '../src/domain/purchase-request.js';
import { unstorableText } from '../src/domain/text.js';
import type { SaleEvent } from '../src/domain/types.js';

const event: SaleEvent = {
  id: 'e',
  name: 'Night',
  salesOpenAt: '2026-01-01T00:00:00.000Z',
  holdSeconds: 0,
  buyerIdKind: 'any',
  ticketTypes: [{ id: 'ga', name: 'GA', priceCents: 5000, capacity: 100, maxPerBuyer: 4 }],
};
const open = Date.parse(event.salesOpenAt);

describe('purchaseRefusal', () => {
  it('accepts items of the event within the per-buyer limit once sales are open', () => {
    expect(purchaseRefusal(event, [{ ticketTypeId: 'ga', quantity: 4 }], open)).toBeNull();
  });

  it('refuses with a domain error code, in the order the API checks', () => {
    const refusal = (items: Array<[string, number]>, now = open) =>
      purchaseRefusal(
        event,
        items.map(([ticketTypeId, quantity]) => ({ ticketTypeId, quantity })),
        now,
      );
    expect(refusal([['vip', 1]])).toMatchObject({ code: 'not_found' });
    expect(
      refusal([
        ['ga', 1],
        ['ga', 1],
      ]),
    ).toMatchObject({ code: 'invalid_request', message: 'ticket type ga appears twice in items' });
    expect(refusal([['ga', 5]])).toMatchObject({
      code: 'invalid_request',
      message: 'quantity of ga must be at most 4 (maxPerBuyer)',
    });
    expect(refusal([['ga', 1]], open - 1)).toMatchObject({ code: 'sales_not_open' });
    // An item that cannot be bought at all is told before the sale's opening time.
    expect(refusal([['vip', 1]], open - 1)).toMatchObject({ code: 'not_found' });
  });
});

describe('eventToCreate', () => {
  const request = {
    name: 'Night',
    holdSeconds: 0,
    ticketTypes: [{ name: 'GA', priceCents: 1, capacity: 1, maxPerBuyer: 1 }],
  };
  const now = new Date('2026-02-03T04:05:06.000Z');

  it('opens sales now unless told when, normalised to UTC', () => {
    expect(eventToCreate(request, now)).toMatchObject({ salesOpenAt: now.toISOString() });
    expect(eventToCreate({ ...request, salesOpenAt: '2026-03-01T10:00:00+02:00' }, now)).toMatchObject({
      salesOpenAt: '2026-03-01T08:00:00.000Z',
    });
  });

  it('refuses holds under 30 s, bad dates and text that cannot be kept as sent', () => {
    expect(eventToCreate({ ...request, holdSeconds: 29 }, now)).toMatchObject({ code: 'invalid_request' });
    expect(eventToCreate({ ...request, holdSeconds: 60 }, now)).not.toHaveProperty('code');
    expect(eventToCreate({ ...request, salesOpenAt: 'soon' }, now)).toMatchObject({
      code: 'invalid_request',
    });
    expect(eventToCreate({ ...request, name: 'a\ud800' }, now)).toMatchObject({ code: 'invalid_request' });
    expect(unstorableText('ok', '☃ 🎫')).toBeNull();
  });
});
