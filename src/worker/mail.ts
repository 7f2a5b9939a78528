import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { retryDelayMs } from '../domain/outbox.js';
import type { Mailer, MailFailure } from '../ports/mailer.js';
import type { Outbox, OutboxEmail } from '../ports/outbox.js';
import type { Storage } from '../ports/storage.js';
import { countEmailFailure, countEmailSent } from '../metrics/metrics.js';
import { ticketEmail } from '../mail/ticket-email.js';
import { logRef } from '../shared/logger.js';

/**
 * How long a claimed email is this worker's. Longer than one attempt can take (the mailer's timeouts add up
 * to well under it), so that a slow send is never taken over by another worker while it runs; a worker that
 * dies mid-send leaves its emails to others after this.
 */
export const MAIL_LEASE_MS = 30_000;
const CLAIM_LIMIT = 10;
const IDLE_MS = 1_000;
const BROKEN_OUTBOX_MAX_MS = 30_000;

export interface MailLoop {
  stop(): Promise<void>;
}

/**
 * The sender of ticket emails: claim due emails from the outbox (a lease, so several workers share the
 * work without sending one email twice at once), compose each from the purchase and its event as stored,
 * send, then mark it sent. Marked only after the SMTP server took it: a crash in between sends it again,
 * with the same Message-ID (at least once; receivers drop the copy). A failed send is tried again after an
 * exponential back-off (domain/outbox.ts), forever unless the server refused it for good.
 *
 * With `mailer` null (ONSALE_SMTP_URL unset) nothing is sent: each email is logged as not sent and
 * marked skipped, so the outbox does not fill while mail is off.
 */
export function startMailLoop(opts: {
  outbox: Outbox;
  storage: Storage;
  mailer: Mailer | null;
  workerId: string;
  publicUrl: string;
  senderDomain: string;
  logger: Logger;
}): MailLoop {
  const { outbox, storage, mailer, workerId, logger } = opts;
  let running = true;
  let wake: (() => void) | null = null;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = null;
        resolve();
      }
      wake = done;
    });

  async function deliver(email: OutboxEmail): Promise<void> {
    const purchaseRef = logRef(email.purchaseId);
    const purchase = await storage.getPurchase(email.purchaseId);
    const event = purchase ? await storage.getEvent(purchase.eventId) : null;
    if (!purchase || !event || purchase.status !== 'confirmed') {
      // Not confirmed any more (cancelled since), or gone: there are no tickets to send.
      await outbox.markSent(email.purchaseId, 'skipped');
      logger.warn(
        { purchaseRef, status: purchase?.status ?? null },
        'ticket email skipped: no confirmed purchase',
      );
      return;
    }
    if (!mailer) {
      await outbox.markSent(email.purchaseId, 'skipped');
      logger.info(
        { purchaseRef, tickets: purchase.tickets.length },
        'ticket email not sent: mail is off (set ONSALE_SMTP_URL to send it to the buyer)',
      );
      return;
    }
    const mail = ticketEmail({
      purchase,
      event,
      to: email.recipient,
      publicUrl: opts.publicUrl,
      senderDomain: opts.senderDomain,
    });
    try {
      await mailer.send(mail);
    } catch (error) {
      const failure = error as Partial<MailFailure>;
      const permanent = failure.permanent === true;
      const retryInMs = permanent ? null : retryDelayMs(email.attempts);
      await outbox.markFailed(email.purchaseId, String(failure.message ?? error).slice(0, 500), retryInMs);
      countEmailFailure(permanent ? 'rejected' : 'transient');
      logger.warn(
        { purchaseRef, attempts: email.attempts, retryInMs, err: failure.message },
        permanent
          ? 'ticket email refused by the SMTP server; not retried'
          : 'ticket email not sent; retried later',
      );
      return;
    }
    await outbox.markSent(email.purchaseId, 'sent');
    countEmailSent();
    logger.info({ purchaseRef, attempts: email.attempts }, 'ticket email sent');
  }

  const loop = (async () => {
    let broken = 0;
    while (running) {
      try {
        const emails = await outbox.claim(workerId, CLAIM_LIMIT, MAIL_LEASE_MS);
        broken = 0;
        for (const email of emails) await deliver(email);
        // With mail off on SQLite a round is all synchronous: a turn of the event loop between rounds
        // keeps a long outbox from holding up the process's other timers.
        if (emails.length === 0) await sleep(IDLE_MS);
        else await nextTurn();
      } catch (error) {
        // The database, not the mail: what was claimed is due again when its lease runs out.
        broken += 1;
        const wait = Math.min(BROKEN_OUTBOX_MAX_MS, IDLE_MS * 2 ** Math.min(broken, 10));
        logger.warn({ err: error, retryInMs: wait }, 'outbox unavailable; retried later');
        await sleep(wait);
      }
    }
  })();

  return {
    stop: async () => {
      running = false;
      wake?.();
      await loop;
      await mailer?.close();
    },
  };
}
