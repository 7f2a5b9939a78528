-- Checkout: holds, payment, the waitlist. A purchase may now be `waitlisted` (its place kept until held
-- tickets come back). New columns:
--   payment_status, next_action_url, payment_id: the payment as last recorded (src/domain/types.ts);
--   refund: 'due' once a charge came for a purchase that had ended unpaid, 'done' once refunded;
--   reconcile_after: when a worker should next ask the provider about a payment left unsettled (a crash
--     between the charge and its record, a lost webhook) or make a refund that is due;
--   waitlist_seq: the place in the event's waitlist (acceptance order), kept once given.
ALTER TABLE purchases DROP CONSTRAINT purchases_status_check;
ALTER TABLE purchases
  ADD CONSTRAINT purchases_status_check
    CHECK (status IN ('waitlisted', 'held', 'confirmed', 'rejected', 'expired', 'cancelled')),
  ADD COLUMN payment_status text
    CHECK (payment_status IN ('processing', 'requires_action', 'succeeded', 'declined', 'failed')),
  ADD COLUMN next_action_url text,
  ADD COLUMN payment_id text,
  ADD COLUMN refund text CHECK (refund IN ('due', 'done')),
  ADD COLUMN reconcile_after text,
  ADD COLUMN waitlist_seq bigint;

-- The expiry sweep, the waitlist in order, and the payments a worker must look after: partial indexes,
-- so that a sale without holds writes no entry in any of them.
CREATE INDEX purchases_holds ON purchases (hold_expires_at) WHERE status = 'held';
CREATE INDEX purchases_waitlist ON purchases (event_id, waitlist_seq) WHERE waitlist_seq IS NOT NULL;
CREATE INDEX purchases_reconcile ON purchases (reconcile_after) WHERE reconcile_after IS NOT NULL;

-- A purchase's payment history, for the admin page and for audits: each attempt (recorded before the
-- provider is called), each answer and webhook, each refund.
CREATE TABLE payment_events (
  seq bigserial PRIMARY KEY,
  purchase_id text COLLATE "C" NOT NULL,
  at text NOT NULL,
  kind text NOT NULL,
  detail text
);
CREATE INDEX payment_events_purchase ON payment_events (purchase_id, seq);

-- Webhook deliveries that took effect, by the provider's event id: the same event delivered again does nothing.
CREATE TABLE webhook_events (
  provider text COLLATE "C" NOT NULL,
  event_id text COLLATE "C" NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, event_id)
);

-- Durable state of payment providers that keep some in onsale's database (the test provider).
CREATE TABLE provider_state (
  provider text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  value text NOT NULL,
  version integer NOT NULL,
  PRIMARY KEY (provider, key)
);
