/**
 * The SQS queue's URL, read without loading the AWS SDK (config checks it at start).
 *
 *   sqs://NAME[?region=eu-west-1][&endpoint=http://127.0.0.1:4566][&wait=SECONDS]
 *
 * NAME names two FIFO queues, `NAME.fifo` (the purchases) and `NAME-dead.fifo` (its dead-letter queue);
 * both are created when missing. The region, when not given, comes from the SDK (AWS_REGION, the profile).
 * `endpoint` points the client at an emulator or a VPC endpoint. `wait` is the long poll of a claim that
 * finds nothing (0 to 20 s, default 1; 0 is a short poll, which on SQS may miss messages: for emulators). Credentials never appear here: the SDK's default chain finds them
 * (environment, profile, instance or task role), so no secret is ever part of a setting that is logged.
 */
export interface SqsSettings {
  /** The base name: the queues are `${name}.fifo` and `${name}-dead.fifo`. */
  name: string;
  region: string | undefined;
  endpoint: string | undefined;
  waitSeconds: number;
}

const PARAMETERS = new Set(['region', 'endpoint', 'wait']);
/** SQS allows 80 characters for a queue name, `.fifo` included; the dead queue adds `-dead`. */
const MAX_NAME = 80 - '-dead.fifo'.length;

/** Throws an Error saying what is wrong. */
export function parseSqsUrl(url: string): SqsSettings {
  const match = /^sqs:\/\/([^/?#@]*)\/?(?:\?([^#]*))?$/i.exec(url.trim());
  if (!match) throw new Error('not of the form sqs://NAME[?region=…&endpoint=…&wait=…]');
  const [, name, query] = match;
  if (!/^[A-Za-z0-9_-]+$/.test(name!) || name!.length > MAX_NAME)
    throw new Error(`the queue name must be 1 to ${MAX_NAME} letters, digits, - or _`);
  const params = new URLSearchParams(query ?? '');
  for (const key of params.keys())
    if (!PARAMETERS.has(key)) throw new Error(`unknown parameter "${key}" (expected region, endpoint, wait)`);
  const region = params.get('region') || undefined;
  if (region !== undefined && !/^[a-z0-9-]+$/.test(region))
    throw new Error('the region is not a region name');
  const endpoint = params.get('endpoint') || undefined;
  if (endpoint !== undefined) {
    let parsed: URL;
    try {
      parsed = new URL(endpoint);
    } catch {
      throw new Error('the endpoint is not a URL');
    }
    if (!/^https?:$/.test(parsed.protocol)) throw new Error('the endpoint must be http:// or https://');
    if (parsed.username || parsed.password) throw new Error('the endpoint must not carry credentials');
  }
  const wait = params.get('wait') ?? '1';
  if (!/^\d+$/.test(wait) || Number(wait) > 20)
    throw new Error('wait must be a whole number of seconds from 0 to 20');
  return { name: name!, region, endpoint, waitSeconds: Number(wait) };
}
