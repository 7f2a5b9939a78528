/**
 * Tickets by email, end to end: real onsale processes, a real SMTP server started here (smtp-server), and
 * the mails it received read back. On SQLite and PostgreSQL. An SMTP server that is down delays mail and
 * loses none; a worker killed mid-send leaves the email to another, which sends it with the same
 * Message-ID, so the receiver can keep one copy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { domainOf, ticketMessageId, ticketQrGif } from '../src/mail/ticket-email.js';
import { createEvent, purchase, waitFinal, type CreatedEvent } from './helpers/api.js';
import { ADMIN_TOKEN, freePort, startOnsale, until, type Onsale } from './helpers/processes.js';
import { samples } from './helpers/prometheus.js';
import { describeEach, exclusion, freshPostgresDatabase } from './helpers/services.js';
import { startSmtp, type RunningSmtp } from './helpers/smtp.js';

const FROM = 'Onsale Tickets <tickets@shop.example>';
const PUBLIC_URL = 'https://tickets.shop.example';

function mailEnv(smtpPort: number): Record<string, string> {
  return {
    ONSALE_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
    ONSALE_MAIL_FROM: FROM,
    ONSALE_PUBLIC_URL: PUBLIC_URL,
    LOG_LEVEL: 'info',
  };
}

async function metrics(baseUrl: string): Promise<Map<string, number>> {
  const res = await fetch(`${baseUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return samples(await res.text());
}

const engines = [
  { name: 'sqlite', excluded: '', database: async () => null },
  { name: 'postgres', excluded: exclusion('postgres'), database: freshPostgresDatabase },
];

describeEach(engines, 'ticket emails on $name', (engine) => {
  let smtp: RunningSmtp;
  let onsale: Onsale;
  let dropDatabase: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    smtp = await startSmtp(await freePort());
    const db = await engine.database();
    dropDatabase = db?.drop;
    onsale = await startOnsale({
      workers: 1,
      env: { ...mailEnv(smtp.port), ...(db ? { ONSALE_DATABASE_URL: db.url } : {}) },
    });
  });
  afterAll(async () => {
    await onsale?.stop();
    await smtp?.close();
    await dropDatabase?.();
  });

  it('sends the buyer of a confirmed purchase the event, each ticket with its QR code, and the purchase link', async () => {
    const event = await createEvent(onsale.baseUrl, {
      name: 'Night <Market> & "Friends"',
      ticketTypes: [{ name: 'Standing', priceCents: 2500, capacity: 10, maxPerBuyer: 4 }],
    });
    const type = event.ticketTypes[0]!.id;
    // A buyer id that is not an email address gets no email; the purchase is confirmed all the same.
    const anonymous = await purchase(onsale.baseUrl, event.id, {
      buyerId: 'ada',
      items: [{ ticketTypeId: type, quantity: 1 }],
    });
    expect((await waitFinal(onsale.baseUrl, anonymous.body.purchaseId)).status).toBe('confirmed');
    const accepted = await purchase(onsale.baseUrl, event.id, {
      buyerId: 'Grace@Example.com',
      items: [{ ticketTypeId: type, quantity: 2 }],
    });
    const purchaseId = accepted.body.purchaseId as string;
    const final = await waitFinal(onsale.baseUrl, purchaseId);
    expect(final.status).toBe('confirmed');

    await until(() => smtp.mails.length >= 1, 30_000);
    expect(smtp.mails).toHaveLength(1);
    const { parsed } = smtp.mails[0]!;
    expect(parsed.to && 'text' in parsed.to ? parsed.to.text : '').toBe('grace@example.com');
    expect(parsed.from?.text).toContain('tickets@shop.example');
    expect(parsed.subject).toBe('Your 2 tickets for Night <Market> & "Friends"');
    expect(parsed.messageId).toBe(ticketMessageId(purchaseId, domainOf(FROM)));
    // The purchase id is the key to the tickets: it is in the link, never in the Message-ID.
    expect(parsed.messageId).not.toContain(purchaseId);
    const link = `${PUBLIC_URL}/purchases/${purchaseId}`;
    expect(parsed.text).toContain(link);
    expect(parsed.html).toContain(`href="${link}"`);
    expect(parsed.html).toContain('Night &lt;Market&gt; &amp; &quot;Friends&quot;');
    const codes = final.tickets.map((t: { code: string }) => t.code);
    expect(codes).toHaveLength(2);
    for (const [i, code] of codes.entries()) {
      expect(parsed.text).toContain(code);
      // The image of each ticket is the QR code of its code, shown inline by cid.
      const image = parsed.attachments.find((a) => a.filename === `ticket-${i + 1}.gif`)!;
      expect(image.contentType).toBe('image/gif');
      expect(Buffer.compare(image.content, Buffer.from(ticketQrGif(code)))).toBe(0);
      expect(parsed.html).toContain(code);
      expect(raw(smtp, 0)).toContain(`Content-ID: <${image.cid}>`);
    }
    expect(parsed.attachments).toHaveLength(2);
    // The mail was sent once, and the outbox is empty.
    await until(async () => (await metrics(onsale.baseUrl)).get('onsale_outbox_depth') === 0);
  });
});

function raw(smtp: RunningSmtp, i: number): string {
  return smtp.mails[i]!.raw;
}

describe('ticket emails when the SMTP server is down', () => {
  let onsale: Onsale;
  let smtp: RunningSmtp | undefined;
  let smtpPort: number;

  beforeAll(async () => {
    smtpPort = await freePort(); // nothing listens there yet
    onsale = await startOnsale({ mode: 'start', env: { ...mailEnv(smtpPort), ONSALE_WORKERS_MIN: '2' } });
  });
  afterAll(async () => {
    await onsale?.stop();
    await smtp?.close();
  });

  it('delays the mail, then delivers every one exactly once when the server is back', async () => {
    const m0 = await metrics(onsale.baseUrl);
    expect(m0.get('onsale_outbox_depth')).toBe(0);
    expect(m0.get('onsale_email_failures_total{kind="transient"}')).toBe(0);
    expect(m0.get('onsale_email_failures_total{kind="rejected"}')).toBe(0);
    expect(m0.get('onsale_emails_sent_total')).toBe(0);

    const event = await createEvent(onsale.baseUrl);
    const type = event.ticketTypes[0]!.id;
    const ids: string[] = [];
    for (const buyer of ['a@example.com', 'b@example.com', 'c@example.com']) {
      const res = await purchase(onsale.baseUrl, event.id, {
        buyerId: buyer,
        items: [{ ticketTypeId: type, quantity: 1 }],
      });
      ids.push(res.body.purchaseId);
    }
    for (const id of ids) expect((await waitFinal(onsale.baseUrl, id)).status).toBe('confirmed');

    // The attempts fail and are counted; the emails wait in the outbox, and it ages.
    await until(async () => {
      const m = await metrics(onsale.baseUrl);
      return (
        (m.get('onsale_email_failures_total{kind="transient"}') ?? 0) >= 3 &&
        m.get('onsale_outbox_depth') === 3
      );
    }, 30_000);
    // The gauges are read at most once a second: a reading taken as the emails were written says age 0.
    await until(
      async () => ((await metrics(onsale.baseUrl)).get('onsale_outbox_oldest_age_seconds') ?? 0) > 0,
      10_000,
    );

    smtp = await startSmtp(smtpPort);
    await until(() => smtp!.mails.length >= 3, 60_000);
    await until(async () => (await metrics(onsale.baseUrl)).get('onsale_outbox_depth') === 0, 30_000);
    const m = await metrics(onsale.baseUrl);
    expect(m.get('onsale_emails_sent_total')).toBe(3);
    expect(m.get('onsale_outbox_oldest_age_seconds')).toBe(0);
    const received = smtp.mails.map((mail) => mail.parsed.messageId).sort();
    expect(received).toEqual(ids.map((id) => ticketMessageId(id, domainOf(FROM))).sort());
  });
});

describe('ticket emails on two PostgreSQL shards when the SMTP server is down', () => {
  let onsale: Onsale;
  let smtpPort: number;
  const drops: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    smtpPort = await freePort(); // nothing listens there
    const shards = [await freshPostgresDatabase(), await freshPostgresDatabase()];
    drops.push(...shards.map((db) => db.drop));
    onsale = await startOnsale({
      workers: 1,
      env: { ...mailEnv(smtpPort), ONSALE_DATABASE_URL: shards.map((db) => db.url).join(',') },
    });
  });
  afterAll(async () => {
    await onsale?.stop();
    for (const drop of drops) await drop();
  });

  it("counts every shard's waiting emails in the outbox gauges, not the first shard's alone", async () => {
    // Each shard keeps the emails of its own events: one event on each (ids end with their shard).
    const byShard = new Map<string, CreatedEvent>();
    for (let i = 0; i < 20 && byShard.size < 2; i++) {
      const event = await createEvent(onsale.baseUrl);
      byShard.set(event.id.slice(event.id.lastIndexOf('.')), event);
    }
    expect(byShard.size).toBe(2);
    // Buyers' addresses of their own (an event id, with its '_' and '.', is no part of a domain name).
    for (const [i, event] of [...byShard.values()].entries()) {
      const res = await purchase(onsale.baseUrl, event.id, {
        buyerId: `buyer-${i}@example.com`,
        items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
      });
      expect((await waitFinal(onsale.baseUrl, res.body.purchaseId)).status).toBe('confirmed');
    }
    await until(async () => (await metrics(onsale.baseUrl)).get('onsale_outbox_depth') === 2, 30_000);
    await until(
      async () => ((await metrics(onsale.baseUrl)).get('onsale_outbox_oldest_age_seconds') ?? 0) > 0,
      10_000,
    );
  });
});

describe('a worker killed while it sends a ticket email', () => {
  let onsale: Onsale;
  let smtp: RunningSmtp;

  beforeAll(async () => {
    smtp = await startSmtp(await freePort(), { hangFirst: true });
    onsale = await startOnsale({ workers: 1, env: mailEnv(smtp.port) });
  });
  afterAll(async () => {
    await onsale?.stop();
    await smtp?.close();
  });

  it('leaves the email to another worker after its lease: sent again with the same Message-ID', async () => {
    const event = await createEvent(onsale.baseUrl);
    const res = await purchase(onsale.baseUrl, event.id, {
      buyerId: 'kim@example.com',
      items: [{ ticketTypeId: event.ticketTypes[0]!.id, quantity: 1 }],
    });
    expect((await waitFinal(onsale.baseUrl, res.body.purchaseId)).status).toBe('confirmed');
    // The worker has sent the whole message and waits for the server's answer, which never comes.
    await until(() => smtp.dataStarted() === 1, 30_000);
    const worker = onsale.processes[1]!;
    await worker.stop('SIGKILL');
    onsale.addWorker();
    // The lease (30 s) runs out; the new worker sends it again.
    await until(() => smtp.mails.length === 1, 120_000);
    expect(smtp.dataStarted()).toBe(2);
    expect(smtp.mails[0]!.parsed.messageId).toBe(ticketMessageId(res.body.purchaseId, domainOf(FROM)));
    await until(async () => (await metrics(onsale.baseUrl)).get('onsale_outbox_depth') === 0, 30_000);
  }, 180_000);
});
