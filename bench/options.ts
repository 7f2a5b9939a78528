/** The bench's options and parts, in a module of their own: the entry point (cli.ts) parses them, run.ts uses them. */

/**
 * What `--only` may choose: the embedded engine (accept and allocation rates), then one part per server, the cost of
 * metrics, the whole sale against the baseline shops (and the open-loop overload race against them), then the
 * buyer's event page, and `onsale cluster` behind HAProxy, the send rate of the simulator itself against wrk,
 * and a sale with holds and payment beside one without.
 */
export const PARTS = [
  'core',
  'postgres',
  'redis',
  'rabbitmq',
  'metrics',
  'sale',
  'pages',
  'cluster',
  'simulator',
  'scale-out',
  'waiting-room',
  'overload',
  'checkout',
] as const;
export type Part = (typeof PARTS)[number];

export interface BenchOptions {
  quick?: boolean;
  duration?: number;
  connections?: number;
  threads?: number;
  only?: readonly Part[];
  postgresUrl?: string;
  redisUrl?: string;
  rabbitmqUrl?: string;
  /**
   * The Markdown file to write the results into (its results section; results-file.ts), false for none.
   * Unset: docs/benchmarks.md after a full run (every part, not --quick), when run in the repository.
   */
  write?: string | false;
}
