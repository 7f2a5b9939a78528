import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { expect } from 'vitest';
import { ADMIN_TOKEN } from './processes.js';

/** Headers of an admin JSON request. */
export const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
export const JSON_TYPE = { 'content-type': 'application/json' };

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  body: any;
}

function parsed(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * One HTTP request through node:http, so that headers and bytes are sent exactly as given (no fetch
 * normalisation) and the client's source address can be chosen (`localAddress`, e.g. 127.0.0.7) to act as
 * another client for per-address limits. A string body is sent as UTF-8; `chunked` omits Content-Length.
 */
export function send(
  baseUrl: string,
  method: string,
  path: string,
  opts: {
    headers?: Record<string, string>;
    body?: string | Buffer;
    localAddress?: string;
    chunked?: boolean;
  } = {},
): Promise<HttpAnswer> {
  const url = new URL(baseUrl);
  const body = opts.body === undefined ? undefined : Buffer.from(opts.body);
  const headers: Record<string, string | number> = { ...opts.headers };
  if (body && !opts.chunked) headers['content-length'] = body.length;
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers,
        agent: false,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed(text) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body && opts.chunked) {
      // Several chunks, so the server cannot know the size up front.
      for (let i = 0; i < body.length; i += 4096) req.write(body.subarray(i, i + 4096));
      req.end();
    } else {
      req.end(body);
    }
  });
}

/**
 * Writes `bytes` on a bare TCP connection and returns what the server answers before it closes (or before
 * `waitMs`), split into status, headers and body. For requests node:http refuses to send.
 */
export function sendRaw(
  baseUrl: string,
  bytes: string | Buffer,
  waitMs = 3_000,
): Promise<{ status: number; headers: Record<string, string>; text: string; body: any }> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const all = Buffer.concat(chunks).toString('utf8');
      const split = all.indexOf('\r\n\r\n');
      if (split < 0) return reject(new Error(`no HTTP answer: ${JSON.stringify(all)}`));
      const [statusLine, ...lines] = all.slice(0, split).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const length = headers['content-length'];
      let text = all.slice(split + 4);
      if (length !== undefined) text = Buffer.from(text).subarray(0, Number(length)).toString('utf8');
      resolve({ status: Number(statusLine!.split(' ')[1]), headers, text, body: parsed(text) });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      // One answer is all we want: stop once a complete body (by Content-Length) is in.
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const m = /content-length:\s*(\d+)/i.exec(all.subarray(0, Math.max(0, split)).toString('latin1'));
      if (split >= 0 && m && all.length >= split + 4 + Number(m[1])) finish();
    });
    socket.on('end', finish);
    socket.on('close', finish);
    socket.on('error', () => finish());
    socket.write(bytes);
  });
}

/**
 * Splits what a server wrote on one connection into its responses (interim 1xx ones included), by
 * Content-Length. For pipelined requests.
 */
export function splitResponses(
  bytes: Buffer,
): Array<{ status: number; headers: Record<string, string>; text: string; body: any }> {
  const out: Array<{ status: number; headers: Record<string, string>; text: string; body: any }> = [];
  let at = 0;
  while (at < bytes.length) {
    const split = bytes.indexOf('\r\n\r\n', at);
    if (split < 0) break;
    const [statusLine, ...lines] = bytes.subarray(at, split).toString('latin1').split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    const text = bytes.subarray(split + 4, split + 4 + length).toString('utf8');
    out.push({ status: Number(statusLine!.split(' ')[1]), headers, text, body: parsed(text) });
    at = split + 4 + length;
  }
  return out;
}

/** Asserts api.md's error body, exactly `{ error: { code, message } }`, and the status. */
export function expectApiError(
  answer: { status: number; body: any; text?: string },
  status: number,
  code: string,
  label = '',
): void {
  const shown = `${label ? `${label}: ` : ''}${answer.body === undefined ? answer.text : JSON.stringify(answer.body)}`;
  expect(answer.status, shown).toBe(status);
  expect(answer.body, `not a JSON error body: ${shown}`).toBeTypeOf('object');
  expect(Object.keys(answer.body), shown).toEqual(['error']);
  expect(Object.keys(answer.body.error).sort(), shown).toEqual(['code', 'message']);
  expect(answer.body.error.code, shown).toBe(code);
  expect(answer.body.error.message, shown).toBeTypeOf('string');
  expect(answer.body.error.message.length, shown).toBeGreaterThan(0);
}

/** Reads the `Retry-After` header as whole seconds, asserting it is one. */
export function retryAfter(headers: Headers | Record<string, string | string[] | undefined>): number {
  const value = headers instanceof Headers ? headers.get('retry-after') : headers['retry-after'];
  expect(value, 'Retry-After header').toMatch(/^\d+$/);
  return Number(value);
}

interface SseEvent {
  event: string;
  data: string;
}

/**
 * Opens a server-sent-events stream. `next()` resolves with the next event, or null once the server has
 * ended the stream.
 */
export async function openSse(url: string): Promise<{
  status: number;
  contentType: string | null;
  next: () => Promise<SseEvent | null>;
  close: () => Promise<void>;
}> {
  const res = await fetch(url, { headers: { accept: 'text/event-stream' } });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let ended = false;
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    next: async () => {
      for (;;) {
        const split = buffer.indexOf('\n\n');
        if (split >= 0) {
          const block = buffer.slice(0, split);
          buffer = buffer.slice(split + 2);
          const lines = block.split('\n').filter((l) => !l.startsWith(':'));
          if (lines.length === 0) continue; // a comment (keep-alive) only
          let event = 'message';
          const data: string[] = [];
          for (const line of lines) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          return { event, data: data.join('\n') };
        }
        if (ended) return null;
        const { done, value } = await reader.read();
        if (done) ended = true;
        else buffer += decoder.decode(value, { stream: true });
      }
    },
    close: () => reader.cancel(),
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Retries `check` until it stops throwing, then returns its value; rethrows its last error after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(everyMs);
    }
  }
}

/** A UUID of version 4 (RFC 9562): 122 random bits. */
/** A purchase id: the time as 12 hex digits, then 128 random bits in base64url (src/shared/ids.ts). */
export const PURCHASE_ID = /^[0-9a-f]{12}[A-Za-z0-9_-]{22}$/;
