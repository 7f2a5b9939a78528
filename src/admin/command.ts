import { createWriteStream, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';

/**
 * `onsale events …`: the admin's work from a terminal or a script, against a running server over its HTTP
 * API (nothing here opens the database). Readable tables by default, JSON with --json.
 *
 * Exit status: 0 done; 1 the server could not be reached or failed (5xx); 2 bad usage or no admin token;
 * 3 the server refused the request (401 wrong token, 404 no such event, 400 bad input).
 */
export const EXIT = { unreachable: 1, usage: 2, refused: 3 } as const;

export class AdminCliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

interface Common {
  url?: string;
  dataDir?: string;
  json?: boolean;
}

function withCommon(command: Command): Command {
  return command
    .addOption(new Option('--url <url>', 'the onsale server [env ONSALE_URL, default http://127.0.0.1:3000]'))
    .addOption(
      new Option(
        '--data-dir <folder>',
        'where to find the admin token when ONSALE_ADMIN_TOKEN is unset [env ONSALE_DATA_DIR, default ./data]',
      ),
    )
    .addOption(new Option('--json', 'print JSON, for scripts'))
    .allowExcessArguments(false);
}

function serverUrl(opts: Common): string {
  const raw = (opts.url ?? process.env.ONSALE_URL ?? 'http://127.0.0.1:3000').trim();
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new AdminCliError(
      `--url / ONSALE_URL: "${raw}" is not a URL (like http://127.0.0.1:3000)`,
      EXIT.usage,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new AdminCliError(`--url / ONSALE_URL: "${raw}" is not an http:// or https:// URL`, EXIT.usage);
  return raw.replace(/\/+$/, '');
}

/** ONSALE_ADMIN_TOKEN, else the token file the server keeps in its data folder (read, never created). */
function adminToken(opts: Common): string {
  const fromEnv = process.env.ONSALE_ADMIN_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const dir = resolve(opts.dataDir ?? (process.env.ONSALE_DATA_DIR || './data'));
  const path = join(dir, 'admin-token');
  try {
    const token = readFileSync(path, 'utf8').trim();
    if (token) return token;
  } catch {
    // reported below
  }
  throw new AdminCliError(
    `no admin token: set ONSALE_ADMIN_TOKEN, or point --data-dir / ONSALE_DATA_DIR at the server's data folder (no ${path})`,
    EXIT.usage,
  );
}

async function call(opts: Common, path: string, init: RequestInit = {}): Promise<Response> {
  const base = serverUrl(opts);
  const token = adminToken(opts);
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      ...init,
      headers: { ...init.headers, authorization: `Bearer ${token}` },
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new AdminCliError(
      `cannot reach the onsale server at ${base} (${cause?.code ?? cause?.message ?? String(error)}); is it running? (--url / ONSALE_URL)`,
      EXIT.unreachable,
    );
  }
  if (res.ok) return res;
  const body = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
  const what = body?.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${res.status}`;
  if (res.status === 401) {
    throw new AdminCliError(`the server refused the admin token (${what})`, EXIT.refused);
  }
  throw new AdminCliError(
    `the server answered ${res.status} (${what})`,
    res.status >= 500 ? EXIT.unreachable : EXIT.refused,
  );
}

async function callJson<T>(opts: Common, path: string, init: RequestInit = {}): Promise<T> {
  return (await (await call(opts, path, init)).json()) as T;
}

/** Columns padded to their widest cell; numbers right-aligned. */
export function table(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const line = (r: string[]) =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${[line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n')}\n`;
}

const out = (text: string): void => void process.stdout.write(text);

/** NAME:PRICE:CAPACITY[:MAX_PER_BUYER], price in currency units (25 or 25.50). */
function ticketType(
  raw: string,
  previous: Array<{ name: string; priceCents: number; capacity: number; maxPerBuyer: number }> = [],
) {
  const m = /^(.+?):(\d+(?:\.\d{1,2})?):(\d+)(?::(\d+))?$/.exec(raw);
  if (!m)
    throw new InvalidArgumentError('expected NAME:PRICE:CAPACITY[:MAX_PER_BUYER], like "GA:25.00:500:4".');
  const type = {
    name: m[1]!.trim(),
    priceCents: Math.round(Number(m[2]) * 100),
    capacity: Number(m[3]),
    maxPerBuyer: Number(m[4] ?? 10),
  };
  return [...previous, type];
}

export function addEventsCommand(root: Command): void {
  const events = root
    .command('events')
    .description("an organizer's events on a running server: list, create, stats, export");

  withCommon(events.command('list').description('lists the events, soonest sale first')).action(
    async (opts: Common) => {
      const { events: list } = await callJson<{
        events: Array<{ id: string; name: string; salesOpenAt: string }>;
      }>(opts, '/api/events');
      if (opts.json) return out(`${JSON.stringify(list)}\n`);
      out(
        table(
          ['ID', 'NAME', 'SALES OPEN AT'],
          list.map((e) => [e.id, e.name, e.salesOpenAt]),
        ),
      );
    },
  );

  withCommon(
    events
      .command('create')
      .description('creates an event; prints it')
      .requiredOption('--name <name>', "the event's name")
      .requiredOption(
        '--ticket-type <NAME:PRICE:CAPACITY[:MAX]>',
        'a ticket type (repeat for more): price in currency units, max tickets per buyer (default 10)',
        ticketType,
      )
      .option('--sales-open-at <time>', 'when the sale opens, ISO 8601 (default: now)')
      .addOption(new Option('--buyer-id-kind <kind>', 'what buyers identify with').choices(['any', 'email'])),
  ).action(
    async (
      opts: Common & {
        name: string;
        ticketType: ReturnType<typeof ticketType>;
        salesOpenAt?: string;
        buyerIdKind?: string;
      },
    ) => {
      const event = await callJson<{
        id: string;
        name: string;
        salesOpenAt: string;
        ticketTypes: Array<{
          id: string;
          name: string;
          priceCents: number;
          capacity: number;
          maxPerBuyer: number;
        }>;
      }>(opts, '/api/events', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          name: opts.name,
          ticketTypes: opts.ticketType,
          ...(opts.salesOpenAt ? { salesOpenAt: opts.salesOpenAt } : {}),
          ...(opts.buyerIdKind ? { buyerIdKind: opts.buyerIdKind } : {}),
        }),
      });
      if (opts.json) return out(`${JSON.stringify(event)}\n`);
      out(`created event ${event.id} "${event.name}", sales open at ${event.salesOpenAt}\n`);
      out(
        table(
          ['TICKET TYPE ID', 'NAME', 'PRICE', 'CAPACITY', 'MAX/BUYER'],
          event.ticketTypes.map((t) => [
            t.id,
            t.name,
            (t.priceCents / 100).toFixed(2),
            t.capacity,
            t.maxPerBuyer,
          ]),
        ),
      );
    },
  );

  withCommon(
    events.command('stats').description("an event's stock and purchases by status").argument('<eventId>'),
  ).action(async (eventId: string, opts: Common) => {
    const stats = await callJson<{
      ticketTypes: Array<{ id: string; capacity: number; sold: number; held: number; available: number }>;
      purchases: Record<string, number>;
      deadLetters: number;
    }>(opts, `/api/events/${encodeURIComponent(eventId)}/stats`);
    if (opts.json) return out(`${JSON.stringify(stats)}\n`);
    out(
      table(
        ['TICKET TYPE ID', 'SOLD', 'HELD', 'AVAILABLE', 'CAPACITY'],
        stats.ticketTypes.map((t) => [t.id, t.sold, t.held, t.available, t.capacity]),
      ),
    );
    out('\n');
    out(
      table(
        ['STATUS', 'PURCHASES'],
        Object.entries(stats.purchases).map(([status, n]) => [status, n]),
      ),
    );
    if (stats.deadLetters > 0) out(`\n${stats.deadLetters} dead letter(s): see onsale dlq list\n`);
  });

  withCommon(
    events
      .command('export')
      .description("writes an event's purchases as CSV, streamed, to stdout or --output")
      .argument('<eventId>')
      .option('-o, --output <file>', 'write to this file instead of stdout'),
  ).action(async (eventId: string, opts: Common & { output?: string }) => {
    const res = await call(opts, `/api/events/${encodeURIComponent(eventId)}/export.csv`);
    const body = Readable.fromWeb(res.body as ReadableStream<Uint8Array>);
    await pipeline(body, opts.output ? createWriteStream(opts.output) : process.stdout);
  });
}
