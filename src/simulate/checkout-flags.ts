import { Option, type Command } from 'commander';
import { mixOf } from './checkout.js';
import type { SimulateFlags } from './flags.js';

/**
 * The checkout flags of `onsale simulate`: the created event's holds and price, and what buyers do with a
 * held purchase. Parsers come from command.ts, so a bad value names its flag the same way (exit 2).
 */
export function addCheckoutOptions(
  command: Command,
  whole: (min: number, max?: number) => (raw: string) => number,
  fraction: (raw: string) => number,
): void {
  const rate = (flag: string, what: string) =>
    new Option(`--${flag} <fraction>`, `share of held purchases whose buyer ${what}`).argParser(fraction);
  command
    .addOption(
      new Option(
        '--hold-seconds <n>',
        'the created event holds tickets this long while its buyers pay (30..86400; default: no holds)',
      ).argParser(whole(30, 86_400)),
    )
    .addOption(
      new Option('--price-cents <n>', 'price of the created first ticket type; the others cost 2×, 3×…')
        .default(2500)
        .argParser(whole(0, 1_000_000)),
    )
    .addOption(rate('pay-rate', 'pays with a good card (and so does every buyer the other rates leave)'))
    .addOption(rate('decline-rate', 'pays with a declined card, then with a good one'))
    .addOption(rate('three-ds-rate', 'pays with a card that asks for 3-D Secure and approves it on its page'))
    .addOption(rate('cancel-rate', 'cancels'))
    .addOption(rate('abandon-rate', 'does nothing: the hold runs out'));
}

/** The rates together may not exceed 1: the message that says so, naming the flags given, or null. */
export function checkoutMixError(flags: SimulateFlags): string | null {
  const mix = mixOf(flags);
  if (!('tooMuch' in mix)) return null;
  const given = [
    ['--pay-rate', flags.payRate],
    ['--decline-rate', flags.declineRate],
    ['--three-ds-rate', flags.threeDsRate],
    ['--cancel-rate', flags.cancelRate],
    ['--abandon-rate', flags.abandonRate],
  ].filter(([, v]) => v !== undefined);
  return `${given.map(([f, v]) => `${f} ${v}`).join(' + ')} = ${mix.tooMuch.toFixed(3)}: the rates may add up to 1 at most`;
}
