/** An email waiting in the outbox: the tickets of one confirmed purchase, to one recipient. */
export interface OutboxEmail {
  purchaseId: string;
  recipient: string;
  /** When the purchase was confirmed (the row written, in the same transaction). */
  createdAt: string;
  /** Claims so far, this one included (a worker that died mid-send counts). */
  attempts: number;
}

/**
 * The outbox of ticket emails, in the storage database. Rows are written by the storage adapters in the
 * transaction that confirms a purchase (each adapter's enqueueTicketEmails()), so a confirmed purchase
 * always has its email recorded, and an email never exists for a purchase that was rolled back. Sending
 * is at least once: a row is marked sent only after the SMTP server took the message, so a crash between
 * the two sends it again, with the same Message-ID.
 */
export interface Outbox {
  /** Creates or upgrades the outbox's schema. Safe to run from several processes at once. */
  migrate(): Promise<void>;
  /**
   * Up to `limit` unsent emails that are due, oldest first, leased to `workerId` for `leaseMs`: no other
   * worker claims them until then. A worker that dies leaves its lease to run out; the email is due again.
   */
  claim(workerId: string, limit: number, leaseMs: number): Promise<OutboxEmail[]>;
  /** The email was taken by the SMTP server (or, with mail off, deliberately not sent). */
  markSent(purchaseId: string, outcome: 'sent' | 'skipped'): Promise<void>;
  /** The attempt failed: due again in `retryInMs`, or never (null: the server refused it for good). */
  markFailed(purchaseId: string, error: string, retryInMs: number | null): Promise<void>;
  /** Unsent emails (given-up ones not counted) and when the oldest was written. */
  stats(): Promise<{ depth: number; oldestCreatedAt: string | null }>;
  close(): Promise<void>;
}
