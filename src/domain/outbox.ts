/**
 * When the outbox tries an email again after a failed attempt: 2 s after the first, doubling each time,
 * at most 5 minutes apart. It never gives up on a transient failure (an SMTP server down for an hour
 * delays mail, it loses none); the outbox's age metric and alert tell an operator that mail is stuck.
 */
export const RETRY_FIRST_MS = 2_000;
export const RETRY_MAX_MS = 5 * 60_000;

export function retryDelayMs(attempts: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.max(0, Math.min(attempts - 1, 20)));
}
