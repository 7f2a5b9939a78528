import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { ARRIVALS } from './crowd.js';
import { addCheckoutOptions, checkoutMixError } from './checkout-flags.js';
import type { SimulateFlags } from './flags.js';

/**
 * `onsale simulate`: its flags, parsed and checked here (a bad value names its flag; the CLI exits 2), and an
 * action that loads the simulator only when the command runs, so the server roles never load it.
 */

function whole(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (raw: string): number => {
    const n = Number(raw.trim());
    if (!/^\d+$/.test(raw.trim()) || n < min || n > max)
      throw new InvalidArgumentError(`expected a whole number ${min}..${max}.`);
    return n;
  };
}

function fraction(raw: string): number {
  const n = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1)
    throw new InvalidArgumentError('expected a number from 0 to 1.');
  return n;
}

function httpUrl(raw: string): string {
  try {
    const u = new URL(raw.trim());
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.toString().replace(/\/$/, '');
  } catch {
    // reported below
  }
  throw new InvalidArgumentError('expected an http:// or https:// URL, such as http://127.0.0.1:3000.');
}

export function addSimulateCommand(root: Command): void {
  const command = root
    .command('simulate')
    .description(
      'a flash sale against a running server: creates an event (or targets --event), plays a crowd of buyers ' +
        'who retry politely and follow their purchases until final, shows live progress, then reports ' +
        'throughput, latency, refusals and the invariants of the API checked from outside. Exit status 0 when ' +
        'every invariant held, 1 when one broke (or the run failed), 2 for a bad flag',
    )
    .addOption(new Option('--url <url>', 'the server').default('http://127.0.0.1:3000').argParser(httpUrl))
    .addOption(
      new Option('--admin-token <token>', 'admin token, to create the event and read its exact stock').env(
        'ONSALE_ADMIN_TOKEN',
      ),
    )
    .addOption(new Option('--event <id>', 'sell this existing event instead of creating one'))
    .addOption(new Option('--buyers <n>', 'distinct buyers').default(1000).argParser(whole(1, 10_000_000)))
    .addOption(
      new Option('--repeat <fraction>', 'share of buyers who send a second purchase')
        .default(0.1)
        .argParser(fraction),
    )
    .addOption(
      new Option('--arrival <shape>', 'burst: all at the opening; ramp: a growing rate; waves: three bursts')
        .choices(ARRIVALS)
        .default('burst'),
    )
    .addOption(
      new Option('--duration <seconds>', 'how long the ramp or the waves last')
        .default(10)
        .argParser(whole(1, 3600)),
    )
    .addOption(
      new Option('--ticket-types <n>', 'ticket types of the created event')
        .default(3)
        .argParser(whole(1, 50)),
    )
    .addOption(
      new Option(
        '--tickets <n>',
        'tickets of the created event, shared by its types [default buyers ÷ 4]',
      ).argParser(whole(1, 10_000_000)),
    )
    .addOption(
      new Option('--max-per-buyer <n>', 'per-buyer limit of each created type')
        .default(4)
        .argParser(whole(1, 100)),
    )
    .addOption(
      new Option('--max-quantity <n>', 'most tickets of one type a buyer asks for')
        .default(2)
        .argParser(whole(1, 100)),
    )
    .addOption(
      new Option(
        '--connections <n>',
        'keep-alive connections (and buyers in flight) for purchases, in all; divided among --processes',
      )
        .default(64)
        .argParser(whole(1, 10_000)),
    )
    .addOption(
      new Option(
        '--followers <n>',
        'buyers following their purchase at once (connections for it), in all; divided among --processes',
      )
        .default(256)
        .argParser(whole(1, 10_000)),
    )
    .addOption(
      new Option(
        '--follow <how>',
        'how buyers follow a purchase: sse (one stream each, the server pushes) or poll (GET until final)',
      )
        .choices(['sse', 'poll'])
        .default('sse'),
    )
    .addOption(
      new Option(
        '--settle <seconds>',
        'once all is sent, how long accepted purchases may take to become final',
      )
        .default(120)
        .argParser(whole(1, 86_400)),
    )
    .addOption(
      new Option('--retries <n>', 'polite retries per request on 429, 503 or a lost connection')
        .default(20)
        .argParser(whole(0, 1000)),
    )
    .addOption(
      new Option('--seed <n>', 'seed of the crowd, to replay it').default(1).argParser(whole(0, 2 ** 32 - 1)),
    )
    .addOption(
      new Option(
        '--processes <n>',
        'processes that play the crowd: more than 1 plans it here and splits it among child processes, each ' +
          'on its own pools with its part of --connections and --followers (at least 1 each), merged for one ' +
          'report and one invariant check; for when one process cannot send fast enough (see clientCpu in the ' +
          'report)',
      )
        .default(1)
        .argParser(whole(1, 64)),
    )
    .addOption(
      new Option(
        '--waiting-room',
        "the crowd joins the event's waiting room, reads its place as the server asks, and buys on admission; " +
          "the report shows waits, the estimate's error, admissions per minute and checks the admission order",
      ),
    )
    .addOption(
      new Option('--max-active-buyers <n>', "with --waiting-room: the created event's maxActiveBuyers")
        .default(500)
        .argParser(whole(1, 1_000_000)),
    )
    .addOption(
      new Option(
        '--max-admitted-per-minute <n>',
        "with --waiting-room: the created event's maxAdmittedPerMinute [default none]",
      ).argParser(whole(1, 10_000_000)),
    )
    .addOption(
      new Option(
        '--prequeue <seconds>',
        'with --waiting-room: the room opens now and the sales this much later; who joins before is shuffled',
      )
        .default(0)
        .argParser(whole(0, 3600)),
    )
    .addOption(
      new Option('--session-seconds <n>', "with --waiting-room: how long the created event's admission lasts")
        .default(600)
        .argParser(whole(10, 86_400)),
    )
    .addOption(
      new Option(
        '--abandon-place-rate <fraction>',
        'with --waiting-room: share of buyers who stop reading their place for good (after 0 to 3 reads)',
      )
        .default(0.05)
        .argParser(fraction),
    );
  addCheckoutOptions(command, whole, fraction);
  command
    .addOption(new Option('--report-json <path>', 'write the report as JSON here'))
    .addOption(new Option('--report-html <path>', 'write the report as a self-contained HTML page here'))
    .allowExcessArguments(false)
    .action(async (flags: SimulateFlags, command: Command) => {
      if (!flags.adminToken?.trim()) {
        command.error(
          'onsale simulate: --admin-token (env ONSALE_ADMIN_TOKEN) is required: it creates the event and reads ' +
            'its exact stock; `onsale start` printed it, and keeps it in <data dir>/admin-token',
          { exitCode: 2, code: 'onsale.adminToken' },
        );
      }
      const tickets = flags.tickets ?? Math.max(flags.ticketTypes, Math.ceil(flags.buyers / 4));
      if (!flags.event && tickets < flags.ticketTypes) {
        command.error(
          `onsale simulate: --tickets (${tickets}) must be at least --ticket-types (${flags.ticketTypes})`,
          {
            exitCode: 2,
            code: 'onsale.tickets',
          },
        );
      }
      const mixError = checkoutMixError(flags);
      if (mixError)
        command.error(`onsale simulate: ${mixError}`, { exitCode: 2, code: 'onsale.checkoutMix' });
      if (flags.waitingRoom) {
        if (flags.processes !== 1) {
          command.error('onsale simulate: --processes must be 1 with --waiting-room', {
            exitCode: 2,
            code: 'onsale.processes',
          });
        }
        const { runRoomCommand } = await import('./room-report.js');
        process.exit(await runRoomCommand(flags, flags.adminToken!.trim(), tickets));
      }
      const { runSimulateCommand } = await import('./report.js');
      process.exit(await runSimulateCommand(flags, flags.adminToken!.trim(), tickets));
    });
}
