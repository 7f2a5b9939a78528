/** A whole number with thousands separators, the same on every machine ("12,345"): reports are compared. */
export function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
