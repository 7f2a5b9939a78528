/**
 * Labelled counters start at 0 for every label set known in advance, so that rate() and the alerts see a
 * series from the first scrape rather than from the first refusal or rejection. Real `onsale start` with
 * one worker, scraped before any purchase.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REJECT_REASONS } from '../src/domain/types.js';
import { EMAIL_FAILURE_KINDS, READ_TARGETS, REFUSAL_REASONS } from '../src/metrics/metrics.js';
import { ADMIN_TOKEN, startOnsale, type Onsale } from './helpers/processes.js';
import { samples } from './helpers/prometheus.js';

let onsale: Onsale;

beforeAll(async () => {
  onsale = await startOnsale({ workers: 1 });
});

afterAll(async () => onsale?.stop());

describe('metrics of a fresh server', () => {
  it('export every refusal reason and every final outcome at 0 before any purchase', async () => {
    const res = await fetch(`${onsale.baseUrl}/metrics`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    const m = samples(await res.text());
    for (const reason of ['invalid', 'rate_limited', 'overloaded', 'sales_not_open', 'unavailable']) {
      expect(REFUSAL_REASONS).toContain(reason);
    }
    for (const reason of REFUSAL_REASONS) {
      expect(m.get(`onsale_purchases_refused_total{reason="${reason}"}`), reason).toBe(0);
    }
    expect(m.get('onsale_purchases_finalized_total{outcome="confirmed"}')).toBe(0);
    for (const reason of REJECT_REASONS) {
      expect(m.get(`onsale_purchases_finalized_total{outcome="rejected",reason="${reason}"}`), reason).toBe(
        0,
      );
    }
    for (const target of READ_TARGETS) {
      expect(m.get(`onsale_storage_reads_total{target="${target}"}`), target).toBe(0);
    }
    for (const kind of EMAIL_FAILURE_KINDS) {
      expect(m.get(`onsale_email_failures_total{kind="${kind}"}`), kind).toBe(0);
    }
    expect(m.get('onsale_emails_sent_total')).toBe(0);
    expect(m.get('onsale_outbox_depth')).toBe(0);
    expect(m.get('onsale_outbox_oldest_age_seconds')).toBe(0);
    // The unlabelled families are there at 0 as well.
    expect(m.get('onsale_purchases_accepted_total')).toBe(0);
    expect(m.get('onsale_retries_total')).toBe(0);
    expect(m.get('onsale_allocation_batch_size_count')).toBe(0);
    expect(m.get('onsale_purchase_end_to_end_seconds_count')).toBe(0);
    // Checkout: every transition, payment outcome and webhook failure reason, and refunds.
    for (const to of ['held', 'waitlisted', 'confirmed', 'expired', 'cancelled', 'rejected']) {
      expect(m.get(`onsale_checkout_transitions_total{to="${to}"}`), to).toBe(0);
    }
    for (const outcome of ['succeeded', 'declined', 'failed', 'late']) {
      expect(m.get(`onsale_payments_total{outcome="${outcome}"}`), outcome).toBe(0);
    }
    for (const reason of ['signature', 'error']) {
      expect(m.get(`onsale_webhook_failures_total{reason="${reason}"}`), reason).toBe(0);
    }
    expect(m.get('onsale_refunds_total')).toBe(0);
    // The waiting room's counters too.
    for (const result of ['created', 'existing']) {
      expect(m.get(`onsale_room_joins_total{result="${result}"}`), result).toBe(0);
    }
    for (const outcome of ['admitted', 'expired']) {
      expect(m.get(`onsale_room_admissions_total{outcome="${outcome}"}`), outcome).toBe(0);
    }
    expect(m.get('onsale_room_estimate_error_seconds_count')).toBe(0);
  });
});
